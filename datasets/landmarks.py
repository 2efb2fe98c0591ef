"""68-point facial landmarks for landmark-sequence detectors (LRNet): detection and normalisation.

Landmarks come from dlib's shape predictor (`shape_predictor_68_face_landmarks.dat`, found by
datasets/dlib_models.py) placed on faketrace's RetinaFace boxes. The predictor was trained on
boxes from dlib's own HOG detector, which sit lower and tighter than RetinaFace's (RetinaFace
includes the forehead): `dlib_box_from_retinaface` maps one to the other with the ratios in
DLIB_BOX_FROM_RETINAFACE, measured by `measure_box_offsets` (docs/published.md has the numbers).

The predictor's training data (iBUG 300-W) is licensed for non-commercial research only: the
landmark stage runs only for landmark models a scan names (published=[lrnet_...]), and every scan
record that used it says so.

Normalisation (what LRNet's released models were trained on, rewritten from the publisher's
description): per video, a square face box of side 1.2 x the mean landmark extent (the larger of
the point cloud's width and height), centred on each frame's landmark-extent centre, mapped to
[-1, 1]; features are the 68 points interleaved x0, y0, x1, y1, ... (dlib / iBUG point order).
The publisher also smooths landmark tracks with optical flow and a Kalman merge before normalising
them in a 400-pixel face crop: datasets/landmark_calibration.py is our implementation, and
`lrnet_features` applies it when the registry entry says `landmark_calibration.calibration_ported: true`
(`normalise_sequence` above is the uncalibrated path, kept for entries and validated copies that
were measured without it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_POINTS = 68
BOX_SCALE = 1.2  # the publisher's face-box enlargement around the landmark extent
# dlib-style box from a RetinaFace box, as fractions of the RetinaFace box width / height:
# (left shift, top shift, width scale, height scale): the medians of dlib HOG boxes over RetinaFace boxes
# measured with `measure_box_offsets` on 152 frames of the LRNet demo clips (docs/published.md).
DLIB_BOX_FROM_RETINAFACE = (-0.016, 0.205, 1.031, 0.73)


def to_features(points: np.ndarray) -> np.ndarray:
    """(T, 68, 2) points -> (T, 136) features in the interleaved order x0, y0, x1, y1, ..."""
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or p.shape[1:] != (N_POINTS, 2):
        raise ValueError(f"landmarks must be (frames, {N_POINTS}, 2), got {p.shape}")
    return p.reshape(p.shape[0], 2 * N_POINTS)


def normalise_sequence(points: np.ndarray) -> np.ndarray:
    """(T, 68, 2) frame-pixel landmarks of one face track -> (T, 136) features in [-1, 1] (see module doc)."""
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or p.shape[1:] != (N_POINTS, 2) or len(p) == 0:
        raise ValueError(f"landmarks must be (frames, {N_POINTS}, 2) with at least one frame, got {p.shape}")
    lo, hi = p.min(axis=1), p.max(axis=1)  # (T, 2)
    extent = (hi - lo).max(axis=1)  # (T,)
    side = BOX_SCALE * float(extent.mean())
    if side <= 0:
        raise ValueError("degenerate landmarks (all points equal)")
    centre = (lo + hi) / 2  # (T, 2)
    normalised = (p - centre[:, None, :]) / (side / 2)
    return to_features(normalised)


def dlib_box_from_retinaface(box: np.ndarray) -> tuple[int, int, int, int]:
    """A RetinaFace box (x0, y0, x1, y1) as the dlib-style box the 68-point predictor expects."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    dx, dy, sw, sh = DLIB_BOX_FROM_RETINAFACE
    nx0, ny0 = x0 + dx * w, y0 + dy * h
    return int(round(nx0)), int(round(ny0)), int(round(nx0 + sw * w)), int(round(ny0 + sh * h))


@dataclass
class LandmarkPredictor:
    """dlib's 68-point shape predictor on RetinaFace boxes. Construct with `load_landmark_predictor`."""

    predictor: object
    model_path: str
    model_sha256: str

    def __call__(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        import dlib

        left, top, right, bottom = dlib_box_from_retinaface(box)
        shape = self.predictor(np.ascontiguousarray(rgb), dlib.rectangle(left, top, right, bottom))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(N_POINTS)], np.float64)

    def describe(self) -> dict:
        from faketrace.datasets.dlib_models import MODEL_FILES

        f = MODEL_FILES["shape_predictor_68"]
        return {"name": "dlib_shape_predictor_68", "path": self.model_path, "sha256": self.model_sha256,
                "box_mapping": {"from": "retinaface", "ratios": list(DLIB_BOX_FROM_RETINAFACE)},
                "licence": f.licence, "licence_note": f.licence_note, "commercial_use": f.commercial_use}


def load_landmark_predictor(path: str | None = None) -> LandmarkPredictor:
    """The 68-point predictor (datasets/dlib_models.py finds the file), or a RuntimeError saying how to install it."""
    from pathlib import Path

    from faketrace.datasets.dlib_models import find_model, import_dlib, sha256_of

    try:
        dlib = import_dlib()
        model = Path(path) if path else find_model("shape_predictor_68")
    except (ImportError, FileNotFoundError) as exc:
        raise RuntimeError(f"68-point landmarks unavailable: {exc}") from exc
    if not model.is_file():
        raise RuntimeError(f"68-point landmarks unavailable: {model} not found")
    return LandmarkPredictor(dlib.shape_predictor(str(model)), str(model), sha256_of(model))


def measure_box_offsets(frames: list[np.ndarray], boxes: list[np.ndarray], predictor) -> dict:
    """How dlib's HOG detector box relates to RetinaFace's on the same faces (median fractions), to set
    DLIB_BOX_FROM_RETINAFACE. `predictor` is unused except to keep the signature honest about dlib."""
    import dlib

    hog = dlib.get_frontal_face_detector()
    rows = []
    for img, b in zip(frames, boxes, strict=True):
        dets = hog(np.ascontiguousarray(img), 1)
        if not dets:
            continue
        x0, y0, x1, y1 = (float(v) for v in b)
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        d = min(dets, key=lambda r: ((r.left() + r.right()) / 2 - cx) ** 2 + ((r.top() + r.bottom()) / 2 - cy) ** 2)
        rows.append(((d.left() - x0) / w, (d.top() - y0) / h, (d.right() - d.left()) / w, (d.bottom() - d.top()) / h))
    if not rows:
        return {"n": 0}
    a = np.asarray(rows)
    return {"n": len(rows), "median": np.median(a, axis=0).round(3).tolist(),
            "iqr": (np.percentile(a, 75, axis=0) - np.percentile(a, 25, axis=0)).round(3).tolist(),
            "columns": ["left_shift", "top_shift", "width_scale", "height_scale"]}


def lrnet_features(frames_rgb: list[np.ndarray], points: np.ndarray, calibrate: bool) -> tuple[np.ndarray, dict]:
    """(T, 136) LRNet features of one face track and a record of how they were made.

    `points` (T, 68, 2) are pixel landmarks on the T consecutive `frames_rgb`. With `calibrate`, the
    publisher's calibration (datasets/landmark_calibration.py: optical flow + Kalman merge, 400-pixel
    crop grid); without it, `normalise_sequence` on the raw detections.
    """
    if not calibrate:
        return normalise_sequence(points), {"calibrated": False}
    from faketrace.datasets.landmark_calibration import calibrate_landmarks

    return calibrate_landmarks(frames_rgb, points)
