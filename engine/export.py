"""Export orchestration: checkpoint -> model.onnx + weights.safetensors + model_card.json.

The ONNX model is verified against PyTorch on real face crops from the data set (not random
noise; image-level models: tiles of the data set's images) and the export fails if the largest
absolute logit difference exceeds the tolerance.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from faketrace.datasets.frames import FaceCropDataset, load_face_table
from faketrace.datasets.io import atomic_write_text, sha256_file
from faketrace.datasets.transforms import eval_transform
from faketrace.engine.checkpoint import load_checkpoint, versions
from faketrace.engine.evaluate import DIFFUSION_NOTE, checkpoint_level, image_dataset, model_from_checkpoint
from faketrace.models.export import export_onnx, export_safetensors

log = logging.getLogger(__name__)
MODEL_CARD_VERSION = 1


class ExportVerificationError(RuntimeError):
    pass


def verification_images(cfg: DictConfig, spec: dict, ckpt: dict | None = None) -> torch.Tensor:
    if ckpt is not None and checkpoint_level(ckpt) == "image":
        ds = image_dataset(ckpt, cfg.data, cfg.verify.split)
        tiles = torch.cat([ds[int(i)]["tiles"] for i in np.linspace(0, len(ds) - 1, min(8, len(ds))).round()])
        pick = np.linspace(0, len(tiles) - 1, min(int(cfg.verify.n_images), len(tiles))).round().astype(int)
        return tiles[pick]
    faces, _, _ = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
    ds = FaceCropDataset(faces, cfg.data.faces_dir, eval_transform(spec["input_size"], spec["mean"], spec["std"]),
                         split=cfg.verify.split)
    if len(ds) == 0:
        raise ExportVerificationError(f"no face crops in split {cfg.verify.split!r} to verify the export with")
    pick = np.linspace(0, len(ds) - 1, min(int(cfg.verify.n_images), len(ds))).round().astype(int)
    return torch.stack([ds[int(i)]["image"] for i in pick])


def verify_onnx(model: torch.nn.Module, onnx_path: Path, images: torch.Tensor, atol: float) -> dict:
    import onnxruntime as ort

    with torch.no_grad():
        expected = model(images).numpy().astype(np.float64)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    # Run in two uneven batches as well as whole, to exercise the dynamic batch dimension.
    got = session.run(["logit"], {"image": images.numpy()})[0].astype(np.float64)
    split = max(1, len(images) // 3)
    parts = np.concatenate([session.run(["logit"], {"image": images[:split].numpy()})[0],
                            session.run(["logit"], {"image": images[split:].numpy()})[0]]).astype(np.float64)
    diff = float(max(np.abs(got - expected).max(), np.abs(parts - expected).max()))
    result = {"n_images": int(len(images)), "max_abs_logit_diff": diff, "tolerance": atol, "passed": diff <= atol,
              "onnxruntime": ort.__version__, "provider": "CPUExecutionProvider"}
    if diff > atol:
        raise ExportVerificationError(f"ONNX Runtime differs from PyTorch by {diff:.3g} > {atol:g} on real crops")
    return result


def export_checkpoint(cfg: DictConfig) -> dict:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(cfg.ckpt_path)
    model = model_from_checkpoint(ckpt)
    spec = ckpt["preprocessing"]["input"]
    onnx_info = export_onnx(model, out / "model.onnx", spec["input_size"], int(cfg.opset))
    images = verification_images(cfg, spec, ckpt)
    check = verify_onnx(model, out / "model.onnx", images, float(cfg.verify.atol))
    meta = {"faketrace.backbone": ckpt["model_spec"]["backbone"], "faketrace.num_classes": "1",
            "faketrace.fit_for_casework": str(ckpt["fit_for_casework"]).lower()}
    export_safetensors(model.backbone, out / "weights.safetensors", meta)
    card = model_card(ckpt, cfg, onnx_info, check, out)
    atomic_write_text(out / "model_card.json", json.dumps(card, indent=2, default=str))
    log.info("exported to %s (max |logit diff| %.2e on %d real crops)", out, check["max_abs_logit_diff"],
             check["n_images"])
    return card


def model_card(ckpt: dict, cfg: DictConfig, onnx_info: dict, check: dict, out: Path) -> dict:
    spec = ckpt["preprocessing"]
    return {
        "model_card_version": MODEL_CARD_VERSION,
        "name": f"faketrace-{ckpt['model_spec']['family']}-{ckpt['model_spec']['backbone']}",
        "fit_for_casework": ckpt["fit_for_casework"],
        "casework_note": ckpt["casework_note"],
        "warning": None if ckpt["fit_for_casework"] else f"NOT FIT FOR CASEWORK: {ckpt['casework_note']}",
        "task": "binary face-manipulation detection on face crops (1 = manipulated)" if checkpoint_level(ckpt) == "face"
        else "binary whole-image manipulation detection on native-resolution tiles (1 = manipulated); image score "
             f"= {spec['image']['aggregation']} over tiles",
        "level": checkpoint_level(ckpt),
        "image_preprocessing": spec.get("image"),
        "image_note": DIFFUSION_NOTE if checkpoint_level(ckpt) == "image" else None,
        "family": ckpt["model_spec"]["family"], "backbone": ckpt["model_spec"]["backbone"],
        "input": spec["input"],
        "output": {"name": "logit", "shape": ["batch"],
                   "probability": "sigmoid(logit / temperature)", "temperature": ckpt["calibration"]["temperature"]},
        "face_preprocessing": spec.get("face"), "face_detector": spec.get("detector"),
        "video_aggregation": spec["aggregation"],
        "calibration": ckpt["calibration"],
        "training": {"data": ckpt["data"], "epoch": ckpt["epoch"], "monitor": ckpt["monitor"],
                     "best_validation_score": ckpt["best_score"], "validation_metrics": ckpt["metrics"].get("best_val")},
        "files": {name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
                  for name in ("model.onnx", "weights.safetensors")},
        "onnx": {**onnx_info, "verification": check},
        "source_checkpoint": {"path": str(cfg.ckpt_path), "sha256": sha256_file(cfg.ckpt_path)},
        "git_sha": ckpt["git_sha"], "versions": {"training": ckpt["versions"], "export": versions()},
        "timm_load": ("timm.create_model(backbone, pretrained=True, num_classes=1, "
                      "pretrained_cfg_overlay=dict(file='weights.safetensors', num_classes=1))"),
    }
