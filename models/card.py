"""The export folder's model card: file hashes, loading with the hashes checked, MODEL_CARD.md.

`model_card.json` is the source of truth; `MODEL_CARD.md` is rendered from it. The card lists
the SHA-256 of every other file in the folder (it cannot list its own), and `load_export` checks
them all, and that no unlisted file lies in the folder, before anything but the card is parsed.

No torch here (json, hashlib and models/spec.py only): the standalone predictor reads export folders with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from faketrace.models.spec import card_spec

CARD_FILE = "model_card.json"
MARKDOWN_FILE = "MODEL_CARD.md"
# The optional Ed25519 signature over the card (models/signing.py): written after the card, so the
# card cannot list it; the signature names the card's SHA-256 instead.
SIGNATURE_FILE = "model_card.sig"


class ExportIntegrityError(RuntimeError):
    """An export folder whose files do not match the hashes its model card lists."""


# The one file hasher is datasets/io.file_digests; models/ may not import datasets/ (DESIGN.md,
# tests/test_layers.py), and this module must stay importable without them, so models/ keeps this
# one copy (models/published.py uses it too).
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def folder_files(folder: str | Path) -> list[str]:
    """Every regular file under `folder` as a relative POSIX path, sorted, the card and its signature excluded."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() not in (CARD_FILE, SIGNATURE_FILE))


def file_hashes(folder: str | Path) -> dict[str, dict]:
    folder = Path(folder)
    return {rel: {"sha256": sha256_file(folder / rel), "bytes": (folder / rel).stat().st_size}
            for rel in folder_files(folder)}


def check_files(folder: str | Path, files: dict[str, dict]) -> None:
    """Raise ExportIntegrityError unless the folder holds exactly `files` with those hashes."""
    folder = Path(folder)
    problems = []
    on_disk = set(folder_files(folder))
    for rel in sorted(set(files) - on_disk):
        problems.append(f"{rel}: listed in {CARD_FILE} but missing")
    for rel in sorted(on_disk - set(files)):
        problems.append(f"{rel}: in the folder but not listed in {CARD_FILE}")
    for rel in sorted(on_disk & set(files)):
        if (folder / rel).is_symlink():
            problems.append(f"{rel}: a symbolic link")
        elif sha256_file(folder / rel) != files[rel]["sha256"]:
            problems.append(f"{rel}: SHA-256 differs from {CARD_FILE}")
    if problems:
        raise ExportIntegrityError(f"export folder {folder} fails its integrity check: " + "; ".join(problems))


def load_export(folder: str | Path) -> dict:
    """The model card of an export folder, after every file's hash has been checked."""
    folder = Path(folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise ExportIntegrityError(f"{folder} has no {CARD_FILE}: not a faketrace export folder")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if not isinstance(card, dict) or not isinstance(card.get("files"), dict):
        raise ExportIntegrityError(f"{card_path} lists no files to check")
    check_files(folder, card["files"])
    return card


# -- MODEL_CARD.md ----------------------------------------------------------------------------

def _num(x, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _diff(x) -> str:
    return "n/a" if x is None else f"{x:.2e}"


def _interval(r: dict, key: str) -> str:
    ci = (r.get("intervals") or {}).get(key) or {}
    return f" [{_num(ci.get('low'))}, {_num(ci.get('high'))}]" if ci else ""


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def _casework_banner(card: dict) -> list[str]:
    if card.get("fit_for_casework"):
        return ["> **Fit for casework:** yes. " + (card.get("casework_note") or ""),
                "> A score is evidence to weigh with everything else, never a verdict on its own.", ""]
    return ["> **WARNING: NOT FIT FOR CASEWORK.** " + (card.get("casework_note") or "no reason recorded"),
            "> Do not use this model's scores as evidence in any investigation, report or proceedings.", ""]


def _section_model(card: dict) -> list[str]:
    i, o = card_spec(card).input, card["output"]
    return ["## Model", "",
            f"- task: {card['task']}",
            f"- family: `{card['family']}`; architecture: timm `{card['backbone']}`",
            f"- input `{o.get('input_name', 'image')}`: float32 {i.layout} {i.channels}, "
            f"{i.size[0]} x {i.size[1]} px, pixel values x {i.scale:.6g}, then (x - mean) / std",
            f"- mean {list(i.mean)}, std {list(i.std)}; a crop of another size is resized {i.interpolation} (the "
            "method training, evaluation, the scan and the predictor use)",
            f"- output `{o['name']}`: one logit per image, shape ({', '.join(o['shape'])},); probability {o['probability']}", ""]


def _section_image_preprocessing(card: dict) -> list[str]:
    spec = card_spec(card)
    t, v = spec.image, spec.video
    return ["## Whole-image tiling (no face crop)", "",
            f"- tiles of {t.tile_size} px, stride {t.stride or t.tile_size} (last row and column aligned "
            f"to the border), crop policy `{t.crop}`; "
            + (f"shorter side resized to {t.resize} px first" if t.resize else
               "no resizing: native resolution (resizing would smear the pixel-level traces)"),
            f"- image score: `{t.aggregation}` of the tile probabilities",
            f"- frames per video: {v.frames_per_video or 'all'}; video score: `{v.rule}` of the frame scores",
            f"- {card.get('image_note') or ''}", ""]


def _section_preprocessing(card: dict) -> list[str]:
    spec = card_spec(card)
    if spec.level == "image":
        return _section_image_preprocessing(card)
    f, d, v = spec.face, spec.face.detector, spec.video
    crop = (f"margin {f.margin}, 5-point similarity alignment onto a template" if f.crop_rule == "aligned_5pt" else
            f"margin {f.margin}: a square of {f.margin} x the longer box side around the box centre, "
            "edges replicated" if f.crop_rule == "square_margin" else f"rule `{f.crop_rule}`, margin {f.margin}")
    return ["## Face detection and cropping", "",
            f"- detector: `{d.name}` ({d.package} {d.version}), file `{d.file}`, SHA-256 `{d.weights_sha256}`",
            f"- detection: score threshold {d.score_threshold}, NMS {d.nms_threshold}, frames scaled "
            f"so the longer side is at most {d.max_side} px",
            f"- face policy: `{f.face_policy}` (largest: the video's main face track; all: every face)",
            f"- crop: {crop}, {f.crop_size} px, stored as {f.image_format}"
            + (f" (quality {f.jpeg_quality})" if f.image_format == "jpeg" else ""),
            f"- frames per video: {v.frames_per_video or 'all'} ({v.sampling} sampling"
            + (f", every {v.every_k}th frame" if v.sampling == "every_k" else "") + ")"
            + ("; trained and validated on still images only: this applies to videos given to it later, which it "
               "has not been validated on" if spec.domain.media == ("still",) else ""),
            f"- video score: `{v.rule}` of the frame probabilities",
            "- frames without a face are not scored; the item reports how many frames had none", ""]


def _section_calibration(card: dict) -> list[str]:
    c = card["calibration"]
    lines = ["## Calibration", ""]
    # "temperature": what records before calibration version 3 called the same Platt-style maps.
    fitted, prob, form = c.get("fitted_on", {}), c.get("probability", {}), c.get("form") or {}
    if c.get("method") not in ("platt", "temperature"):
        lines += [f"- none: {c.get('note', 'probabilities are sigmoid(logit)')}", ""]
        if not c.get("thresholds"):
            return lines
        lines[-1:] = ["- the thresholds below are on the uncalibrated probabilities", ""]
        return lines + _thresholds_table(c)
    lines += ["- method: Platt scaling (a logistic map of the logit: temperature T and bias b)",
              f"- frame probability: `{prob.get('frame', 'sigmoid(logit / T + b)')}` with "
              f"T = {_num(c['temperature'])}, b = {_num(c.get('bias', 0.0))}"
              + (f" (form chosen: {form['frame']})" if form.get("frame") else "")]
    if form.get("video", "?") != "none":
        lines += [f"- video probability: `{prob.get('video', 'aggregated frame probabilities')}` with "
                  f"T_video = {_num(c.get('video_temperature', 1.0))}, b_video = {_num(c.get('video_bias', 0.0))}"
                  + (f" (form chosen: {form['video']})" if form.get("video") else "")]
    else:
        lines += [f"- item probability: the `{c.get('aggregation', 'mean')}` of its calibrated frame probabilities "
                  "(no video map)"]
    lines += [f"- fitted on {fitted.get('dataset', '?')}/{fitted.get('split')} ({fitted.get('part')}, "
              f"{fitted.get('n_items', fitted.get('n_videos'))} {fitted.get('items', 'videos')}; never the test split)",
              ""]
    return lines + _thresholds_table(c)


def _thresholds_table(c: dict) -> list[str]:
    rows = [[level, _num(t.get("eer")), _num(t.get("target_fpr")), _num(t.get("at_target_fpr"))]
            for level, t in (c.get("thresholds") or {}).items()]
    return _table(["level", "EER threshold", "target FPR", "threshold at target FPR"], rows) + [""] if rows else []


def _selection_note(selection: dict | None) -> str:
    """The interval and class counts the choice of the best epoch rested on, and its warning."""
    if not selection:
        return ""
    ci = selection.get("interval_95")
    text = (f" (95% interval [{_num(ci[0])}, {_num(ci[1])}], " if ci else " (") + \
        f"{selection.get('n_real')} real and {selection.get('n_fake')} fake {selection.get('unit', 'items')})"
    return text + (f"; **{selection['warning']}**" if selection.get("warning") else "")


def _domain_line(card: dict) -> str:
    """The training domain a scan holds the model to (spec `domain`; older cards: the data record's)."""
    d = dict(((card.get("training") or {}).get("data") or {}).get("domain") or {})
    d.update({k: v for k, v in ((card.get("spec") or {}).get("domain") or {}).items() if v})
    media = " and ".join({"still": "still images", "video": "videos"}.get(m, m) for m in d.get("media") or [])
    faces = {"present": "showing faces", "absent": "without faces", "any": "with or without faces"}.get(d.get("faces"))
    words = ", ".join(w for w in (media or "media not recorded", faces) if w)
    return f"- training domain: {words}; a scan lets this model decide no item outside it"


def _section_training(card: dict) -> list[str]:
    t = card["training"]
    data = t.get("data", {})
    lines = ["## Training data", "",
             f"- data set: `{data.get('name')}`" + (" (synthetic)" if (data.get("index_meta") or {}).get("synthetic")
                                                    else ""),
             _domain_line(card),
             f"- epoch {t.get('epoch')}, model selected on validation `{t.get('monitor')}` = "
             f"{_num(t.get('best_validation_score'))}" + _selection_note(t.get("selection"))]
    splits = t.get("splits")
    if splits and splits.get("counts"):
        lines += [f"- index `{splits.get('index')}` (SHA-256 `{str(splits.get('index_sha256'))[:16]}…`); "
                  f"splits: {splits.get('policy')}", ""]
        lines += _table(["split", "items", "real", "fake", "methods"],
                        [[s, c["items"], c["real"], c["fake"], ", ".join(c["methods"])]
                         for s, c in splits["counts"].items()])
    else:
        lines.append(f"- splits: {(splits or {}).get('note', 'not recorded')}")
    return lines + [""]


def _section_evaluation(card: dict) -> list[str]:
    ev = card.get("evaluation")
    lines = ["## Evaluation", ""]
    if not ev:
        return lines + ["No evaluation report was given to the export (`evaluation=PATH/metrics.json`).", ""]
    ts = ev["test_set"]
    boot = ev.get("bootstrap")
    lines += [f"- test set: `{ts['dataset']}/{ts['split']}`" + (" (synthetic)" if ts.get("synthetic") else "")
              + f", {ts['n_items_scored']} of {ts['n_items']} items scored",
              f"- video aggregation `{ev['aggregation']}`; intervals: "
              + (f"{boot['level']:.0%} percentile bootstrap over videos, {boot['n_resamples']} resamples"
                 if boot else "none (bootstrap off)"), ""]
    rows = []
    for who, levels in ev["results"].items():
        for level, r in levels.items():
            rows.append([who, level, f"{r['n']} ({r['n_real']}/{r['n_fake']})", _num(r["auc"]) + _interval(r, "auc"),
                         _num(r.get("ap")) + _interval(r, "ap"), _num(r.get("eer")) + _interval(r, "eer"),
                         _num(r.get("accuracy@0.5")), _num(r.get("tpr@fpr=0.01"))])
    return lines + _table(["model", "level", "n (real/fake)", "AUC", "AP", "EER", "acc@0.5", "TPR@FPR 1%"], rows) + [""]


def _section_robustness(card: dict) -> list[str]:
    rb = card.get("robustness")
    if not rb:
        return []
    rows = [[r["distortion"], r["severity"], r["level"],
             _num(r.get("video_auc"), 3) + (f" [{_num(r['video_auc_low'], 3)}, {_num(r['video_auc_high'], 3)}]"
                                            if r.get("video_auc_low") is not None else ""),
             f"{r.get('face_rate', 0):.0%}"] for r in rb["rows"]]
    return ["## Robustness", "", f"Video AUC on `{rb.get('test_set')}` against perturbations of the raw media.", "",
            *_table(["distortion", "severity", "level", "video AUC", "faces found"], rows), ""]


def _section_use(card: dict) -> list[str]:
    lines = ["## Intended use", "", *(f"- {x}" for x in card.get("intended_use", [])), "",
             "## Out-of-scope use", "", *(f"- {x}" for x in card.get("out_of_scope_use", [])), "",
             "## What the model has never seen", "", *(f"- {x}" for x in card.get("never_seen", [])), ""]
    return lines


def _section_export(card: dict) -> list[str]:
    o = card["onnx"]
    v = o["verification"]
    lines = ["## Export and verification", "",
             f"- `model.onnx`: {o['exporter']} exporter, opset {o['opset']}, dynamic batch, weights inside the file",
             f"- ONNX Runtime ({v['provider']}) vs PyTorch on {v['n_images']} real "
             f"{'tiles' if card.get('level') == 'image' else 'crops'} from split `{v['split']}`: "
             f"largest absolute logit difference {_diff(v['max_abs_logit_diff'])} (limit {v['tolerance']:g}); "
             + ", ".join(f"batch {b}: {_diff(r['max_abs_logit_diff'])}" for b, r in v["batch_sizes"].items())]
    w = card.get("weights") or {}
    if w.get("file"):
        rt = w["round_trip"]
        lines.append(f"- `{w['file']}`: plain timm keys; reloaded with timm, logits differ from the checkpoint's by "
                     f"at most {_diff(rt['max_abs_logit_diff'])} (limit {rt['tolerance']:g})")
    else:
        lines.append(f"- no safetensors: {w.get('reason')}")
    fp16 = card.get("fp16")
    if fp16:
        check = fp16["verification"]
        lines.append(f"- `{fp16['file']}` (fp16 weights, fp32 inputs and outputs): " + (
            f"ONNX Runtime {check['provider']} vs PyTorch fp32: {_diff(check['max_abs_logit_diff'])} "
            f"(limit {check['tolerance']:g})" if check.get("checked") else f"NOT CHECKED: {check['reason']}"))
    q = card.get("quantization")
    if q:
        auc = q["validation"]
        change = ", ".join(f"{level} AUC {_num(a['fp32'])} -> {_num(a['int8'])} ({a['change']:+.4f})"
                           for level, a in auc["auc"].items())
        lines.append(f"- int8 QDQ (static, calibrated on {q['calibration']['n_images']} `{q['calibration']['split']}` "
                     f"crops): on `{auc['split']}` {change}; bound: drop <= {q['max_auc_drop']:g}; "
                     + (f"written as `{q['file']}`" if q["written"] else f"REFUSED: {q['refused_reason']}"))
    t = card.get("triton")
    if t:
        lines.append(f"- Triton repository `{t['repository']}/`: model `{t['model_name']}`, max_batch_size "
                     f"{t['max_batch_size']}, config checked against the ONNX graph")
    return lines + [""]


def _section_loading(card: dict) -> list[str]:
    lines = ["## Loading", "", "ONNX Runtime:", "", "```python",
             "import onnxruntime as ort",
             "session = ort.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])",
             f"logits = session.run(['{card['output']['name']}'], {{'image': images}})[0]  # images: (N, 3, "
             f"{card_spec(card).input.size[0]}, {card_spec(card).input.size[1]}) float32", "```", ""]
    if (card.get("weights") or {}).get("file"):
        lines += ["timm (PyTorch):", "", "```python", "import timm", card["timm_load"], "```", ""]
    return lines


def _section_files(card: dict) -> list[str]:
    rows = [[f"`{rel}`", f"{f['bytes']:,}", f"`{f['sha256']}`"] for rel, f in sorted(card["files"].items())
            if rel != MARKDOWN_FILE]
    return ["## Files", "", f"`{CARD_FILE}` lists every file of this folder with its SHA-256 (this file included); "
            "loading checks them before parsing anything else.", "",
            *_table(["file", "bytes", "SHA-256"], rows), ""]


def render_markdown(card: dict) -> str:
    """MODEL_CARD.md from the card (the JSON stays the source of truth)."""
    lines = [f"# Model card: {card['name']}", "", *_casework_banner(card)]
    for section in (_section_model, _section_preprocessing, _section_calibration, _section_training,
                    _section_evaluation, _section_robustness, _section_use, _section_export, _section_loading,
                    _section_files):
        lines += section(card)
    versions = card.get("versions", {})
    lines += ["## Versions", "", f"- git `{card.get('git_sha')}`",
              *(f"- {stage}: " + ", ".join(f"{k} {v}" for k, v in sorted(vs.items()) if v)
                for stage, vs in versions.items()), ""]
    lines += _casework_banner(card)
    return "\n".join(lines)
