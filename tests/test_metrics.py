"""The metrics module equals scikit-learn and brute-force references on the same inputs."""

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from faketrace.engine import metrics as M


def _data(seed, n=300, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    if ties:
        s = np.round(s, 1)
    return y, s


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_ap_logloss_accuracy_equal_sklearn(seed, ties):
    y, s = _data(seed, ties=ties)
    ref = M.sklearn_reference(y, s)
    rep = M.binary_report(y, s)
    assert rep["auc"] == pytest.approx(ref["auc"], abs=1e-12)
    assert rep["ap"] == pytest.approx(ref["ap"], abs=1e-12)
    assert rep["log_loss"] == pytest.approx(ref["log_loss"], abs=1e-12)
    assert rep["accuracy@0.5"] == pytest.approx(ref["accuracy@0.5"], abs=1e-12)
    cm = skm.confusion_matrix(y, (s >= 0.5).astype(int), labels=[0, 1])
    assert rep["confusion@0.5"] == {"tn": cm[0, 0], "fp": cm[0, 1], "fn": cm[1, 0], "tp": cm[1, 1]}


def _brute_force_eer(y, s):
    """Sweep every midpoint threshold; EER where |FPR - FNR| is smallest, interpolated linearly."""
    thresholds = np.unique(np.r_[-np.inf, s, np.inf])
    fpr = np.array([((s >= t) & (y == 0)).sum() / (y == 0).sum() for t in thresholds])
    fnr = np.array([((s < t) & (y == 1)).sum() / (y == 1).sum() for t in thresholds])
    # fpr decreases and fnr increases with the threshold; find the crossing.
    d = fpr - fnr
    i = np.where(d <= 0)[0][0]
    if d[i] == 0:
        return fpr[i]
    j = i - 1
    t = d[j] / (d[j] - d[i])
    return fpr[j] + t * (fpr[i] - fpr[j])


@pytest.mark.parametrize("seed", range(8))
def test_eer_equals_brute_force(seed):
    y, s = _data(seed, n=120, ties=seed % 2 == 0)
    rate, _ = M.eer(y, s)
    assert rate == pytest.approx(_brute_force_eer(y, s), abs=1e-9)


def test_eer_of_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    assert M.eer(y, np.array([0.1, 0.2, 0.8, 0.9]))[0] == pytest.approx(0.0)
    assert M.eer(y, np.array([0.9, 0.8, 0.2, 0.1]))[0] == pytest.approx(1.0)


def test_roc_points_equal_sklearn():
    y, s = _data(3)
    fpr, tpr, _ = M.roc_points(y, s)
    rf, rt, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, rf, atol=1e-12)
    np.testing.assert_allclose(tpr, rt, atol=1e-12)


def test_single_class_gives_none_not_a_number():
    rep = M.binary_report(np.zeros(5, int), np.linspace(0, 1, 5))
    assert rep["auc"] is None and rep["eer"] is None


def test_video_aggregation_rules_and_breakdown():
    frames = pd.DataFrame({"video_id": ["a", "a", "b", "b", "c"], "label": [0, 0, 1, 1, 1],
                           "method": ["real", "real", "x", "x", "y"], "score": [0.1, 0.3, 0.6, 1.0, 0.05]})
    v = M.aggregate_videos(frames, "mean").set_index("video_id")
    assert v.loc["a", "score"] == pytest.approx(0.2) and v.loc["b", "score"] == pytest.approx(0.8)
    assert M.aggregate_videos(frames, "max").set_index("video_id").loc["a", "score"] == pytest.approx(0.3)
    rep = M.report_levels(frames, "mean")
    assert rep["video"]["aggregation"] == "mean" and rep["video"]["n"] == 3 and rep["frame"]["n"] == 5
    assert rep["video_auc_by_method"]["x"]["video_auc"] == 1.0
    assert rep["video_auc_by_method"]["y"]["video_auc"] == 0.0
    with pytest.raises(ValueError):
        M.aggregate_videos(frames, "vote")


# -- the extended metric set --------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_brier_balanced_accuracy_and_confusion_equal_sklearn(seed, ties):
    y, s = _data(seed, ties=ties)
    ref = M.sklearn_reference(y, s)
    rep = M.binary_report(y, s, operating_threshold=0.42)
    assert rep["brier"] == pytest.approx(ref["brier"], abs=1e-12)
    assert rep["balanced_accuracy@0.5"] == pytest.approx(ref["balanced_accuracy@0.5"], abs=1e-12)
    pred = (s >= 0.42).astype(int)
    assert rep["accuracy@operating"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert rep["balanced_accuracy@operating"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
    cm = skm.confusion_matrix(y, pred, labels=[0, 1])
    assert rep["confusion@operating"] == {"tn": cm[0, 0], "fp": cm[0, 1], "fn": cm[1, 0], "tp": cm[1, 1]}


def _brute_force_ece(y, s, n_bins):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (s >= lo) & ((s < hi) if b < n_bins - 1 else (s <= hi))
        if inside.any():
            total += inside.sum() / len(s) * abs(y[inside].mean() - s[inside].mean())
    return total


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_bins", [10, 15])
def test_ece_equals_brute_force_over_equal_width_bins(seed, n_bins):
    y, s = _data(seed)
    s[:3] = [0.0, 1.0, 0.5]  # the edges land in the first, last and middle bins
    assert M.expected_calibration_error(y, s, n_bins) == pytest.approx(_brute_force_ece(y, s, n_bins), abs=1e-12)


def _brute_force_eer_nearest(y, s):
    best = None
    for t in np.r_[np.inf, np.unique(s)[::-1]]:
        fpr = ((s >= t) & (y == 0)).sum() / (y == 0).sum()
        fnr = ((s < t) & (y == 1)).sum() / (y == 1).sum()
        if best is None or abs(fpr - fnr) < best[0]:
            best = (abs(fpr - fnr), (fpr + fnr) / 2)
    return best[1]


@pytest.mark.parametrize("seed", range(6))
def test_eer_nearest_point_equals_brute_force_and_brackets_the_interpolated_eer(seed):
    y, s = _data(seed, n=90, ties=seed % 2 == 1)
    near, _ = M.eer_nearest_point(y, s)
    assert near == pytest.approx(_brute_force_eer_nearest(y, s), abs=1e-9)
    interp, _ = M.eer(y, s)
    fpr, _, _ = M.roc_points(y, s)
    assert abs(near - interp) <= np.max(np.diff(fpr)) + 1e-12


def _brute_force_tpr_at_fpr(y, s, target):
    best = 0.0
    for t in np.r_[np.inf, np.unique(s)]:
        fpr = ((s >= t) & (y == 0)).sum() / (y == 0).sum()
        if fpr <= target:
            best = max(best, ((s >= t) & (y == 1)).sum() / (y == 1).sum())
    return best


@pytest.mark.parametrize("seed", range(3))
def test_tpr_at_fpr_equals_brute_force_and_is_null_with_a_reason_below_1_over_fpr(seed):
    y, s = _data(seed, n=2400)
    rep = M.binary_report(y, s)
    assert (y == 0).sum() >= 1000
    for target in (0.01, 0.001):
        assert rep[f"tpr@fpr={target:g}"] == pytest.approx(_brute_force_tpr_at_fpr(y, s, target), abs=1e-12)
    small = M.binary_report(y[:300], s[:300])
    assert small["tpr@fpr=0.01"] is not None and small["tpr@fpr=0.001"] is None
    assert "needs at least 1000" in small["null_reasons"]["tpr@fpr=0.001"]


def test_threshold_at_fpr_keeps_the_false_positive_rate():
    y, s = _data(5, n=1000)
    for target in (0.01, 0.05, 0.2):
        t = M.threshold_at_fpr(y, s, target)
        fpr = ((s >= t) & (y == 0)).sum() / (y == 0).sum()
        assert fpr <= target
        # ...and it is the lowest such threshold among the real scores.
        assert ((s >= np.max(s[(y == 0) & (s < t)])) & (y == 0)).sum() / (y == 0).sum() > target


def test_the_tolerance_bound_lies_above_the_quantile_as_often_as_it_says():
    """mean + k sd of n normal draws exceeds their 0.99 quantile in 95 % of draws (k from the noncentral t)."""
    from statistics import NormalDist

    rng = np.random.default_rng(3)
    q99 = NormalDist().inv_cdf(0.99)
    k = M.normal_tolerance_factor(64, 0.99, 0.95)
    assert 2.33 < k < 3.0 and M.normal_tolerance_factor(100_000, 0.99, 0.95) == pytest.approx(q99, abs=0.02)
    z = rng.normal(size=(4000, 64))
    covered = (z.mean(1) + k * z.std(1, ddof=1) >= q99).mean()
    assert covered == pytest.approx(0.95, abs=0.012)
    # On probabilities, the bound works on their logits.
    real = 1 / (1 + np.exp(-rng.normal(-3, 1.5, 64)))
    bound = M.upper_tolerance_threshold(real, 0.01)
    logit = np.log(real / (1 - real))
    assert bound["threshold"] == pytest.approx(1 / (1 + np.exp(-(logit.mean() + bound["k"] * logit.std(ddof=1)))))
    assert bound["n_real"] == 64 and "normal" in bound["assumption"]


def test_max_face_mean_median_and_confident_aggregation():
    frames = pd.DataFrame({"video_id": ["a"] * 4 + ["b"] * 2, "frame_index": [0, 0, 1, 1, 0, 1],
                           "face_index": [0, 1, 0, 1, 0, 0], "label": [1, 1, 1, 1, 0, 0],
                           "score": [0.2, 0.9, 0.6, 0.1, 0.3, 0.5]})
    v = M.aggregate_videos(frames, "max_face_mean").set_index("video_id")
    assert v.loc["a", "score"] == pytest.approx((0.9 + 0.6) / 2) and v.loc["a", "n_frames"] == 2
    assert M.aggregate_videos(frames, "median").set_index("video_id").loc["a", "score"] == pytest.approx(0.4)
    # Without face_index every row is its frame's one face: max_face_mean is the mean.
    one_face = frames.drop(columns="face_index")
    assert M.aggregate_videos(one_face, "max_face_mean")["score"].tolist() == pytest.approx(
        M.aggregate_videos(one_face, "mean")["score"].tolist())


def test_confident_strategy_branches():
    fake = np.r_[np.full(14, 0.95), np.full(18, 0.3)]  # 14 > 11 and 14 > floor(32 / 2.5) = 12
    assert M.confident_strategy(fake) == pytest.approx(0.95)
    almost = np.r_[np.full(12, 0.95), np.full(20, 0.3)]  # 12 is not > 12: plain mean
    assert M.confident_strategy(almost) == pytest.approx(almost.mean())
    real = np.r_[np.full(30, 0.1), np.full(2, 0.7)]  # 30 > 0.9 x 32 below 0.2
    assert M.confident_strategy(real) == pytest.approx(0.1)
    few = np.full(8, 0.95)  # fewer than 12 frames: the fake branch cannot fire
    assert M.confident_strategy(few) == pytest.approx(0.95)


def test_breakdown_scores_shared_values_within_and_fake_only_values_against_all_reals():
    videos = pd.DataFrame({"label": [0, 0, 0, 0, 1, 1, 1, 1],
                           "score": [0.1, 0.2, 0.7, 0.8, 0.9, 0.15, 0.95, 0.6],
                           "method": ["real"] * 4 + ["x", "x", "y", "y"],
                           "compression": ["c23", "c23", "c40", "c40", "c23", "c23", "c40", "c40"]})
    by_method = M.breakdown(videos, "method")
    assert set(by_method) == {"x", "y"} and by_method["x"]["reference"] == "all real videos"
    assert by_method["x"]["video_auc"] == pytest.approx(skm.roc_auc_score([0] * 4 + [1, 1], [0.1, 0.2, 0.7, 0.8, 0.9, 0.15]))
    by_comp = M.breakdown(videos, "compression")
    assert by_comp["c40"]["n_real"] == 2 and by_comp["c40"]["video_auc"] == pytest.approx(
        skm.roc_auc_score([0, 0, 1, 1], [0.7, 0.8, 0.95, 0.6]))


# -- bootstrap and paired comparison ----------------------------------------------------------

def test_vectorised_bootstrap_auc_equals_a_loop_over_the_same_resamples():
    y, s = _data(1, n=80, ties=True)
    videos = np.arange(len(y)) // 2  # two items per video...
    y = y[videos * 2]  # ...of one label
    aucs = M.bootstrap_auc(y, s, videos, n_resamples=50, seed=7)
    pos_v, neg_v = np.unique(videos[y == 1]), np.unique(videos[y == 0])
    # One chunk of 50: all fake-video draws first, then all real-video draws, as the code does.
    rng = np.random.default_rng(7)
    cp_all, cn_all = (rng.integers(0, len(pos_v), (50, len(pos_v))), rng.integers(0, len(neg_v), (50, len(neg_v))))
    for b in range(50):
        pick = np.concatenate([np.flatnonzero(videos == v) for v in np.r_[pos_v[cp_all[b]], neg_v[cn_all[b]]]])
        assert aucs[b] == pytest.approx(skm.roc_auc_score(y[pick], s[pick]), abs=1e-12)


def test_bootstrap_output_names_its_resamples_and_seed():
    y, s = _data(2, n=200)
    out = M.bootstrap_intervals(y, s, n_resamples=200, seed=3, metrics=("ap", "eer"))
    assert out["n_resamples"] == 200 and out["seed"] == 3 and out["level"] == 0.95
    auc = M.roc_auc(y, s)
    assert out["auc"]["low"] < auc < out["auc"]["high"]
    assert out["ap"]["low"] < M.average_precision(y, s) < out["ap"]["high"]
    assert out == M.bootstrap_intervals(y, s, n_resamples=200, seed=3, metrics=("ap", "eer"))


@pytest.mark.slow
def test_bootstrap_interval_covers_the_true_auc_95_percent_of_the_time():
    """400 simulated test sets with a known AUC; the share of 95 % intervals holding it."""
    from statistics import NormalDist

    shift = 1.2
    true_auc = NormalDist().cdf(shift / np.sqrt(2))  # AUC of N(shift, 1) fakes against N(0, 1) reals
    rng = np.random.default_rng(2026)
    hits = 0
    for rep in range(400):
        y = np.r_[np.ones(150, int), np.zeros(150, int)]
        s = np.r_[rng.normal(shift, 1, 150), rng.normal(0, 1, 150)]
        ci = M.bootstrap_intervals(y, s, n_resamples=1000, seed=rep)["auc"]
        hits += ci["low"] <= true_auc <= ci["high"]
    assert 0.92 <= hits / 400 <= 0.98, hits / 400


def _brute_force_delong_variance(y, a, b):
    """Structural components from the pairwise kernel, straight from DeLong et al. (1988)."""
    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    comps = []
    for s in (a, b):
        v10 = np.array([np.mean([psi(s[i], s[j]) for j in neg]) for i in pos])
        v01 = np.array([np.mean([psi(s[i], s[j]) for i in pos]) for j in neg])
        comps.append((v10, v01))
    s10 = np.cov(np.vstack([comps[0][0], comps[1][0]]))
    s01 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    cov = s10 / len(pos) + s01 / len(neg)
    return cov, cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


@pytest.mark.parametrize("seed", range(3))
def test_delong_variance_equals_the_structural_components_by_brute_force(seed):
    y, a = _data(seed, n=60, ties=True)
    b = np.clip(a + np.random.default_rng(seed).normal(0, 0.15, len(a)), 0, 1).round(2)
    cov_ref, var_ref = _brute_force_delong_variance(y, a, b)
    np.testing.assert_allclose(M.delong_covariance(y, [a, b]), cov_ref, atol=1e-12)
    out = M.compare_auc(y, a, b, n_resamples=300, seed=1)
    assert out["delong"]["variance"] == pytest.approx(var_ref, abs=1e-12)
    assert out["difference"] == pytest.approx(skm.roc_auc_score(y, b) - skm.roc_auc_score(y, a), abs=1e-12)
    assert out["paired_bootstrap"]["low"] <= out["difference"] <= out["paired_bootstrap"]["high"]


def test_compare_auc_finds_a_real_difference_and_none_between_equal_scorers():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(200, int), np.zeros(200, int)]
    signal = np.r_[rng.normal(1, 1, 200), rng.normal(0, 1, 200)]
    weak, strong = signal + rng.normal(0, 2, 400), signal + rng.normal(0, 0.2, 400)
    out = M.compare_auc(y, weak, strong, n_resamples=500)
    assert out["difference"] > 0 and out["delong"]["p_value"] < 0.01 and out["paired_bootstrap"]["low"] > 0
    same = M.compare_auc(y, weak, weak, n_resamples=100)
    assert same["difference"] == 0 and same["delong"]["p_value"] == 1.0


# -- localisation metrics against brute force --------------------------------------------------------

def _maps(seed, n=4, ties=False):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n):
        h, w = int(rng.integers(5, 9)), int(rng.integers(5, 9))
        truth = np.zeros((h, w))
        truth[rng.integers(0, h // 2):rng.integers(h // 2 + 1, h + 1), rng.integers(0, w // 2):] = rng.uniform(0.5, 1)
        truth += rng.uniform(0, 0.49, (h, w)) * (truth == 0)  # soft values below 0.5 are not manipulated
        if i == n - 1:
            truth[:] = 0.2  # an image with nothing manipulated
        m = np.clip(0.55 * (truth >= 0.5) + rng.normal(0.25, 0.2, (h, w)), 0, 1)
        maps.append(np.round(m, 1) if ties else m)
        masks.append(truth)
    return maps, masks


def _brute_pixel_auc(maps, masks):
    s = np.concatenate([m.ravel() for m in maps])
    y = np.concatenate([(t >= 0.5).ravel() for t in masks])
    pos, neg = s[y], s[~y]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def _brute_iou(pred, truth):
    inter, union = np.logical_and(pred, truth).sum(), np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else inter / union


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_localisation_metrics_equal_brute_force(seed, ties):
    maps, masks = _maps(seed, ties=ties)
    assert M.pixel_auc(maps, masks) == pytest.approx(_brute_pixel_auc(maps, masks), abs=1e-12)
    thresholds = M.LOCALIZATION_THRESHOLDS
    mean, pooled = M.iou_curve(maps, masks, thresholds)
    for k, t in enumerate(thresholds):
        ious = [_brute_iou(m >= t, y >= 0.5) for m, y in zip(maps, masks, strict=True)]
        inter = sum(np.logical_and(m >= t, y >= 0.5).sum() for m, y in zip(maps, masks, strict=True))
        union = sum(np.logical_or(m >= t, y >= 0.5).sum() for m, y in zip(maps, masks, strict=True))
        assert mean[k] == pytest.approx(np.mean(ious), abs=1e-12), t
        assert pooled[k] == pytest.approx(inter / union, abs=1e-12), t
    # The fitted threshold is the exhaustive argmax (lowest on ties).
    brute = [np.mean([_brute_iou(m >= t, y >= 0.5) for m, y in zip(maps, masks, strict=True)]) for t in thresholds]
    best = int(np.argmax(brute))
    threshold, value = M.fit_iou_threshold(maps, masks)
    assert threshold == thresholds[best] and value == pytest.approx(brute[best], abs=1e-12)
    report = M.localization_report(maps, masks, 0.5, "test")
    assert report["mean_iou"] == pytest.approx(np.mean([_brute_iou(m >= 0.5, y >= 0.5)
                                                        for m, y in zip(maps, masks, strict=True)]))
    assert report["n_images"] == 4 and report["pixel_auc"] == pytest.approx(_brute_pixel_auc(maps, masks))


def test_localisation_metrics_edge_cases():
    perfect = [np.array([[0.9, 0.1], [0.8, 0.2]])]
    truth = [np.array([[1.0, 0.0], [1.0, 0.0]])]
    assert M.pixel_auc(perfect, truth) == 1.0
    assert M.fit_iou_threshold(perfect, truth)[1] == 1.0
    assert M.pixel_auc([np.ones((2, 2))], [np.zeros((2, 2))]) is None  # one class only
    with pytest.raises(ValueError):
        M.pixel_auc([np.ones((2, 2))], [np.ones((3, 2))])
    assert M.localization_report([], [], None, "none")["pixel_auc"] is None
