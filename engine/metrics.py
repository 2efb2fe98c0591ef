"""Detection metrics, frame level and video level, in one module.

Every function takes labels (0 real, 1 fake) and scores (probability of fake) and is checked
against scikit-learn or a brute-force computation in the tests. Video scores come from frame
scores by a named aggregation rule, and every result says which rule and level it is.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn import metrics as skm

AGGREGATIONS = ("mean", "median", "max")


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    return y, s


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve (ties count half); None when only one class is present."""
    y, s = _check(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    # Rank formulation (Mann-Whitney U) with average ranks for ties.
    ranks = pd.Series(np.concatenate([pos, neg])).rank(method="average").to_numpy()
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def average_precision(labels, scores) -> float | None:
    """Step-wise AP as scikit-learn defines it (sum over thresholds of dRecall x precision)."""
    y, s = _check(labels, scores)
    if y.sum() == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    distinct = np.where(np.diff(s_sorted))[0]
    thresh_idx = np.r_[distinct, len(y_sorted) - 1]
    tps = np.cumsum(y_sorted)[thresh_idx]
    fps = 1 + thresh_idx - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR, TPR and thresholds at every distinct score, starting from (0, 0)."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    distinct = np.where(np.diff(s_sorted))[0]
    idx = np.r_[distinct, len(y_sorted) - 1]
    tps = np.cumsum(y_sorted)[idx]
    fps = 1 + idx - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s_sorted[idx]]
    return fpr, tpr, thresholds


def eer(labels, scores) -> tuple[float | None, float | None]:
    """Equal error rate, interpolated where FPR crosses FNR on the ROC curve, and its threshold."""
    y, _ = _check(labels, scores)
    if y.sum() == 0 or (1 - y).sum() == 0:
        return None, None
    fpr, tpr, thr = roc_points(labels, scores)
    fnr = 1 - tpr
    diff = fpr - fnr  # increases along the curve from -1 to +1
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(fpr[i]), float(thr[i]) if np.isfinite(thr[i]) else None
    # Linear interpolation between points i-1 and i, where the sign changes.
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1)
    rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    threshold = thr[i] if not np.isfinite(thr[i - 1]) else thr[i - 1] + t * (thr[i] - thr[i - 1])
    return float(rate), float(threshold)


def log_loss(labels, scores, eps: float = 1e-7) -> float:
    y, s = _check(labels, scores)
    p = np.clip(s, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_report(labels, scores, threshold: float = 0.5) -> dict:
    """The full set of numbers for one level (frames or videos)."""
    y, s = _check(labels, scores)
    pred = (s >= threshold).astype(np.int64)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    rate, eer_thr = eer(y, s)
    return {
        "n": int(len(y)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
        "auc": roc_auc(y, s), "ap": average_precision(y, s), "eer": rate, "eer_threshold": eer_thr,
        "accuracy@0.5": float((pred == y).mean()) if len(y) else None,
        "log_loss": log_loss(y, s) if len(y) else None,
        "confusion@0.5": {"tp": tp, "tn": tn, "fp": fp, "fn": fn},
    }


def aggregate_videos(frames: pd.DataFrame, rule: str = "mean") -> pd.DataFrame:
    """One score per video from its frame scores (columns video_id, label, score, + any kept)."""
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown video aggregation {rule!r}; known: {AGGREGATIONS}")
    keep = [c for c in frames.columns if c not in ("score", "frame_index", "logit")]
    first = frames.groupby("video_id", sort=True)[keep[1:]].first() if len(keep) > 1 else None
    scores = frames.groupby("video_id", sort=True)["score"].agg(rule).rename("score")
    n = frames.groupby("video_id", sort=True).size().rename("n_frames")
    out = pd.concat([x for x in (first, scores, n) if x is not None], axis=1).reset_index()
    return out


def report_levels(frames: pd.DataFrame, rule: str = "mean", by: str | None = "method") -> dict:
    """Frame-level and video-level reports, plus a per-`by` breakdown of video AUC against reals.

    `frames` has video_id, label, score (probability), and optionally `by`.
    """
    videos = aggregate_videos(frames, rule)
    out = {
        "frame": {"level": "frame", **binary_report(frames["label"], frames["score"])},
        "video": {"level": "video", "aggregation": rule, **binary_report(videos["label"], videos["score"])},
    }
    if by and by in frames.columns:
        breakdown = {}
        reals = videos[videos["label"] == 0]
        for value, group in videos[videos["label"] == 1].groupby(by):
            both = pd.concat([reals, group])
            breakdown[str(value)] = {"n_fake": int(len(group)), "n_real": int(len(reals)),
                                     "video_auc": roc_auc(both["label"], both["score"])}
        out[f"video_auc_by_{by}"] = breakdown
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def sklearn_reference(labels, scores) -> dict:
    """The same numbers from scikit-learn, for tests and for users who want to cross-check."""
    y, s = _check(labels, scores)
    return {"auc": float(skm.roc_auc_score(y, s)), "ap": float(skm.average_precision_score(y, s)),
            "log_loss": float(skm.log_loss(y, np.clip(s, 1e-7, 1 - 1e-7), labels=[0, 1])),
            "accuracy@0.5": float(skm.accuracy_score(y, (s >= 0.5).astype(int)))}


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x))
