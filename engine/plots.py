"""Evaluation plots. Each function returns its matplotlib Figure (tests inspect labels and
legends before anything is written); `save` writes and closes it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import norm  # noqa: E402

from faketrace.engine import metrics as M  # noqa: E402

FPR_AXIS = "false positive rate (real called fake)"
TPR_AXIS = "true positive rate (fake called fake)"


def save(fig, path: str | Path, dpi: int = 120) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # legends placed outside the axes stay in the file
    plt.close(fig)
    return Path(path)


def title_lines(text: str, warning: str | None, width: int = 62, max_lines: int = 3) -> str:
    """The title, then the warning wrapped at word boundaries (shortened with an ellipsis, never cut mid-word)."""
    if not warning:
        return text
    short = textwrap.shorten(warning, width=width * max_lines, placeholder=" ...")
    return text + "\n" + "\n".join(textwrap.wrap(short, width))


def _title(ax, text: str, warning: str | None) -> None:
    ax.set_title(title_lines(text, warning), fontsize=8)


def roc_figure(frames: pd.DataFrame, videos: pd.DataFrame, rule: str, band: dict | None = None,
               warning: str | None = None, names: tuple[str, str] | None = None):
    """Frame- and video-level ROC; `band` (from metrics.roc_band) shades the video curve's interval.
    `names` labels the two levels (image-level models: images under the tile rule, and items)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    names = names or ("frame level", f"video level ({rule})")
    for name, table in ((names[0], frames), (names[1], videos)):
        if table["label"].nunique() < 2:
            continue
        fpr, tpr, _ = M.roc_points(table["label"], table["score"])
        ax.plot(fpr, tpr, label=f"{name}, AUC {M.roc_auc(table['label'], table['score']):.3f}")
    if band is not None:
        ax.fill_between(band["fpr"], band["low"], band["high"], alpha=0.2, color="C1",
                        label=f"{names[1].split(' ')[0]} {band['level']:.0%} bootstrap band ({band['n_resamples']} resamples)")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="chance")
    ax.set_xlabel(FPR_AXIS)
    ax.set_ylabel(TPR_AXIS)
    _title(ax, "ROC", warning)
    ax.legend(loc="lower right", fontsize=7)
    return fig


def det_figure(curves: dict[str, pd.DataFrame], warning: str | None = None):
    """Detection error trade-off on normal-deviate axes; `curves` maps a name to a table (label, score)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    # Rates of 0 and 1 have no normal deviate: they are drawn on the axes' edges (0.1 % and 99.9 %),
    # inside the frame, and the axis label says so.
    lo, hi = 0.001, 0.999
    for name, table in curves.items():
        if table["label"].nunique() < 2:
            continue
        fpr, tpr, _ = M.roc_points(table["label"], table["score"])
        ax.plot(norm.ppf(np.clip(fpr, lo, hi)), norm.ppf(np.clip(1 - tpr, lo, hi)), label=name, clip_on=False)
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.999])
    ax.set_xticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks], fontsize=7)
    ax.set_yticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks], fontsize=7)
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.set_xlabel("false positive rate (real called fake)\nrates of 0 drawn at 0.1 %, of 1 at 99.9 %", fontsize=8)
    ax.set_ylabel("false negative rate (fake called real)")
    _title(ax, "DET", warning)
    ax.legend(loc="upper right", fontsize=7)
    return fig


def reliability_figure(curves: dict[str, pd.DataFrame], n_bins: int = M.ECE_BINS, warning: str | None = None):
    """Reliability diagram: share of fakes against mean predicted probability, per equal-width bin."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfect calibration")
    for name, table in curves.items():
        bins = M.ece_bins(table["label"], table["score"], n_bins)
        used = bins[bins["count"] > 0]
        ece = M.expected_calibration_error(table["label"], table["score"], n_bins)
        ax.plot(used["mean_score"], used["fake_share"], marker="o", ms=3, label=f"{name}, ECE {ece:.3f}")
    ax.set_xlabel(f"mean predicted probability of fake ({n_bins} equal-width bins)")
    ax.set_ylabel("share of fakes in the bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    _title(ax, "Reliability", warning)
    # Below the axes: inside, the legend covered the curves of over- or under-confident models.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncol=1, frameon=False)
    return fig


def score_histogram_figure(table: pd.DataFrame, level: str, threshold: float | None = None,
                           warning: str | None = None):
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41)
    for label, name in ((0, "real"), (1, "fake")):
        s = table.loc[table["label"] == label, "score"]
        ax.hist(s, bins=bins, alpha=0.55, density=True, label=f"{name} (n={len(s)})")
    if threshold is not None:
        ax.axvline(threshold, c="k", ls="--", lw=1, label=f"operating threshold {threshold:.3f}")
    ax.set_xlabel(f"{level}-level probability of fake")
    ax.set_ylabel("density")
    _title(ax, f"Scores by class ({level} level)", warning)
    ax.legend(fontsize=7)
    return fig


def matrix_heatmap_figure(matrix: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame, title: str):
    """Heatmap of video AUC (rows: checkpoints, columns: test sets), cells annotated with intervals."""
    # Row labels name the checkpoint and its training data: leave room for them and the colour bar.
    label_width = 0.075 * max((len(str(r)) for r in matrix.index), default=10)
    fig, ax = plt.subplots(figsize=(1.9 * matrix.shape[1] + label_width + 2.5, 0.9 * matrix.shape[0] + 2))
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix.iat[i, j]
            text = "n/a" if pd.isna(v) else f"{v:.3f}\n[{low.iat[i, j]:.3f}, {high.iat[i, j]:.3f}]"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="w" if not pd.isna(v) and v < 0.8 else "k")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=20, fontsize=8)
    ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=8)
    ax.set_xlabel("test set")
    ax.set_ylabel("checkpoint (training data)")
    fig.colorbar(image, ax=ax, label="video AUC")
    ax.set_title(title, fontsize=9)
    return fig


def robustness_figure(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6, 4))
    clean = table[table["distortion"] == "none"]["video_auc"]
    for name, group in table[table["distortion"] != "none"].groupby("distortion", sort=False):
        ax.plot(group["severity"], group["video_auc"], marker="o", label=name)
    if len(clean) and pd.notna(clean.iloc[0]):
        ax.axhline(clean.iloc[0], c="k", ls="--", lw=1, label=f"clean {clean.iloc[0]:.3f}")
    ax.set_xlabel("severity (1 = mildest level)")
    ax.set_ylabel("video AUC")
    ax.set_title("Robustness to perturbations of the raw media", fontsize=9)
    ax.legend(fontsize=7)
    return fig
