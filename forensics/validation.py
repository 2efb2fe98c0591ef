"""A lab's own validation of a model: the only way a model becomes fit for casework.

    python scripts/validate.py published=[meso4_df] labels=/lab/set/labels.csv case.operator=NAME out_dir=/lab/models
    python scripts/validate.py ckpt_path=best.ckpt index=/data/ffpp/index.parquet split=val case.operator=NAME

The labelled set (a CSV of path,label[,group] with paths relative to the CSV, or an index.parquet
from any dataset adapter) is scored by the model through the scan's own code (same decoding,
detector, crop and input), without any calibration the model carries. On the scores: AUC (95 %
bootstrap interval, resampling groups when the set names them), EER, TPR at fixed FPRs (Wilson
intervals), and the number of scored items per class. A temperature-and-bias map (Platt) is fitted
on the item scores, and the verdict bands on the calibrated scores (upper: the threshold keeping the
FPR at or below `target_fpr`; lower: the EER threshold).

The certificate (set hash, counts, metrics, calibration, date, operator, tool version) is written
into a COPY of the model (a checkpoint copy; for a published model a folder with its registry entry
and weights); the original is never changed. `fit_for_casework` is true only when at least
MIN_REAL real and MIN_FAKE fake items were scored. The set must be the lab's held-out data, never
the data the model was trained on or is to be tested on; the certificate records what was used,
it cannot check that.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from faketrace.datasets.io import sha256_file

MIN_REAL = 100  # documented minimum of scored real items for fit_for_casework (FPR 0.01 needs 100 reals)
MIN_FAKE = 100
FPRS = (0.01, 0.05, 0.1)
CERTIFICATE_VERSION = 1


@dataclasses.dataclass
class LabelledItem:
    path: Path
    label: int  # 0 real, 1 fake
    group: str  # video or identity id: bootstrap resamples groups


def _label(v) -> int:
    s = str(v).strip().lower()
    if s in ("0", "real", "original", "pristine"):
        return 0
    if s in ("1", "fake", "manipulated", "deepfake"):
        return 1
    raise ValueError(f"label {v!r}: use 0/real or 1/fake")


def read_labels_csv(path: str | Path) -> list[LabelledItem]:
    path = Path(path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: a labelled set CSV needs columns path,label (optional group)")
    return [LabelledItem((path.parent / r["path"]).resolve(), _label(r["label"]), r.get("group") or r["path"])
            for r in rows]


def read_index(path: str | Path, split: str | None = None, root: str | Path | None = None) -> list[LabelledItem]:
    import pandas as pd

    df = pd.read_parquet(path)
    if split:
        df = df[df["split"] == split]
    base = Path(root) if root else Path(path).parent
    group = "identity" if "identity" in df.columns else ("video_id" if "video_id" in df.columns else "path")
    return [LabelledItem((base / p).resolve(), int(y), str(g)) for p, y, g in zip(df["path"], df["label"], df[group],
                                                                                  strict=True)]


def set_sha256(file_hashes: list[tuple[str, int]]) -> str:
    """The set's identity: SHA-256 over its sorted (file SHA-256, label) lines (paths do not matter)."""
    lines = sorted(f"{h}\t{y}\n" for h, y in file_hashes)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def wilson(k: int, n: int, z: float = 1.959964) -> dict | None:
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return {"low": max(0.0, c - h), "high": min(1.0, c + h)}


def metrics_with_intervals(labels, scores, groups, n_resamples: int = 1000, seed: int = 0) -> dict:
    from faketrace.engine.metrics import bootstrap_intervals, eer, roc_auc, tpr_at_fpr

    y, s = np.asarray(labels, int), np.asarray(scores, np.float64)
    out = {"n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()), "auc": roc_auc(y, s)}
    _, g = np.unique(np.asarray(groups, object).astype(str), return_inverse=True)
    out["auc_interval"] = bootstrap_intervals(y, s, groups=g, n_resamples=n_resamples, seed=seed).get("auc")
    out["eer"], out["eer_threshold"] = eer(y, s)
    out["tpr_at_fpr"] = {}
    for f in FPRS:
        tpr, thr, why = tpr_at_fpr(y, s, f)
        k = None if tpr is None else int(round(tpr * out["n_fake"]))
        out["tpr_at_fpr"][str(f)] = {"tpr": tpr, "threshold": thr, "interval": wilson(k, out["n_fake"]) if k is not None
                                     else None, "note": why}
    return out


def fit_calibration(labels, scores, target_fpr: float) -> dict:
    """Item-level map sigmoid(logit(p) / T + b) and the bands on its output (as bands_for reads them)."""
    from faketrace.engine.calibration import fit_temperature_and_bias, upper_threshold
    from faketrace.engine.metrics import eer
    from faketrace.forensics.scoring import logit, sigmoid

    y, s = np.asarray(labels, int), np.asarray(scores, np.float64)
    t, b = fit_temperature_and_bias(logit(s), y)
    cal = sigmoid(logit(s) / t + b)
    _, eer_thr = eer(y, cal)
    upper = upper_threshold(y, cal, target_fpr)
    return {"method": "item-level temperature and bias (Platt) fitted by scripts/validate.py",
            "temperature": 1.0, "bias": 0.0, "video_temperature": float(t), "video_bias": float(b),
            "video_min_frames": 1,
            "thresholds": {"video": {"at_target_fpr": upper["threshold"], "eer": eer_thr, "target_fpr": target_fpr,
                                     "upper_rule": upper["rule"],
                                     **{k: upper[k] for k in ("tolerance_bound", "resolution_note") if k in upper}}}}


def certificate(items: list[LabelledItem], hashes: list[str], scored: list[dict], operator: str, model: dict,
                target_fpr: float, n_resamples: int = 1000, min_real: int = MIN_REAL, min_fake: int = MIN_FAKE) -> dict:
    """The validation record from per-item results ({probability or None, status})."""
    from faketrace.engine.checkpoint import git_sha
    from faketrace.forensics.custody import tool_version as _version

    ok = [i for i, r in enumerate(scored) if r.get("probability") is not None]
    y = [items[i].label for i in ok]
    s = [scored[i]["probability"] for i in ok]
    g = [items[i].group for i in ok]
    statuses: dict[str, int] = {}
    for r in scored:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    counts = {"items": len(items), "real": sum(1 for i in items if i.label == 0),
              "fake": sum(1 for i in items if i.label == 1), "scored_real": y.count(0), "scored_fake": y.count(1),
              "by_status": statuses}
    cert = {"certificate_version": CERTIFICATE_VERSION, "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "operator": operator, "tool": {"version": _version(), "git_sha": git_sha()}, "model": model,
            "set_sha256": set_sha256(list(zip(hashes, [i.label for i in items], strict=True))), "counts": counts,
            "minimum": {"real": min_real, "fake": min_fake}}
    if 0 in y and 1 in y:
        cert["metrics"] = metrics_with_intervals(y, s, g, n_resamples=n_resamples)
        cert["calibration"] = fit_calibration(y, s, target_fpr)
    enough = counts["scored_real"] >= min_real and counts["scored_fake"] >= min_fake and "calibration" in cert
    cert["fit_for_casework"] = bool(enough)
    cert["why"] = ("at least the documented minimum of scored real and fake items" if enough else
                   f"{counts['scored_real']} real and {counts['scored_fake']} fake items scored; fit for casework "
                   f"needs at least {min_real} and {min_fake}")
    return cert


# -- scoring a set with the scan's code ------------------------------------------------------------
def score_items(items: list[LabelledItem], scorer) -> list[dict]:
    """Each item's uncalibrated probability (or None and why) through `scorer.score_file`."""
    out = []
    for it in items:
        try:
            r = scorer.score_file(it.path)
        except Exception as exc:  # one bad file costs its item
            r = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        p = (r.get("score") or {}).get("probability") if r.get("status") == "scanned" else None
        out.append({"status": r.get("status"), "reason": r.get("reason"), "probability": p})
    return out


def write_published_copy(entry: dict, cert: dict, out_dir: str | Path) -> Path:
    """A validated copy of a published model: out_dir/NAME/NAME.yaml (entry + certificate) beside its weights."""
    import yaml

    folder = Path(out_dir) / entry["name"]
    folder.mkdir(parents=True, exist_ok=True)
    src = Path(entry["shipped"]["file"])
    shutil.copyfile(src, folder / src.name)
    for lic in entry["licence"]["files"]:
        if (src.parent / lic).is_file():
            shutil.copyfile(src.parent / lic, folder / lic)
    copy = {k: v for k, v in entry.items()}
    copy["shipped"] = {"path": src.name, "sha256": entry["shipped"]["sha256"]}
    copy["validation"] = json.loads(json.dumps(cert, default=float))
    copy["fit_for_casework"] = cert["fit_for_casework"]
    copy["casework_note"] = cert["why"]
    path = folder / f"{entry['name']}.yaml"
    path.write_text(yaml.safe_dump(copy, sort_keys=False))
    return path


def write_checkpoint_copy(ckpt_path: str | Path, cert: dict, out_path: str | Path) -> Path:
    from faketrace.engine.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    ckpt["validation"] = json.loads(json.dumps(cert, default=float))
    if cert.get("calibration"):
        ckpt["calibration"] = cert["calibration"]
    ckpt["fit_for_casework"] = cert["fit_for_casework"]
    ckpt["casework_note"] = cert["why"] if not cert["fit_for_casework"] else \
        f"validated by {cert['operator']} on {cert['date']} (set {cert['set_sha256'][:12]})"
    return save_checkpoint(ckpt, out_path)


def uncalibrated(model):
    """The same ScanModel without its calibration: validation fits its own."""
    return dataclasses.replace(model, calibration={})


def run_validation(cfg) -> dict:
    """scripts/validate.py: read the set, score it, certify, write the validated copy and certificate.json."""
    from omegaconf import OmegaConf

    from faketrace.datasets.faces import build_detector
    from faketrace.forensics.scan import load_published_models, options_from_config
    from faketrace.forensics.scoring import MediaScorer, load_torch_model

    if bool(cfg.get("labels")) == bool(cfg.get("index")):
        raise ValueError("give one labelled set: labels=CSV or index=index.parquet")
    if cfg.get("index") and str(cfg.get("split")) == "test":
        raise ValueError("validation is never the test split: choose split=val (or a set of your own)")
    items = read_labels_csv(cfg.labels) if cfg.get("labels") else read_index(cfg.index, cfg.get("split"), cfg.get("root"))
    published = load_published_models(cfg)
    if len(published) + bool(cfg.get("ckpt_path")) != 1:
        raise ValueError("validate one model: published=[NAME] or ckpt_path=CHECKPOINT")
    if cfg.get("model_dir"):
        raise ValueError("validate the checkpoint behind an export (ckpt_path=...); export folders are not supported yet")
    device = str(cfg.get("device", "auto"))
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    landmark_member = None
    if published:
        from faketrace.forensics.panel import LandmarkMember, published_face_model

        name, entry, module = published[0]
        if entry["spec"]["level"] == "face":
            model = uncalibrated(published_face_model(entry, module, device))
        else:  # LRNet: scored beside a detector only; a face model gives it the decode and the boxes
            model = None
        model_record = {"name": name, "kind": "published", "sha256": entry["shipped"]["sha256"]}
    else:
        model = uncalibrated(load_torch_model(cfg.ckpt_path, device=device))
        entry = None
        model_record = {"name": str(cfg.ckpt_path), "kind": "pytorch", "sha256": model.sha256}
    s = cfg.scan
    detector = build_detector("retinaface", score_threshold=0.8, nms_threshold=0.4, max_side=640, device=device,
                              threads=int(s.get("threads") or 1))
    if model is not None:
        spec = model.face_spec
        detector = build_detector(spec.detector, score_threshold=spec.score_threshold, nms_threshold=spec.nms_threshold,
                                  max_side=spec.detector_max_side, device=device, threads=int(s.get("threads") or 1))
        options = options_from_config(cfg, model)
        scorer = MediaScorer(model, detector, options)
    else:
        from faketrace.datasets.landmarks import load_landmark_predictor
        from faketrace.forensics.scoring import ScanOptions

        options = ScanOptions(isolate_decoding=bool(s.isolate_decoding), detector_batch=int(s.detector_batch),
                              video_time_limit_s=float(s.video_time_limit_s))
        from faketrace.datasets.media import IsolatedDecoder

        landmark_member = LandmarkMember(name, {**entry, "validation": None}, module, detector,
                                         IsolatedDecoder(isolate=options.isolate_decoding, grace_s=30.0), options,
                                         predictor=load_landmark_predictor(s.get("landmark_model")),
                                         max_frames=int(s.get("landmark_frames") or 300))
        landmark_member.calibration = {}

        class _Scorer:
            def score_file(self, path):
                return landmark_member.score(path)

            def close(self):
                pass

        scorer = _Scorer()
    hashes = [sha256_file(i.path) for i in items]
    try:
        scored = score_items(items, scorer)
    finally:
        scorer.close()
    cert = certificate(items, hashes, scored, str(cfg.operator), model_record, float(cfg.target_fpr),
                       n_resamples=int(cfg.n_resamples), min_real=int(cfg.min_real), min_fake=int(cfg.min_fake))
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if entry is not None:
        cert["copy"] = str(write_published_copy(entry, cert, out_dir))
    else:
        cert["copy"] = str(write_checkpoint_copy(cfg.ckpt_path, cert, out_dir / (Path(cfg.ckpt_path).stem + ".validated.ckpt")))
    per_item = [{"path": str(i.path), "label": i.label, "group": i.group, "sha256": h, **r}
                for i, h, r in zip(items, hashes, scored, strict=True)]
    (out_dir / "certificate.json").write_text(json.dumps({**cert, "items": per_item,
                                                          "config": OmegaConf.to_container(cfg.scan, resolve=True)},
                                                         indent=2, default=float))
    return cert
