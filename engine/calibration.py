"""Temperature scaling and operating thresholds, fitted on validation data only.

Frame probability = sigmoid(logit / T), with T fitted by minimising the frame-level log loss.
A frame-calibrated model is not a video-calibrated one: a video's frames are several pieces of
evidence for one label, so the mean of calibrated frame probabilities is under-confident about
the video (the tests show ECE getting worse at video level with a frame temperature alone). So a
second temperature T_video is fitted on the aggregated scores: video probability =
sigmoid(logit(aggregate of frame probabilities) / T_video). Both rescale confidence without
changing the order of scores at their level; the video mean of rescaled frame probabilities may
move video AUC a little. Next to the temperatures the
calibration stores the EER threshold and the threshold for a target FPR, at both levels, on the
calibrated scale. By default half of the validation videos (stratified by class) fit everything
and the other half measure the effect (ECE, log loss, Brier before and after), so the
improvement is reported on data the fit never saw. The test split is refused.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from faketrace.engine import metrics as M

log = logging.getLogger(__name__)
CALIBRATION_VERSION = 1
UNCALIBRATED = {"method": "none", "temperature": 1.0, "note": "uncalibrated: probabilities are sigmoid(logit)"}


def nll_at_temperature(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = np.asarray(logits, np.float64) / temperature
    y = np.asarray(labels, np.float64)
    # -log sigmoid(z) for fakes, -log(1 - sigmoid(z)) for reals, without overflow.
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits, labels) -> float:
    """T minimising the log loss of sigmoid(logit / T), searched over log T in [-5, 5]."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    if len(np.unique(labels)) < 2:
        raise ValueError("temperature scaling needs real and fake items")
    res = minimize_scalar(lambda log_t: nll_at_temperature(logits, labels, math.exp(log_t)), bounds=(-5.0, 5.0),
                          method="bounded", options={"xatol": 1e-8})
    return float(math.exp(res.x))


def calibrated_videos(frames: pd.DataFrame, rule: str, calibration: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Calibrated frame table and video table of a frame table with logits."""
    calibrated = apply_temperature(frames, float(calibration["temperature"]))
    videos = M.aggregate_videos(calibrated, rule)
    videos["score"] = M.temperature_scaled(videos["score"].to_numpy(), float(calibration.get("video_temperature", 1.0)))
    return calibrated, videos


def apply_temperature(frames: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """A copy of a frame table whose `score` is sigmoid(logit / T)."""
    out = frames.copy()
    out["score"] = M.sigmoid(out["logit"].to_numpy() / temperature)
    return out


def split_videos(frames: pd.DataFrame, seed: int) -> tuple[set, set]:
    """Validation videos in two halves, stratified by class: (fit, held out)."""
    videos = frames.groupby("video_id", sort=True)["label"].first()
    rng = np.random.default_rng(seed)
    fit, held = set(), set()
    for label in (0, 1):
        ids = videos.index[videos == label].to_numpy()
        ids = ids[rng.permutation(len(ids))]
        half = (len(ids) + 1) // 2
        fit.update(ids[:half])
        held.update(ids[half:])
    return fit, held


def _quality(frames: pd.DataFrame, videos: pd.DataFrame) -> dict:
    out = {}
    for level, table in (("frame", frames), ("video", videos)):
        y, s = table["label"].to_numpy(), table["score"].to_numpy()
        out[level] = {"n": int(len(y)), "ece": M.expected_calibration_error(y, s), "log_loss": M.log_loss(y, s),
                      "brier": M.brier(y, s), "auc": M.roc_auc(y, s)}
    return out


def thresholds(frames: pd.DataFrame, videos: pd.DataFrame, target_fpr: float) -> dict:
    """EER and target-FPR thresholds at frame and video level, on the scores given."""
    out = {}
    for level, table in (("frame", frames), ("video", videos)):
        y, s = table["label"].to_numpy(), table["score"].to_numpy()
        eer_t, upper = M.eer(y, s)[1], M.threshold_at_fpr(y, s, target_fpr)
        out[level] = {"eer": eer_t, "target_fpr": target_fpr, "at_target_fpr": upper,
                      # What each threshold did on the items it was fitted on, for plain-language reports.
                      "rates": {"eer": rates_at(y, s, eer_t), "at_target_fpr": rates_at(y, s, upper)}}
    return out


def rates_at(labels, scores, threshold: float | None) -> dict | None:
    """Share of real and of fake items scored at or above a threshold (called fake), with the counts."""
    if threshold is None:
        return None
    y, s = np.asarray(labels), np.asarray(scores, np.float64)
    real, fake = s[y == 0], s[y == 1]
    return {"threshold": float(threshold), "n_real": int(len(real)), "n_fake": int(len(fake)),
            "fpr": float(np.mean(real >= threshold)) if len(real) else None,
            "tpr": float(np.mean(fake >= threshold)) if len(fake) else None}


def fit_calibration(frames: pd.DataFrame, rule: str, split: str, fit_on: str = "half", seed: int = 0,
                    target_fpr: float = 0.01) -> dict:
    """Fit T and thresholds on validation frames (columns video_id, label, logit); say what was used."""
    if split == "test":
        raise ValueError("calibration is never fitted on the test split; use split=val")
    if fit_on not in ("half", "all"):
        raise ValueError(f"fit_on must be 'half' or 'all', not {fit_on!r}")
    if fit_on == "half":
        fit_ids, held_ids = split_videos(frames, seed)
        fit_frames, held_frames = frames[frames["video_id"].isin(fit_ids)], frames[frames["video_id"].isin(held_ids)]
    else:
        fit_frames, held_frames = frames, frames.iloc[0:0]
    temperature = fit_temperature(fit_frames["logit"], fit_frames["label"])
    fit_videos = M.aggregate_videos(apply_temperature(fit_frames, temperature), rule)
    video_temperature = fit_temperature(M.logit(fit_videos["score"]), fit_videos["label"])
    calibration = {"temperature": temperature, "video_temperature": video_temperature}
    calibrated_fit, calibrated_fit_videos = calibrated_videos(fit_frames, rule, calibration)
    result = {
        "version": CALIBRATION_VERSION, "method": "temperature", **calibration,
        "probability": {"frame": "sigmoid(logit / temperature)",
                        "video": f"sigmoid(logit({rule} of frame probabilities) / video_temperature)"},
        "aggregation": rule,
        "fitted_on": {"split": split, "part": "a class-stratified half of its videos" if fit_on == "half" else "all",
                      "seed": int(seed), "n_videos": int(fit_frames["video_id"].nunique()),
                      "n_frames": int(len(fit_frames)), "objective": "frame-level log loss"},
        "thresholds": thresholds(calibrated_fit, calibrated_fit_videos, target_fpr),
        "ece_bins": M.ECE_BINS,
    }
    if len(held_frames) and held_frames["label"].nunique() == 2:
        before = held_frames.copy()
        before["score"] = M.sigmoid(before["logit"].to_numpy())
        result["held_out"] = {"split": split, "n_videos": int(held_frames["video_id"].nunique()),
                              "n_frames": int(len(held_frames)),
                              "before": _quality(before, M.aggregate_videos(before, rule)),
                              "after": _quality(*calibrated_videos(held_frames, rule, calibration))}
        held = result["held_out"]
        # Said, not hidden: with few validation videos a temperature can overfit its half.
        held["ece_improved"] = {level: held["after"][level]["ece"] < held["before"][level]["ece"]
                                for level in ("frame", "video")}
        for level, better in held["ece_improved"].items():
            if not better:
                log.warning("calibration did not lower held-out %s ECE (%.4f -> %.4f) on %d videos; ECE over few "
                            "items is noisy: compare log loss and Brier in held_out too", level,
                            held["before"][level]["ece"], held["after"][level]["ece"], held["n_videos"])
    else:
        result["held_out"] = None
        result["note"] = "fitted on all validation videos: no held-out measurement of the effect"
    return result
