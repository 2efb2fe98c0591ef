"""A panel of detectors in the scan: shipped published models beside (or instead of) a trained one.

    python evaluate.py mode=scan inputs=[...] published=[meso4_df,lrnet_ffpp] case.id=... case.operator=...

Every model scores every item it can judge; each item's result carries `panel` (one entry per
model: status, score, verdict, bands, domain) and the combined verdict with `decided_by`.

Members:
- face-crop models (the trained checkpoint or export, MesoNet): a MediaScorer each, with the
  model's own crop rule and input spec (published preprocessing: datasets/published_crops.py);
- landmark-sequence models (LRNet): consecutive video frames, RetinaFace boxes, dlib 68-point
  landmarks (optional stage, datasets/landmarks.py), the publisher's landmark calibration when the
  registry entry says it is ported (datasets/landmark_calibration.py), windows of 30 frames, the
  published vote.

Domain: a model gives "not_applicable", never a verdict, on media outside its registry `domain`
(LRNet on a still; any model on faces below its minimum size). Combination: every member's result
is one more opinion for forensics/combine.py (the scan's rule for any number of models: only a
model inside its training domain decides, face-based models decide faces, the most severe verdict,
an in-domain dissent makes the item inconclusive); a member that was not applicable takes no part.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from pathlib import Path

import numpy as np

from faketrace.datasets.face_pipeline import PreprocessSpec, choose_faces
from faketrace.datasets.media import DecodeError, sniff_media_type
from faketrace.datasets.published_crops import mesonet_crop
from faketrace.forensics.combine import RULE, Domain, Opinion, combine
from faketrace.forensics.scoring import (
    DECIMALS,
    MediaScorer,
    ScanModel,
    bands_for,
    item_probability,
    r6,
)

log = logging.getLogger(__name__)

COMBINATION = RULE  # forensics/combine.py: the panel's members are more opinions under the same rule
CASEWORK_NOTE = "published weights, not validated by this lab: run scripts/validate.py on a labelled set you hold"


def _card(entry: dict) -> dict:
    return {"name": entry["name"], "family": entry["family"], "paper": entry["paper"], "release": entry["release"],
            "licence": entry["licence"], "training_data": entry["training_data"], "domain": entry["domain"],
            "spec": entry["spec"], "shipped": {k: entry["shipped"].get(k) for k in ("path", "sha256")},
            "validation": entry.get("validation")}


def _domain(entry: dict) -> dict:
    """The registry domain in forensics/combine.py's terms: media kinds, faces present."""
    d = entry.get("domain") or {}
    return {"media": d.get("media"), "faces": "present", "description": d.get("notes", "")}


def _validation(entry: dict) -> tuple[bool, str, dict]:
    """fit_for_casework, note and calibration from a validation certificate (scripts/validate.py), if any."""
    cert = entry.get("validation")
    if cert and cert.get("fit_for_casework"):
        return True, f"validated by {cert.get('operator')} on {cert.get('date')} ({cert.get('set_sha256', '')[:12]})", \
            cert.get("calibration") or {}
    # A certificate below the minimum counts is shown, but its calibration (fitted on too few items) is not used.
    return False, entry.get("casework_note") or CASEWORK_NOTE, {}


def published_face_model(entry: dict, module, device: str = "cpu") -> ScanModel:
    """A shipped face-crop model (MesoNet) as a ScanModel: its typed published spec, its own crop rule."""
    import torch

    from faketrace.models.published import model_spec

    spec = model_spec(entry)
    if spec.face is None or spec.face.crop_rule != "mesonet_5pt":
        raise ValueError(f"{entry['name']}: only the mesonet_5pt crop rule is supported in the scan")
    size = spec.input.side

    def crop(frame, f):
        return mesonet_crop(frame, f.landmarks, size, spec.input.interpolation)

    def logits(x: np.ndarray) -> np.ndarray:  # our port returns the logit of P(fake) (models/mesonet.py)
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(device)).float().cpu().numpy().astype(np.float64).reshape(-1)

    fit, note, calibration = _validation(entry)
    return ScanModel(kind="published", path=entry["shipped"]["file"], sha256=entry["shipped"]["sha256"],
                     spec=spec.replace(face=dataclasses.replace(spec.face, face_policy="all")),
                     calibration=calibration, fit_for_casework=fit, casework_note=note,
                     # the training domain as forensics/combine.py reads it (Domain.of: card.training.data.domain)
                     card={**_card(entry), "training": {"data": {"name": entry["training_data"]["description"],
                                                                 "domain": _domain(entry)}}},
                     logits=logits, device=device, module=module, crop=crop)


def load_published(name: str, device: str = "cpu", validated_dir: str | None = None):
    """(registry entry, torch module) of a shipped published detector, or of a lab's validated copy of it."""
    from faketrace.models.published import build_published

    module, entry = build_published(name, device=device, validated_dir=validated_dir)
    return entry, module


# -- members --------------------------------------------------------------------------------------
class FaceMember:
    """A face-crop model scored by its own MediaScorer (decoding, detection, crops, bands)."""

    def __init__(self, name: str, scorer: MediaScorer, domain: dict | None):
        self.name, self.scorer, self.domain = name, scorer, domain or {}
        self.model = scorer.model

    def describe(self) -> dict:
        m = self.model
        return {"name": self.name, "kind": m.kind, "level": m.level, "path": m.path, "sha256": m.sha256,
                "fit_for_casework": m.fit_for_casework, "casework_note": m.casework_note, "domain": self.domain,
                "bands": {k: vars(b) for k, b in self.scorer.bands.items()}, "card": m.card}

    def score(self, path: Path, result: dict | None = None) -> dict:
        out = result if result is not None else self.scorer.score_file(path)
        media = out.get("media_type")
        allowed = self.domain.get("media")
        if allowed and media in ("image", "video") and ({"image": "still"}.get(media, media) not in allowed):
            return {"status": "not_applicable", "reason": f"{self.name} judges {', '.join(allowed)} only"}
        return _summary(out)


class LandmarkMember:
    """LRNet: landmark motion over consecutive video frames; not applicable to stills."""

    def __init__(self, name: str, entry: dict, module, detector, decoder, options, predictor=None,
                 predictor_error: str | None = None, max_frames: int = 300, frame_bytes: int = 384 << 20):
        self.name, self.entry, self.module, self.detector, self.decoder = name, entry, module, detector, decoder
        self.options, self.predictor, self.predictor_error, self.max_frames = options, predictor, predictor_error, max_frames
        self.frame_bytes = int(frame_bytes)
        self.domain = entry["domain"]
        self.clip = entry["spec"]["clip"]
        fit, note, calibration = _validation(entry)
        self.fit_for_casework, self.casework_note, self.calibration = fit, note, calibration
        self.bands = bands_for(calibration, "video", options.bands_override)
        # An entry without the key (a lab's copy validated before the calibration was ported) keeps the
        # uncalibrated features its certificate was measured on.
        self.landmark_calibration = entry.get("landmark_calibration") or {"calibration_ported": False}
        self.calibrate = bool(self.landmark_calibration.get("calibration_ported"))

    def describe(self) -> dict:
        return {"name": self.name, "kind": "published", "level": "clip", "path": self.entry["shipped"]["file"],
                "sha256": self.entry["shipped"]["sha256"], "fit_for_casework": self.fit_for_casework,
                "casework_note": self.casework_note, "domain": self.domain, "bands": {"item": vars(self.bands)},
                "landmarks": self.predictor.describe() if self.predictor else {"error": self.predictor_error},
                "landmark_calibration": self.landmark_calibration, "card": _card(self.entry)}

    def score(self, path: Path, result: dict | None = None) -> dict:
        kind = (result or {}).get("media_type") or sniff_media_type(path)
        if kind != "video":
            return {"status": "not_applicable",
                    "reason": f"{self.name} judges landmark motion in video ({self.domain['min_frames']} or more "
                              "consecutive frames); a still has none"}
        if self.predictor is None:
            return {"status": "not_applicable", "reason": f"the 68-point landmark stage is not installed "
                                                          f"({self.predictor_error})"}
        try:
            return self._score_video(path, (result or {}).get("decode"))
        except DecodeError as exc:
            return {"status": "decode_error", "reason": str(exc)}
        except Exception as exc:  # one member's failure costs its own entry only
            log.error("%s on %s failed:\n%s", self.name, path, traceback.format_exc())
            return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}

    def _score_video(self, path: Path, decode: dict | None) -> dict:
        import torch

        from faketrace.datasets.landmarks import lrnet_features
        from faketrace.models.lrnet import video_vote, windows

        o = self.options
        # Consecutive frames from the start, as many as fit the decoder's memory budget (decoded RGB frames)
        w, h = (decode or {}).get("width") or 0, (decode or {}).get("height") or 0
        n = self.max_frames if not (w and h) else max(1, min(self.max_frames, self.frame_bytes // (w * h * 3)))
        if n < int(self.domain["min_frames"]):
            return {"status": "not_applicable", "reason": f"{w}x{h} frames: only {n} fit the landmark stage's "
                                                          f"budget of {self.frame_bytes >> 20} MiB"}
        v = self.decoder("read_first_frames", path, n, time_limit_s=o.video_time_limit_s,
                         hard_limit_s=o.video_time_limit_s)
        order = sorted(v.frames)
        if not order and v.error:
            return {"status": "timeout" if v.timed_out else "decode_error", "reason": v.error}
        if len(order) < int(self.domain["min_frames"]):
            return {"status": "not_applicable", "reason": f"{len(order)} consecutive frames decoded; {self.name} "
                                                          f"needs {self.domain['min_frames']}"}
        frames = [v.frames[k] for k in order]
        detections = []
        for i in range(0, len(frames), o.detector_batch):
            detections.extend(self.detector.detect(frames[i:i + o.detector_batch]))
        chosen = choose_faces(order, detections, PreprocessSpec(face_policy="largest"))
        points, reused, sizes, started, tracked_frames = [], 0, [], False, []
        for frame, per_frame in zip(frames, chosen, strict=True):
            if per_frame:
                face = per_frame[0].face
                points.append(self.predictor(frame, face.box))
                sizes.append(float(min(face.box[2] - face.box[0], face.box[3] - face.box[1])))
                started = True
            elif started:  # as the publisher does: a frame without a face keeps the previous landmarks
                points.append(points[-1])
                reused += 1
            if started:
                tracked_frames.append(frame)
        if len(points) < int(self.domain["min_frames"]):
            return {"status": "no_face", "reason": f"a face in {len(points)} of {len(frames)} consecutive frames; "
                                                   f"{self.name} needs {self.domain['min_frames']}"}
        min_px = float(self.domain.get("min_face_px", 0))
        if np.median(sizes) < min_px:
            return {"status": "not_applicable", "reason": f"median face {np.median(sizes):.0f} px, below {min_px:.0f}"}
        features, landmark_record = lrnet_features(tracked_frames, np.stack(points), self.calibrate)
        x = windows(features, int(self.clip["length"]))
        with torch.inference_mode():
            p1, p2 = self.module.stream_probabilities(torch.from_numpy(x))
        window_p = ((p1 + p2) / 2).numpy().astype(np.float64)
        vote = video_vote(window_p)
        probability = item_probability(vote, 1, self.calibration) if self.calibration else vote
        verdict = self.bands.verdict(round(probability, DECIMALS))
        return {"status": "scanned", "reason": None,
                "score": {"probability": r6(probability), "vote": r6(vote), "level": "video", "rule": "vote",
                          "how": "fraction of 30-frame windows whose P(fake) (mean of the two streams) is >= 0.5",
                          "window_probabilities": [r6(p) for p in window_p], "mean_window_probability": r6(window_p.mean())},
                "frames": {"decoded": len(frames), "with_landmarks": len(points) - reused, "reused_previous": reused,
                           "windows": int(len(window_p))},
                "landmark_calibration": landmark_record,
                "verdict": verdict, "score_band": verdict,
                "bands": {"lower": r6(self.bands.lower), "upper": r6(self.bands.upper), "source": self.bands.source}}


def _summary(out: dict) -> dict:
    score = out.get("score") or {}
    keep = {"status": out.get("status"), "reason": out.get("reason"), "verdict": out.get("verdict"),
            "verdict_reason": out.get("verdict_reason"), "bands": out.get("bands"),
            "out_of_scope": out.get("out_of_scope")}
    if score:
        keep["score"] = {k: score.get(k) for k in ("probability", "level", "rule", "how") if k in score}
    return keep


# -- the panel ------------------------------------------------------------------------------------
class PanelScorer:
    """The primary MediaScorer (a trained model, or the first published face model) plus more members.

    Attribute access falls through to the primary scorer, so the scan treats it as a MediaScorer.
    """

    COMBINATION = COMBINATION

    def __init__(self, primary: MediaScorer, primary_name: str, members: list, primary_domain: dict | None = None):
        self.primary = primary
        self.first = FaceMember(primary_name, primary, primary_domain)
        self.members = members

    def __getattr__(self, name):
        return getattr(self.primary, name)

    def describe(self) -> list[dict]:
        return [self.first.describe()] + [m.describe() for m in self.members]

    def close(self) -> None:
        for m in self.members:
            if isinstance(m, FaceMember):
                m.scorer.close()
        self.primary.close()

    def score_file(self, path: Path) -> dict:
        self.primary.last_opinions = None
        out = self.primary.score_file(path)
        primary_opinions = self.primary.last_opinions
        panel = {self.first.name: self.first.score(path, out)}
        if out.get("media_type") not in ("image", "video") or primary_opinions is None:
            out["panel"] = panel  # the file was not decoded: no model judged it
            return out
        opinions, media, has_face = primary_opinions
        # The primary's face opinion under its own name when it is a published model
        opinions = [dataclasses.replace(o, name=self.first.name) if o.name == "face" and self.first.name != "model"
                    else o for o in opinions]
        for m in self.members:
            try:
                panel[m.name] = m.score(path, None if isinstance(m, FaceMember) else out)
            except Exception as exc:
                log.error("%s on %s failed:\n%s", m.name, path, traceback.format_exc())
                panel[m.name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
            domain = Domain.from_dict({"media": m.domain.get("media"), "faces": "present",
                                       "description": m.domain.get("notes", "")})  # as _domain(entry)
            opinions.append(Opinion(m.name, "face" if isinstance(m, FaceMember) else "clip", panel[m.name], domain,
                                    domain.outside(media, has_face)))
        out["panel"] = panel
        out["not_applicable"] = sorted(n for n, p in panel.items() if p.get("status") == "not_applicable")
        combined = combine(opinions)
        if combined.get("status") == "scanned":
            out.update(combined)
        else:
            out.update(decided_by=None, why=combined["why"], combination=combined["combination"],
                       opinions=combined["opinions"])
        return out
