"""Calibration of detector probabilities and operating thresholds, fitted on validation data only.

The method is Platt scaling (a logistic map of the logit), recorded as `method: platt`:
frame probability = sigmoid(logit / T + b). The temperature T rescales confidence; the bias b
moves every score by the same amount, which a temperature cannot: a detector that calls real
faces fake a little too often (the demo model does) is shifted, not only over-confident.

A frame-calibrated model is not a video-calibrated one: a video's frames are several pieces of
evidence for one label, so the mean of calibrated frame probabilities is under-confident about
the video. An item with at least VIDEO_MIN_FRAMES frames therefore goes through a second map,
video probability = sigmoid(logit(v) / T_video + b_video), v being its frames' calibrated
probabilities aggregated by the checkpoint's rule. An item with one frame (a still) keeps its
frame probability: aggregating one frame changes nothing, so there is nothing to correct, and a
T_video fitted on videos would over-sharpen it. The frame map is monotone, so frame AUC does not
move; the video map is monotone among videos, but it moves videos and stills differently, so
where a test set mixes both, their order, and the video AUC, can change.

Which form each map takes (a temperature alone or with a bias; at video level also no map) is
chosen by cross-fitted log loss: the fitting videos fall into K class-stratified folds, each
scored by maps fitted on the other K - 1. A richer form is kept only if it predicts videos it
was not fitted on better, so a video temperature that over-sharpens on few videos is dropped.
Log loss decides, not ECE: it is a proper score and far less noisy than 15 bins over a few
hundred videos.

The effect is measured on data the fit never saw. With `fit_on="all"` (default) the stored maps
are fitted on every validation video, and the whole procedure (the choice of forms included) is
cross-fitted over K folds of videos: each fold is scored by a calibration fitted without it, and
ECE, log loss and Brier are compared on the pooled folds. With `fit_on="half"` one
class-stratified half fits and the other half measures. The test split is refused.

A calibration is applied only if it does not make its own held-out check worse: when the held-out
log loss (the proper score the maps are fitted to) rises at the frame or the video level, the
record keeps the fitted maps under `not_applied` with the reason, and its own maps are the
identity (`method: none`), so scores stay sigmoid(logit). Fewer than
`sample_size.MIN_ITEMS_PER_CLASS` items of a class is warned about and recorded (`sample_size`).

Records before version 3 named the same maps `method: temperature`; they are read as before
(`is_calibrated`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar

from faketrace.engine import metrics as M

log = logging.getLogger(__name__)
CALIBRATION_VERSION = 3
METHOD = "platt"
METHOD_DESCRIPTION = ("Platt scaling: probability = sigmoid(logit / T + b), a frame map and a video map; each map's "
                      "form (temperature alone with b = 0, or temperature and bias) chosen by cross-fitted log loss")
# "temperature" is what records before version 3 called the same Platt-style maps.
CALIBRATED_METHODS = (METHOD, "temperature")
UNCALIBRATED = {"method": "none", "temperature": 1.0, "note": "uncalibrated: probabilities are sigmoid(logit)"}
FORMS = ("temperature", "temperature+bias")  # simplest first: it wins ties
VIDEO_FORMS = ("none", *FORMS)
VIDEO_MIN_FRAMES = 2
LOG_T_BOUNDS = (-5.0, 5.0)
BIAS_BOUNDS = (-20.0, 20.0)


def nll_at_temperature(logits: np.ndarray, labels: np.ndarray, temperature: float, bias: float = 0.0) -> float:
    z = np.asarray(logits, np.float64) / temperature + bias
    y = np.asarray(labels, np.float64)
    # -log sigmoid(z) for fakes, -log(1 - sigmoid(z)) for reals, without overflow.
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _check_two_classes(labels: np.ndarray) -> None:
    if len(np.unique(labels)) < 2:
        raise ValueError("calibration needs real and fake items")


def fit_temperature(logits, labels) -> float:
    """T minimising the log loss of sigmoid(logit / T), searched over log T in [-5, 5]."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    _check_two_classes(labels)
    res = minimize_scalar(lambda log_t: nll_at_temperature(logits, labels, math.exp(log_t)), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-8})
    return float(math.exp(res.x))


def fit_temperature_and_bias(logits, labels) -> tuple[float, float]:
    """(T, b) minimising the log loss of sigmoid(logit / T + b) (Platt scaling), log T in [-5, 5]."""
    z, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    _check_two_classes(y)
    newton = _newton_logistic(z, y)
    if newton is not None and LOG_T_BOUNDS[0] <= -math.log(newton[0]) <= LOG_T_BOUNDS[1] \
            and BIAS_BOUNDS[0] <= newton[1] <= BIAS_BOUNDS[1]:
        return float(1 / newton[0]), float(newton[1])

    # The optimum lies on a bound (e.g. logits that do not separate the classes): a bounded search.
    def loss_and_grad(params):
        inv_t = math.exp(-params[0])
        u = z * inv_t + params[1]
        residual = M.sigmoid(u) - y  # d loss / d u
        return (float(np.mean(np.logaddexp(0.0, u) - y * u)),
                np.array([-float(np.mean(residual * z)) * inv_t, float(np.mean(residual))]))

    start = [math.log(fit_temperature(z, y)), 0.0]
    res = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", bounds=[LOG_T_BOUNDS, BIAS_BOUNDS])
    return float(math.exp(res.x[0])), float(res.x[1])


def _newton_logistic(z: np.ndarray, y: np.ndarray, max_steps: int = 100) -> tuple[float, float] | None:
    """(1/T, b) of the logistic regression of y on z by damped Newton steps; None unless it converges
    to 1/T > 0. The loss is convex in (1/T, b), so a few steps do: under 1 ms for the demo's 1,024
    frames, against about 30 ms for L-BFGS-B, and cross-fitting fits a few hundred times."""
    x = np.column_stack([z, np.ones_like(z)])
    params = np.array([1.0, 0.0])
    loss = nll_at_temperature(z, y, 1.0)
    for _ in range(max_steps):
        p = M.sigmoid(x @ params)
        grad = x.T @ (p - y) / len(y)
        if np.abs(grad).max() < 1e-10:
            return float(params[0]), float(params[1])
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(y)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return None
        shrink = 1.0
        while True:  # halve the step until the loss does not rise and 1/T stays positive
            trial = params - shrink * step
            trial_loss = nll_at_temperature(z, y, 1 / trial[0], trial[1]) if trial[0] > 0 else math.inf
            if trial_loss <= loss:
                break
            shrink /= 2
            if shrink < 1e-12:
                return None
        params, loss = trial, trial_loss
    return None


def fit_map(logits, labels, form: str) -> tuple[float, float]:
    """(temperature, bias) of one map in the named form; 'none' is the identity."""
    if form == "none":
        return 1.0, 0.0
    if form == "temperature":
        return fit_temperature(logits, labels), 0.0
    if form == "temperature+bias":
        return fit_temperature_and_bias(logits, labels)
    raise ValueError(f"unknown calibration form {form!r}; known: {VIDEO_FORMS}")


# -- applying a calibration ------------------------------------------------------------------

def calibrated_frames(frames: pd.DataFrame, calibration: dict) -> pd.DataFrame:
    """A copy of a frame table whose `score` is sigmoid(logit / T + b)."""
    out = frames.copy()
    out["score"] = M.sigmoid(out["logit"].to_numpy() / float(calibration["temperature"])
                             + float(calibration.get("bias", 0.0)))
    return out


def calibrated_video_scores(videos: pd.DataFrame, calibration: dict) -> np.ndarray:
    """Video probabilities of an aggregated table (score, n_frames) of calibrated frame scores."""
    scores = videos["score"].to_numpy(np.float64).copy()
    # Records of version 1 rescaled every item, stills included; they carry no video_min_frames.
    several = videos["n_frames"].to_numpy() >= int(calibration.get("video_min_frames", 1))
    scores[several] = M.sigmoid(M.logit(scores[several]) / float(calibration.get("video_temperature", 1.0))
                                + float(calibration.get("video_bias", 0.0)))
    return scores


def calibrated_videos(frames: pd.DataFrame, rule: str, calibration: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Calibrated frame table and video table of a frame table with logits."""
    calibrated = calibrated_frames(frames, calibration)
    videos = M.aggregate_videos(calibrated, rule)
    videos["score"] = calibrated_video_scores(videos, calibration)
    return calibrated, videos


def raw_videos(frames: pd.DataFrame, rule: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Uncalibrated frame and video tables: sigmoid(logit), aggregated by the rule."""
    raw = frames.copy()
    raw["score"] = M.sigmoid(raw["logit"].to_numpy())
    return raw, M.aggregate_videos(raw, rule)


def is_calibrated(calibration: dict | None) -> bool:
    """Whether a record's maps are applied (Platt scaling; `temperature` in records before version 3)."""
    return bool(calibration) and calibration.get("method") in CALIBRATED_METHODS


def has_video_map(calibration: dict) -> bool:
    """Whether the record holds a video map that changes anything (none is fitted on a set of stills)."""
    form = (calibration.get("form") or {}).get("video")
    if form is not None:
        return form != "none"
    return float(calibration.get("video_temperature", 1.0)) != 1.0 or float(calibration.get("video_bias", 0.0)) != 0.0


def maps_summary(calibration: dict) -> str:
    """The fitted maps in one line, e.g. for logs and summaries."""
    if not is_calibrated(calibration):
        rejected = (calibration.get("not_applied") or {}).get("reason")
        return "not calibrated" + (f" ({rejected})" if rejected else "")
    frame = (f"Platt scaling: T = {float(calibration['temperature']):.4f}, "
             f"b = {float(calibration.get('bias', 0.0)):.4f}")
    if not has_video_map(calibration):
        return frame + "; no video map (every item keeps its frame-level probability)"
    return (frame + f"; video map T_video = {float(calibration.get('video_temperature', 1.0)):.4f}, "
            f"b_video = {float(calibration.get('video_bias', 0.0)):.4f} on items of at least "
            f"{int(calibration.get('video_min_frames', 1))} frames")


# -- fitting ---------------------------------------------------------------------------------

def split_videos(frames: pd.DataFrame, seed: int) -> tuple[set, set]:
    """Validation videos in two halves, stratified by class: (fit, held out)."""
    folds = video_folds(frames, 2, seed)
    return set(frames["video_id"][folds == 0]), set(frames["video_id"][folds == 1])


def video_folds(frames: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """The fold (0 .. k-1) of each frame row: videos dealt into k folds within each class."""
    videos = frames.groupby("video_id", sort=True)["label"].first()
    rng = np.random.default_rng(seed)
    fold = pd.Series(0, index=videos.index)
    for label in (0, 1):
        ids = videos.index[videos == label].to_numpy()
        fold[ids[rng.permutation(len(ids))]] = np.arange(len(ids)) % k
    return frames["video_id"].map(fold).to_numpy()


def usable_folds(frames: pd.DataFrame, folds: int) -> int:
    """At most `folds`, and no more than the videos of the smaller class (each fold then fits on both)."""
    per_class = frames.groupby("video_id")["label"].first().value_counts()
    return int(min(folds, per_class.min())) if len(per_class) == 2 else 0


def fit_maps(frames: pd.DataFrame, rule: str, frame_form: str, video_form: str) -> dict:
    """Frame and video maps of the given forms, fitted on these frames (columns video_id, label, logit)."""
    t, b = fit_map(frames["logit"], frames["label"], frame_form)
    maps = {"temperature": t, "bias": b, "video_temperature": 1.0, "video_bias": 0.0,
            "video_min_frames": VIDEO_MIN_FRAMES, "form": {"frame": frame_form, "video": "none"}}
    if video_form != "none":
        videos = M.aggregate_videos(calibrated_frames(frames, maps), rule)
        several = videos[videos["n_frames"] >= VIDEO_MIN_FRAMES]
        if several["label"].nunique() == 2:  # else no video map: it could not be fitted
            maps["video_temperature"], maps["video_bias"] = fit_map(M.logit(several["score"]), several["label"],
                                                                    video_form)
            maps["form"]["video"] = video_form
    return maps


def cross_fitted(frames: pd.DataFrame, rule: str, fit: Callable[[pd.DataFrame], dict], k: int,
                 seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Frame and video tables whose every score comes from `fit` on the other k - 1 folds of videos."""
    fold = video_folds(frames, k, seed)
    frame_parts, video_parts, fits = [], [], []
    for i in range(k):
        maps = fit(frames[fold != i])
        f, v = calibrated_videos(frames[fold == i], rule, maps)
        frame_parts.append(f)
        video_parts.append(v)
        fits.append(maps)
    return pd.concat(frame_parts), pd.concat(video_parts), fits


def choose_forms(frames: pd.DataFrame, rule: str, folds: int, seed: int) -> dict:
    """The frame form, then the video form, with the lowest cross-fitted log loss on these frames."""
    k = usable_folds(frames, folds)
    if k < 2:
        return {"frame": FORMS[0], "video": "none", "folds": k,
                "criterion": "too few videos of a class to cross-fit: the plainest forms"}
    frame_loss = {}
    for form in FORMS:
        f, _, _ = cross_fitted(frames, rule, lambda d, form=form: fit_maps(d, rule, form, "none"), k, seed)
        frame_loss[form] = M.log_loss(f["label"], f["score"])
    frame_form = min(FORMS, key=frame_loss.get)
    video_loss = {}
    for form in VIDEO_FORMS:
        _, v, _ = cross_fitted(frames, rule, lambda d, form=form: fit_maps(d, rule, frame_form, form), k, seed)
        video_loss[form] = M.log_loss(v["label"], v["score"])
    return {"frame": frame_form, "video": min(VIDEO_FORMS, key=video_loss.get), "folds": k, "seed": int(seed),
            "criterion": "cross-fitted log loss (frame level for the frame map, video level for the video map)",
            "log_loss": {"frame": frame_loss, "video": video_loss}}


def fit_selected(frames: pd.DataFrame, rule: str, folds: int, seed: int) -> dict:
    """Choose the forms by cross-fitting, then fit them on all of these frames."""
    choice = choose_forms(frames, rule, folds, seed)
    return {**fit_maps(frames, rule, choice["frame"], choice["video"]), "selection": choice}


def _quality(frames: pd.DataFrame, videos: pd.DataFrame) -> dict:
    out = {}
    for level, table in (("frame", frames), ("video", videos)):
        y, s = table["label"].to_numpy(), table["score"].to_numpy()
        out[level] = {"n": int(len(y)), "ece": M.expected_calibration_error(y, s), "log_loss": M.log_loss(y, s),
                      "brier": M.brier(y, s), "auc": M.roc_auc(y, s),
                      "ece_if_calibrated": M.ece_if_calibrated(s)}
    return out


def upper_threshold(labels, scores, target_fpr: float) -> dict:
    """The upper band's threshold on validation scores, and how it was set.

    Empirical: the lowest threshold whose false-positive rate on these reals stays at or below the
    target. With fewer reals than the target can resolve, that threshold is just above the highest
    real score, and one in two new real sets of the same size holds an item above it; the threshold is
    then the larger of it and a one-sided 95 % tolerance bound on the real scores' (1 - target) quantile
    (engine/metrics.py upper_tolerance_threshold), and the record says which decided.
    """
    y, s = np.asarray(labels), np.asarray(scores, np.float64)
    empirical = M.threshold_at_fpr(y, s, target_fpr)
    n_real, needed = int((y == 0).sum()), math.ceil(round(1 / target_fpr, 9))
    out = {"threshold": empirical, "empirical": empirical, "rule": "empirical"}
    if empirical is None or n_real >= needed:
        return out
    bound = M.upper_tolerance_threshold(s[y == 0], target_fpr)
    out["tolerance_bound"] = bound
    if bound is not None and bound["threshold"] > empirical:
        out.update(threshold=bound["threshold"], rule="tolerance bound")
    which = ("a one-sided 95 % tolerance bound on the real scores' {q:g} quantile (normal fit to their logits, "
             "{n} items), above the highest real validation score" if out["rule"] == "tolerance bound" else
             "just above the highest real validation score (a one-sided 95 % tolerance bound on their {q:g} quantile, "
             "from a normal fit to their logits, lies below it)")
    # Said wherever the band is explained (forensics/report.py).
    out["resolution_note"] = (
        f"{n_real} real validation items cannot measure a rate of {target_fpr:g} (that needs at least {needed}): "
        "the highest-scoring real item alone would set the threshold, and a new set of real items as large is "
        "as likely as not to hold one above it; the upper threshold is "
        + which.format(q=1 - target_fpr, n=n_real))
    return out


def thresholds(frames: pd.DataFrame, videos: pd.DataFrame, target_fpr: float) -> dict:
    """EER and target-FPR thresholds at frame and video level, on the scores given."""
    out = {}
    for level, table in (("frame", frames), ("video", videos)):
        y, s = table["label"].to_numpy(), table["score"].to_numpy()
        eer_t, upper = M.eer(y, s)[1], upper_threshold(y, s, target_fpr)
        out[level] = {"eer": eer_t, "target_fpr": target_fpr, "at_target_fpr": upper["threshold"],
                      "upper_rule": upper["rule"], "at_target_fpr_empirical": upper["empirical"],
                      # What each threshold did on the items it was fitted on, for plain-language reports.
                      "rates": {"eer": rates_at(y, s, eer_t), "at_target_fpr": rates_at(y, s, upper["threshold"])}}
        if "tolerance_bound" in upper:
            out[level]["tolerance_bound"] = upper["tolerance_bound"]
        if "resolution_note" in upper:
            out[level]["resolution_note"] = upper["resolution_note"]
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


def refuse_test_split(frames: pd.DataFrame, split: str) -> None:
    """Calibration is never fitted on test data, whatever the caller calls the split."""
    if split == "test" or ("split" in frames.columns and (frames["split"] == "test").any()):
        raise ValueError("calibration is never fitted on the test split; use split=val")


def fit_calibration(frames: pd.DataFrame, rule: str, split: str, fit_on: str = "all", seed: int = 0,
                    target_fpr: float = 0.01, folds: int = 5) -> dict:
    """Fit the maps and thresholds on validation frames (columns video_id, label, logit); measure the effect."""
    refuse_test_split(frames, split)
    if fit_on not in ("half", "all"):
        raise ValueError(f"fit_on must be 'half' or 'all', not {fit_on!r}")
    if fit_on == "half":
        fit_ids, held_ids = split_videos(frames, seed)
        fit_frames, held_frames = frames[frames["video_id"].isin(fit_ids)], frames[frames["video_id"].isin(held_ids)]
    else:
        fit_frames, held_frames = frames, None
    maps = fit_selected(fit_frames, rule, folds, seed)
    calibrated_fit, calibrated_fit_videos = calibrated_videos(fit_frames, rule, maps)
    stills_only = _media_words(fit_frames) == "stills"
    result = {
        "version": CALIBRATION_VERSION, "method": METHOD, "method_description": METHOD_DESCRIPTION, **maps,
        "probability": {"frame": "sigmoid(logit / temperature + bias)",
                        "video": ("every item is a still (one frame): its probability is the frame probability"
                                  if stills_only else
                                  f"items with at least video_min_frames frames: sigmoid(logit({rule} of frame "
                                  "probabilities) / video_temperature + video_bias); others: the frame probability")},
        "aggregation": rule,
        "fitted_on": {"split": split, "part": "a class-stratified half of its videos" if fit_on == "half" else "all",
                      "seed": int(seed), "n_videos": int(fit_frames["video_id"].nunique()),
                      "n_items": int(fit_frames["video_id"].nunique()), "items": _media_words(fit_frames),
                      "n_frames": int(len(fit_frames)), "objective": "log loss at each map's level"},
        "thresholds": thresholds(calibrated_fit, calibrated_fit_videos, target_fpr),
        "ece_bins": M.ECE_BINS,
    }
    result["held_out"] = _held_out(frames, held_frames, maps, rule, split, folds, seed)
    if result["held_out"] is None:
        result["note"] = "too few videos of a class: no held-out measurement of the effect"
    result["sample_size"] = _sample_size(fit_frames, rule)
    return apply_or_refuse(result, fit_frames, rule, target_fpr)


def _media_words(frames: pd.DataFrame) -> str:
    """'stills', 'videos' or 'videos and stills': what the items are (items of one frame are stills)."""
    n = frames.groupby("video_id").size()
    several, single = int((n >= VIDEO_MIN_FRAMES).sum()), int((n < VIDEO_MIN_FRAMES).sum())
    return "videos and stills" if several and single else "videos" if several else "stills"


def _sample_size(frames: pd.DataFrame, rule: str) -> dict:
    """Items per class the maps were fitted on, the AUC interval they allow, and a warning if too few."""
    from faketrace.engine.sample_size import decision_record

    items = M.aggregate_videos(frames.assign(score=M.sigmoid(frames["logit"].to_numpy())), rule)
    y, s = items["label"].to_numpy(), items["score"].to_numpy()
    media = _media_words(frames)
    unit = {"stills": "images", "videos": "videos"}.get(media, f"items ({media})")
    record = decision_record("calibration", M.roc_auc(y, s), int((y == 1).sum()), int((y == 0).sum()), unit=unit)
    if record["warning"]:
        log.warning("%s", record["warning"])
    return record


def held_out_worsened(held: dict | None) -> list[str]:
    """Levels whose held-out log loss the calibration made worse (it is fitted to lower exactly that)."""
    if not held:
        return []
    return [level for level in ("frame", "video")
            if held["after"][level]["log_loss"] is not None and held["before"][level]["log_loss"] is not None
            and held["after"][level]["log_loss"] > held["before"][level]["log_loss"] + 1e-12]


def apply_or_refuse(result: dict, fit_frames: pd.DataFrame, rule: str, target_fpr: float) -> dict:
    """The record to store: the fitted calibration, or, when it worsens its own held-out check, none.

    A refused calibration keeps its maps and measurements under `not_applied` with the reason; the
    record's own maps are the identity and its thresholds are refitted on the raw scores, so every
    reader (evaluation, export, scan, predictor) uses sigmoid(logit) and says why.
    """
    held = result.get("held_out")
    worse = held_out_worsened(held)
    if held:
        held["log_loss_improved"] = {level: level not in worse for level in ("frame", "video")}
    if not worse:
        return {**result, "applied": True}
    detail = "; ".join(f"{level} log loss {held['before'][level]['log_loss']:.4f} -> {held['after'][level]['log_loss']:.4f}"
                       for level in worse)
    reason = (f"the fitted calibration worsened its own held-out check ({held['how']}): {detail}; "
              "scores stay sigmoid(logit)")
    log.warning("calibration not applied: %s", reason)
    raw_frames, raw_item_table = raw_videos(fit_frames, rule)
    fitted = {k: result[k] for k in ("temperature", "bias", "video_temperature", "video_bias", "video_min_frames",
                                     "form", "selection") if k in result}
    return {"version": result["version"], "method": "none", "applied": False,
            "note": f"uncalibrated: {reason}", "temperature": 1.0, "bias": 0.0, "video_temperature": 1.0,
            "video_bias": 0.0, "video_min_frames": result.get("video_min_frames", VIDEO_MIN_FRAMES),
            "form": {"frame": "none", "video": "none"},
            "probability": {"frame": "sigmoid(logit)", "video": f"{rule} of the frame probabilities"},
            "aggregation": rule, "fitted_on": result["fitted_on"],
            "thresholds": thresholds(raw_frames, raw_item_table, target_fpr), "ece_bins": result["ece_bins"],
            "held_out": held, "sample_size": result.get("sample_size"),
            "not_applied": {"reason": reason, "worsened_levels": worse, "method": result["method"],
                            "method_description": result.get("method_description"), "maps": fitted}}


def _held_out(frames: pd.DataFrame, held_frames: pd.DataFrame | None, maps: dict, rule: str, split: str, folds: int,
              seed: int) -> dict | None:
    """Before and after on videos the calibration was not fitted on (the other half, or cross-fitted)."""
    if held_frames is not None:
        if held_frames["label"].nunique() < 2:
            return None
        after = calibrated_videos(held_frames, rule, maps)
        how, scored, chosen = "the other class-stratified half of the videos", held_frames, None
    else:
        k = usable_folds(frames, folds)
        if k < 2:
            return None
        # The whole procedure, choice of forms included, is refitted without each fold.
        f, v, fits = cross_fitted(frames, rule, lambda d: fit_selected(d, rule, folds, seed), k, seed)
        after, scored = (f, v), frames
        how = f"cross-fitted: {k} class-stratified folds of videos, each scored by a calibration fitted without it"
        chosen = dict(Counter(f"{m['form']['frame']} / video {m['form']['video']}" for m in fits))
    held = {"how": how, "split": split, "n_videos": int(scored["video_id"].nunique()), "n_frames": int(len(scored)),
            "before": _quality(*raw_videos(scored, rule)), "after": _quality(*after)}
    if chosen is not None:
        held["forms_chosen_per_fold"] = chosen
    # Said, not hidden: ECE over few items is noisy, and a calibration can overfit few videos.
    held["ece_improved"] = {level: held["after"][level]["ece"] < held["before"][level]["ece"]
                            for level in ("frame", "video")}
    for level, better in held["ece_improved"].items():
        if not better:
            log.warning("calibration did not lower held-out %s ECE (%.4f -> %.4f) on %d videos; ECE over few items "
                        "is noisy (%.4f expected of perfectly calibrated scores): compare log loss and Brier in "
                        "held_out too", level, held["before"][level]["ece"], held["after"][level]["ece"],
                        held["n_videos"], held["after"][level]["ece_if_calibrated"])
    return held
