"""People of interest: where one person's face appears in the evidence, with honest error rates.

    python evaluate.py mode=scan inputs=[...] model_dir=... case.id=... case.operator=... \
        people=[NAME=FOLDER_OF_REFERENCE_PHOTOS] people_consent="written consent of the person, 2026-12-01"

Enrolment: every reference photo must show exactly one clear face; the faces are embedded with the
scan's embedder (datasets/face_embedding.py) and only the embeddings and each photo's SHA-256 are
kept (in case.sqlite's meta table): no photo, crop or file name enters the case folder. The
reference photos of one person must agree with each other (else the folder mixes people).

Matching: the scan's detected faces (RetinaFace boxes it already has) are embedded once, a few per
face track in a video, and each is compared with each person's references (nearest reference,
Euclidean distance). A face within the match threshold is a `match`, within the uncertain
threshold `uncertain`; anything else is not recorded at all (no distance, no embedding). The
thresholds come from target false-match rates per comparison (`people_match.target_fmr`,
`uncertain_fmr`) read off the impostor distances in forensics/people_calibration.json (measured
with scripts/measure_face_matching.py; its n and identities are stated with every result). A match
is a lead for a human examiner: never an identification.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faketrace.datasets.face_embedding import distances

CALIBRATION_FILE = Path(__file__).with_name("people_calibration.json")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
DECISIONS = ("match", "uncertain")
NEVER_IDENTIFICATION = ("A match means the face looks like the reference photos to a face-recognition model, "
                        "within a threshold with a stated false-match rate. It is not an identification: a "
                        "trained examiner compares the faces before anything is said about who is shown.")


class ReferenceRefused(ValueError):
    """A person's reference folder cannot be enrolled; the message says which photo and why."""


@dataclass(frozen=True)
class MatchPolicy:
    """Distance thresholds and the false-match rates they stand for, with their basis."""

    target_fmr: float
    uncertain_fmr: float
    threshold: float  # distance <= threshold: match
    uncertain_threshold: float  # threshold < distance <= this: uncertain
    basis: dict

    def decide(self, d: float) -> str | None:
        if d <= self.threshold:
            return "match"
        return "uncertain" if d <= self.uncertain_threshold else None

    def to_dict(self) -> dict:
        return {"target_fmr": self.target_fmr, "uncertain_fmr": self.uncertain_fmr,
                "threshold": round(self.threshold, 4), "uncertain_threshold": round(self.uncertain_threshold, 4),
                "basis": self.basis}


@functools.cache
def load_calibration(path: str = str(CALIBRATION_FILE)) -> dict:
    return json.loads(Path(path).read_text())


def policy_for(target_fmr: float, uncertain_fmr: float, calibration: dict | None = None) -> MatchPolicy:
    """Thresholds at which the measured impostor distances give the target false-match rates.

    A target finer than the measurement can resolve (fewer than 1 impostor pair below it) is refused:
    the rate could not be backed by any observation.
    """
    cal = calibration or load_calibration()
    imp = np.asarray(cal["impostor_distances_sorted"], np.float64)
    n = len(imp)
    if not 0 < target_fmr <= uncertain_fmr < 1:
        raise ValueError(f"people_match needs 0 < target_fmr <= uncertain_fmr < 1, got {target_fmr}, {uncertain_fmr}")
    if target_fmr * n < 1:
        raise ValueError(f"target_fmr={target_fmr} is finer than the calibration can resolve: it holds {n} impostor "
                         f"comparisons, so the smallest rate it can back is {1 / n:.4g}. Measure on more identities "
                         "(scripts/measure_face_matching.py rates) or choose a larger target")

    def at(fmr: float) -> float:
        # The largest distance that keeps the measured FMR <= fmr: below the k-th smallest impostor distance.
        k = int(np.floor(fmr * n))  # impostor pairs allowed at or under the threshold
        return float(imp[k] - 1e-4) if k < n else float(imp[-1])

    measured_t, u = at(target_fmr), at(uncertain_fmr)
    # A match also stays within the model's own operating point (identities were trained into balls of
    # radius 0.6): few measured identities cannot vouch for a looser threshold.
    t = min(measured_t, float(cal.get("published_threshold", 0.6)))
    basis = {"method": "match threshold: the largest distance at which the measured false-match rate stays at or "
                       "below target_fmr, capped at dlib's own operating point 0.6; uncertain threshold: the same "
                       "for uncertain_fmr. Measured rates are on impostor pairs (same embedder, different people)",
             "measured_threshold_at_target": round(measured_t, 4),
             "calibration_file": CALIBRATION_FILE.name, "calibration_sha256": _sha256_json(cal),
             "impostor_pairs": n, "impostor_identity_pairs": cal.get("impostor_identity_pairs"),
             "identities": cal.get("identities"), "genuine_pairs": cal.get("genuine_pairs"),
             "measured_on": cal.get("measured_on"), "fnmr_at_threshold": _fnmr(cal, t),
             "published": "dlib's model scores 99.38% +- 0.27% accuracy on LFW's balanced same/different pairs at its "
                          "distance 0.6 (davisking/dlib-models); LFW is mostly adult, mostly white public figures",
             "caveat": "these rates were measured on few adult identities; impostors of the same sex, age and "
                       "ethnicity as the person (for Korean women and girls: other Korean women and girls) are "
                       "closer together than these, so the real false-match rate in a case can be several times "
                       "higher"}
    return MatchPolicy(float(target_fmr), float(uncertain_fmr), t, max(t, u), basis)


def _fnmr(cal: dict, t: float) -> float | None:
    g = cal.get("genuine_distances_sorted")
    return None if not g else round(float((np.asarray(g) > t).mean()), 4)


def _sha256_json(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


# -- people ---------------------------------------------------------------------------------------
@dataclass
class Person:
    key: str  # P1, P2, ...: the name used in the report when names are pseudonymised
    name: str
    references: np.ndarray  # (M, D) embeddings
    photos: list[dict]  # [{"sha256", "faces_detected", "face_px"}]; no file names
    consent: str

    def label(self, pseudonymise: bool) -> str:
        return self.key if pseudonymise else self.name

    def meta(self) -> dict:
        """What the case store keeps: embeddings and photo hashes, never a photo or a path."""
        return {"key": self.key, "name": self.name, "consent": self.consent, "photos": self.photos,
                "references": [[round(float(v), 6) for v in e] for e in self.references]}

    @classmethod
    def from_meta(cls, d: dict) -> Person:
        return cls(d["key"], d["name"], np.asarray(d["references"], np.float32), d["photos"], d["consent"])


def parse_people(entries) -> list[tuple[str, Path]]:
    """{NAME: FOLDER} (the config's form: `people={Jane_Doe:/refs/jane}`), or a list of "NAME=FOLDER"
    strings or {name, folder} maps -> [(name, folder)]; names unique."""
    out = []
    if hasattr(entries, "items"):
        entries = [{"name": str(k), "folder": v} for k, v in entries.items()]
    for e in entries or []:
        if isinstance(e, str):
            if "=" not in e:
                raise ValueError(f"people entries are NAME=FOLDER, got {e!r}")
            name, folder = e.split("=", 1)
        else:
            name, folder = e.get("name"), e.get("folder")
        name = (name or "").strip()
        if not name or not folder:
            raise ValueError(f"a person needs a name and a folder of reference photos, got {e!r}")
        if any(name == n for n, _ in out):
            raise ValueError(f"the person {name!r} is given twice")
        out.append((name, Path(str(folder)).expanduser()))
    return out


def enrol(key: str, name: str, folder: Path, consent: str, detector, embedder,
          min_face_px: int = 80, second_face_ratio: float = 0.25) -> Person:
    """Embed one person's reference photos, refusing any photo whose face is absent, small or unclear."""
    from faketrace.datasets.media import read_image_frames

    if not consent or not str(consent).strip():
        raise ReferenceRefused("people_consent is required: the person's consent or the legal basis for searching "
                               "for her face (it is recorded in the custody record)")
    if not folder.is_dir():
        raise ReferenceRefused(f"{name}: the reference folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ReferenceRefused(f"{name}: the reference folder {folder} holds no photo")
    problems, embeddings, photos = [], [], []
    for f in files:
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{f.name}: not a photo (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
            continue
        try:
            frame = next(iter(read_image_frames(f, max_frames=1).frames.values()))
        except Exception as exc:
            problems.append(f"{f.name}: cannot be decoded ({type(exc).__name__}: {exc})")
            continue
        faces = sorted(detector.detect([frame])[0], key=lambda x: -x.area)
        if not faces:
            problems.append(f"{f.name}: no face found")
            continue
        # Several faces: the intended one must be clear. A second face at least a quarter of the
        # largest one's area (a person beside her, a poster, a detector false positive) makes it unclear.
        rivals = [x for x in faces[1:] if x.area >= second_face_ratio * faces[0].area]
        if rivals:
            problems.append(f"{f.name}: {len(faces)} faces, {1 + len(rivals)} of similar size: which one is "
                            "meant is not clear; crop the photo to her face")
            continue
        b = faces[0].box
        px = float(min(b[2] - b[0], b[3] - b[1]))
        if px < min_face_px:
            problems.append(f"{f.name}: the face is {px:.0f} px, under the {min_face_px} px a reference needs")
            continue
        embeddings.append(embedder.embed(frame, [b])[0])
        photos.append({"sha256": _sha256_file(f), "faces_detected": len(faces), "face_px": round(px, 1)})
    if problems:
        raise ReferenceRefused(f"{name}: {len(problems)} of {len(files)} reference photos refused (remove or "
                               "replace them and run again):\n  " + "\n  ".join(problems))
    refs = np.stack(embeddings)
    return Person(key, name, refs, photos, str(consent).strip())


def check_consistent(person: Person, policy: MatchPolicy) -> None:
    """Refuse a folder whose photos do not look like one person (two of them beyond the uncertain threshold)."""
    refs = person.references
    for i in range(len(refs)):
        for j in range(i + 1, len(refs)):
            d = float(np.linalg.norm(refs[i] - refs[j]))
            if d > policy.uncertain_threshold:
                raise ReferenceRefused(
                    f"{person.name}: reference photos {i + 1} and {j + 1} (SHA-256 {person.photos[i]['sha256'][:12]}, "
                    f"{person.photos[j]['sha256'][:12]}) are {d:.3f} apart, beyond the uncertain threshold "
                    f"{policy.uncertain_threshold:.3f}: they may show different people")


def _sha256_file(path: Path) -> str:
    from faketrace.datasets.io import sha256_file

    return sha256_file(path)


# -- matching during the scan ---------------------------------------------------------------------
@dataclass
class PeopleMatcher:
    people: list[Person]
    embedder: object  # DlibFaceEmbedder (or any object with embed_chips/chip and spec)
    policy: MatchPolicy
    faces_per_track: int = 4
    min_face_px: int = 40

    def faces_to_embed(self, chosen: list) -> list[int]:
        """Indices of the chosen faces to embed: per track, up to `faces_per_track` spread over time."""
        by_track: dict[int, list[int]] = {}
        for i, c in enumerate(chosen):
            b = c.face.box
            if min(b[2] - b[0], b[3] - b[1]) < self.min_face_px:
                continue
            by_track.setdefault(c.track_id, []).append(i)
        keep = []
        for idx in by_track.values():
            if len(idx) > self.faces_per_track:
                idx = [idx[int(round(x))] for x in np.linspace(0, len(idx) - 1, self.faces_per_track)]
            keep.extend(idx)
        return sorted(set(keep))

    def match(self, frames: dict, chosen: list) -> tuple[dict, dict[int, list[dict]]]:
        """Item-level people result and per-face matches ({face index: [match, ...]}); no embedding kept."""
        todo = self.faces_to_embed(chosen)
        small = sum(1 for c in chosen if min(c.face.box[2] - c.face.box[0], c.face.box[3] - c.face.box[1])
                    < self.min_face_px)
        item = {"faces_compared": len(todo), "faces_too_small": int(small), "matches": []}
        per_face: dict[int, list[dict]] = {}
        if not todo or not self.people:
            return item, per_face
        chips = [self.embedder.chip(frames[chosen[i].frame_index], chosen[i].face.box) for i in todo]
        emb = self.embedder.embed_chips(chips)
        for person in self.people:
            d = distances(emb, person.references)
            best = None
            for i, dist in zip(todo, d, strict=True):
                decision = self.policy.decide(float(dist))
                if decision is None:
                    continue
                m = {"person": person.key, "decision": decision, "distance": round(float(dist), 4)}
                per_face.setdefault(i, []).append(m)
                if best is None or dist < best["distance"]:
                    best = {**m, "frame_index": int(chosen[i].frame_index), "face_index": int(i),
                            "track_id": int(chosen[i].track_id),
                            "box": [round(float(v), 2) for v in chosen[i].face.box]}
            if best is not None:
                best["faces_matched"] = sum(1 for ms in per_face.values() for m in ms
                                            if m["person"] == person.key and m["decision"] == "match")
                best["faces_uncertain"] = sum(1 for ms in per_face.values() for m in ms
                                              if m["person"] == person.key and m["decision"] == "uncertain")
                item["matches"].append(best)
        del emb  # embeddings of faces leave with this item: none is stored
        return item, per_face


def key_for(index: int) -> str:
    return f"P{index + 1}"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:64] or "person"
