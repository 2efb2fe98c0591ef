"""The face preprocessing pipeline: index rows in, face crops and a manifest out.

Every sampled frame of every input gets exactly one manifest row with a status (`face`,
`no_face`, `decode_error`), so frames without a detected face are accounted for, never silently
dropped. The same function serves training data and evidence scans.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from faketrace.datasets.faces import build_detector, pick_largest, square_crop
from faketrace.datasets.io import atomic_path
from faketrace.datasets.media import DecodeError, read_image, read_video_frames
from faketrace.datasets.schema import MANIFEST_COLUMNS, write_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that decides what a crop looks like; stored in manifests and checkpoints."""

    detector: str = "retinaface"
    score_threshold: float = 0.8
    nms_threshold: float = 0.4
    detector_max_side: int = 640
    margin: float = 1.3
    crop_size: int = 128
    frames_per_video: int = 8
    face_policy: str = "largest"
    image_format: str = "png"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def make_detector(spec: PreprocessSpec, device: str = "cpu"):
    return build_detector(spec.detector, score_threshold=spec.score_threshold, nms_threshold=spec.nms_threshold,
                          max_side=spec.detector_max_side, device=device)


def _frame_rows(item_id: str, frames: dict[int, np.ndarray], detector, spec: PreprocessSpec,
                faces_dir: Path) -> list[dict]:
    order = sorted(frames)
    detections = detector.detect([frames[i] for i in order])
    rows = []
    for fi, faces in zip(order, detections, strict=True):
        frame = frames[fi]
        h, w = frame.shape[:2]
        row = dict(video_id=item_id, frame_index=fi, n_faces=len(faces), frame_width=w, frame_height=h)
        face = pick_largest(faces)
        if face is None:
            rows.append(dict(row, status="no_face", reason="no face above the detector threshold"))
            continue
        crop = square_crop(frame, face.box, spec.margin, spec.crop_size)
        rel = f"crops/{item_id}/{fi:06d}.{spec.image_format}"
        ok, buf = cv2.imencode(f".{spec.image_format}", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"could not encode crop {rel}")
        with atomic_path(faces_dir / rel) as tmp:
            tmp.write_bytes(buf.tobytes())
        rows.append(dict(row, status="face", crop_path=rel, x0=face.box[0], y0=face.box[1], x1=face.box[2],
                         y1=face.box[3], landmarks=face.landmarks.reshape(-1).astype(np.float32).tolist(),
                         score=face.score))
    return rows


def preprocess_item(item: dict, root: Path, faces_dir: Path, detector, spec: PreprocessSpec) -> list[dict]:
    """Manifest rows for one index row (one per sampled frame, or one decode_error row)."""
    path = root / item["path"]
    if item["media_type"] == "image":
        try:
            frames = {0: read_image(path)}
        except (DecodeError, OSError) as exc:
            return [dict(video_id=item["id"], frame_index=0, status="decode_error", reason=str(exc), n_faces=0)]
        return _frame_rows(item["id"], frames, detector, spec, faces_dir)
    video = read_video_frames(path, spec.frames_per_video)
    if not video.frames:
        return [dict(video_id=item["id"], frame_index=-1, status="decode_error", reason=video.error, n_faces=0)]
    rows = _frame_rows(item["id"], video.frames, detector, spec, faces_dir)
    if video.error:
        for r in rows:
            r["reason"] = r.get("reason") or f"partial video: {video.error}"
    return rows


def preprocess_index(index: pd.DataFrame, root: str | Path, faces_dir: str | Path, spec: PreprocessSpec,
                     manifest_path: str | Path, device: str = "cpu") -> pd.DataFrame:
    """Run the face pipeline over an index and write the manifest; return it."""
    root, faces_dir = Path(root), Path(faces_dir)
    detector = make_detector(spec, device)
    rows: list[dict] = []
    start = time.perf_counter()
    bar = tqdm(index.to_dict("records"), desc="preprocess", unit="item")
    for item in bar:
        rows.extend(preprocess_item(item, root, faces_dir, detector, spec))
        elapsed = time.perf_counter() - start
        bar.set_postfix(items_s=f"{bar.n / max(elapsed, 1e-9):.1f}", frames_s=f"{len(rows) / max(elapsed, 1e-9):.1f}")
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    meta = {"spec": spec.to_dict(), "detector": detector.describe(), "n_items": int(len(index))}
    write_manifest(manifest, manifest_path, meta)
    summary = manifest.groupby("status").size().to_dict()
    log.info("preprocess: %d items, %d frame rows, by status %s, %.1fs", len(index), len(manifest), summary,
             time.perf_counter() - start)
    return manifest
