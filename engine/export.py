"""Export orchestration: a checkpoint becomes a verified, self-describing export folder.

The folder (written under a staging name and renamed into place only when every check passed):

- `model.onnx`: dynamic batch, weights inside; ONNX Runtime vs PyTorch on real face crops
  (image-level models: native-resolution tiles of the data set's images) at batch sizes 1 and 8,
  largest absolute logit difference <= `verify.atol`, else no export.
- `face_detector.onnx` (face-level models): the RetinaFace file the crops depend on (hash checked
  against the one the checkpoint's training data was preprocessed with). Image-level models use
  no face detector; their card's spec carries the ImageSpec the scan tiles with.
- `weights.safetensors` (plain timm models): reloaded through `timm.create_model` and compared
  with the checkpoint's logits (<= 1e-6), so a head timm would drop cannot ship. A detector
  family adds `family.safetensors` (its parts beside the timm backbone); the two rebuild the
  detector strictly and must give the same logits. Clip (video) models are refused.
- optional `model.fp16.onnx` (checked only where a CUDA execution provider is at hand) and
  `model.int8.onnx` (static QDQ, calibrated on training crops, refused when validation AUC drops
  more than the configured bound).
- `triton/<name>/config.pbtxt` + `triton/<name>/1/model.onnx`, checked against the graph.
- `model_card.json` (source of truth, SHA-256 of every other file; `spec` is the checkpoint's
  ModelSpec with the shipped detector file named) and `MODEL_CARD.md`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from faketrace.datasets.faces import detector_weights
from faketrace.datasets.frames import FaceCropDataset, load_face_table
from faketrace.datasets.io import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file
from faketrace.datasets.schema import read_index
from faketrace.datasets.transforms import spec_eval_transform
from faketrace.engine import metrics as M
from faketrace.engine.checkpoint import load_checkpoint, versions
from faketrace.engine.evaluate import DIFFUSION_NOTE, image_dataset
from faketrace.engine.inference import model_from_checkpoint
from faketrace.models.backbones import load_exported_weights
from faketrace.models.card import CARD_FILE, MARKDOWN_FILE, file_hashes, render_markdown
from faketrace.models.export import export_onnx, export_safetensors
from faketrace.models.onnx_safety import check_external_data
from faketrace.models.spec import InputSpec, ModelSpec, checkpoint_spec
from faketrace.models.triton import check_repository, safe_model_name, write_repository

log = logging.getLogger(__name__)
MODEL_CARD_VERSION = 3  # 3: the ModelSpec under "spec" (versions 1 and 2 are migrated on load)
# Verification always runs at these batch sizes: single images (the predictor's case) and a
# batch, so that the dynamic batch dimension is exercised. Not configurable, so not skippable.
VERIFY_BATCH_SIZES = (1, 8)
ROUND_TRIP_ATOL = 1e-6
DETECTOR_FILE = "face_detector.onnx"
FAMILY_FILE = "family.safetensors"


class ExportVerificationError(RuntimeError):
    pass


# -- data ---------------------------------------------------------------------------------------

def crop_dataset(cfg: DictConfig, spec: InputSpec, split: str, faces: pd.DataFrame | None = None
                 ) -> FaceCropDataset:
    """Every face crop of a split, transformed exactly as evaluation does."""
    if faces is None:
        faces, _, _ = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
    return FaceCropDataset(faces, cfg.data.faces_dir, spec_eval_transform(spec), split=split)


def spread_images(ds: FaceCropDataset, n: int, what: str) -> torch.Tensor:
    """`n` crops spread evenly over a data set (so every part of the split is represented)."""
    if len(ds) == 0:
        raise ExportVerificationError(f"no face crops to {what}")
    pick = np.linspace(0, len(ds) - 1, min(int(n), len(ds))).round().astype(int)
    return torch.stack([ds[int(i)]["image"] for i in pick])


def tile_images(ckpt: dict, cfg: DictConfig, split: str, n: int, what: str) -> torch.Tensor:
    """`n` evaluation tiles spread over the images of a split (image-level checkpoints)."""
    try:
        ds = image_dataset(ckpt, cfg.data, split)
    except ValueError as err:
        raise ExportVerificationError(f"no images to {what}: {err}") from err
    # Tiles of up to 8 images spread over the split, then `n` tiles spread over those.
    tiles = torch.cat([ds[int(i)]["tiles"] for i in np.linspace(0, len(ds) - 1, min(8, len(ds))).round()])
    pick = np.linspace(0, len(tiles) - 1, min(int(n), len(tiles))).round().astype(int)
    return tiles[pick]


def verification_split(cfg: DictConfig, evaluation: dict | None) -> str:
    """`verify.split`, else the split the model was evaluated on (same data), else val."""
    if cfg.verify.split:
        return str(cfg.verify.split)
    index_sha = (evaluation or {}).get("test_set", {}).get("index_sha256")
    if index_sha and Path(cfg.data.index_path).is_file() and index_sha == sha256_file(cfg.data.index_path):
        return str(evaluation["test_set"]["split"])
    return "val"


# -- verification -------------------------------------------------------------------------------

def _session(path: Path, providers: list[str] | None = None):
    import onnxruntime as ort

    check_external_data(path)  # an initializer may not point outside the export folder
    return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])


def _batched_diff(model: torch.nn.Module, session, images: torch.Tensor, batch: int) -> float:
    """Largest |ONNX - PyTorch| logit over the images run in batches of `batch`."""
    worst = 0.0
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        with torch.no_grad():
            want = model(chunk).double().numpy()
        got = session.run(["logit"], {"image": chunk.numpy()})[0].astype(np.float64)
        if got.shape != want.shape:
            raise ExportVerificationError(f"ONNX output shape {got.shape} != PyTorch {want.shape} at batch {batch}")
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def verify_onnx(model: torch.nn.Module, onnx_path: Path, images: torch.Tensor, atol: float,
                split: str | None = None, providers: list[str] | None = None) -> dict:
    """ONNX Runtime vs PyTorch at every size in VERIFY_BATCH_SIZES; raise above `atol`."""
    need = max(VERIFY_BATCH_SIZES)
    if len(images) < need:
        raise ExportVerificationError(f"verification needs at least {need} real crops (batch sizes "
                                      f"{VERIFY_BATCH_SIZES}), got {len(images)}")
    import onnxruntime as ort

    session = _session(onnx_path, providers)
    per_batch = {str(b): {"max_abs_logit_diff": _batched_diff(model, session, images, b),
                          "runs": -(-len(images) // b)} for b in VERIFY_BATCH_SIZES}
    diff = max(r["max_abs_logit_diff"] for r in per_batch.values())
    result = {"n_images": int(len(images)), "split": split, "batch_sizes": per_batch, "max_abs_logit_diff": diff,
              "tolerance": float(atol), "passed": diff <= atol, "onnxruntime": ort.__version__,
              "provider": session.get_providers()[0]}
    if diff > atol:
        by_batch = ", ".join(f"batch {b}: {r['max_abs_logit_diff']:.3g}" for b, r in per_batch.items())
        raise ExportVerificationError(f"ONNX Runtime differs from PyTorch by {diff:.3g} > {atol:g} on real crops "
                                      f"({by_batch})")
    return result


def verify_timm_round_trip(model: torch.nn.Module, weights_path: Path, backbone: str, images: torch.Tensor,
                           atol: float = ROUND_TRIP_ATOL) -> dict:
    """Reload the safetensors with timm's own pretrained path; its logits must equal the model's."""
    try:
        reloaded = load_exported_weights(backbone, weights_path).eval()
    except Exception as exc:  # noqa: BLE001 - any failure to load is a failed round trip
        raise ExportVerificationError(f"timm could not load {weights_path.name}: {type(exc).__name__}: {exc}") from exc
    with torch.no_grad():
        diff = float((reloaded(images).reshape(-1) - model(images).reshape(-1)).abs().max())
    if not diff <= atol:
        raise ExportVerificationError(f"{weights_path.name} reloaded with timm gives logits {diff:.3g} away from the "
                                      f"checkpoint's (limit {atol:g}): a dropped or altered head?")
    return {"max_abs_logit_diff": diff, "tolerance": atol, "n_images": int(len(images)),
            "call": "faketrace.models.backbones.load_exported_weights"}


def verify_family_round_trip(model: torch.nn.Module, ckpt: dict, weights_path: Path, family_path: Path,
                             images: torch.Tensor, atol: float = ROUND_TRIP_ATOL) -> dict:
    """Rebuild a family detector from its two safetensors files (strict keys); logits must match."""
    from safetensors.torch import load_file

    try:
        reloaded = model_from_checkpoint({**ckpt, "model": load_file(str(weights_path)),
                                          "model_family": load_file(str(family_path))})
    except Exception as exc:  # noqa: BLE001 - any failure to load is a failed round trip
        raise ExportVerificationError(f"the detector could not be rebuilt from {weights_path.name} and "
                                      f"{family_path.name}: {type(exc).__name__}: {exc}") from exc
    with torch.no_grad():
        diff = float((reloaded(images).reshape(-1) - model(images).reshape(-1)).abs().max())
    if not diff <= atol:
        raise ExportVerificationError(f"{weights_path.name} + {family_path.name} give logits {diff:.3g} away from "
                                      f"the checkpoint's (limit {atol:g})")
    return {"max_abs_logit_diff": diff, "tolerance": atol, "n_images": int(len(images)),
            "call": "Detector.load_trained_state(backbone, family), the class and arguments of architecture.init"}


# -- optional artefacts -------------------------------------------------------------------------

def export_fp16(model: torch.nn.Module, src: Path, dst: Path, images: torch.Tensor, atol: float) -> dict:
    """fp16 weights with fp32 inputs/outputs, for GPU serving; verified only on a CUDA provider."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))
    record = {"file": dst.name, "weights": "float16", "inputs_outputs": "float32"}
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        reason = "no CUDA execution provider on the export machine; fp16 is checked only on a GPU"
        log.warning("model.fp16.onnx written but NOT CHECKED: %s", reason)
        return {**record, "verification": {"checked": False, "reason": reason, "tolerance": float(atol)}}
    check = verify_onnx(model, dst, images, atol, providers=["CUDAExecutionProvider"])
    if check["provider"] != "CUDAExecutionProvider":
        raise ExportVerificationError(f"fp16 model fell back to {check['provider']}")
    return {**record, "verification": {"checked": True, **check}}


class _CalibrationReader:
    """onnxruntime.quantization's CalibrationDataReader over a tensor of crops."""

    def __init__(self, images: torch.Tensor, batch: int = 8):
        self.batches = [images[i:i + batch].numpy() for i in range(0, len(images), batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"image": self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0


def _score_with_onnx(session, ds: FaceCropDataset, batch: int = 32) -> np.ndarray:
    logits = []
    for start in range(0, len(ds), batch):
        images = np.stack([ds[i]["image"].numpy() for i in range(start, min(start + batch, len(ds)))])
        logits.append(session.run(["logit"], {"image": images})[0])
    return np.concatenate(logits).astype(np.float64)


def quantize_int8(cfg: DictConfig, spec: InputSpec, rule: str, src: Path, dst: Path, faces: pd.DataFrame) -> dict:
    """Static int8 QDQ calibrated on training crops; written only if validation AUC holds up."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    q = cfg.quantize
    if q.eval_split in ("train", "test"):
        raise ValueError(f"quantize.eval_split must be a validation split, not {q.eval_split!r}")
    calib = spread_images(crop_dataset(cfg, spec, "train", faces), int(q.n_calibration), "calibrate int8 with")
    work = dst.parent / f".{dst.stem}.work"
    work.mkdir(exist_ok=True)
    try:
        pre = work / "model.pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(work / dst.name), _CalibrationReader(calib), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=bool(q.per_channel), calibrate_method=CalibrationMethod.MinMax)
        val = crop_dataset(cfg, spec, q.eval_split, faces)
        if len(val) == 0:
            raise ExportVerificationError(f"no face crops in split {q.eval_split!r} to measure int8 AUC on")
        table = val.table.iloc[val.rows][["video_id", "frame_index", "label"]].reset_index(drop=True)
        auc = {}
        for name, path in (("fp32", src), ("int8", work / dst.name)):
            frames = table.assign(score=M.sigmoid(_score_with_onnx(_session(path), val)))
            auc[name] = {"frame": M.roc_auc(frames["label"], frames["score"]),
                         "video": (lambda v: M.roc_auc(v["label"], v["score"]))(M.aggregate_videos(frames, rule))}
        levels = {level: {"fp32": auc["fp32"][level], "int8": auc["int8"][level],
                          "change": None if None in (auc["fp32"][level], auc["int8"][level])
                          else auc["int8"][level] - auc["fp32"][level]} for level in ("frame", "video")}
        bound = float(q.max_auc_drop)
        too_far = [f"{level} AUC drops {-a['change']:.4f} > {bound:g}" for level, a in levels.items()
                   if a["change"] is None or -a["change"] > bound]
        if any(a["change"] is None for a in levels.values()):
            too_far = ["validation split lacks one class: AUC undefined"]
        record = {"file": dst.name if not too_far else None, "format": "QDQ", "activations": "int8",
                  "weights": "int8 per-channel" if q.per_channel else "int8 per-tensor",
                  "calibration": {"split": "train", "n_images": int(len(calib)), "method": "MinMax"},
                  "validation": {"split": q.eval_split, "n_frames": int(len(table)),
                                 "n_videos": int(table["video_id"].nunique()), "aggregation": rule, "auc": levels,
                                 "reference": "the fp32 model.onnx through ONNX Runtime on the same crops"},
                  "max_auc_drop": bound, "written": not too_far, "refused_reason": "; ".join(too_far) or None}
        if too_far:
            log.warning("int8 model refused: %s", record["refused_reason"])
        else:
            os.replace(work / dst.name, dst)
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- what the card says about data, evaluation and robustness -----------------------------------

def _training_index(ckpt: dict, cfg: DictConfig) -> Path | None:
    candidates = []
    with contextlib.suppress(Exception):
        candidates.append(yaml.safe_load(ckpt["config"])["data"]["index_path"])
    if cfg.data.name == ckpt["data"]["name"]:
        candidates.append(cfg.data.index_path)
    return next((Path(p) for p in candidates if p and Path(p).is_file()), None)


def training_splits(ckpt: dict, cfg: DictConfig) -> dict:
    """Items, classes and methods per split of the index the model was trained on, when readable."""
    path = _training_index(ckpt, cfg)
    if path is None:
        return {"note": "the training index was not found at export time"}
    index, _ = read_index(path)
    counts = {}
    for split, part in index.groupby("split", sort=False):
        counts[str(split)] = {"items": int(len(part)), "real": int((part["label"] == 0).sum()),
                              "fake": int((part["label"] == 1).sum()),
                              "methods": sorted(str(m) for m in part["method"].unique())}
    counts = {s: counts[s] for s in ("train", "val", "test") if s in counts} | counts
    ids = index.dropna(subset=["source_identity"]).groupby("source_identity")["split"].nunique()
    policy = ("identity-disjoint (checked: no source_identity appears in two splits)" if len(ids) and ids.max() == 1
              else "NOT identity-disjoint: some identity appears in two splits" if len(ids)
              else "no identity column to check disjointness with")
    return {"index": str(path), "index_sha256": sha256_file(path), "counts": counts, "policy": policy}


EVALUATION_KEYS = ("n", "n_real", "n_fake", "auc", "ap", "eer", "accuracy@0.5", "balanced_accuracy@0.5",
                   "balanced_accuracy@operating", "log_loss", "brier", "ece", "tpr@fpr=0.01", "intervals")


def evaluation_summary(path: str | Path, ckpt_sha256: str) -> dict:
    """Headline results of an evaluate.py metrics.json for the card; it must be this checkpoint's."""
    report = json.loads(Path(path).read_text())
    if report["checkpoint"]["sha256"] != ckpt_sha256:
        raise ValueError(f"{path} evaluates another checkpoint (sha256 {report['checkpoint']['sha256'][:12]}…)")
    results = {who: {level: {k: report[who][level].get(k) for k in EVALUATION_KEYS} for level in ("frame", "video")}
               for who in ("detector", "detector_calibrated") if who in report}
    ts = report["test_set"]
    return {"source": str(path), "sha256": sha256_file(path),
            "test_set": {k: ts.get(k) for k in ("dataset", "split", "index", "index_sha256", "synthetic", "n_items",
                                                  "n_items_scored")},
            "aggregation": report["aggregation"], "bootstrap": report.get("bootstrap"), "results": results,
            "tile_aggregation": report.get("tile_aggregation"),
            "localization": {k: v for k, v in report["localization"].items() if k != "items"}
            if report.get("localization") else None,
            "definitions": report.get("definitions")}


def robustness_summary(path: str | Path, ckpt_sha256: str) -> dict:
    report = json.loads(Path(path).read_text())
    if report["checkpoint_sha256"] != ckpt_sha256:
        raise ValueError(f"{path} measures another checkpoint (sha256 {report['checkpoint_sha256'][:12]}…)")
    keep = ("distortion", "severity", "level", "video_auc", "video_auc_low", "video_auc_high", "frame_auc",
            "face_rate", "n_videos_scored")
    rows = [{k: r.get(k) for k in keep} for r in report["rows"]]
    return {"source": str(path), "sha256": sha256_file(path), "test_set": report["rows"][0].get("test_set"),
            "rows": rows}


def never_seen(ckpt: dict, splits: dict, extra) -> list[str]:
    data = ckpt["data"]
    out = [f"any data set other than `{data['name']}`"]
    train = (splits.get("counts") or {}).get("train")
    if train:
        fakes = [m for m in train["methods"] if m != "real"]
        out.append(f"manipulation methods other than {', '.join(f'`{m}`' for m in fakes)} (the training split's)")
    if checkpoint_spec(ckpt).level == "image":
        out.append("diffusion output (inpainting or full generation), unless the training methods above are some: "
                   "pasted, resampled regions are a stand-in for inpainting, not the real thing")
    if (data.get("index_meta") or {}).get("synthetic"):
        out.append("real recordings of real people: it was trained on synthetic media only")
    return out + [str(x) for x in extra or []]


# -- the export ----------------------------------------------------------------------------------

@contextlib.contextmanager
def staged_folder(final: Path):
    """Build the export next to `final` and swap it in only on success: no stale or half files."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.with_name(f".{final.name}.staging-{os.getpid()}")
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        if final.exists():
            os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def export_checkpoint(cfg: DictConfig) -> dict:
    ckpt = load_checkpoint(cfg.ckpt_path)
    ckpt_sha = sha256_file(cfg.ckpt_path)
    model_spec = checkpoint_spec(ckpt)
    spec = model_spec.input
    arch = ckpt["architecture"]
    if model_spec.clip_length > 1:
        # The graph, the predictor and the scan all feed single frames; a clip model scored that
        # way would not be the model that was evaluated.
        raise ExportVerificationError(f"family {arch['family']!r} scores clips of "
                                      f"{model_spec.clip_length} crops; export, the predictor and the scan take single "
                                      "frames, so clip models are not exported (evaluate.py scores them)")
    model = model_from_checkpoint(ckpt)
    evaluation = evaluation_summary(cfg.evaluation, ckpt_sha) if cfg.get("evaluation") else None
    robustness = robustness_summary(cfg.robustness, ckpt_sha) if cfg.get("robustness") else None
    split = verification_split(cfg, evaluation)
    image_level = model_spec.level == "image"
    what = f"verify the export with in split {split!r}"
    if image_level:
        faces, det_bytes = None, None
        images = tile_images(ckpt, cfg, split, int(cfg.verify.n_images), what)
    else:
        faces, _, _ = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
        images = spread_images(crop_dataset(cfg, spec, split, faces), int(cfg.verify.n_images), what)
        # The crops the model saw came from this detector: ship the same file, or refuse.
        det_bytes = detector_weights()
        trained_with = model_spec.face.detector.weights_sha256
        if trained_with and sha256_bytes(det_bytes) != trained_with:
            raise ExportVerificationError(f"installed face detector (sha256 {sha256_bytes(det_bytes)[:12]}…) is not "
                                          f"the one the training crops were made with ({trained_with[:12]}…)")

    with staged_folder(Path(cfg.out_dir)) as out:
        onnx_info = export_onnx(model, out / "model.onnx", spec.side, int(cfg.opset))
        check = verify_onnx(model, out / "model.onnx", images, float(cfg.verify.atol), split=split)
        if det_bytes is not None:
            atomic_write_bytes(out / DETECTOR_FILE, det_bytes)
            # The card's spec names the file it ships (its hash is the one the crops were made with).
            model_spec = model_spec.replace(face=dataclasses.replace(model_spec.face, detector=dataclasses.replace(
                model_spec.face.detector, file=DETECTOR_FILE, weights_sha256=sha256_bytes(det_bytes))))

        meta = {"faketrace.backbone": arch["backbone"], "faketrace.num_classes": "1",
                "faketrace.fit_for_casework": str(ckpt["fit_for_casework"]).lower()}
        if getattr(model, "plain_timm", False):
            export_safetensors(model.backbone, out / "weights.safetensors", meta)
            weights = {"file": "weights.safetensors", "keys": "plain timm",
                       "round_trip": verify_timm_round_trip(model, out / "weights.safetensors",
                                                            arch["backbone"], images)}
        else:
            # A family is more than a timm model: the timm backbone keeps its plain keys in
            # weights.safetensors, what the family adds (second stream, decoder, probe) goes to
            # family.safetensors, and both must rebuild the checkpoint's logits.
            export_safetensors(model.backbone_state_dict(), out / "weights.safetensors", meta)
            export_safetensors(model.family_state_dict(), out / FAMILY_FILE, {**meta, "faketrace.part": "family"})
            weights = {"file": "weights.safetensors", "family_file": FAMILY_FILE,
                       "keys": "timm backbone (plain timm keys) + the family's own parts",
                       "round_trip": verify_family_round_trip(model, ckpt, out / "weights.safetensors",
                                                              out / FAMILY_FILE, images)}
        fp16 = (export_fp16(model, out / "model.onnx", out / "model.fp16.onnx", images, float(cfg.fp16.atol))
                if cfg.fp16.enabled else None)
        rule = model_spec.video.rule
        if cfg.quantize.enabled and image_level:
            # Its AUC check scores face crops; tiles would need the tile rule first. Not built yet.
            raise ExportVerificationError("quantize.enabled: int8 export is measured on face crops and is not "
                                          "available for image-level models")
        quant = (quantize_int8(cfg, spec, rule, out / "model.onnx", out / "model.int8.onnx", faces)
                 if cfg.quantize.enabled else None)
        name = model_name(ckpt)
        triton = None
        if cfg.triton.enabled:
            triton = write_repository(out / "model.onnx", out / "triton", cfg.triton.model_name or safe_model_name(name),
                                      int(cfg.triton.max_batch_size), bool(cfg.triton.dynamic_batching))
            triton = {"repository": "triton", **triton,
                      "check": check_repository(out / "triton" / triton["model_name"])}
        splits = training_splits(ckpt, cfg)
        card = model_card(ckpt, model_spec, cfg, name, onnx_info, check, weights, fp16, quant, triton, splits,
                          evaluation, robustness, ckpt_sha)
        card["files"] = file_hashes(out)
        atomic_write_text(out / MARKDOWN_FILE, render_markdown(card))
        card["files"] = file_hashes(out)
        atomic_write_text(out / CARD_FILE, json.dumps(card, indent=2, default=str))
    log.info("exported to %s (max |logit diff| %.2e on %d real %s, batch sizes %s)", cfg.out_dir,
             check["max_abs_logit_diff"], check["n_images"], "tiles" if image_level else "crops",
             ", ".join(check["batch_sizes"]))
    return card


def model_name(ckpt: dict) -> str:
    arch = ckpt["architecture"]
    return f"faketrace-{arch['family']}-{arch['backbone']}"


def model_card(ckpt: dict, spec: ModelSpec, cfg: DictConfig, name: str, onnx_info: dict, check: dict, weights: dict,
               fp16: dict | None, quant: dict | None, triton: dict | None, splits: dict, evaluation: dict | None,
               robustness: dict | None, ckpt_sha: str) -> dict:
    """model_card.json: the spec (what the model looks at) and everything else a user must know."""
    image_level = spec.level == "image"
    arch = ckpt["architecture"]
    card_text = OmegaConf.to_container(cfg.card, resolve=True)
    by_level = card_text.pop("image_level", None) or {}
    if image_level:  # the policy text of whole-image models replaces the face-crop one
        card_text.update(by_level)
    return {
        "model_card_version": MODEL_CARD_VERSION,
        "name": name,
        "fit_for_casework": ckpt["fit_for_casework"],
        "casework_note": ckpt["casework_note"],
        "warning": None if ckpt["fit_for_casework"] else f"NOT FIT FOR CASEWORK: {ckpt['casework_note']}",
        "task": ("binary whole-image manipulation detection on native-resolution tiles (1 = manipulated); the "
                 f"image score is the {spec.image.aggregation} of the tile probabilities" if image_level
                 else "binary face-manipulation detection on face crops (1 = manipulated)"),
        "level": spec.level,
        "family": arch["family"], "backbone": arch["backbone"],
        "spec": spec.to_dict(),
        "output": {"name": "logit", "input_name": "image", "shape": ["batch"],
                   "probability": ckpt["calibration"].get("probability", {}).get("frame", "sigmoid(logit)"),
                   # Platt scaling's T and b (method "platt"; identity when none is applied).
                   "calibration_method": ckpt["calibration"].get("method"),
                   "temperature": ckpt["calibration"]["temperature"], "bias": ckpt["calibration"].get("bias", 0.0)},
        "image_note": DIFFUSION_NOTE if image_level else None,
        "calibration": ckpt["calibration"],
        "training": {"data": ckpt["data"], "splits": splits, "epoch": ckpt["epoch"], "monitor": ckpt["monitor"],
                     "best_validation_score": ckpt["best_score"], "validation_metrics": ckpt["metrics"].get("best_val"),
                     "selection": ckpt.get("selection")},
        "evaluation": evaluation,
        "robustness": robustness,
        "intended_use": card_text.get("intended_use", []),
        "out_of_scope_use": card_text.get("out_of_scope_use", []),
        "never_seen": never_seen(ckpt, splits, card_text.get("never_seen")),
        "onnx": {**onnx_info, "file": "model.onnx", "verification": check},
        "weights": weights,
        "fp16": fp16,
        "quantization": quant,
        "triton": triton,
        "source_checkpoint": {"path": str(cfg.ckpt_path), "sha256": ckpt_sha},
        "git_sha": ckpt["git_sha"], "versions": {"training": ckpt["versions"], "export": versions()},
        "timm_load": (f"model = timm.create_model('{arch['backbone']}', pretrained=True, num_classes=1, "
                      "pretrained_cfg_overlay=dict(file='weights.safetensors', num_classes=1))"
                      if not weights.get("family_file") else
                      f"# weights.safetensors is the backbone only; the detector is {arch['target']}: "
                      "load_trained_state(load_file('weights.safetensors'), load_file('family.safetensors'))"),
        "files_note": f"SHA-256 of every file in the folder except {CARD_FILE} itself",
    }
