"""A trivial baseline that every evaluation reports beside the detector.

Logistic regression on six numbers per face crop (mean and standard deviation of R, G, B),
fitted on the training split and scored like the detector. If it comes close to the detector,
the benchmark is measuring colour statistics, not manipulation traces. At image level the six
numbers describe the whole image (or video frame) at the resolution the model works at.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

NAME = "logistic regression on per-crop RGB mean and std"
IMAGE_NAME = "logistic regression on per-image RGB mean and std"
MAX_IMAGE_TRAIN_FRAMES = 5000  # image level: the baseline is fitted on at most this many training frames


def _mean_std(rgb: np.ndarray) -> np.ndarray:
    px = rgb.reshape(-1, 3).astype(np.float64) / 255.0
    return np.r_[px.mean(0), px.std(0)]


def colour_features(faces: pd.DataFrame, faces_dir: str | Path) -> np.ndarray:
    feats = np.zeros((len(faces), 6), np.float64)
    for i, rel in enumerate(faces["crop_path"]):
        img = cv2.imread(str(Path(faces_dir) / rel), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"face crop missing: {rel}")
        feats[i] = _mean_std(img[..., ::-1])
    return feats


def colour_baseline_scores(faces: pd.DataFrame, faces_dir: str | Path, eval_split: str, seed: int = 0) -> pd.DataFrame:
    """Frame table (video_id, frame_index, label, method, score) of the baseline on `eval_split`."""
    train = faces[faces["split"] == "train"]
    test = faces[faces["split"] == eval_split]
    if train["label"].nunique() < 2:
        raise ValueError("the colour baseline needs real and fake crops in the training split")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(colour_features(train, faces_dir), train["label"].to_numpy())
    out = test[["video_id", "frame_index", "label", "method"]].reset_index(drop=True).copy()
    out["score"] = clf.predict_proba(colour_features(test, faces_dir))[:, 1] if len(test) else []
    return out


def image_colour_baseline_scores(table: pd.DataFrame, root: str | Path, spec, eval_split: str,
                                 frames_per_video: int = 4, seed: int = 0) -> pd.DataFrame:
    """Image level: the same baseline on whole images / frames (after the spec's optional resize).

    `table` is an image table (datasets/images.load_image_table); frames that do not decode are
    left out. Fitted on at most MAX_IMAGE_TRAIN_FRAMES training frames (a seeded sample).
    """
    from faketrace.datasets.image_pipeline import prepare
    from faketrace.datasets.images import FrameReader
    from faketrace.datasets.media import DecodeError

    reader = FrameReader(root, frames_per_video)

    def features(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        feats, keep = [], []
        for i, row in enumerate(rows.to_dict("records")):
            try:
                feats.append(_mean_std(prepare(reader.frame(row), spec)))
                keep.append(i)
            except DecodeError:
                continue
        return np.asarray(feats).reshape(-1, 6), np.asarray(keep, np.int64)

    train = table[table["split"] == "train"]
    if len(train) > MAX_IMAGE_TRAIN_FRAMES:
        train = train.sample(MAX_IMAGE_TRAIN_FRAMES, random_state=seed).sort_index()
    if train["label"].nunique() < 2:
        raise ValueError("the colour baseline needs real and fake images in the training split")
    x_train, kept = features(train)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(x_train, train["label"].to_numpy()[kept])
    test = table[table["split"] == eval_split].reset_index(drop=True)
    x_test, kept = features(test)
    out = test.iloc[kept][["video_id", "frame_index", "label", "method"]].reset_index(drop=True)
    out["score"] = clf.predict_proba(x_test)[:, 1] if len(out) else []
    return out
