"""Heatmaps on the most suspicious face: where the model looked when it scored it.

The face is found again on its frame and cropped by the one face pipeline
(`datasets/face_pipeline.model_crop`, `spec_input`), so the crop explained is the crop the scan
scored; the model's logit on it is compared with the stored one and the report says whether they
agree. Two methods:

- Grad-CAM (PyTorch checkpoint): gradients of the "manipulated" logit with respect to the last
  feature map of the timm backbone (its `feature_info`), weighted by their spatial mean, summed
  over channels, rectified.
  An ONNX export gets Grad-CAM too when its folder has the plain-timm `weights.safetensors` its
  card lists (hash checked before the file is parsed) and the rebuilt network gives model.onnx's
  logit on a probe input (`gradient_module_from_export`): one forward and backward pass per face
  instead of one forward pass per occluding patch.
- Occlusion (ONNX export without usable weights, or a backbone without a spatial feature map): a grey patch (the
  normalisation mean, i.e. zero after normalising) slides over the face; each pixel gets the mean
  drop of the logit over the patches covering it. Only the `logits` callable is needed.

Both give a map over the model's input; positive values point at regions that raised the
"manipulated" score. A heatmap is an aid to looking, not evidence in itself (said in the report).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faketrace.datasets.face_pipeline import PreprocessSpec, crop_matrix, model_crop, spec_input
from faketrace.datasets.faces import Face


@dataclass
class Heatmap:
    method: str  # grad_cam | occlusion
    heat: np.ndarray  # (S, S) float, >= 0, normalised to max 1 (all zeros when nothing raised the score)
    logit: float  # the model's logit on the rebuilt crop
    detail: dict


def locate_face(frame: np.ndarray, record: dict, detector, spec: PreprocessSpec, tol: float = 0.75) -> Face | None:
    """The detection behind a stored face record (box within `tol` px), found again on its frame.

    Detection is deterministic, so the same frame gives the same boxes and landmarks. Without a
    match a box-only face is returned when the spec crops by box (no alignment), else None.
    """
    box = np.asarray(record["box"], np.float64)
    if detector is not None:
        for face in detector.detect([frame])[0]:
            if np.max(np.abs(np.asarray(face.box, np.float64) - box)) <= tol:
                return face
    if spec.align:
        return None
    return Face(box=box.astype(np.float32), landmarks=np.zeros((5, 2), np.float32),
                score=float(record.get("detector_score") or 0.0))


def face_crop(frame: np.ndarray, face: Face, spec: PreprocessSpec) -> np.ndarray:
    return model_crop(frame, face, spec)


def grad_cam(module, x: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Grad-CAM of the single logit on the last spatial feature map of a timm backbone, or None."""
    import torch

    backbone = getattr(module, "backbone", module)
    info = getattr(backbone, "feature_info", None)
    try:
        name = info[-1]["module"]
        target = backbone.get_submodule(name)
    except (TypeError, KeyError, IndexError, AttributeError):
        return None
    store: dict = {}

    def hook(_module, _inputs, output):
        store["a"] = output[0] if isinstance(output, (tuple, list)) else output

    handle = target.register_forward_hook(hook)
    try:
        device = next(module.parameters()).device
        with torch.enable_grad():
            logit = module(torch.from_numpy(x).to(device)).reshape(-1)[0]
            a = store.get("a")
            # A frozen feature extractor (the linear-probe family) has no gradient to weigh by.
            if a is None or a.ndim != 4 or min(a.shape[2:]) < 1 or not a.requires_grad:
                return None
            (grads,) = torch.autograd.grad(logit, a)
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * a).sum(dim=1))[0].detach().float().cpu().numpy()
    size = x.shape[-1]
    cam = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
    return cam, float(logit.detach().cpu())


def occlusion(logits, x: np.ndarray, patch_fraction: float = 0.25, stride_fraction: float = 0.125,
              batch_size: int = 32) -> tuple[np.ndarray, float, dict]:
    """Occlusion sensitivity through a `logits(x) -> (N,)` callable; map of mean logit drop per pixel."""
    size = x.shape[-1]
    patch = max(2, round(size * patch_fraction))
    stride = max(1, round(size * stride_fraction))
    starts = list(range(0, max(1, size - patch) + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    positions = [(r, c) for r in starts for c in starts]
    base = float(logits(x)[0])
    drops = []
    for i in range(0, len(positions), batch_size):
        chunk = positions[i:i + batch_size]
        batch = np.repeat(x, len(chunk), axis=0)
        for j, (r, c) in enumerate(chunk):
            batch[j, :, r:r + patch, c:c + patch] = 0.0  # the normalisation mean: a neutral grey
        drops.extend(base - np.asarray(logits(batch), np.float64).reshape(-1))
    total = np.zeros((size, size))
    count = np.zeros((size, size))
    for (r, c), d in zip(positions, drops, strict=True):
        total[r:r + patch, c:c + patch] += d
        count[r:r + patch, c:c + patch] += 1
    heat = total / np.maximum(count, 1)
    # The patch grid leaves steps at patch edges; smoothing over one stride shows the regions, not the grid.
    heat = cv2.GaussianBlur(heat, (0, 0), sigmaX=stride, sigmaY=stride, borderType=cv2.BORDER_REFLECT)
    return heat, base, {"patch_px": patch, "stride_px": stride, "forward_passes": len(positions) + 1,
                        "max_logit_drop": round(float(np.max(drops)), 6), "min_logit_drop": round(float(np.min(drops)), 6)}


def explain(model, crop: np.ndarray, method: str = "auto", occlusion_options: dict | None = None) -> Heatmap:
    """Heatmap of one face crop (RGB uint8, as `model_crop` gives it) for a ScanModel."""
    x = spec_input([crop], model.input_spec)
    module = getattr(model, "module", None)
    if method in ("auto", "grad_cam") and module is not None:
        got = grad_cam(module, x)
        if got is not None:
            cam, logit = got
            return Heatmap("grad_cam", _normalise(cam), logit,
                           {"target": "the 'manipulated' logit", "layer": _layer_name(module),
                            "max_activation": round(float(cam.max()), 6)})
        if method == "grad_cam":
            raise ValueError("Grad-CAM needs a backbone with a spatial feature map")
    heat, logit, detail = occlusion(model.logits, x, **(occlusion_options or {}))
    return Heatmap("occlusion", _normalise(np.maximum(heat, 0.0)), logit,
                   {"target": "the 'manipulated' logit", **detail})


# The rebuilt network must give model.onnx's logit to this tolerance (export verifies 1e-4).
EXPORT_MODULE_ATOL = 1e-3


def gradient_module_from_export(model) -> tuple[object | None, str]:
    """The export's weights.safetensors as a torch module for Grad-CAM, or None and why not.

    Only a plain timm classifier (its card documents the `timm_load` call) is rebuilt; the file's
    SHA-256 must be the card's, and the module must agree with the ONNX model on a probe input.
    """
    import json
    from pathlib import Path

    from faketrace.datasets.io import sha256_file

    folder = Path(model.path).parent
    card_path, weights = folder / "model_card.json", folder / "weights.safetensors"
    if not card_path.is_file() or sha256_file(card_path) != model.card.get("model_card_sha256"):
        return None, "the export's model card is not the one the scan read"
    card = json.loads(card_path.read_text())
    listed = (card.get("files") or {}).get("weights.safetensors", {}).get("sha256")
    if (card.get("weights") or {}).get("family_file"):
        return None, (f"a {card.get('family')} export is more than its timm backbone (give ckpt_path= for "
                      "Grad-CAM)")
    if not card.get("timm_load") or not listed or not weights.is_file():
        return None, "the export has no plain-timm weights.safetensors"
    if sha256_file(weights) != listed:
        return None, "weights.safetensors differs from the SHA-256 its model card lists"
    try:
        import torch

        from faketrace.models.backbones import load_exported_weights

        module = load_exported_weights(card["backbone"], weights).eval()
    except Exception as exc:  # noqa: BLE001 - no torch, or timm cannot build it: occlusion still works
        return None, f"weights.safetensors could not be rebuilt ({type(exc).__name__}: {exc})"
    size = model.input_spec.side
    probe = np.random.default_rng(0).uniform(-1.0, 1.0, (1, 3, size, size)).astype(np.float32)
    with torch.inference_mode():
        rebuilt = module(torch.from_numpy(probe)).double().reshape(-1).numpy()
    diff = float(np.max(np.abs(rebuilt - model.logits(probe))))
    if not diff <= EXPORT_MODULE_ATOL:
        return None, f"weights.safetensors gives logits {diff:.3g} away from model.onnx's"
    return module, (f"Grad-CAM through weights.safetensors (SHA-256 {listed}) rebuilt with timm; its logit on a "
                    f"probe input is {diff:.2g} from model.onnx's")


def _layer_name(module) -> str | None:
    backbone = getattr(module, "backbone", module)
    try:
        return f"backbone.{backbone.feature_info[-1]['module']}"
    except (TypeError, KeyError, IndexError, AttributeError):
        return None


def _normalise(heat: np.ndarray) -> np.ndarray:
    heat = np.nan_to_num(np.asarray(heat, np.float64))
    top = float(heat.max())
    return heat / top if top > 0 else np.zeros_like(heat)


COLOUR_MAP = "inferno"


def overlay(background: np.ndarray, heat: np.ndarray, alpha: float = 0.75) -> np.ndarray:
    """The heat (0..1) as a colour map blended over an RGB picture of any size (heat is resized).

    The picture is turned grey first, so that the colours read only as the map (the colour scale
    the report draws beside it), and the map is opaque where it is hot, faint where it is cold.
    """
    import matplotlib

    h, w = background.shape[:2]
    heat = cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colours = (matplotlib.colormaps[COLOUR_MAP](np.clip(heat, 0, 1))[..., :3] * 255).astype(np.float32)
    grey = cv2.cvtColor(np.ascontiguousarray(background[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey = np.repeat(grey[..., None], 3, axis=2)
    weight = (alpha * np.clip(heat, 0, 1))[..., None] + 0.2  # faint everywhere, strong where hot
    out = grey * (1 - weight) + colours * weight
    return np.clip(out, 0, 255).astype(np.uint8)


def colour_stops(n: int = 6) -> list[tuple[float, str]]:
    """(offset 0..1, #rrggbb) along the overlay's colour map, for the report's colour scale."""
    import matplotlib

    cmap = matplotlib.colormaps[COLOUR_MAP]
    return [(t, "#{:02x}{:02x}{:02x}".format(*(int(round(255 * c)) for c in cmap(t)[:3])))
            for t in np.linspace(0, 1, n)]


def heat_on_frame(heat: np.ndarray, face: Face, spec: PreprocessSpec, frame_shape: tuple[int, int]) -> np.ndarray:
    """A map over the model's face crop put back where the crop came from on the frame (0 elsewhere).

    The crop is an affine image of the frame (`crop_matrix`: a square around the box, or a
    similarity onto the landmark template), so the inverse warp places every value exactly.
    """
    size = int(spec.crop_size)
    crop_heat = cv2.resize(np.asarray(heat, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    # Faded out over the outer eighth of the crop, so that the map does not draw the crop's outline
    # (a sharp edge in a picture that must stay blurred).
    ramp = np.clip(np.minimum(np.arange(size), np.arange(size)[::-1]) / max(1.0, size / 8.0), 0, 1).astype(np.float32)
    crop_heat *= np.minimum(ramp[:, None], ramp[None, :])
    m = crop_matrix(np.asarray(face.box, np.float32), face.landmarks, spec)
    h, w = frame_shape[:2]
    return cv2.warpAffine(crop_heat, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
