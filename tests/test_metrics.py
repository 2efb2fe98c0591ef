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
