"""Robustness sweep: video AUC of a checkpoint against graded perturbations of the raw test media.

For each (distortion, level) the test split's media are perturbed and written to a work folder,
the face pipeline runs on them with the checkpoint's own preprocessing spec (so the detector
faces what an analyst's upload would give it), and the crops are scored. The clean score is
computed the same way (perturbation "none"), so re-encoding alone is not mistaken for an effect.
Outputs: robustness.csv / .json / .md and robustness.png (AUC against severity per distortion).

Image-level checkpoints skip the face pipeline: the perturbed images and video frames are tiled
with the checkpoint's ImageSpec and scored directly (`face_rate` is then the share of frames that
decoded). Their traces live at native resolution, so the messenger profile (`telegram`: downscale
and JPEG) removes much of what they look for; the outputs say so.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from faketrace.datasets.frames import load_face_table
from faketrace.datasets.io import atomic_write_text, sha256_file
from faketrace.datasets.perturb import LEVELS, perturb_file
from faketrace.datasets.preprocess import PreprocessSpec, preprocess_index
from faketrace.datasets.schema import read_index, write_index
from faketrace.engine import metrics as M
from faketrace.engine import plots as P
from faketrace.engine.checkpoint import load_checkpoint, versions
from faketrace.engine.evaluate import checkpoint_level, score_split
from faketrace.engine.inference import resolve_device
from faketrace.models.spec import checkpoint_spec

log = logging.getLogger(__name__)
MESSENGER_NOTE = ("image level: the messenger profile (telegram: long side capped, JPEG re-encode; downscale) removes "
                  "much of the native-resolution trace image-level models rely on; a drop there is expected, and a "
                  "model meant for messenger uploads should be trained on such copies")


def _perturbed_set(index: pd.DataFrame, src_root: Path, work: Path, distortion: str, level, seed: int) -> pd.DataFrame:
    rows = []
    for i, item in enumerate(index.to_dict("records")):
        if distortion == "none":
            dst = work / "raw" / item["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src_root / item["path"], dst)
        else:
            dst = perturb_file(src_root / item["path"], work / "raw" / item["path"], item["media_type"], distortion,
                               level, seed * 1_000_003 + i)
        rows.append({**item, "path": dst.relative_to(work / "raw").as_posix()})
    return pd.DataFrame(rows)


def score_condition(ckpt: dict, index: pd.DataFrame, src_root: Path, work: Path, distortion: str, level, cfg) -> dict:
    perturbed = _perturbed_set(index, src_root, work, distortion, level, int(cfg.seed))
    write_index(perturbed, work / "index.parquet", {"perturbation": {"distortion": distortion, "level": level}})
    data = OmegaConf.create({"index_path": str(work / "index.parquet"), "faces_dir": str(work / "faces"),
                             "manifest_path": str(work / "faces" / "manifest.parquet"), "root": str(work / "raw")})
    spec = checkpoint_spec(ckpt)
    rule = cfg.aggregation or spec.video.rule
    device = resolve_device(cfg.device)
    if spec.level == "image":
        frames = score_split(ckpt, data, cfg.split, cfg.batch_size, cfg.num_workers, device)
        expected = sum(1 if m == "image" else int(spec.video.frames_per_video or 4) for m in perturbed["media_type"])
        face_rate = len(frames) / expected if expected else 0.0
    else:
        manifest = preprocess_index(perturbed, work / "raw", work / "faces",
                                    PreprocessSpec.from_dict(spec.face_pipeline_dict()), work / "faces" / "manifest.parquet",
                                    cfg.get("detector_device", "cpu"))
        face_rate = float((manifest["status"] == "face").mean()) if len(manifest) else 0.0
        faces, _, _ = load_face_table(data.index_path, data.manifest_path)
        frames = score_split(ckpt, data, cfg.split, cfg.batch_size, cfg.num_workers, device, faces)
    videos = M.aggregate_videos(frames, rule)
    # Levels mix numbers and names (telegram); as text they survive the CSV round trip unchanged.
    row = {"distortion": distortion, "level": "-" if level is None else str(level), "n_items": int(len(index)), "n_videos_scored": int(len(videos)),
           "face_rate": face_rate,
           "video_auc": M.roc_auc(videos["label"], videos["score"]),
           "frame_auc": M.roc_auc(frames["label"], frames["score"]), "video_auc_low": None, "video_auc_high": None}
    boot = cfg.get("bootstrap")
    if boot and row["video_auc"] is not None:
        ci = M.bootstrap_intervals(videos["label"], videos["score"], **OmegaConf.to_container(boot))["auc"]
        row.update(video_auc_low=ci["low"], video_auc_high=ci["high"])
    if not cfg.get("keep_media", False):
        shutil.rmtree(work, ignore_errors=True)
    return row


def robustness_sweep(cfg) -> pd.DataFrame:
    """cfg: ckpt_path, data (index_path, root), split, distortions [names], levels {name: [levels]}, ..."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(cfg.ckpt_path)
    index, _ = read_index(cfg.data.index_path)
    index = index[index["split"] == cfg.split].reset_index(drop=True)
    if cfg.get("limit_items"):
        # Keep both classes when limiting: the first items of each label.
        index = index.groupby("label", group_keys=False).head(int(cfg.limit_items) // 2).reset_index(drop=True)
    src_root = Path(cfg.data.root)
    rows = [{**score_condition(ckpt, index, src_root, out / "work" / "clean", "none", None, cfg), "severity": 0}]
    for distortion in cfg.distortions:
        if distortion not in LEVELS:
            raise ValueError(f"unknown distortion {distortion!r}; known: {sorted(LEVELS)}")
        custom = cfg.get("levels") or {}
        chosen = list(custom[distortion]) if distortion in custom else LEVELS[distortion]
        for severity, level in enumerate(chosen, start=1):
            work = out / "work" / f"{distortion}_{level}"
            rows.append({**score_condition(ckpt, index, src_root, work, distortion, level, cfg), "severity": severity})
            log.info("%s level %s: video AUC %s", distortion, level, rows[-1]["video_auc"])
    if not cfg.get("keep_media", False):
        shutil.rmtree(out / "work", ignore_errors=True)
    table = pd.DataFrame(rows)
    table.insert(0, "checkpoint", str(cfg.ckpt_path))
    table.insert(1, "test_set", f"{cfg.data.name}/{cfg.split}")
    table.to_csv(out / "robustness.csv", index=False)
    image_level = checkpoint_level(ckpt) == "image"
    note = MESSENGER_NOTE if image_level else None
    atomic_write_text(out / "robustness.json", json.dumps(
        {"schema_version": 1, "checkpoint_sha256": sha256_file(cfg.ckpt_path), "versions": versions(),
         "level": checkpoint_level(ckpt),
         "spec": checkpoint_spec(ckpt).to_dict(),
         "face_rate": "share of sampled frames that decoded (image level)" if image_level
         else "share of sampled frames with a face",
         "note": note, "rows": table.to_dict("records")}, indent=2, default=str))
    atomic_write_text(out / "robustness.md", robustness_markdown(table, note))
    if note:
        log.warning(note)
    P.save(P.robustness_figure(table), out / "robustness.png")
    return table


def robustness_markdown(table: pd.DataFrame, note: str | None = None) -> str:
    lines = ["# Robustness: video AUC against perturbation severity", ""]
    if note:
        lines += [f"**Note**: {note}.", ""]
    found = "frames decoded" if note else "faces found"
    lines += [f"| distortion | severity | level | video AUC [CI] | frame AUC | {found} |", "|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        ci = f" [{r['video_auc_low']:.3f}, {r['video_auc_high']:.3f}]" if pd.notna(r.get("video_auc_low")) else ""
        auc = "n/a" if pd.isna(r["video_auc"]) else f"{r['video_auc']:.3f}"
        frame = "n/a" if pd.isna(r["frame_auc"]) else f"{r['frame_auc']:.3f}"
        lines.append(f"| {r['distortion']} | {r['severity']} | {r['level']} | {auc}{ci} | {frame} | {r['face_rate']:.0%} |")
    return "\n".join(lines) + "\n"

