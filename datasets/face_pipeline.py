"""From decoded frames to the arrays a model sees: the one face pipeline of training and casework.

`scripts/preprocess.py` writes these crops to disk for training and evaluation; the evidence scan
and the standalone predictor keep them in memory. Both go through `choose_faces` and `model_crop`
here, so a scan sees exactly the crops (same detector, geometry and encoding round trip) that the
model was trained on. This module needs numpy and OpenCV only (no torch, no pandas), so a
production predictor can import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from faketrace.datasets.faces import (
    Face,
    aligned_crop,
    aligned_crop_matrix,
    encode_crop,
    main_track,
    square_crop,
    square_crop_matrix,
    track_faces,
)


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that decides what a crop looks like; stored in manifests and checkpoints."""

    detector: str = "retinaface"
    score_threshold: float = 0.8
    nms_threshold: float = 0.4
    detector_max_side: int = 640
    margin: float = 1.3
    crop_size: int = 128
    frames_per_video: int = 32
    face_policy: str = "largest"  # largest | all
    image_format: str = "png"  # png | jpeg
    sampling: str = "uniform"  # uniform | every_k
    every_k: int = 10
    align: bool = False  # 5-point similarity alignment instead of a box-centred square
    jpeg_quality: int = 95
    track_iou: float = 0.3

    def __post_init__(self):
        if self.face_policy not in ("largest", "all"):
            raise ValueError(f"face_policy must be largest or all, got {self.face_policy!r}")
        if self.sampling not in ("uniform", "every_k"):
            raise ValueError(f"sampling must be uniform or every_k, got {self.sampling!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class ChosenFace:
    """One face kept for the model: its detection, size rank in the frame and track."""

    frame_index: int
    face: Face
    rank: int  # 0 = the largest face of its frame
    track_id: int


def choose_faces(frame_indices: list[int], detections: list[list[Face]], spec: PreprocessSpec) -> list[list[ChosenFace]]:
    """The faces each frame contributes under the spec's policy (frames with none give [])."""
    track_ids = track_faces(detections, spec.track_iou)
    kept_track = main_track(detections, track_ids)
    out = []
    for fi, faces, ids in zip(frame_indices, detections, track_ids, strict=True):
        by_area = sorted(range(len(faces)), key=lambda j: (-faces[j].area, j))
        if spec.face_policy == "all":
            chosen = by_area
        else:
            # The video's main person where present, so the crop does not jump between people;
            # otherwise the largest face, whose different track id shows the switch.
            chosen = [j for j in by_area if ids[j] == kept_track][:1] or by_area[:1]
        out.append([ChosenFace(fi, faces[j], by_area.index(j), ids[j]) for j in chosen])
    return out


def crop_pixels(frame: np.ndarray, face: Face, spec: PreprocessSpec) -> np.ndarray:
    """The RGB crop before encoding (what preprocessing writes to disk)."""
    if spec.align:
        return aligned_crop(frame, face.landmarks, spec.margin, spec.crop_size)
    return square_crop(frame, face.box, spec.margin, spec.crop_size)


def crop_matrix(box: np.ndarray, landmarks: np.ndarray | None, spec: PreprocessSpec) -> np.ndarray:
    """The 2x3 affine `crop_pixels` applies: frame pixels -> crop pixels (for boxes, landmarks)."""
    if spec.align:
        return aligned_crop_matrix(np.asarray(landmarks, np.float32).reshape(-1, 2)[:5], spec.margin, spec.crop_size)
    return square_crop_matrix(box, spec.margin, spec.crop_size)


def model_crop(frame: np.ndarray, face: Face, spec: PreprocessSpec) -> np.ndarray:
    """The RGB crop as training read it back from disk: JPEG crops carry their compression."""
    crop = crop_pixels(frame, face, spec)
    if spec.image_format == "png":
        return crop  # lossless: decoding the PNG gives these pixels back
    _, data = encode_crop(crop, spec.image_format, spec.jpeg_quality)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# The resize methods a model can be fed with (models/spec.py INTERPOLATIONS) as OpenCV flags;
# albumentations uses the same ones.
RESIZE_METHODS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA,
                  "nearest": cv2.INTER_NEAREST}


def resize_method(input_record: dict) -> str:
    """The resize of a model's `input` record as written before the spec (checkpoint or card dict).

    Records carry it as `resize`. Older records have only `interpolation`, copied from timm's
    pretrained config (often `bicubic`) while every resize was in fact bilinear: bilinear is
    what those models were trained and evaluated with, so it is what they keep getting.
    """
    return str(input_record.get("resize") or "bilinear")


def resize_flag(method: str) -> int:
    """The OpenCV flag of a named resize method; an unknown name is refused, never guessed."""
    try:
        return RESIZE_METHODS[str(method)]
    except KeyError:
        raise ValueError(f"unknown resize method {method!r}; known: {sorted(RESIZE_METHODS)}") from None


def model_input(crops: list[np.ndarray], input_size: int, mean, std, resize: str = "bilinear",
                scale: float = 1 / 255, channels: str = "RGB") -> np.ndarray:
    """(N, 3, S, S) float32 from RGB uint8 crops: resize, scale (to 0..1), (x - mean) / std.

    The same arithmetic as the evaluation transform in datasets/transforms.py (albumentations
    Resize + Normalize), written in numpy so that it runs without torch; a test pins the two.
    A crop already at the input size is not resampled. `channels="BGR"` reverses the channel order
    after the resize (models trained on OpenCV frames).
    """
    flag = resize_flag(resize)
    mean = np.asarray(mean, np.float32) / np.float32(scale)
    inv_std = 1.0 / (np.asarray(std, np.float32) / np.float32(scale))
    out = np.empty((len(crops), 3, input_size, input_size), np.float32)
    for i, crop in enumerate(crops):
        if crop.shape[:2] != (input_size, input_size):
            crop = cv2.resize(crop, (input_size, input_size), interpolation=flag)
        if channels == "BGR":
            crop = crop[:, :, ::-1]
        out[i] = ((crop.astype(np.float32) - mean) * inv_std).transpose(2, 0, 1)
    return out


def spec_input(crops: list[np.ndarray], spec) -> np.ndarray:
    """`model_input` with every setting from a model's `InputSpec` (models/spec.py)."""
    return model_input(crops, spec.side, spec.mean, spec.std, spec.interpolation, spec.scale, spec.channels)
