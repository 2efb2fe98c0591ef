"""Demo evidence for finding a person of interest, made from distinct real faces.

The demo generator's pseudo-identities are one person to a face-recognition model, so this demo
uses real, public-domain faces (the official portraits in tests/data/people, SOURCE.md there) and
makes from them what such cases hold: a face swap (her face on somebody else's head and body), an
"undressed" picture (her body regenerated, her real face kept), a re-compressed copy of the swap,
and a picture of somebody else, posted in two Telegram chat exports (JSON, as Telegram Desktop
writes them) at known times, the earliest forwarded from a channel outside the evidence.

    python scripts/make_demo_data.py ... is for training data; this one is built by
    `make demo-people` through `python -m faketrace.datasets.demo_people OUT_DIR`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from faketrace.datasets.faces import similarity_transform

PORTRAITS = Path(__file__).resolve().parents[1] / "tests" / "data" / "people"


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 92) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return path


def _largest(detector, img):
    faces = detector.detect([img])[0]
    if not faces:
        raise ValueError("no face found")
    return max(faces, key=lambda f: f.area)


def face_swap(source: np.ndarray, target: np.ndarray, detector) -> np.ndarray:
    """The source's inner face (eyes, brows, nose, mouth, cheeks) warped onto the target's head, feathered in."""
    fs, ft = _largest(detector, source), _largest(detector, target)
    m = similarity_transform(fs.landmarks, ft.landmarks)
    warped = cv2.warpAffine(source, m, (target.shape[1], target.shape[0]), flags=cv2.INTER_LINEAR)
    lm = ft.landmarks
    centre = lm.mean(0)
    eye = float(np.linalg.norm(lm[1] - lm[0]))
    mask = np.zeros(target.shape[:2], np.float32)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1] + 0.1 * eye)), (int(1.1 * eye), int(1.45 * eye)), 0, 0, 360,
                1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), eye * 0.12)[..., None]
    return (warped * mask + target * (1 - mask)).astype(np.uint8)


def undress(img: np.ndarray, detector, seed: int = 0) -> np.ndarray:
    """What an "undressing" bot does to a photo: everything below the chin regenerated, the face kept."""
    f = _largest(detector, img)
    chin = int(f.box[3] + 0.05 * (f.box[3] - f.box[1]))
    out = img.copy()
    h, w = img.shape[:2]
    yy, xx = np.mgrid[chin:h, 0:w]
    body = np.stack([200 + 20 * np.sin(xx / 17.0), 160 + 15 * np.cos(yy / 23.0), 140 + 0 * xx], -1)
    noise = np.random.default_rng(seed).normal(0, 6, body.shape)
    out[chin:] = np.clip(body + noise, 0, 255).astype(np.uint8)
    return out


def telegram_export(root: Path, chat: str, chat_id: int, posts: list[tuple[int, int, str, Path, str | None]]) -> Path:
    """A one-chat Telegram Desktop JSON export: posts are (message id, unix time, sender, media, forwarded from)."""
    (root / "photos").mkdir(parents=True, exist_ok=True)
    messages = []
    for msg_id, unix, sender, media, forwarded in posts:
        rel = f"photos/photo_{msg_id}.jpg"
        shutil.copyfile(media, root / rel)
        msg = {"id": msg_id, "type": "message", "date": "", "date_unixtime": str(unix), "from": sender,
               "from_id": f"user{msg_id}", "photo": rel, "text": "", "text_entities": []}
        if forwarded:
            msg["forwarded_from"] = forwarded
        messages.append(msg)
    (root / "result.json").write_text(json.dumps({"name": chat, "type": "private_supergroup", "id": chat_id,
                                                  "messages": messages}, indent=1))
    return root


def make_people_evidence(out: Path, detector=None, portraits: Path = PORTRAITS) -> dict:
    """Two chat exports and a reference folder under `out`; returns their paths and what each post holds."""
    from faketrace.datasets.faces import build_detector

    detector = detector or build_detector("retinaface", threads=1)
    her_other_photo = read_rgb(portraits / "biden_arms_crossed.jpg")
    somebody_else = read_rgb(portraits / "obama_2012.jpg")
    media = out / "made"
    swap = face_swap(her_other_photo, somebody_else, detector)
    files = {"swap": write_jpeg(media / "swap.jpg", swap),
             "swap_copy": write_jpeg(media / "swap_copy.jpg", cv2.resize(swap, None, fx=0.9, fy=0.9), quality=70),
             "undressed": write_jpeg(media / "undressed.jpg", undress(her_other_photo, detector)),
             "somebody_else": write_jpeg(media / "somebody_else.jpg", somebody_else)}
    # Chat B holds the earliest post (forwarded from a channel outside the evidence); chat A re-posts it later.
    chat_b = telegram_export(out / "evidence" / "ChatExport_B", "Trading room", 22, [
        (3, 1795168800, "Sender B", files["swap"], "Channel Z"), (4, 1795169000, "Sender C", files["undressed"], None)])
    chat_a = telegram_export(out / "evidence" / "ChatExport_A", "Class 9b", 11, [
        (5, 1795170000, "Sender A", files["swap_copy"], None), (6, 1795170600, "Sender A", files["somebody_else"], None)])
    reference = out / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(portraits / "biden_portrait.jpg", reference / "portrait.jpg")
    shutil.rmtree(media)  # the evidence holds the only copies
    return {"inputs": [chat_a, chat_b], "reference": reference,
            "her_items": ["0/photos/photo_5.jpg", "1/photos/photo_3.jpg", "1/photos/photo_4.jpg"],
            "somebody_else": "0/photos/photo_6.jpg"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m faketrace.datasets.demo_people OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    shutil.rmtree(out, ignore_errors=True)
    made = make_people_evidence(out)
    print(json.dumps({k: [str(p) for p in v] if isinstance(v, list) and k == "inputs" else str(v)
                      for k, v in made.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
