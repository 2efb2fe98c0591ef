"""A trivial baseline that every evaluation reports beside the detector.

Logistic regression on six numbers per face crop (mean and standard deviation of R, G, B),
fitted on the training split and scored like the detector. If it comes close to the detector,
the benchmark is measuring colour statistics, not manipulation traces.
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


def colour_features(faces: pd.DataFrame, faces_dir: str | Path) -> np.ndarray:
    feats = np.zeros((len(faces), 6), np.float64)
    for i, rel in enumerate(faces["crop_path"]):
        img = cv2.imread(str(Path(faces_dir) / rel), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"face crop missing: {rel}")
        px = img[..., ::-1].reshape(-1, 3).astype(np.float64) / 255.0
        feats[i, :3], feats[i, 3:] = px.mean(0), px.std(0)
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
