"""The scan's combination rule (forensics/combine.py): who decides an item, and why."""

from __future__ import annotations

import pytest

from faketrace.forensics.combine import Domain, Opinion, combine

FACES = Domain(("still", "video"), "present", "demo faces")
SCENES = Domain(("still",), "absent", "demo scenes")
VIDEOS_ONLY = Domain(("video",), "present")


def result(p: float, lower: float = 0.3, upper: float = 0.9, status: str = "scanned") -> dict:
    if status != "scanned":
        return {"status": status, "reason": f"{status} here"}
    band = "likely_manipulated" if p >= upper else "no_evidence_of_manipulation" if p < lower else "inconclusive"
    return {"status": "scanned", "score": {"probability": p}, "verdict": band, "score_band": band,
            "bands": {"lower": lower, "upper": upper, "source": "test"}, "out_of_scope": [],
            "verdict_reason": f"p {p}"}


def opinion(name, level, p, domain, media="still", has_face=True, **kw) -> Opinion:
    return Opinion(name, level, result(p, **kw), domain, domain.outside(media, has_face))


def test_an_image_model_trained_without_faces_never_decides_a_face():
    """The demo's failure: a scene model calling a real face 'likely manipulated' decided the item."""
    out = combine([opinion("face", "face", 0.05, FACES), opinion("image", "image", 0.999, SCENES)])
    assert out["verdict"] == "no_evidence_of_manipulation" and out["decided_by"] == "face"
    image = next(o for o in out["opinions"] if o["model"] == "image")
    assert not image["in_domain"] and "without faces" in image["outside_domain"][0]
    assert "0.999" in out["why"] and "0.050" in out["why"] and "not used" in out["why"] and "Rule:" in out["why"]


def test_a_face_based_model_decides_a_face_and_an_image_model_the_rest():
    face_item = combine([opinion("face", "face", 0.95, FACES), opinion("image", "image", 0.5, Domain())])
    assert face_item["decided_by"] == "face" and face_item["verdict"] == "likely_manipulated"
    assert "bands 0.300/0.900" in face_item["why"] and "second opinion" in face_item["why"]
    no_face = combine([Opinion("face", "face", result(0, status="no_face"), FACES, FACES.outside("still", False)),
                       opinion("image", "image", 0.95, SCENES, has_face=False)])
    assert no_face["decided_by"] == "image" and no_face["verdict"] == "likely_manipulated"


def test_an_in_domain_dissent_makes_no_evidence_inconclusive():
    out = combine([opinion("face", "face", 0.1, FACES), opinion("image", "image", 0.95, Domain(("still",), "any"))])
    assert out["verdict"] == "inconclusive" and out["decided_by"] == "face"
    assert "disagree" in out["verdict_reason"] and "disagree" in out["why"]


def test_outside_every_domain_is_inconclusive_with_the_scores_shown():
    out = combine([opinion("image", "image", 0.99, SCENES, media="video", has_face=None)])
    assert out["verdict"] == "inconclusive" and out["decided_by"] is None and out["out_of_domain"]
    assert "0.990" in out["why"] and "still images only" in out["why"]


@pytest.mark.parametrize("verdicts", [(0.95, 0.5), (0.5, 0.95), (0.2, 0.95)])
def test_among_face_models_the_most_severe_verdict_decides(verdicts):
    """A panel of N face-level detectors: the most severe in-domain verdict, the larger score on a tie."""
    ops = [opinion(f"m{i}", "face", p, FACES) for i, p in enumerate(verdicts)]
    ops.append(opinion("lrnet", "clip", 0.99, VIDEOS_ONLY))  # a still: outside the video-only model
    out = combine(ops)
    best = max(range(len(verdicts)), key=lambda i: (verdicts[i] >= 0.9, verdicts[i]))
    assert out["decided_by"] == f"m{best}" and out["verdict"] == "likely_manipulated"
    assert "videos only" in out["why"] and len(out["opinions"]) == len(verdicts) + 1
    assert f"face-level model m{best}: " in out["why"]


def test_no_opinion_scanned_keeps_the_status():
    out = combine([Opinion("face", "face", result(0, status="no_face"), FACES)])
    assert out["status"] == "no_face" and out["decided_by"] is None and "no face" in out["why"]


def test_domain_records_are_checked():
    with pytest.raises(ValueError, match="domain.media"):
        Domain.from_dict({"media": ["photo"]})
    assert Domain.from_dict(None).outside("video", True) == []  # unrecorded: no claim either way


def test_the_training_domain_is_one_record_the_spec_and_old_records_still_read(scan_ckpt):
    """A trained checkpoint carries its domain (media and faces, from configs/data/demo.yaml) in its
    spec alone; a checkpoint or card written before that kept `faces` in its data record, and the
    scan still holds the model to it."""
    from faketrace.engine.checkpoint import load_checkpoint
    from faketrace.models.spec import ModelSpec, checkpoint_spec

    ckpt = load_checkpoint(scan_ckpt)
    spec = checkpoint_spec(ckpt)
    assert "domain" not in ckpt["data"]
    assert spec.domain.faces == "present" and set(spec.domain.media) == {"still", "video"}
    domain = Domain.of({"spec": spec.to_dict(), "card": {}})
    assert domain.outside("still", False) == ["trained on faces; no face was found in this item"]
    # Before the fold: no faces in the spec, the data record says "absent" (an image-level model).
    old_spec = spec.to_dict()
    old_spec["domain"] = {k: v for k, v in old_spec["domain"].items() if k != "faces"}
    ModelSpec.from_dict(old_spec)  # still a valid spec
    old = Domain.of({"spec": old_spec, "card": {"training": {"data": {"domain": {"media": ["still"], "faces": "absent"}}}}})
    assert old.faces == "absent" and old.outside("still", True) == ["trained on images without faces; this item holds a face"]
    with pytest.raises(ValueError, match="faces"):
        ModelSpec.from_dict({**old_spec, "domain": {**old_spec["domain"], "faces": "sometimes"}})
