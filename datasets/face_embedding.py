"""Face embeddings for finding a person of interest: dlib's ResNet (128-d), fed by the scan's own faces.

The scan already has every face's RetinaFace box and 5 landmarks (eye centres, nose tip, mouth
corners). dlib's embedding network expects a 150 x 150 "face chip" cut by `dlib.get_face_chip`
from dlib's own 5-point landmarks (eye corners and the base of the nose), a different layout, and
dlib's 5-point predictor expects the box of dlib's HOG detector, which sits lower and is shorter than
RetinaFace's. So we map each RetinaFace box onto dlib's box geometry (`RETINAFACE_TO_DLIB_BOX`,
measured), run dlib's 5-point predictor in it (under 1 ms a face) and cut dlib's chip: no second
detection. Measured against dlib's own pipeline end to end (HOG detector + 5-point predictor) on 43
faces (official portraits, FaceForensics++ and DeeperForensics frames), the embedding moves by a
median 0.035 (90th percentile 0.069, worst 0.44 on one face) in a space where dlib's match
threshold is 0.6; warping RetinaFace's own 5 points onto a mean chip template moved it by 0.11 (0.165), and dlib's predictor
in the unmapped RetinaFace box by 0.068 (0.11). `scripts/measure_face_matching.py alignment` measures
it again; tests/test_people.py holds it under 0.1 on the committed portraits.

The embedder is described by a small frozen spec (like a detector's) that every record carries, so
it can be replaced by another model (an ArcFace ONNX, or dlib's Taguchi ResNet trained on mostly
Japanese faces) without touching the matching code: a new spec, a new `name`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from faketrace.datasets.dlib_models import describe_model, find_model, import_dlib

# dlib's HOG box in units of the RetinaFace box (x0, y0, x1, y1; 0..1 = RetinaFace's box): the median
# over the 43 faces above. RetinaFace's box includes the forehead; dlib's starts at the brows.
RETINAFACE_TO_DLIB_BOX = (-0.010, 0.178, 1.022, 0.941)


@dataclass(frozen=True)
class EmbedderSpec:
    """What a face embedding is: the model, its input, the distance and what is known about it."""

    name: str = "dlib_resnet_v1"
    model_role: str = "face_recognition_resnet"  # datasets/dlib_models.py
    dim: int = 128
    chip_size: int = 150
    alignment: str = "retinaface_box_to_dlib_box_then_dlib_5pt_chip"
    landmark_role: str = "shape_predictor_5"
    padding: float = 0.25
    distance: str = "euclidean"
    # dlib's own operating point: identities were trained into balls of radius 0.6; at 0.6 the model
    # scores 99.38% +- 0.27% accuracy on LFW's balanced pairs (davisking/dlib-models README).
    published_threshold: float = 0.6
    published_lfw_accuracy: float = 0.993833
    min_face_px: int = 40  # smaller faces are not embedded (the chip would be mostly upsampled blur)
    known_limits: tuple[str, ...] = field(default=(
        "trained on about 3 million faces of 7485 mostly adult, mostly Western celebrities (FaceScrub, VGG-Face, "
        "web images): weaker on children, and its false-match rate varies across ethnic groups; it was not "
        "evaluated on Korean women and girls, the main victims in these cases",
        "a match says two faces look alike to this model, not that they are the same person: it is a lead for "
        "a human examiner, never an identification",
    ))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["known_limits"] = list(self.known_limits)
        return d


class DlibFaceEmbedder:
    """128-d dlib ResNet embeddings of faces given by their RetinaFace boxes, batched across frames."""

    def __init__(self, spec: EmbedderSpec | None = None, batch_size: int = 32):
        self.spec = spec or EmbedderSpec()
        if self.spec.name != "dlib_resnet_v1":
            raise ValueError(f"unknown face embedder {self.spec.name!r}; available: dlib_resnet_v1")
        self.dlib = import_dlib()
        self.net = self.dlib.face_recognition_model_v1(str(find_model(self.spec.model_role)))
        self.landmarks = self.dlib.shape_predictor(str(find_model(self.spec.landmark_role)))
        self.batch_size = int(batch_size)

    def describe(self) -> dict:
        """The spec and both model files (path, SHA-256, licence): what the custody record keeps."""
        return {**self.spec.to_dict(), "model_files": [describe_model(self.spec.model_role),
                                                       describe_model(self.spec.landmark_role)]}

    def chip(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 150 x 150 RGB chip of one face, cut as dlib cuts its own, from a RetinaFace box."""
        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = x1 - x0, y1 - y0
        a, b, c, d = RETINAFACE_TO_DLIB_BOX
        rect = self.dlib.rectangle(int(round(x0 + a * w)), int(round(y0 + b * h)), int(round(x0 + c * w)),
                                   int(round(y0 + d * h)))
        frame = np.ascontiguousarray(frame, np.uint8)
        shape = self.landmarks(frame, rect)
        return self.dlib.get_face_chip(frame, shape, size=self.spec.chip_size, padding=self.spec.padding)

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        out = np.empty((len(chips), self.spec.dim), np.float32)
        for i in range(0, len(chips), self.batch_size):
            batch = [np.ascontiguousarray(c) for c in chips[i:i + self.batch_size]]
            out[i:i + len(batch)] = np.asarray([np.asarray(v) for v in self.net.compute_face_descriptor(batch)],
                                               np.float32)
        return out

    def embed(self, frame: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        """(N, 128) embeddings of the faces of one RGB frame, given their RetinaFace boxes."""
        return self.embed_chips([self.chip(frame, b) for b in boxes])


def distances(embeddings: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Euclidean distance of each embedding (N, D) to its nearest reference (M, D): shape (N,)."""
    e, r = np.asarray(embeddings, np.float64), np.asarray(references, np.float64)
    if len(e) == 0:
        return np.zeros(0)
    d2 = (e * e).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2 * e @ r.T
    return np.sqrt(np.clip(d2, 0, None)).min(1)
