"""Export orchestration: checkpoint -> model.onnx + weights.safetensors + model_card.json.

The ONNX model is verified against PyTorch on real face crops from the data set (not random
noise) and the export fails if the largest absolute logit difference exceeds the tolerance.
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
from faketrace.engine.evaluate import model_from_checkpoint
from faketrace.models.export import export_onnx, export_safetensors

log = logging.getLogger(__name__)
MODEL_CARD_VERSION = 1


class ExportVerificationError(RuntimeError):
    pass


def verification_images(cfg: DictConfig, spec: dict) -> torch.Tensor:
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
    images = verification_images(cfg, spec)
    check = verify_onnx(model, out / "model.onnx", images, float(cfg.verify.atol))
    meta = {"faketrace.backbone": ckpt["model_spec"]["backbone"], "faketrace.num_classes": "1",
            "faketrace.fit_for_casework": str(ckpt["fit_for_casework"]).lower()}
    export_safetensors(model.backbone_state_dict(), out / "weights.safetensors", meta)
    files = ["model.onnx", "weights.safetensors"]
    family_state = model.family_state_dict()
    if family_state:
        # What a detector family adds beside the timm backbone (second stream, decoder, probe...).
        export_safetensors(family_state, out / "family.safetensors", {**meta, "faketrace.part": "family"})
        files.append("family.safetensors")
    card = model_card(ckpt, cfg, onnx_info, check, out, files)
    atomic_write_text(out / "model_card.json", json.dumps(card, indent=2, default=str))
    log.info("exported to %s (max |logit diff| %.2e on %d real crops)", out, check["max_abs_logit_diff"],
             check["n_images"])
    return card


def model_card(ckpt: dict, cfg: DictConfig, onnx_info: dict, check: dict, out: Path,
               files: list[str] | None = None) -> dict:
    spec = ckpt["preprocessing"]
    return {
        "model_card_version": MODEL_CARD_VERSION,
        "name": f"faketrace-{ckpt['model_spec']['family']}-{ckpt['model_spec']['backbone']}",
        "fit_for_casework": ckpt["fit_for_casework"],
        "casework_note": ckpt["casework_note"],
        "warning": None if ckpt["fit_for_casework"] else f"NOT FIT FOR CASEWORK: {ckpt['casework_note']}",
        "task": "binary face-manipulation detection on face crops (1 = manipulated)",
        "family": ckpt["model_spec"]["family"], "backbone": ckpt["model_spec"]["backbone"],
        "input": spec["input"],
        "output": {"name": "logit", "shape": ["batch"],
                   "probability": "sigmoid(logit / temperature)", "temperature": ckpt["calibration"]["temperature"]},
        "face_preprocessing": spec["face"], "face_detector": spec["detector"],
        "video_aggregation": spec["aggregation"],
        "calibration": ckpt["calibration"],
        "training": {"data": ckpt["data"], "epoch": ckpt["epoch"], "monitor": ckpt["monitor"],
                     "best_validation_score": ckpt["best_score"], "validation_metrics": ckpt["metrics"].get("best_val")},
        "files": {name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
                  for name in (files or ["model.onnx", "weights.safetensors"])},
        "onnx": {**onnx_info, "verification": check},
        "source_checkpoint": {"path": str(cfg.ckpt_path), "sha256": sha256_file(cfg.ckpt_path)},
        "git_sha": ckpt["git_sha"], "versions": {"training": ckpt["versions"], "export": versions()},
        "timm_load": ("timm.create_model(backbone, pretrained=True, num_classes=1, "
                      "pretrained_cfg_overlay=dict(file='weights.safetensors', num_classes=1))"
                      if "family.safetensors" not in (files or []) else
                      "the backbone part only: the family's other weights are in family.safetensors and "
                      "the whole detector in model.onnx"),
    }
