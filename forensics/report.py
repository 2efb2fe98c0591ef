"""The case report: report.json (the source of truth), report.html and items.csv rendered from it,
hashes.csv for takedown requests, and redacted pictures in report_media/, all in the case directory.

Built from a finished scan's case directory (scan_results.jsonl, scan_summary.json, custody.json,
case.sqlite) and the evidence, which is opened read-only and checked against the SHA-256 the scan
recorded before anything is derived from it. It runs at the end of every scan (`report:` in
configs/mode/scan.yaml) and again on demand: `python scripts/report.py case_dir=...`.

Per item: provenance (EXIF / container tags, C2PA), PDQ hashes of the image or of each sampled
video frame with their quality, frames with the detected faces, and for flagged items a heatmap of
the most suspicious face (Grad-CAM with a PyTorch checkpoint, occlusion with an ONNX export).
Across items: near-duplicate groups (PDQ distance <= 31 between hashes of quality >= 50, or the
same SHA-256) and matches against an optional known-hash list. With `report.redact=true` (the
default) every picture written is blurred in its pixels (forensics/redact.py).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from faketrace.datasets.io import atomic_path, atomic_write_text, sha256_file
from faketrace.datasets.media import MAX_ITEM_PIXELS
from faketrace.forensics import perceptual
from faketrace.forensics.case_store import CaseStore
from faketrace.forensics.custody import Offline, hash_evidence, tool_version, utc_now
from faketrace.forensics.names import dumps as strict_dumps
from faketrace.forensics.redact import DEFAULT_RESOLUTION, fit_within, redact

log = logging.getLogger(__name__)

REPORT_VERSION = 1
MEDIA_DIR = "report_media"
REPORT_FILES = ("report.json", "report.html", "items.csv", "hashes.csv")
DECODED_STATUSES = ("scanned", "no_face")


@dataclass
class ReportOptions:
    redact: bool = True
    redact_resolution: int = DEFAULT_RESOLUTION
    thumbnail_px: int = 240  # longer side of frame thumbnails
    heatmap_px: int = 240
    frames_per_item: int = 4  # frames shown per video (the most suspicious one among them)
    heatmaps_for: tuple[str, ...] = ("likely_manipulated", "inconclusive")  # verdicts that get a heatmap
    heatmap_method: str = "auto"  # auto (Grad-CAM with a checkpoint, occlusion with ONNX) | grad_cam | occlusion
    occlusion: dict = field(default_factory=lambda: {"patch_fraction": 0.25, "stride_fraction": 0.125})
    duplicate_distance: int = perceptual.MATCH_DISTANCE
    min_pdq_quality: int = perceptual.MIN_QUALITY
    known_hashes: str | None = None  # CSV with columns algorithm (pdq | md5 | sha256), hash[, label]
    c2pa: bool = True
    c2pa_trust_anchors: str | None = None  # PEM file of trust anchors for C2PA signers
    jpeg_quality: int = 85
    isolate_decoding: bool = True  # decode evidence again in a child process, as the scan does
    video_time_limit_s: float | None = 300.0
    image_time_limit_s: float | None = 60.0

    @classmethod
    def from_config(cls, cfg) -> ReportOptions:
        from omegaconf import OmegaConf

        d = OmegaConf.to_container(cfg, resolve=True) if cfg is not None and not isinstance(cfg, dict) else dict(cfg or {})
        d.pop("enabled", None)
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "heatmaps_for" in known:
            known["heatmaps_for"] = tuple(known["heatmaps_for"])
        return cls(**known)


# -- reading the case -----------------------------------------------------------------------------
def read_results(case_dir: Path) -> tuple[dict, list[dict]]:
    lines = (case_dir / "scan_results.jsonl").read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:] if line.strip()]


def evidence_path(r: dict) -> Path:
    from faketrace.forensics.names import raw_path

    return raw_path(r)  # rebuilt from the raw bytes where a name is not plain (forensics/names.py)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


# -- known hashes ---------------------------------------------------------------------------------
def load_known_hashes(path: str | Path) -> dict:
    """A known-hash list: CSV with a header naming `algorithm` and `hash` (and optionally `label`)."""
    known: dict[str, list] = {"pdq": [], "md5": {}, "sha256": {}}
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            algo = (row.get("algorithm") or "").strip().lower()
            value = (row.get("hash") or "").strip().lower()
            label = (row.get("label") or "").strip() or None
            if algo == "pdq" and len(value) == 64:
                known["pdq"].append((value, label))
            elif algo == "md5" and len(value) == 32:
                known["md5"][value] = label
            elif algo in ("sha256", "sha-256") and len(value) == 64:
                known["sha256"][value] = label
            else:
                raise ValueError(f"{path} line {n}: expected algorithm pdq, md5 or sha256 with a hex hash, got {row}")
    return known


def known_matches(rec: dict, known: dict, max_distance: int, min_quality: int) -> list[dict]:
    out = []
    for algo in ("sha256", "md5"):
        h = rec.get(algo)
        if h and h in known[algo]:
            out.append({"algorithm": algo, "hash": h, "label": known[algo][h], "distance": 0})
    if known["pdq"]:
        mine = [p for p in rec.get("pdq") or [] if p["quality"] >= min_quality]
        if mine:
            a = np.stack([perceptual.hex_to_words(p["hash"]) for p in mine])
            b = np.stack([perceptual.hex_to_words(h) for h, _ in known["pdq"]])
            d = perceptual.distance_matrix(a, b)
            for j in range(d.shape[1]):
                i = int(np.argmin(d[:, j]))
                if d[i, j] <= max_distance:
                    out.append({"algorithm": "pdq", "hash": known["pdq"][j][0], "label": known["pdq"][j][1],
                                "distance": int(d[i, j]), "frame_index": mine[i]["frame_index"]})
    return out


# -- duplicate groups -----------------------------------------------------------------------------
def duplicate_groups(records: list[dict], max_distance: int, min_quality: int, block: int = 256) -> list[dict]:
    """Items that are copies of each other: same SHA-256, or any two usable PDQ hashes within max_distance."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    basis: dict[tuple[int, int], tuple[str, int]] = {}
    by_sha: dict[str, int] = {}
    for i, rec in enumerate(records):
        sha = rec.get("sha256")
        if sha:
            if sha in by_sha:
                union(by_sha[sha], i)
                basis[(by_sha[sha], i)] = ("same SHA-256", 0)
            else:
                by_sha[sha] = i
    owners, words = [], []
    for i, rec in enumerate(records):
        for p in rec.get("pdq") or []:
            if p["quality"] >= min_quality:
                owners.append(i)
                words.append(perceptual.hex_to_words(p["hash"]))
    if words:
        owner = np.asarray(owners)
        w = np.stack(words)
        for start in range(0, len(w), block):
            d = perceptual.distance_matrix(w[start:start + block], w)
            rows, cols = np.nonzero(d <= max_distance)
            for r, c in zip(rows, cols, strict=True):
                i, j = int(owner[start + r]), int(owner[c])
                if i < j:
                    dist = int(d[r, c])
                    if (i, j) not in basis or basis[(i, j)][1] > dist:
                        basis[(i, j)] = ("PDQ", dist)
                    union(i, j)
    members: dict[int, list[int]] = {}
    for i in range(len(records)):
        members.setdefault(find(i), []).append(i)
    groups = []
    for root in sorted(members):
        idx = members[root]
        if len(idx) < 2:
            continue
        links = [{"a": records[i]["item_id"], "b": records[j]["item_id"], "basis": b, "pdq_distance": d}
                 for (i, j), (b, d) in sorted(basis.items()) if find(i) == root]
        groups.append({"group": f"G{len(groups) + 1}", "items": [records[i]["item_id"] for i in idx],
                       "links": links,
                       "max_pdq_distance": max((lk["pdq_distance"] for lk in links), default=0)})
    return groups


# -- plain language -------------------------------------------------------------------------------
def _per100(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.0f}"


def _model_text(m: dict, role: str) -> tuple[str, str, list[str]]:
    """What one model is, whether it is fit for casework, and its bands in plain words."""
    card = m.get("card") or {}
    training = card.get("training") or {}
    data = training.get("data") or {}
    synthetic = ((data.get("index_meta") or {}).get("synthetic"))
    data_name = data.get("name") or "an unrecorded data set"
    trained = f"It was trained on {data_name}" + (" (synthetic demo data)" if synthetic else "") + "."
    from faketrace.forensics.combine import Domain

    domain = Domain.of(m)
    trained += f" Its training domain: {domain.describe()}; it decides no item outside it."
    val = training.get("validation_metrics") or {}
    vid = val.get("video") or {}
    validated = ("It was validated on the validation split of the same data"
                 + (f" ({vid.get('n_real')} real and {vid.get('n_fake')} manipulated items; item-level AUC "
                    f"{vid['auc']:.3f}, equal error rate {vid['eer']:.3f})" if vid.get("auc") is not None
                    and vid.get("eer") is not None else "") + ".")
    not_validated = ("It has not been validated on real case material; its error rates on evidence like this "
                     "are unknown." if not m.get("fit_for_casework") else
                     "Its card states that it was validated on real data (see the model card).")
    model = (f"{role}: {card.get('name') or m.get('path')} ({card.get('family')}, backbone "
             f"{card.get('backbone')}), run from {m.get('kind')} file {m.get('path')} with SHA-256 {m.get('sha256')}. "
             f"{trained} {validated} {not_validated}")
    fitness = ("FIT FOR CASEWORK according to its model card." if m.get("fit_for_casework") else
               f"NOT FIT FOR CASEWORK: {m.get('casework_note')}. Results are for testing the tool only and must "
               "not be relied on.")
    thresholds = []
    cal_thr = (m.get("calibration") or {}).get("thresholds") or {}
    # The scan bands every item (still or video) with the item-level thresholds, which calibration
    # fitted on the validation items (its "video" level); older results carried per-level bands.
    for key, level, noun, what in (("item", "video", "items (videos and still images)", "every item"),
                                   ("video", "video", "videos", "video level (videos and animations)"),
                                   ("frame", "frame", "images (face crops)", "frame level (still images)")):
        b = (m.get("bands") or {}).get(key) or {}
        if not b:
            continue
        head = (f"{role}, {what}: likely manipulated at or above {b['upper']:.3f}; no evidence of manipulation "
                f"below {b['lower']:.3f}; inconclusive between.")
        rates = (cal_thr.get(level) or {}).get("rates") or {}
        up, low = rates.get("at_target_fpr"), rates.get("eer")
        if up:
            head += (f" At the upper threshold, about {_per100(up['fpr'])} in 100 real {noun} of the validation set "
                     f"were flagged as likely manipulated, and about {_per100(up['tpr'])} in 100 manipulated ones were "
                     f"({up['n_real']} real, {up['n_fake']} manipulated).")
        if (cal_thr.get(level) or {}).get("resolution_note"):
            head += f" Note: {cal_thr[level]['resolution_note']}."
        if low:
            head += (f" At the lower threshold, about {_per100(low['fpr'])} in 100 real {noun} scored at or above it, "
                     f"and about {_per100(None if low['tpr'] is None else 1 - low['tpr'])} in 100 manipulated ones "
                     "scored below it (they would read 'no evidence of manipulation').")
        if not up and not low:
            t = cal_thr.get(level) or {}
            if t.get("target_fpr") is not None:
                head += (f" The upper threshold was chosen to keep false positives at or below "
                         f"{_per100(t['target_fpr'])} in 100 real {noun} of the validation set.")
            else:
                head += f" {b.get('source', '')}."
        thresholds.append(head)
    return model, fitness, thresholds


def plain_language(header: dict) -> dict:
    m = header["model"]
    both = header.get("image_model") is not None
    model, fitness, thresholds = _model_text(m, ("The face-level model" if m.get("level") == "face" else
                                                 "The image-level model") if both or m.get("level") == "image"
                                             else "The model")
    if both:
        image_model, image_fitness, image_thresholds = _model_text(header["image_model"], "The image-level model")
        model += " " + image_model
        thresholds += image_thresholds
        if image_fitness != fitness:
            fitness += " Image-level model: " + image_fitness
    image_only = (header.get("model") or {}).get("level") == "image"
    return {
        "model": model,
        "fitness_for_casework": fitness,
        "thresholds": thresholds,
        "inconclusive": ("'Inconclusive' means the model cannot say either way: " + header.get("inconclusive_means", "")
                         + ". It is not a weaker 'manipulated'."),
        "no_evidence": ("'No evidence of manipulation' means the model found none; it does not show that the media "
                        "is authentic: a method the model never saw can pass unnoticed."),
        "no_face": ("Items with no detected face were not assessed by the face-level model; the image-level model "
                    "scored them as whole images." if header.get("image_model") else
                    "An image-level model scans whole images: no face is needed." if image_only else
                    "Items with no detected face were not assessed and have no score."),
        "combination": ("Who decides: " + str(header.get("combination") or "the model's bands decide") + ". Each "
                        "item's 'decided by' names the model whose verdict it carries, and 'why' gives its "
                        "probability against its bands and every other model's score."),
        "image_level": ((("Two models scanned: a face-level one and an image-level one (whole images, native-"
                          "resolution tiles). Each item shows both verdicts. ") if header.get("image_model") else "")
                        + "The image-level map shows each tile's calibrated probability; it is an aid to looking at "
                          "the item, not evidence by itself." if header.get("image_model") or image_only else None),
        "heatmaps": ("Heatmaps show which parts of the face raised the model's 'manipulated' score (Grad-CAM or "
                     "occlusion). They are an aid to looking at the item, not evidence by themselves."),
        "hashes": ("hashes.csv lists MD5 and SHA-256 of every file and PDQ perceptual hashes of every image and "
                   "sampled video frame with their quality (hashes of quality under 50 are unreliable for matching); "
                   "they can be shared for takedown requests without sharing any image."),
        "duplicates": ("Items are grouped as copies when they have the same SHA-256 or PDQ hashes within distance "
                       "31 (quality 50 or more): the same picture after re-compression or resizing."),
    }


def _level_summary(level: dict | None) -> dict | None:
    """One model's part of an item scanned by two: status, probability, verdict and its bands."""
    if level is None:
        return None
    score = level.get("score") or {}
    return {"status": level.get("status", "scanned"), "reason": level.get("reason"),
            "probability": score.get("probability"), "level": score.get("level"), "rule": score.get("rule"),
            "tile_rule": score.get("tile_rule"), "verdict": level.get("verdict"),
            "verdict_reason": level.get("verdict_reason"), "bands": level.get("bands")}


def _panel_model(m: dict) -> dict:
    """A panel model as the report states it: what it is, whether a lab validated it, what it can judge."""
    card = m.get("card") or {}
    cert = card.get("validation") or None
    return {"name": m.get("name"), "kind": m.get("kind"), "level": m.get("level"), "sha256": m.get("sha256"),
            "fit_for_casework": m.get("fit_for_casework"), "casework_note": m.get("casework_note"),
            "domain": m.get("domain"), "bands": m.get("bands"), "paper": (card.get("paper") or {}).get("citation"),
            "licence": (card.get("licence") or {}).get("spdx"),
            "validation": None if not cert else {k: cert.get(k) for k in ("date", "operator", "set_sha256", "counts",
                                                                          "metrics", "fit_for_casework", "why")}}


def panel_text(panel: dict | None) -> str:
    """One line per item for items.csv: each model's verdict and probability, or why it did not judge."""
    if not panel:
        return ""
    parts = []
    for name, p in panel.items():
        if p.get("status") == "scanned" and p.get("probability") is not None:
            parts.append(f"{name}: {p.get('verdict')} {p['probability']:.4f}")
        else:
            parts.append(f"{name}: {(p.get('status') or '').replace('_', ' ')}")
    return "; ".join(parts)


# -- the report -----------------------------------------------------------------------------------
class ReportBuilder:
    """Builds the report of one case directory. `model` (a ScanModel) and `detector` enable heatmaps."""

    def __init__(self, case_dir: str | Path, options: ReportOptions | None = None, model=None, detector=None):
        self.case_dir = Path(case_dir)
        self.options = options or ReportOptions()
        self.model, self.detector = model, detector
        self.notes: list[str] = []
        self.heatmap_source: str | None = None

    def _gradient_module(self) -> str | None:
        """Give an ONNX model the export's torch weights for Grad-CAM when they check out; say which."""
        m = self.model
        if m is None or m.level != "face":
            return None
        if m.module is not None:
            return "Grad-CAM through the scan's PyTorch checkpoint"
        if m.kind != "onnx" or self.options.heatmap_method == "occlusion":
            return "occlusion through the scan's model"
        from faketrace.forensics.heatmaps import gradient_module_from_export

        module, why = gradient_module_from_export(m)
        if module is None:
            if self.options.heatmap_method == "grad_cam":
                raise ValueError(f"heatmap_method=grad_cam, but {why}")
            self.notes.append(f"heatmaps by occlusion: {why}")
            return "occlusion through model.onnx"
        import dataclasses

        self.model = dataclasses.replace(m, module=module)
        return why

    # -- per item --
    def _decode(self, path: Path, media_type: str, fpv: int) -> dict[int, np.ndarray]:
        """The frames the scan scored, decoded again in a child process (a hostile file costs one item)."""
        if media_type == "image":
            # Bounded like the scan's decoding: a file that hangs the decoder costs this item only.
            return self.decoder("read_image_frames", path, max_frames=fpv, max_item_pixels=MAX_ITEM_PIXELS,
                                hard_limit_s=self.options.image_time_limit_s).frames
        spec = self.model.face_spec if self.model is not None and self.model.face_spec is not None else None
        v = self.decoder("read_video_frames", path, fpv, sampling=spec.sampling if spec else "uniform",
                         every_k=spec.every_k if spec else 1, time_limit_s=self.options.video_time_limit_s,
                         hard_limit_s=self.options.video_time_limit_s, max_item_pixels=MAX_ITEM_PIXELS)
        return v.frames

    def _write_image(self, rel: str, rgb: np.ndarray) -> dict:
        from PIL import Image

        out = self.staging / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=self.options.jpeg_quality)
        out.write_bytes(buf.getvalue())
        return {"file": f"{MEDIA_DIR}/{rel}", "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                "redacted": self.options.redact}

    def _picture(self, rgb: np.ndarray, max_side: int) -> np.ndarray:
        small = fit_within(rgb, max_side)
        return redact(small, self.options.redact_resolution) if self.options.redact else small

    def _frames(self, r: dict, frames: dict[int, np.ndarray], folder: str) -> list[dict]:
        faces_by_frame: dict[int, list[dict]] = {}
        for f in r.get("faces") or []:
            faces_by_frame.setdefault(int(f["frame_index"]), []).append(f)
        top = (r.get("most_suspicious_face") or {}).get("frame_index")
        with_faces = sorted(k for k in faces_by_frame if k in frames) or sorted(frames)  # image-level: any frame
        n = self.options.frames_per_item
        if len(with_faces) > n:
            picks = [with_faces[int(round(x))] for x in np.linspace(0, len(with_faces) - 1, n)]
            if top is not None and top not in picks:
                picks[min(range(n), key=lambda j: abs(picks[j] - top))] = top
            with_faces = sorted(set(picks))
        out = []
        for k in with_faces:
            frame = frames[k]
            h, w = frame.shape[:2]
            pic = self._picture(frame, self.options.thumbnail_px)
            s = pic.shape[1] / w
            rec = self._write_image(f"{folder}/frame_{k:06d}.jpg", pic)
            rec["frame_index"] = k
            rec["faces"] = [{"box": [round(v * s, 1) for v in f["box"]], "probability": f["probability"],
                             "most_suspicious": f == r.get("most_suspicious_face")}
                            for f in faces_by_frame.get(k, [])]
            out.append(rec)
        return out

    def _heatmap(self, r: dict, frames: dict[int, np.ndarray], folder: str) -> dict | None:
        from faketrace.forensics.heatmaps import explain, face_crop, heat_on_frame, locate_face, overlay

        face = r.get("most_suspicious_face")
        if not face or self.model is None or self.model.level != "face":
            return None
        frame = frames.get(int(face["frame_index"]))
        if frame is None:
            return {"error": f"frame {face['frame_index']} did not decode again"}
        import dataclasses

        spec = dataclasses.replace(self.model.face_spec, face_policy="all")
        found = locate_face(frame, face, self.detector, spec)
        if found is None:
            return {"error": "the face was not found again on its frame"}
        crop = face_crop(frame, found, spec)
        hm = explain(self.model, crop, self.options.heatmap_method, self.options.occlusion)
        # Drawn over the whole frame, blurred like every picture: a blurred face crop alone is a smear,
        # on the frame the map shows where on the face and around it the model looked. The face box
        # and the colour scale are drawn by the report over the picture (SVG), not into its pixels.
        background = self._picture(frame, self.options.heatmap_px)
        s = background.shape[1] / frame.shape[1]
        heat = heat_on_frame(hm.heat, found, spec, frame.shape)
        heat = cv2.resize(heat, (background.shape[1], background.shape[0]), interpolation=cv2.INTER_AREA)
        pic = overlay(background, cv2.GaussianBlur(heat, (0, 0), sigmaX=max(1.0, background.shape[1] / 60)))
        rec = self._write_image(f"{folder}/heatmap.jpg", pic)
        rec.update(face_box_px=[round(float(v) * s, 1) for v in face["box"]],
                   colour_scale={"low": 0.0, "high": 1.0, "meaning": "share of the strongest evidence for "
                                 "'manipulated' on this face (0: none, 1: the strongest; relative, not a probability)"})
        rec.update(method=hm.method, frame_index=int(face["frame_index"]), face_box=face["box"],
                   logit_scan=face["logit"], logit_rebuilt=round(hm.logit, 6),
                   crop_matches_scan=bool(abs(hm.logit - float(face["logit"])) <= 1e-3), **hm.detail)
        return rec

    def _image_map(self, r: dict, frames: dict[int, np.ndarray], folder: str) -> dict | None:
        """The image-level model's tile map over its most suspicious frame, on the (redacted) picture.

        No model runs here: the map is the scan's own calibrated tile probabilities, placed at their
        boxes, so it shows exactly what decided the image-level score.
        """
        import cv2

        from faketrace.datasets.image_pipeline import tile_score_map
        from faketrace.forensics.heatmaps import overlay

        level = r.get("image_level") or {}
        tiles = level.get("tiles")
        if not tiles:
            return None
        k = int(tiles["frame_index"])
        frame = frames.get(k)
        if frame is None:
            return {"error": f"frame {k} did not decode again"}
        h, w = tiles.get("image_size") or frame.shape[:2]
        rule = (level.get("score") or {}).get("tile_rule") or "max"
        heat = np.nan_to_num(tile_score_map(tiles["probabilities"], [tuple(b) for b in tiles["boxes"]], h, w, rule))
        if frame.shape[:2] != (h, w):  # the model worked on a resized image: show the frame at that size
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        pic = overlay(self._picture(frame, self.options.heatmap_px), heat)  # the picture is redacted first
        rec = self._write_image(f"{folder}/image_map.jpg", pic)
        probs = [p for p in tiles["probabilities"] if p is not None]
        rec.update(colour_scale={"low": 0.0, "high": 1.0, "meaning": "calibrated probability of manipulation of "
                                 "each tile"})
        rec.update(method="tile probabilities (image-level model, calibrated)", frame_index=k,
                   tile_size=level.get("tile_size"), n_tiles=len(probs), tile_rule=rule,
                   max_tile_probability=max(probs) if probs else None)
        return rec

    def item(self, seq: int, r: dict, fpv: int, checker) -> dict:
        from faketrace.forensics.archives import read_member
        from faketrace.forensics.provenance import provenance

        score = r.get("score") or {}
        rec = {"seq": seq, "item_id": r["item_id"], "rel_path": r.get("rel_path"), "input": r.get("input"),
               "source": r.get("source"), "status": r["status"], "reason": r.get("reason"),
               "media_type": r.get("media_type"), "size_bytes": r.get("size_bytes"), "sha256": r.get("sha256"),
               "md5": r.get("md5"), "verdict": r.get("verdict"), "verdict_reason": r.get("verdict_reason"),
               "score_band": r.get("score_band"), "probability": score.get("probability"), "level": score.get("level"),
               "rule": score.get("rule"), "n_faces": len(r.get("faces") or []),
               "most_suspicious_face": r.get("most_suspicious_face"), "decode": r.get("decode"),
               "telegram": r.get("telegram"), "warning": r.get("warning"),
               "timeline": r.get("frame_scores") if score.get("level") == "video" else None,
               "bands": r.get("bands"), "pdq": [], "frames": [], "heatmap": None, "provenance": None, "notes": [],
               # Who decided and why (forensics/combine.py): every model's score against its bands.
               "decided_by": r.get("decided_by"), "why": r.get("why"), "opinions": r.get("opinions"),
               "out_of_domain": r.get("out_of_domain"), "people": r.get("people")}
        if r.get("image_level") is not None:  # an image-level model ran: both levels and who decided
            rec.update(decided_by=r.get("decided_by"), combination=r.get("combination"),
                       face_level=_level_summary(r.get("face_level")), image_level=_level_summary(r["image_level"]),
                       image_map=None)
        if r.get("panel") is not None:  # a panel of models (forensics/panel.py): each one's result, who decided
            rec.update(panel={n: _level_summary(p) for n, p in r["panel"].items()},
                       not_applicable=r.get("not_applicable") or [])
        if r["status"] not in DECODED_STATUSES or not r.get("sha256"):
            return rec
        try:
            # An archive member is read again from its archive, in memory (forensics/archives.py).
            path = read_member(r) if (r.get("container") or {}).get("archive_item_id") else evidence_path(r)
            now = hash_evidence(path)[0]
        except OSError as exc:
            rec["notes"].append(f"evidence not readable for the report: {exc}")
            return rec
        if now != r["sha256"]:
            rec["notes"].append(f"evidence changed since the scan (SHA-256 now {now}): nothing derived from it")
            return rec
        rec["provenance"] = provenance(path, r.get("media_type") or "image", checker)
        try:
            frames = self._decode(path, r["media_type"], fpv)
        except Exception as exc:
            rec["notes"].append(f"could not decode again for the report: {type(exc).__name__}: {exc}")
            return rec
        for k in sorted(frames):
            p = perceptual.pdq(frames[k])
            rec["pdq"].append({"frame_index": int(k), "hash": p.hash_hex, "quality": int(p.quality)})
        if r["status"] == "scanned":
            folder = f"{seq:06d}"
            rec["frames"] = self._frames(r, frames, folder)
            if r.get("verdict") in self.options.heatmaps_for:
                try:
                    rec["heatmap"] = self._heatmap(r, frames, folder)
                except Exception as exc:  # a heatmap is an aid: its failure is said, not fatal
                    log.exception("heatmap of %s failed", r["item_id"])
                    rec["heatmap"] = {"error": f"{type(exc).__name__}: {exc}"}
                if r.get("image_level") is not None:
                    try:
                        rec["image_map"] = self._image_map(r, frames, folder)
                    except Exception as exc:  # an aid, like the heatmap
                        log.exception("image map of %s failed", r["item_id"])
                        rec["image_map"] = {"error": f"{type(exc).__name__}: {exc}"}
        return rec

    # -- whole report --
    def build(self) -> dict:
        from faketrace.forensics.provenance import C2paChecker

        o = self.options
        header, results = read_results(self.case_dir)
        summary = _read_json(self.case_dir / "scan_summary.json")
        custody = _read_json(self.case_dir / "custody.json")
        from faketrace.datasets.media import IsolatedDecoder

        store = CaseStore(self.case_dir)
        self.decoder = IsolatedDecoder(isolate=o.isolate_decoding)
        try:
            identity = store.get_meta("identity") or {}
            fpv = int((identity.get("options") or {}).get("frames_per_video") or 32)
            checker = C2paChecker(o.c2pa_trust_anchors) if o.c2pa else None
            known = load_known_hashes(o.known_hashes) if o.known_hashes else None
            self.staging = self.case_dir / f".{MEDIA_DIR}.tmp"
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir(parents=True)
            if self.model is None:
                self.notes.append("no model was available to the report: no heatmaps")
            elif self.model.sha256 != header["model"]["sha256"]:
                raise ValueError(f"the model given to the report ({self.model.sha256}) is not the scan's "
                                 f"({header['model']['sha256']})")
            self.heatmap_source = self._gradient_module()
            records = [self.item(seq, r, fpv, checker) for seq, r in enumerate(results)]
            groups = duplicate_groups(records, o.duplicate_distance, o.min_pdq_quality)
            for g in groups:
                for item_id in g["items"]:
                    next(x for x in records if x["item_id"] == item_id)["duplicate_group"] = g["group"]
            if known is not None:
                for rec in records:
                    rec["known_hash_matches"] = known_matches(rec, known, o.duplicate_distance, o.min_pdq_quality)
            report = self._assemble(header, summary, custody, records, groups, known, checker, utc_now())
            if header.get("people"):  # people of interest: her section and her takedown files
                self._people(report, header["people"], records)
            self._publish(report, store, utc_now)
            return report
        finally:
            store.close()
            self.decoder.close()
            if getattr(self, "staging", None) is not None:
                shutil.rmtree(self.staging, ignore_errors=True)

    def _assemble(self, header, summary, custody, records, groups, known, checker, now) -> dict:

        o = self.options
        verdicts: dict[str, int] = {}
        statuses: dict[str, int] = {}
        for r in records:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
            if r.get("verdict"):
                verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        flagged = [r["item_id"] for r in records if r.get("verdict") == "likely_manipulated"]
        heatmaps = sum(1 for r in records if r.get("heatmap") and r["heatmap"].get("file"))
        return {
            "report_version": REPORT_VERSION,
            "generated_utc": now,
            "tool": {"name": "faketrace", "version": tool_version(), "git_sha": (custody.get("tool") or {}).get("git_sha")},
            "case": custody.get("case") or {"id": header.get("case_id")},
            "warning": header.get("warning"),
            "fit_for_casework": bool(header["model"].get("fit_for_casework"))
            and all(m.get("fit_for_casework") for m in header.get("panel") or []),
            "panel": [_panel_model(m) for m in header.get("panel") or []] or None,
            "panel_combination": header.get("panel_combination"),
            "redacted": o.redact,
            "redaction": ({"method": f"every picture shrunk to {o.redact_resolution} samples on its longer side, "
                                     "enlarged and smoothed, in its pixels, before it was written",
                           "note": "no file in the case folder written by the report holds an unblurred picture"}
                          if o.redact else
                          {"method": "none", "note": "UNREDACTED: pictures of the evidence are shown unblurred "
                                                     "(report.redact=false)"}),
            "model": {k: header["model"].get(k) for k in ("kind", "path", "sha256", "fit_for_casework", "casework_note",
                                                          "card", "video_rule", "bands")},
            "plain_language": plain_language(header),
            "summary": {"items": len(records), "by_status": dict(sorted(statuses.items())),
                        "by_verdict": dict(sorted(verdicts.items())), "likely_manipulated": flagged,
                        "heatmaps": heatmaps, "duplicate_groups": len(groups),
                        "items_in_duplicate_groups": sum(len(g["items"]) for g in groups),
                        "known_hash_matches": sum(1 for r in records if r.get("known_hash_matches")),
                        "evidence_unchanged": summary.get("evidence_unchanged"),
                        "exit_status": summary.get("exit_status"), "warnings": summary.get("warnings") or []},
            "custody": {"sessions": custody.get("sessions"), "evidence_integrity": custody.get("evidence_integrity"),
                        "evidence_handling": custody.get("evidence_handling"), "host": custody.get("host"),
                        "model_sha256": (custody.get("model") or {}).get("sha256")},
            "settings": {"heatmaps_for": list(o.heatmaps_for), "heatmap_method": o.heatmap_method,
                         "heatmap_source": self.heatmap_source,
                         "duplicate_distance": o.duplicate_distance, "min_pdq_quality": o.min_pdq_quality,
                         "frames_per_item": o.frames_per_item,
                         "c2pa": checker.describe() if checker is not None else {"switched_off": True},
                         "known_hashes": ({"path": str(o.known_hashes), "sha256": sha256_file(o.known_hashes),
                                           "pdq": len(known["pdq"]), "md5": len(known["md5"]),
                                           "sha256_entries": len(known["sha256"])} if known is not None else None)},
            "notes": self.notes,
            "items": records,
            "duplicate_groups": groups,
            "files": {"json": "report.json", "html": "report.html", "items_csv": "items.csv",
                      "hashes_csv": "hashes.csv", "media": MEDIA_DIR},
        }

    def _people(self, report: dict, people_header: dict, records: list[dict]) -> None:
        from faketrace.forensics.people_report import people_sections, takedown_entries, write_takedown

        report["people"] = people_sections(people_header, records)
        for section in report["people"]["persons"]:
            rows, left_out = takedown_entries(section, records, self.options.min_pdq_quality)
            section["takedown"] = write_takedown(self.case_dir, section, rows, (report.get("case") or {}).get("id"),
                                                 len(left_out))
            section["takedown"]["near_duplicates_left_out"] = left_out
        report["files"]["people_csv"] = "people.csv"
        report["files"]["takedown"] = [f for s in report["people"]["persons"]
                                       for f in (s["takedown"]["csv"], s["takedown"]["json"])]

    def _publish(self, report: dict, store: CaseStore, utc_now) -> None:
        from faketrace.forensics.report_html import render_html

        final = self.case_dir / MEDIA_DIR
        shutil.rmtree(final, ignore_errors=True)
        self.staging.rename(final)
        atomic_write_text(self.case_dir / "report.json", strict_dumps(report, indent=1, sort_keys=True, default=_plain))
        write_items_csv(report, self.case_dir / "items.csv")
        write_hashes_csv(report, self.case_dir / "hashes.csv")
        extra = []
        if report.get("people"):
            from faketrace.forensics.people_report import write_people_csv

            write_people_csv(report, self.case_dir / "people.csv")
            extra = [self.case_dir / "people.csv", *(self.case_dir / f for f in report["files"]["takedown"])]
        atomic_write_text(self.case_dir / "report.html", render_html(report, self.case_dir))
        now = utc_now()
        written = ([self.case_dir / name for name in REPORT_FILES] + extra
                   + sorted(p for p in final.rglob("*") if p.is_file()))
        for p in written:
            store.audit(now, "report_written", p.relative_to(self.case_dir).as_posix(), sha256_file(p), p.stat().st_size,
                        {"report_version": REPORT_VERSION, "redacted": report["redacted"]})


def _plain(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


# -- CSV renderings of report.json ----------------------------------------------------------------
def _cell(value) -> str:
    """A CSV cell that spreadsheet programs will not run as a formula (names come from evidence)."""
    if value is None:
        return ""
    s = str(value)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


ITEM_COLUMNS = ("seq", "item_id", "rel_path", "source", "status", "reason", "media_type", "size_bytes", "sha256", "md5",
                "verdict", "probability", "level", "n_faces", "decided_by", "why", "verdict_reason", "duplicate_group",
                "known_hash_match",
                "c2pa", "telegram_messages", "heatmap", "warning", "panel")


def write_items_csv(report: dict, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ITEM_COLUMNS)
        for r in report["items"]:
            tg = "; ".join(f"{c.get('chat_name')}#{c.get('message_id')} {c.get('date_utc') or c.get('date_local_no_zone') or ''}"
                           for c in r.get("telegram") or [])
            prov = r.get("provenance") or {}
            row = {**r, "known_hash_match": "; ".join(f"{m['algorithm']}:{m.get('label') or m['hash']}"
                                                     for m in r.get("known_hash_matches") or []),
                   "c2pa": (prov.get("c2pa") or {}).get("state"), "telegram_messages": tg,
                   "heatmap": (r.get("heatmap") or {}).get("file") or (r.get("heatmap") or {}).get("error"),
                   "panel": panel_text(r.get("panel"))}
            w.writerow([_cell(row.get(c)) for c in ITEM_COLUMNS])


def write_hashes_csv(report: dict, path: Path) -> None:
    """Hashes for takedown requests: MD5 and SHA-256 per file, PDQ per image and sampled video frame."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "rel_path", "media_type", "algorithm", "hash", "frame_index", "pdq_quality",
                    "pdq_usable_for_matching", "duplicate_group"])
        for r in report["items"]:
            if not r.get("sha256"):
                continue
            base = [_cell(r["item_id"]), _cell(r.get("rel_path")), r.get("media_type") or ""]
            group = r.get("duplicate_group") or ""
            w.writerow([*base, "md5", r["md5"], "", "", "", group])
            w.writerow([*base, "sha256", r["sha256"], "", "", "", group])
            for p in r.get("pdq") or []:
                w.writerow([*base, "pdq", p["hash"], p["frame_index"], p["quality"],
                            p["quality"] >= report["settings"]["min_pdq_quality"], group])


def build_report(case_dir: str | Path, options: ReportOptions | None = None, model=None, detector=None) -> dict:
    return ReportBuilder(case_dir, options, model, detector).build()


def load_case_model(case_dir: Path, header: dict, ckpt_path: str | None = None, model_dir: str | None = None,
                    device: str = "cpu"):
    """The scan's model for heatmaps: given explicitly or at its recorded path, checked by SHA-256; else None."""
    from faketrace.forensics.scoring import load_onnx_model, load_torch_model

    m = header["model"]
    if ckpt_path:
        model = load_torch_model(ckpt_path, device=device)
    elif model_dir:
        model = load_onnx_model(model_dir)
    elif Path(m["path"]).is_file():
        model = (load_torch_model(m["path"], device=device) if m["kind"] == "pytorch"
                 else load_onnx_model(Path(m["path"]).parent))
    else:
        return None, f"the scan's model is no longer at {m['path']}: no heatmaps (give ckpt_path= or model_dir=)"
    if model.sha256 != m["sha256"]:
        raise ValueError(f"the model {model.path} has SHA-256 {model.sha256}, the scan used {m['sha256']}")
    return model, None


def report_from_config(cfg) -> dict:
    """scripts/report.py: rebuild the report of an existing case directory, offline."""
    from faketrace.datasets.faces import build_detector

    case_dir = Path(cfg.case_dir)
    if not (case_dir / "scan_results.jsonl").is_file():
        raise FileNotFoundError(f"{case_dir} holds no finished scan (scan_results.jsonl is missing)")
    header, _ = read_results(case_dir)
    Offline.enter()
    try:
        model, note = load_case_model(case_dir, header, cfg.get("ckpt_path"), cfg.get("model_dir"),
                                      str(cfg.get("device", "cpu")))
        detector = None
        if model is not None:
            spec = model.face_spec
            detector = build_detector(spec.detector, score_threshold=spec.score_threshold,
                                      nms_threshold=spec.nms_threshold, max_side=spec.detector_max_side,
                                      device=model.device)
        builder = ReportBuilder(case_dir, ReportOptions.from_config(cfg.report), model, detector)
        if note:
            builder.notes.append(note)
        return builder.build()
    finally:
        Offline.active = False


def format_report(report: dict, case_dir: str | Path) -> str:
    s = report["summary"]
    lines = []
    if report.get("warning"):
        lines += ["!" * 78, f"!! {report['warning']}", "!" * 78]
    lines.append(f"report of case {report['case'].get('id')}: {s['items']} items; "
                 + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(s["by_verdict"].items())))
    lines.append(f"  {s['heatmaps']} heatmaps, {s['duplicate_groups']} groups of copies, "
                 f"{s['known_hash_matches']} known-hash matches; "
                 + ("pictures redacted (blurred)" if report["redacted"] else "UNREDACTED pictures"))
    for n in report.get("notes") or []:
        lines.append(f"  note: {n}")
    lines.append(f"  {Path(case_dir) / 'report.html'} (report.json, items.csv, hashes.csv)")
    return "\n".join(lines)
