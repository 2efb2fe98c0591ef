"""Detection metrics, frame level and video level, in one module.

Every function takes labels (0 real, 1 fake) and scores (probability of fake) and is checked
against scikit-learn or a brute-force computation in the tests. Video scores come from frame
scores by a named aggregation rule, and every result says which rule and level it is.
docs/evaluation.md states each definition (EER variants, ECE bins, bootstrap, DeLong).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from statistics import NormalDist

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import rankdata
from sklearn import metrics as skm

AGGREGATIONS = ("mean", "median", "max", "max_face_mean", "confident")
ECE_BINS = 15  # equal-width bins over [0, 1], as in Guo et al. 2017
TPR_AT_FPR = (0.01, 0.001)
LOG_LOSS_EPS = 1e-7
# The DFDC winner's "confident strategy" (Seferbekov, 2020), as his solution write-up describes
# it for 32 frames per video: a video is scored by its confident frames when enough of them agree.
CONFIDENT_FAKE_ABOVE = 0.8
CONFIDENT_REAL_BELOW = 0.2
CONFIDENT_MIN_FAKE_FRAMES = 11  # more than this many, and more than floor(n / 2.5)
CONFIDENT_REAL_SHARE = 0.9  # more than this share of frames below CONFIDENT_REAL_BELOW


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    return y, s


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.sum() > 0 and (1 - y).sum() > 0)


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve (ties count half); None when only one class is present."""
    y, s = _check(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    # Rank formulation (Mann-Whitney U) with average ranks for ties.
    ranks = rankdata(np.concatenate([pos, neg]), method="average")
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def _cumulative_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when thresholding at each distinct score, highest first."""
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    idx = np.r_[np.where(np.diff(s_sorted))[0], len(y_sorted) - 1]
    tps = np.cumsum(y_sorted)[idx]
    return tps, 1 + idx - tps, s_sorted[idx]


def average_precision(labels, scores) -> float | None:
    """Step-wise AP as scikit-learn defines it (sum over thresholds of dRecall x precision)."""
    y, s = _check(labels, scores)
    if y.sum() == 0:
        return None
    tps, fps, _ = _cumulative_counts(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR, TPR and thresholds at every distinct score, starting from (0, 0)."""
    y, s = _check(labels, scores)
    tps, fps, distinct_scores = _cumulative_counts(y, s)
    n_pos, n_neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, distinct_scores]
    return fpr, tpr, thresholds


def eer(labels, scores) -> tuple[float | None, float | None]:
    """Equal error rate, interpolated where FPR crosses FNR on the ROC curve, and its threshold."""
    y, _ = _check(labels, scores)
    if not _both_classes(y):
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


def eer_nearest_point(labels, scores) -> tuple[float | None, float | None]:
    """EER as many papers compute it: at the ROC point where |FPR - FNR| is smallest, (FPR + FNR) / 2.

    Ties go to the first such point from the strict end (highest threshold). It differs from the
    interpolated EER by at most half the gap between neighbouring ROC points.
    """
    y, _ = _check(labels, scores)
    if not _both_classes(y):
        return None, None
    fpr, tpr, thr = roc_points(labels, scores)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fpr - fnr)))
    return float((fpr[i] + fnr[i]) / 2), float(thr[i]) if np.isfinite(thr[i]) else None


def tpr_at_fpr(labels, scores, target_fpr: float) -> tuple[float | None, float | None, str | None]:
    """Largest TPR among ROC points with FPR <= target, its threshold, or None and the reason.

    Below 1/target negatives the FPR grid is coarser than the target itself, so the number
    would say more about the sample size than about the detector.
    """
    y, _ = _check(labels, scores)
    n_neg = int((1 - y).sum())
    needed = math.ceil(round(1 / target_fpr, 9))
    if y.sum() == 0:
        return None, None, "no fake items"
    if n_neg < needed:
        return None, None, f"{n_neg} real items; FPR {target_fpr:g} needs at least {needed}"
    fpr, tpr, thr = roc_points(labels, scores)
    ok = np.flatnonzero(fpr <= target_fpr + 1e-12)
    i = ok[np.argmax(tpr[ok])]
    return float(tpr[i]), float(thr[i]) if np.isfinite(thr[i]) else None, None


def threshold_at_fpr(labels, scores, target_fpr: float) -> float | None:
    """The lowest score threshold whose FPR stays at or below the target (None without reals)."""
    y, s = _check(labels, scores)
    neg = np.sort(s[y == 0])[::-1]
    if len(neg) == 0:
        return None
    allowed = int(math.floor(target_fpr * len(neg) + 1e-9))  # false positives we may accept
    if allowed >= len(neg):
        return float(neg[-1])
    # Scores >= threshold are called fake; put it just above the (allowed+1)-th highest real.
    return float(np.nextafter(neg[allowed], np.inf))


def normal_tolerance_factor(n: int, coverage: float, confidence: float) -> float:
    """k such that mean + k * sd of n normal draws lies above the `coverage` quantile of their
    distribution with probability `confidence` (one-sided tolerance bound, exact via the noncentral t)."""
    from scipy.stats import nct, norm

    if n < 2:
        raise ValueError("a tolerance bound needs at least 2 scores")
    return float(nct.ppf(confidence, df=n - 1, nc=norm.ppf(coverage) * math.sqrt(n)) / math.sqrt(n))


def upper_tolerance_threshold(real_scores, target_fpr: float, confidence: float = 0.95) -> dict | None:
    """A probability threshold that real items exceed with probability at most `target_fpr`, with
    `confidence`, if the logits of real scores are normal: sigmoid(mean + k * sd) of those logits.

    Why: with fewer than 1 / target_fpr real items, the empirical threshold is just above the highest
    real score, and by exchangeability at least one of m new real items scores above the highest of n
    with probability m / (n + m) -- one in two for a test set as large as the validation set. The bound
    extrapolates the real scores' tail instead; its assumption (normal logits) is stated with it.
    """
    p = np.clip(np.asarray(real_scores, np.float64), 1e-12, 1 - 1e-12)
    if len(p) < 2:
        return None
    z = np.log(p) - np.log1p(-p)
    k = normal_tolerance_factor(len(z), 1 - target_fpr, confidence)
    mean, sd = float(z.mean()), float(z.std(ddof=1))
    return {"threshold": float(1 / (1 + math.exp(-(mean + k * sd)))), "k": k, "n_real": int(len(z)),
            "logit_mean": mean, "logit_sd": sd, "coverage": 1 - target_fpr, "confidence": confidence,
            "assumption": "logits of real scores normally distributed"}


def log_loss(labels, scores, eps: float = LOG_LOSS_EPS) -> float:
    y, s = _check(labels, scores)
    p = np.clip(s, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(labels, scores) -> float:
    y, s = _check(labels, scores)
    return float(np.mean((s - y) ** 2))


def ece_bins(labels, scores, n_bins: int = ECE_BINS) -> pd.DataFrame:
    """Reliability table: per equal-width bin of the fake probability, count, mean score, fake share.

    Bin b holds scores in [b/n, (b+1)/n); the last bin also holds 1.0.
    """
    y, s = _check(labels, scores)
    b = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(b, weights=s, minlength=n_bins) / count
        fake_share = np.bincount(b, weights=y, minlength=n_bins) / count
    return pd.DataFrame({"low": np.arange(n_bins) / n_bins, "high": np.arange(1, n_bins + 1) / n_bins,
                         "count": count, "mean_score": mean_score, "fake_share": fake_share})


def expected_calibration_error(labels, scores, n_bins: int = ECE_BINS) -> float | None:
    """Sum over bins of (share of items in the bin) x |fake share - mean fake probability|."""
    table = ece_bins(labels, scores, n_bins)
    n = table["count"].sum()
    if n == 0:
        return None
    used = table[table["count"] > 0]
    return float((used["count"] / n * (used["fake_share"] - used["mean_score"]).abs()).sum())


def ece_if_calibrated(scores, n_bins: int = ECE_BINS, n_draws: int = 200, seed: int = 0) -> float | None:
    """Mean ECE of these scores when labels are drawn from them: the ECE perfect calibration shows.

    ECE is biased upward over few items (each bin's fake share is a small-sample estimate), so an
    ECE is only meaningful next to this floor: at 160 videos it is about 0.07.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return None
    b = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)
    expected = np.bincount(b, weights=s, minlength=n_bins)
    rng = np.random.default_rng(seed)
    eces = [np.abs(np.bincount(b, weights=(rng.random(len(s)) < s).astype(np.float64), minlength=n_bins)
                   - expected).sum() / len(s) for _ in range(n_draws)]
    return float(np.mean(eces))


def _confusion(y: np.ndarray, pred: np.ndarray) -> dict:
    return {"tp": int(((pred == 1) & (y == 1)).sum()), "tn": int(((pred == 0) & (y == 0)).sum()),
            "fp": int(((pred == 1) & (y == 0)).sum()), "fn": int(((pred == 0) & (y == 1)).sum())}


def _at_threshold(y: np.ndarray, s: np.ndarray, threshold: float, suffix: str) -> dict:
    pred = (s >= threshold).astype(np.int64)
    c = _confusion(y, pred)
    balanced = (c["tp"] / (c["tp"] + c["fn"]) + c["tn"] / (c["tn"] + c["fp"])) / 2 if _both_classes(y) else None
    return {f"accuracy@{suffix}": float((pred == y).mean()) if len(y) else None,
            f"balanced_accuracy@{suffix}": balanced, f"confusion@{suffix}": c}


def binary_report(labels, scores, threshold: float = 0.5, operating_threshold: float | None = None,
                  n_bins: int = ECE_BINS) -> dict:
    """The full set of numbers for one level (frames or videos).

    `operating_threshold` is a threshold chosen on validation data (the calibrated EER threshold);
    accuracy, balanced accuracy and confusion counts are reported at it as `@operating`.
    """
    y, s = _check(labels, scores)
    rate, eer_thr = eer(y, s)
    near, near_thr = eer_nearest_point(y, s)
    out = {
        "n": int(len(y)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
        "auc": roc_auc(y, s), "ap": average_precision(y, s),
        "eer": rate, "eer_threshold": eer_thr, "eer_nearest_point": near, "eer_nearest_point_threshold": near_thr,
        "log_loss": log_loss(y, s) if len(y) else None, "brier": brier(y, s) if len(y) else None,
        "ece": expected_calibration_error(y, s, n_bins), "ece_bins": n_bins,
    }
    out.update(_at_threshold(y, s, threshold, f"{threshold:g}"))
    null_reasons = {}
    for target in TPR_AT_FPR:
        tpr, thr, reason = tpr_at_fpr(y, s, target)
        out[f"tpr@fpr={target:g}"] = tpr
        out[f"tpr@fpr={target:g}_threshold"] = thr
        if reason:
            null_reasons[f"tpr@fpr={target:g}"] = reason
    if operating_threshold is not None:
        out["operating_threshold"] = float(operating_threshold)
        out.update(_at_threshold(y, s, float(operating_threshold), "operating"))
    if not _both_classes(y):
        null_reasons.update({k: "one class only" for k in ("auc", "eer", "eer_nearest_point") if out[k] is None})
    out["null_reasons"] = null_reasons
    return out


# -- video aggregation -------------------------------------------------------------------------

def confident_strategy(probs) -> float:
    """The DFDC winner's video rule: the mean of the confident frames when they dominate, else the mean.

    More than 11 frames above 0.8 (and more than floor(n / 2.5) of them): the mean of those;
    otherwise more than 90 % of frames below 0.2: the mean of those; otherwise the plain mean.
    With fewer than 12 frames per video the first branch cannot fire.
    """
    p = np.asarray(probs, dtype=np.float64)
    n = len(p)
    fake_like = p > CONFIDENT_FAKE_ABOVE
    if fake_like.sum() > CONFIDENT_MIN_FAKE_FRAMES and fake_like.sum() > math.floor(n / 2.5):
        return float(p[fake_like].mean())
    real_like = p < CONFIDENT_REAL_BELOW
    if real_like.sum() > CONFIDENT_REAL_SHARE * n:
        return float(p[real_like].mean())
    return float(p.mean())


def aggregate_videos(frames: pd.DataFrame, rule: str = "mean") -> pd.DataFrame:
    """One score per video from its frame scores (columns video_id, label, score, + any kept).

    `max_face_mean` takes the highest face score of each frame, then the mean over frames; rows
    carry `face_index` when several faces per frame are kept, and without it each row is the
    frame's one face, so the rule equals `mean`.
    """
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown video aggregation {rule!r}; known: {AGGREGATIONS}")
    per_video = frames.groupby("video_id", sort=True)
    if rule == "max_face_mean" and "face_index" in frames.columns:
        per_frame = frames.groupby(["video_id", "frame_index"], sort=True)["score"].max()
        scores = per_frame.groupby(level=0).mean()
    elif rule == "max_face_mean":
        scores = per_video["score"].mean()
    elif rule == "confident":
        scores = per_video["score"].agg(confident_strategy)
    else:
        scores = per_video["score"].agg(rule)
    keep = [c for c in frames.columns if c not in ("video_id", "score", "frame_index", "logit", "face_index")]
    first = per_video[keep].first() if keep else None
    n = (per_video["frame_index"].nunique() if "frame_index" in frames.columns else per_video.size()).rename("n_frames")
    parts = [x for x in (first, scores.rename("score"), n) if x is not None]
    return pd.concat(parts, axis=1).reset_index()


# -- bootstrap ---------------------------------------------------------------------------------

class _ResampledAuc:
    """AUC of many resamples at once, resampling groups (videos) within each class.

    A resample is a count per group. With A[g, v] = items of group g at distinct score v, the
    positive and negative mass at each score is counts @ A, and the Mann-Whitney U follows from
    a cumulative sum: O(resamples x items), no sort per resample.
    """

    def __init__(self, labels, scores, groups=None):
        y, s = _check(labels, scores)
        gid = np.arange(len(y)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
        n_groups = int(gid.max()) + 1 if len(gid) else 0
        lo = np.full(n_groups, 2)
        hi = np.full(n_groups, -1)
        np.minimum.at(lo, gid, y)
        np.maximum.at(hi, gid, y)
        if (lo != hi).any():
            raise ValueError("a resampling group (video) holds both real and fake items")
        self.pos_groups, self.neg_groups = np.flatnonzero(lo == 1), np.flatnonzero(lo == 0)
        if len(self.pos_groups) == 0 or len(self.neg_groups) == 0:
            raise ValueError("the bootstrap needs real and fake items")
        _, vid = np.unique(s, return_inverse=True)
        self.n_values = int(vid.max()) + 1
        self.a_pos = self._design(gid, vid, y == 1, self.pos_groups)
        self.a_neg = self._design(gid, vid, y == 0, self.neg_groups)

    def _design(self, gid, vid, mask, groups) -> sparse.csr_matrix:
        row_of = np.full(int(gid.max()) + 1, -1)
        row_of[groups] = np.arange(len(groups))
        return sparse.csr_matrix((np.ones(mask.sum()), (row_of[gid[mask]], vid[mask])),
                                 shape=(len(groups), self.n_values))

    def aucs(self, c_pos: np.ndarray, c_neg: np.ndarray) -> np.ndarray:
        pos = np.asarray((self.a_pos.T @ c_pos.T).T)
        neg = np.asarray((self.a_neg.T @ c_neg.T).T)
        u = ((np.cumsum(neg, axis=1) - 0.5 * neg) * pos).sum(axis=1)
        return u / (pos.sum(axis=1) * neg.sum(axis=1))


def _draw_counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _count_chunks(n_pos: int, n_neg: int, n_values: int, n_resamples: int, seed: int) -> Iterator:
    """(positive-group counts, negative-group counts) in chunks sized to keep memory bounded."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 4_000_000 // max(n_values, n_pos, n_neg, 1)))
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        yield _draw_counts(rng, n_pos, b), _draw_counts(rng, n_neg, b)
        done += b


def bootstrap_auc(labels, scores, groups=None, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """AUC of `n_resamples` bootstrap resamples of the groups (videos), stratified by class."""
    design = _ResampledAuc(labels, scores, groups)
    return np.concatenate([design.aucs(cp, cn) for cp, cn in _count_chunks(
        len(design.pos_groups), len(design.neg_groups), design.n_values, n_resamples, seed)])


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


VIDEO_INTERVAL_METRICS = ("ap", "eer", "accuracy@0.5", "balanced_accuracy@0.5", "log_loss", "brier", "ece")


def bootstrap_intervals(labels, scores, groups=None, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                        metrics: tuple[str, ...] = ()) -> dict:
    """Percentile intervals: AUC always (vectorised), plus `metrics` of binary_report (items = groups only)."""
    y, s = _check(labels, scores)
    out = {"n_resamples": int(n_resamples), "seed": int(seed), "level": level,
           "method": "percentile bootstrap, resampling videos with replacement within each class"}
    if not _both_classes(y):
        return {**out, "skipped": "one class only"}
    out["auc"] = dict(zip(("low", "high"), _interval(bootstrap_auc(y, s, groups, n_resamples, seed), level),
                          strict=True))
    if metrics:
        if groups is not None:
            raise ValueError("intervals of metrics other than AUC resample items, so they take no groups")
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        values: dict[str, list] = {m: [] for m in metrics}
        # Same resamples as the AUC: the same generator, drawn in the same order.
        for cp, cn in _count_chunks(len(pos), len(neg), len(np.unique(s)), n_resamples, seed):
            for b in range(len(cp)):
                idx = np.r_[np.repeat(pos, cp[b].astype(int)), np.repeat(neg, cn[b].astype(int))]
                rep = binary_report(y[idx], s[idx])
                for m in metrics:
                    values[m].append(rep[m])
        for m in metrics:
            v = np.array([x for x in values[m] if x is not None], dtype=np.float64)
            out[m] = dict(zip(("low", "high"), _interval(v, level), strict=True)) if len(v) else None
    return out


def roc_band(labels, scores, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
             n_points: int = 101) -> dict:
    """Pointwise percentile band of TPR at fixed FPRs over the bootstrap resamples (vertical averaging)."""
    y, s = _check(labels, scores)
    grid = np.linspace(0, 1, n_points)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    curves = []
    for cp, cn in _count_chunks(len(pos), len(neg), len(np.unique(s)), n_resamples, seed):
        for b in range(len(cp)):
            idx = np.r_[np.repeat(pos, cp[b].astype(int)), np.repeat(neg, cn[b].astype(int))]
            fpr, tpr, _ = roc_points(y[idx], s[idx])
            # The ROC is a step curve: at each FPR take the highest TPR reached without exceeding it.
            curves.append(tpr[np.searchsorted(fpr, grid, side="right") - 1])
    lo, hi = np.quantile(np.vstack(curves), [(1 - level) / 2, 1 - (1 - level) / 2], axis=0)
    return {"fpr": grid, "low": lo, "high": hi, "level": level, "n_resamples": int(n_resamples), "seed": int(seed)}


# -- paired comparison -------------------------------------------------------------------------

def delong_components(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per fake, the share of reals it outscores (ties half), and
    per real, the share of fakes that outscore it. Their means are the AUC."""
    y, s = _check(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    ranks = rankdata(np.r_[pos, neg])
    v10 = (ranks[: len(pos)] - rankdata(pos)) / len(neg)
    v01 = 1 - (ranks[len(pos):] - rankdata(neg)) / len(pos)
    return v10, v01


def delong_covariance(labels, scores_list: list) -> np.ndarray:
    """Covariance matrix of the AUCs of several scorers on the same items (DeLong et al. 1988)."""
    comps = [delong_components(labels, s) for s in scores_list]
    v10 = np.vstack([c[0] for c in comps])
    v01 = np.vstack([c[1] for c in comps])
    return np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]


def compare_auc(labels, scores_a, scores_b, groups=None, n_resamples: int = 2000, seed: int = 0,
                level: float = 0.95) -> dict:
    """Is B better than A on the same items? AUC difference (B - A) by paired bootstrap and DeLong.

    DeLong assumes independent items, so it is reported only when items are not grouped (videos).
    """
    y, a = _check(labels, scores_a)
    _, b = _check(labels, scores_b)
    auc_a, auc_b = roc_auc(y, a), roc_auc(y, b)
    out = {"auc_a": auc_a, "auc_b": auc_b, "difference": auc_b - auc_a, "level": level}
    da, db = _ResampledAuc(y, a, groups), _ResampledAuc(y, b, groups)
    diffs = np.concatenate([db.aucs(cp, cn) - da.aucs(cp, cn) for cp, cn in _count_chunks(
        len(da.pos_groups), len(da.neg_groups), max(da.n_values, db.n_values), n_resamples, seed)])
    lo, hi = _interval(diffs, level)
    out["paired_bootstrap"] = {"n_resamples": int(n_resamples), "seed": int(seed), "low": lo, "high": hi,
                               "p_value": float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))}
    if groups is None:
        cov = delong_covariance(y, [a, b])
        var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
        z_crit = NormalDist().inv_cdf(1 - (1 - level) / 2)
        d = out["difference"]
        if var > 0:
            z = d / math.sqrt(var)
            p = math.erfc(abs(z) / math.sqrt(2))
        else:
            z, p = (0.0, 1.0) if d == 0 else (math.inf, 0.0)
        out["delong"] = {"variance": var, "z": z, "p_value": p, "low": d - z_crit * math.sqrt(max(var, 0)),
                         "high": d + z_crit * math.sqrt(max(var, 0))}
    return out


# -- levels and breakdowns ---------------------------------------------------------------------

def breakdown(videos: pd.DataFrame, column: str, bootstrap: dict | None = None) -> dict:
    """Video AUC per value of `column`.

    A value that real videos also carry (compression, gender) is scored within its own reals and
    fakes; a value only fakes carry (a manipulation method) is scored against all real videos.
    """
    out = {}
    reals_all = videos[videos["label"] == 0]
    real_values = set(reals_all[column].dropna().astype(str))
    fakes = videos[videos["label"] == 1]
    for value, group in fakes.groupby(fakes[column].astype(str)):
        if value in real_values:
            reals, reference = reals_all[reals_all[column].astype(str) == value], f"real videos with {column}={value}"
        else:
            reals, reference = reals_all, "all real videos"
        both = pd.concat([reals, group])
        entry = {"n_fake": int(len(group)), "n_real": int(len(reals)), "reference": reference,
                 "video_auc": roc_auc(both["label"], both["score"])}
        if bootstrap and entry["video_auc"] is not None:
            entry["video_auc_interval"] = bootstrap_intervals(both["label"], both["score"], **bootstrap)["auc"]
        out[str(value)] = entry
    return out


def report_levels(frames: pd.DataFrame, rule: str = "mean", by: str | list[str] | None = "method",
                  operating_thresholds: dict | None = None, bootstrap: dict | None = None,
                  video_scores: Callable[[pd.DataFrame], np.ndarray] | None = None) -> dict:
    """Frame-level and video-level reports, plus per-column breakdowns of video AUC.

    `frames` has video_id, label, score (probability), and optionally the `by` columns.
    `operating_thresholds` maps level -> threshold chosen on validation data. `bootstrap`
    (n_resamples, seed, level) adds intervals: frame AUC resampling videos, video metrics.
    `video_scores` turns the aggregated video table into the video probabilities (the video map of
    engine/calibration.py); without it the aggregate is the video probability.
    """
    videos = aggregate_videos(frames, rule)
    if video_scores is not None:
        videos["score"] = video_scores(videos)
    thr = operating_thresholds or {}
    out = {
        "frame": {"level": "frame", **binary_report(frames["label"], frames["score"],
                                                    operating_threshold=thr.get("frame"))},
        "video": {"level": "video", "aggregation": rule,
                  **binary_report(videos["label"], videos["score"], operating_threshold=thr.get("video"))},
    }
    if bootstrap:
        out["frame"]["intervals"] = bootstrap_intervals(frames["label"], frames["score"], frames["video_id"],
                                                        **bootstrap)
        out["video"]["intervals"] = bootstrap_intervals(videos["label"], videos["score"], metrics=VIDEO_INTERVAL_METRICS,
                                                        **bootstrap)
    for column in [by] if isinstance(by, str) else list(by or []):
        if column in videos.columns:
            out[f"video_auc_by_{column}"] = breakdown(videos, column, bootstrap)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def logit(p, eps: float = LOG_LOSS_EPS) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def sklearn_reference(labels, scores) -> dict:
    """The same numbers from scikit-learn, for tests and for users who want to cross-check."""
    y, s = _check(labels, scores)
    return {"auc": float(skm.roc_auc_score(y, s)), "ap": float(skm.average_precision_score(y, s)),
            "log_loss": float(skm.log_loss(y, np.clip(s, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS), labels=[0, 1])),
            "accuracy@0.5": float(skm.accuracy_score(y, (s >= 0.5).astype(int))),
            "balanced_accuracy@0.5": float(skm.balanced_accuracy_score(y, (s >= 0.5).astype(int))),
            "brier": float(skm.brier_score_loss(y, s))}


# -- localisation (pixel level) --------------------------------------------------------------------

LOCALIZATION_THRESHOLDS = tuple(round(0.01 * k, 2) for k in range(1, 100))  # 0.01 ... 0.99
MASK_THRESHOLD = 0.5  # a (soft) truth mask counts a pixel as manipulated at or above this


def _pixels(maps, masks) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps and {len(masks)} masks")
    values, truths = [], []
    for m, t in zip(maps, masks, strict=True):
        m, t = np.asarray(m, np.float64), np.asarray(t, np.float64)
        if m.shape != t.shape:
            raise ValueError(f"map {m.shape} and mask {t.shape} differ in shape")
        values.append(m.reshape(-1))
        truths.append((t >= MASK_THRESHOLD).reshape(-1))
    return values, truths


def pixel_auc(maps, masks) -> float | None:
    """ROC AUC over all pixels of all images pooled (truth: mask >= 0.5); None with one class only."""
    values, truths = _pixels(maps, masks)
    if not values:
        return None
    return roc_auc(np.concatenate(truths).astype(np.int64), np.concatenate(values))


def iou_curve(maps, masks, thresholds=LOCALIZATION_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Mean over images of IoU(map >= t, mask >= 0.5) and the pooled IoU, for every threshold t.

    Pooled IoU = (sum of intersections) / (sum of unions) over images. An image where both the
    prediction and the truth are empty has IoU 1. Counts come from one sort per image.
    """
    values, truths = _pixels(maps, masks)
    t = np.asarray(thresholds, np.float64)
    per_image = np.zeros((len(values), len(t)))
    inter_sum, union_sum = np.zeros(len(t)), np.zeros(len(t))
    for i, (v, y) in enumerate(zip(values, truths, strict=True)):
        all_sorted, true_sorted = np.sort(v), np.sort(v[y])
        predicted = len(v) - np.searchsorted(all_sorted, t, side="left")
        inter = len(true_sorted) - np.searchsorted(true_sorted, t, side="left")
        union = int(y.sum()) + predicted - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            per_image[i] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        inter_sum += inter
        union_sum += union
    mean = per_image.mean(axis=0) if len(values) else np.full(len(t), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.where(union_sum > 0, inter_sum / np.maximum(union_sum, 1), 1.0)
    return mean, pooled


def fit_iou_threshold(maps, masks, thresholds=LOCALIZATION_THRESHOLDS) -> tuple[float | None, float | None]:
    """The threshold (of the candidates) with the highest mean IoU, and that IoU; the lowest on ties."""
    if not len(maps):
        return None, None
    mean, _ = iou_curve(maps, masks, thresholds)
    k = int(np.argmax(mean))
    return float(thresholds[k]), float(mean[k])


def localization_report(maps, masks, threshold: float | None, threshold_source: str) -> dict:
    """Pixel AUC and AP (pooled), and IoU at a threshold fitted elsewhere (validation data)."""
    values, truths = _pixels(maps, masks)
    y = np.concatenate(truths).astype(np.int64) if values else np.zeros(0, np.int64)
    s = np.concatenate(values) if values else np.zeros(0)
    out = {"n_images": len(values), "n_pixels": int(len(y)), "manipulated_pixel_share": float(y.mean()) if len(y)
           else None, "pixel_auc": roc_auc(y, s) if len(y) else None,
           "pixel_ap": average_precision(y, s) if len(y) else None,
           "iou_threshold": threshold, "iou_threshold_source": threshold_source,
           "mean_iou": None, "pooled_iou": None}
    if threshold is not None and values:
        mean, pooled = iou_curve(maps, masks, [threshold])
        out.update(mean_iou=float(mean[0]), pooled_iou=float(pooled[0]))
    return out
