"""How several models' item results become one verdict, with who decided and why.

Every model that looked at an item gives an *opinion*: its status, calibrated probability, the
verdict its own bands give, and whether the item lies inside the model's training domain (the
media and subjects it was trained and calibrated on). The rule, for any number of models:

1. Only an opinion inside its model's domain can decide. A model's bands were fitted on its own
   validation data; on other media they are not backed by any measured error rate.
2. Among those, the specialist level decides: face-based models (face crops, face clips) where
   they assessed a face, whole-image models otherwise. Within the deciding level the most severe
   verdict decides (likely manipulated > inconclusive > no evidence; equal verdicts: the larger
   probability).
3. A second opinion inside its domain that says "likely manipulated" where the decider says "no
   evidence" makes the item inconclusive: the models disagree, and the report says so.
4. When no opinion lies inside its model's domain, the item is inconclusive; the scores are shown
   with the reason, never used as a verdict.

`why` states the decider's probability against its bands, every model's score, and the rule.
The panel of shipped detectors (issue 18) adds opinions; the rule does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERDICTS = ("likely_manipulated", "inconclusive", "no_evidence_of_manipulation")
WORDS = {"likely_manipulated": "likely manipulated", "inconclusive": "inconclusive",
         "no_evidence_of_manipulation": "no evidence of manipulation"}
SEVERITY = {"no_evidence_of_manipulation": 0, "inconclusive": 1, "likely_manipulated": 2}
# Lower decides first: models that look at faces are the specialists for items with a face.
LEVEL_ORDER = {"face": 0, "clip": 0, "image": 1}
LEVEL_NOUN = {"face": "face-level", "clip": "face-clip", "image": "image-level"}
MEDIA = ("still", "video")
FACES = ("present", "absent", "any")

RULE_NAME = "in-domain specialist"
RULE = ("only a model whose training domain (media kind, and whether its training media showed faces) covers "
        "the item can decide; face-based models decide items where they assessed a face, whole-image models "
        "the others; among the deciders the most severe verdict wins (equal verdicts: the larger probability); "
        "an in-domain second opinion of 'likely manipulated' against a decider's 'no evidence' makes the item "
        "inconclusive; an item outside every model's domain is inconclusive, its scores shown but not used")


@dataclass(frozen=True)
class Domain:
    """The media a model was trained and calibrated on. None: not recorded (then no claim either way)."""

    media: tuple[str, ...] | None = None  # "still", "video"
    faces: str | None = None  # "present": faces; "absent": images without faces; "any": both
    description: str = ""

    @classmethod
    def from_dict(cls, d: dict | None) -> Domain:
        if not d:
            return cls()
        media = tuple(d["media"]) if d.get("media") else None
        for m in media or ():
            if m not in MEDIA:
                raise ValueError(f"domain.media: {m!r} is not one of {MEDIA}")
        faces = d.get("faces")
        if faces is not None and faces not in FACES:
            raise ValueError(f"domain.faces: {faces!r} is not one of {FACES}")
        return cls(media, faces, str(d.get("description") or ""))

    def to_dict(self) -> dict:
        return {"media": list(self.media) if self.media else None, "faces": self.faces,
                "description": self.description}

    @classmethod
    def of(cls, model) -> Domain:
        """A scan model's domain (a ScanModel, or a report's model record: `spec` and `card`)."""
        get = model.get if isinstance(model, dict) else (lambda k: getattr(model, k, None))
        return cls.recorded(get("spec"), get("card"))

    @classmethod
    def recorded(cls, spec, card: dict | None = None) -> Domain:
        """The model spec's `domain` (media, faces, notes), the one record since spec `faces` exists.

        Checkpoints and export cards written before it kept whether the training media showed faces
        in their training data record (`card.training.data.domain`); that fills what the spec lacks.
        """
        if spec is not None and not isinstance(spec, dict):
            spec = spec.to_dict()
        d = (spec or {}).get("domain") or {}
        data = ((card or {}).get("training") or {}).get("data") or {}
        legacy = cls.from_dict(data.get("domain"))
        media = tuple(d["media"]) if d.get("media") else legacy.media
        return cls(media, d.get("faces") or legacy.faces, str(d.get("notes") or legacy.description or ""))

    def outside(self, media: str, has_face: bool | None) -> list[str]:
        """Why an item (media "still"/"video"; a face found or not, None: nobody looked) lies outside."""
        reasons = []
        if self.media and media not in self.media:
            kinds = " and ".join({"still": "still images", "video": "videos"}[m] for m in self.media)
            reasons.append(f"trained on {kinds} only; this item is a {'video' if media == 'video' else 'still image'}")
        if self.faces == "absent" and has_face:
            reasons.append("trained on images without faces; this item holds a face")
        if self.faces == "present" and has_face is False:
            reasons.append("trained on faces; no face was found in this item")
        return reasons

    def describe(self) -> str:
        if not self.media and not self.faces:
            return "training domain not recorded"
        bits = []
        if self.media:
            bits.append(" and ".join({"still": "still images", "video": "videos"}[m] for m in self.media))
        if self.faces:
            bits.append({"present": "showing faces", "absent": "without faces", "any": "with or without faces"}[
                self.faces])
        return " ".join(bits) + (f" ({self.description})" if self.description else "")


@dataclass
class Opinion:
    """One model's result on one item: `result` holds status, score, verdict, bands, out_of_scope."""

    name: str  # short key: "face", "image", or a published detector's registry name
    level: str  # face | clip | image
    result: dict
    domain: Domain = field(default_factory=Domain)
    outside: list[str] = field(default_factory=list)  # why the item lies outside the training domain
    label: str = ""  # how the report names the model

    @property
    def title(self) -> str:
        named = "" if self.name in LEVEL_NOUN else f" {self.name}"  # a panel names each of its models
        return self.label or f"{LEVEL_NOUN.get(self.level, self.level)} model{named}"

    @property
    def scanned(self) -> bool:
        return self.result.get("status") == "scanned" and self.result.get("verdict") in SEVERITY

    @property
    def probability(self) -> float | None:
        return (self.result.get("score") or {}).get("probability")

    def summary(self) -> dict:
        b = self.result.get("bands") or {}
        return {"model": self.name, "level": self.level, "title": self.title, "status": self.result.get("status"),
                "probability": self.probability, "verdict": self.result.get("verdict") if self.scanned else None,
                "bands": {"lower": b.get("lower"), "upper": b.get("upper")} if b else None,
                "in_domain": not self.outside, "outside_domain": self.outside, "domain": self.domain.describe()}

    def statement(self) -> str:
        """This opinion in one clause: probability against bands, or why there is none."""
        r = self.result
        if r.get("status") != "scanned":
            return f"{self.title}: {r.get('status', 'not run').replace('_', ' ')}"
        p, b = self.probability, r.get("bands") or {}
        text = f"{self.title}: {p:.3f}"
        if b.get("upper") is not None:
            text += f" (bands {b['lower']:.3f}/{b['upper']:.3f}: {WORDS.get(r.get('score_band'), r.get('score_band'))})"
        if r.get("out_of_scope"):
            text += "; outside what it can judge: " + "; ".join(r["out_of_scope"])
        return text


def combine(opinions: list[Opinion]) -> dict:
    """The item's verdict fields: verdict, score, bands, decided_by, why, opinions, combination.

    With no scanned opinion at all, the item keeps the first opinion's status (no_face, ...).
    """
    scanned = [o for o in opinions if o.scanned]
    base = {"combination": RULE, "opinions": [o.summary() for o in opinions]}
    if not scanned:
        first = opinions[0].result
        return {**base, "status": first.get("status"), "reason": first.get("reason"), "decided_by": None,
                "why": "; ".join(o.statement() for o in opinions)}
    eligible = [o for o in scanned if not o.outside]
    if not eligible:
        shown = "; ".join(f"{o.statement()}, NOT USED: outside its training domain ({'; '.join(o.outside)})"
                          for o in scanned)
        lead = scanned[0]
        return {**base, "status": "scanned", "reason": None, "score": lead.result["score"],
                "bands": lead.result.get("bands"), "score_band": lead.result.get("score_band"),
                "verdict": "inconclusive", "decided_by": None, "out_of_domain": True,
                "verdict_reason": "outside every model's training domain: " + shown,
                "why": f"inconclusive: no model was trained on media like this. {shown}. Rule: {RULE_NAME}"}
    top_level = min(LEVEL_ORDER.get(o.level, 9) for o in eligible)
    deciders = [o for o in eligible if LEVEL_ORDER.get(o.level, 9) == top_level]
    decider = max(deciders, key=lambda o: (SEVERITY[o.result["verdict"]], o.probability or 0.0))
    verdict, reason = decider.result["verdict"], f"{decider.title}: {decider.result.get('verdict_reason')}"
    dissent = [o for o in eligible if o is not decider and o.result["verdict"] == "likely_manipulated"]
    if verdict == "no_evidence_of_manipulation" and dissent:
        verdict = "inconclusive"
        reason = (f"the models disagree: {decider.title} finds no evidence ({decider.probability:.3f}), "
                  + ", ".join(f"{o.title} says likely manipulated ({o.probability:.3f})" for o in dissent))
    others = []
    for o in opinions:
        if o is decider:
            continue
        clause = o.statement()
        if o.scanned and o.outside:
            clause += f", not used: outside its training domain ({'; '.join(o.outside)})"
        elif o.scanned and LEVEL_ORDER.get(o.level, 9) > top_level:
            clause += ", second opinion (a face-based model assessed the face)"
        others.append(clause)
    why = f"{WORDS[verdict]}: decided by the {decider.statement()}"
    if verdict != decider.result["verdict"]:
        why = f"{WORDS[verdict]} (models disagree): {decider.statement()}"
    if others:
        why += ". " + "; ".join(others)
    why += f". Rule: {RULE_NAME}"
    return {**base, "status": "scanned", "reason": None, "score": decider.result["score"],
            "bands": decider.result.get("bands"), "score_band": decider.result.get("score_band"),
            "verdict": verdict, "verdict_reason": reason, "decided_by": decider.name, "out_of_domain": False,
            "why": why}
