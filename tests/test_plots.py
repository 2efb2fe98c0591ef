"""Evaluation plots read cleanly: whole warning words, every DET point inside its axes, legends off
the curves, and image-level plots named for images and items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faketrace.engine import plots as P

WARNING = ("NOT FIT FOR CASEWORK: trained on the synthetic demo data (one morphed face, three operators); "
           "not validated on real data")


def _frames(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    label = np.repeat([0, 1], n // 2)
    score = np.clip(np.where(label == 1, 0.7, 0.3) + rng.normal(0, 0.05, n), 0, 1)  # separable: FPR 0 points
    return pd.DataFrame({"video_id": np.arange(n), "label": label, "score": score, "logit": score,
                         "frame_index": 0})


def test_titles_keep_whole_words_of_the_warning():
    title = P.title_lines("ROC", WARNING)
    words = set(WARNING.replace("(", " ").replace(")", " ").split())
    for line in title.splitlines()[1:]:
        for w in line.replace("(", " ").replace(")", " ").split():
            assert w in words or w == "...", w
    assert "NOT FIT FOR CASEWORK" in title


def test_det_points_lie_inside_the_axes_and_the_reliability_legend_off_the_curves():
    frames = _frames()
    fig = P.det_figure({"frames": frames}, WARNING)
    ax = fig.axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    # The frame is the labelled scale: its edges are the outermost ticks, and every point lies within.
    assert np.isclose(x0, ax.get_xticks()[0]) and np.isclose(x1, ax.get_xticks()[-1])
    for line in ax.get_lines():
        x, y = line.get_xdata(), line.get_ydata()
        assert np.all((x >= x0 - 1e-9) & (x <= x1 + 1e-9)) and np.all((y >= y0 - 1e-9) & (y <= y1 + 1e-9))
    rel = P.reliability_figure({"frames": frames}, warning=WARNING)
    fig.canvas.draw()
    rel.canvas.draw()
    legend_box = rel.axes[0].get_legend().get_window_extent()
    axes_box = rel.axes[0].get_window_extent()
    assert legend_box.y1 <= axes_box.y0  # below the plotting area, not over it
    P.plt.close(fig)
    P.plt.close(rel)


def test_image_level_plots_name_images_and_items():
    from faketrace.engine.evaluate import evaluation_figures

    frames = _frames()
    result = {"aggregation": "mean", "warning": WARNING, "level": "image", "tile_aggregation": "max",
              "checkpoint": {"calibration": {"method": "none"}}}
    figs = evaluation_figures(result, frames, None)
    labels = [t.get_text() for t in figs["roc"].axes[0].get_legend().get_texts()]
    assert any(t.startswith("image level (max tile)") for t in labels)
    assert any(t.startswith("item level (mean over its frames)") for t in labels)
    assert not any("frame level" in t or "video level" in t for t in labels)
    assert "image-level" in figs["scores_frame"].axes[0].get_xlabel()
    for fig in figs.values():
        P.plt.close(fig)
