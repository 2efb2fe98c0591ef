"""Embedded demo media: short videos and stills of pseudo-identities, real and manipulated.

Nothing is downloaded. Every face is made from one public-domain photograph that ships with
scikit-image (the astronaut, NASA), turned into many pseudo-identities by morphs: an elastic
warp of the face geometry, skin tone, hair colour, lighting, background, pose, scale and motion
across frames. Purely procedural drawings are not found by RetinaFace-class detectors, so the
demo starts from a real face to exercise the real face pipeline.

Fakes are made by manipulation operators applied inside the inner face region, each recorded
in the index `method` column:

* ``face_swap``: the inner face of another pseudo-identity (same pose) pasted in with a colour
  mismatch and a soft blended boundary;
* ``local_resample``: the inner face downscaled and upscaled again (resampling traces);
* ``double_jpeg``: the inner face taken from a twice JPEG-compressed copy of the frame at low
  quality with shifted block grids.

The ground-truth face box and 5 landmarks of every frame are known from the geometry and
written beside the index (``truth.parquet``), so the face pipeline can be tested against them.

The data are synthetic: a model trained on them has learned these operators on this one face,
and is not fit for casework.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
from PIL import Image

from faketrace.datasets.io import atomic_path
from faketrace.datasets.schema import write_index

log = logging.getLogger(__name__)

ADAPTER_VERSION = "demo/1"
OPERATORS = ("face_swap", "local_resample", "double_jpeg")

# The astronaut's face as RetinaFace reports it on the 512x512 original (box x, y, w, h and the
# 5 landmarks: right eye, left eye, nose, right and left mouth corner, in image coordinates).
_ASTRONAUT_BOX = (177.0, 56.0, 95.0, 120.0)
_ASTRONAUT_LANDMARKS = np.array([[204, 100], [247, 103], [223, 129], [202, 138], [244, 140]], np.float32)
# The head patch cut from the photograph (x0, y0, size): face, hair and a little of the suit.
_HEAD_PATCH = (104, 0, 240)


@dataclass(frozen=True)
class Identity:
    """Appearance parameters of one pseudo-identity; every video of the person shares them."""

    name: str
    warp_seed: int
    warp_amplitude: float
    aspect: float
    skin_gain: tuple[float, float, float]
    hair_hue_shift: int
    hair_value: float


def _astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def _smooth_field(rng: np.random.Generator, size: int, amplitude: float, cells: int = 4) -> np.ndarray:
    """A low-frequency displacement field (size, size, 2): bicubic upsampling of a coarse grid."""
    coarse = rng.normal(0.0, amplitude, size=(cells, cells, 2)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


class DemoRenderer:
    """Renders frames of pseudo-identities with known face geometry."""

    def __init__(self, frame_size: int, face_fraction: tuple[float, float]):
        self.frame_size = frame_size
        self.face_fraction = face_fraction
        x0, y0, size = _HEAD_PATCH
        self.patch = _astronaut()[y0:y0 + size, x0:x0 + size].astype(np.float32)
        self.patch_size = size
        self.landmarks = _ASTRONAUT_LANDMARKS - np.array([x0, y0], np.float32)
        bx, by, bw, bh = _ASTRONAUT_BOX
        self.box = np.array([bx - x0, by - y0, bx - x0 + bw, by - y0 + bh], np.float32)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        cx, cy = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2 - 8
        # Soft head mask (face and hair) for compositing onto new backgrounds.
        head = ((xx - cx) / 98) ** 2 + ((yy - cy) / 112) ** 2
        self.head_mask = np.clip((1.15 - head) / 0.3, 0, 1)[..., None]
        # Skin: an ellipse over the face box (keeps the hair recolouring off the face).
        fx, fy = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2 + 4
        skin = ((xx - fx) / 50) ** 2 + ((yy - fy) / 64) ** 2
        self.skin_mask = cv2.GaussianBlur(np.clip((1.0 - skin) / 0.25, 0, 1), (0, 0), 4)[..., None]
        # The hair recolouring fades out over 40 px below the forehead: a hard cut at one row drew a
        # straight colour edge beside the cheeks of every real face, a splice-like trace (the demo
        # detector's most confident false positives had the strongest hair recolouring).
        fade = np.clip((fy + 10 - yy) / 40 + 0.5, 0, 1)
        self.hair_mask = (np.clip(self.head_mask - self.skin_mask * 1.5, 0, 1) * fade[..., None]).astype(np.float32)

    # -- identity appearance -------------------------------------------------------------
    def identity_patch(self, ident: Identity) -> np.ndarray:
        rng = np.random.default_rng(ident.warp_seed)
        size = self.patch_size
        field = _smooth_field(rng, size, ident.warp_amplitude)
        # Keep the warp small near the eyes so the detector still sees a face.
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        cx = (self.box[0] + self.box[2]) / 2
        map_x = cx + (xx - cx) / ident.aspect + field[..., 0]
        map_y = yy + field[..., 1]
        patch = cv2.remap(self.patch, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # The identity's tone covers the whole head patch. Tinting only an ellipse over the face left
        # every real face with a soft elliptical colour seam -- the trace face_swap leaves, and up to
        # 47 % off for the darkest tones against face_swap's 10-20 % -- so the demo detector learned to
        # call dark-toned real faces manipulated (real-score rank correlation 0.42 with the tint's
        # strength, p = 0.016, over the 32 val/test identities of the 2026-12-05 demo model).
        patch = patch * np.array(ident.skin_gain, np.float32)
        hsv = cv2.cvtColor(np.clip(patch, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hair = hsv.copy()
        hair[..., 0] = (hair[..., 0] + ident.hair_hue_shift) % 180
        hair[..., 2] = hair[..., 2] * ident.hair_value
        hair_rgb = cv2.cvtColor(np.clip(hair, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        patch = patch * (1 - self.hair_mask) + hair_rgb * self.hair_mask
        # The warp moves the landmarks; invert the mapping approximately for the truth.
        return patch

    def warped_geometry(self, ident: Identity) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks and box of the identity patch (inverse of identity_patch's aspect warp)."""
        rng = np.random.default_rng(ident.warp_seed)
        field = _smooth_field(rng, self.patch_size, ident.warp_amplitude)
        cx = (self.box[0] + self.box[2]) / 2

        def forward(pts: np.ndarray) -> np.ndarray:
            out = pts.copy()
            for _ in range(3):  # fixed-point inversion of the remap
                xi = np.clip(out[:, 0].round().astype(int), 0, self.patch_size - 1)
                yi = np.clip(out[:, 1].round().astype(int), 0, self.patch_size - 1)
                d = field[yi, xi]
                out[:, 0] = cx + (pts[:, 0] - d[:, 0] - cx) * ident.aspect
                out[:, 1] = pts[:, 1] - d[:, 1]
            return out

        lm = forward(self.landmarks)
        corners = forward(self.box.reshape(2, 2))
        return lm, corners.reshape(4)

    # -- scene -----------------------------------------------------------------------------
    def background(self, rng: np.random.Generator) -> np.ndarray:
        s = self.frame_size
        c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
        t = np.linspace(0, 1, s, dtype=np.float32)
        angle = rng.uniform(0, np.pi)
        ramp = np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
        bg = c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]
        for _ in range(int(rng.integers(2, 6))):
            cv2.circle(bg, (int(rng.integers(0, s)), int(rng.integers(0, s))), int(rng.integers(s // 12, s // 4)),
                       tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
        bg = cv2.GaussianBlur(bg.astype(np.float32), (0, 0), 3)
        return bg + rng.normal(0, 3, bg.shape).astype(np.float32)

    def place(self, patch: np.ndarray, bg: np.ndarray, scale: float, angle: float, centre: tuple[float, float],
              light: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Composite a head patch onto a background; return the frame and the 2x3 affine used."""
        s = self.frame_size
        half = self.patch_size / 2
        m = cv2.getRotationMatrix2D((half, half), angle, scale)
        m[:, 2] += np.array(centre) - half
        head = cv2.warpAffine(patch, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = cv2.warpAffine(self.head_mask, m, (s, s), flags=cv2.INTER_LINEAR)[..., None]
        frame = bg * (1 - mask) + head * mask
        # Directional light: a linear gain across the frame.
        gx, gy, level = light
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
        frame = frame * (level + gx * xx + gy * yy)[..., None]
        return frame, m

    @staticmethod
    def transform(points: np.ndarray, m: np.ndarray) -> np.ndarray:
        return points @ m[:, :2].T + m[:, 2]


def _inner_face_mask(landmarks: np.ndarray, size: int, feather: float, rng: np.random.Generator) -> np.ndarray:
    """A soft mask covering eyes, nose and mouth: an ellipse fitted around the 5 landmarks."""
    centre = landmarks.mean(axis=0)
    eye_dist = np.linalg.norm(landmarks[1] - landmarks[0])
    axes = (eye_dist * rng.uniform(0.95, 1.15), eye_dist * rng.uniform(1.15, 1.35))
    angle = np.degrees(np.arctan2(*(landmarks[1] - landmarks[0])[::-1]))
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1] + eye_dist * 0.1)), (int(axes[0]), int(axes[1])),
                angle, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, feather * eye_dist))[..., None]


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def apply_operator(op: str, frame: np.ndarray, mask: np.ndarray, donor: np.ndarray | None,
                   rng: np.random.Generator, gen: dict) -> np.ndarray:
    """Manipulate the inner face region of a float RGB frame; `mask` is the soft region."""
    if op == "face_swap":
        assert donor is not None
        # Every channel is off by at least the lower bound, in a random direction.
        gain = 1.0 + rng.choice([-1.0, 1.0], 3) * rng.uniform(*gen["swap_colour_mismatch"], 3)
        source = donor * gain
    elif op == "local_resample":
        s = frame.shape[0]
        f = rng.uniform(*gen["resample_factor"])
        small = cv2.resize(frame, (max(8, int(s * f)), max(8, int(s * f))), interpolation=cv2.INTER_AREA)
        source = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
    elif op == "double_jpeg":
        q1, q2 = (int(rng.integers(*gen["jpeg_quality_first"])), int(rng.integers(*gen["jpeg_quality_second"])))
        shift = int(rng.integers(1, 8))
        once = _jpeg(np.clip(frame, 0, 255).astype(np.uint8), q1)
        shifted = np.pad(once, ((shift, 0), (shift, 0), (0, 0)), mode="edge")
        twice = _jpeg(shifted, q2)[shift:, shift:]
        source = twice.astype(np.float32)
    else:
        raise ValueError(f"unknown manipulation operator {op!r}; known: {OPERATORS}")
    return frame * (1 - mask) + source * mask


def _write_video(path: Path, frames: list[np.ndarray], fps: int, crf: int) -> None:
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
            stream.pix_fmt = "yuv420p"
            # Single-threaded and without macroblock-tree rate control: with mbtree on, this x264
            # build gave different bytes for identical frames in about 1 of 4 encodes, and the
            # demo must be byte-reproducible from its seed.
            stream.options = {"crf": str(crf), "preset": "veryfast",
                              "x264-params": "threads=1:lookahead-threads=1:mbtree=0"}
            stream.codec_context.thread_count = 1
            for f in frames:
                packet = stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24"))
                container.mux(packet)
            container.mux(stream.encode(None))


def _write_image(path: Path, frame: np.ndarray, quality: int) -> None:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def make_identities(n: int, seed: int, gen: dict) -> list[Identity]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        tone = rng.uniform(*gen["skin_tone_range"])
        out.append(Identity(
            name=f"id{i:03d}", warp_seed=int(rng.integers(0, 2**31)),
            warp_amplitude=float(rng.uniform(*gen["warp_amplitude"])),
            aspect=float(rng.uniform(0.9, 1.1)),
            skin_gain=(float(tone * rng.uniform(0.95, 1.1)), float(tone * rng.uniform(0.85, 1.0)),
                       float(tone * rng.uniform(0.75, 0.95))),
            hair_hue_shift=int(rng.integers(0, 180)), hair_value=float(rng.uniform(0.4, 1.3))))
    return out


def split_identities(identities: list[Identity], fractions: dict) -> dict[str, str]:
    """Disjoint split by pseudo-identity (the list is already in seeded random order).

    The identities at either end of the two skin-colour axes (overall tone, and red over blue) are
    training identities, so no validation or test face has a colour beyond every training face's.
    Without this, a test identity redder than every training one was called manipulated by every
    demo model (a swapped face's colour mismatch is what they learn); that measures a gap in the
    training faces' coverage, not the detector. The rest are split in their random order.
    """
    n = len(identities)
    n_val = max(1, round(n * fractions["val"]))
    n_test = max(1, round(n * fractions["test"]))
    tone = [float(np.mean(i.skin_gain)) for i in identities]
    redness = [i.skin_gain[0] / i.skin_gain[2] for i in identities]
    anchors: list[str] = []
    for axis in (tone, redness):
        for pick in (np.argmin, np.argmax):
            name = identities[int(pick(axis))].name
            if name not in anchors and n - len(anchors) - 1 >= n_val + n_test:
                anchors.append(name)
    out = dict.fromkeys(anchors, "train")
    rest = [i for i in identities if i.name not in out]
    for k, ident in enumerate(rest):
        out[ident.name] = "val" if k < n_val else "test" if k < n_val + n_test else "train"
    return out


def generate_demo(root: str | Path, index_path: str | Path, seed: int, gen: dict, dataset: str = "demo") -> pd.DataFrame:
    """Write the demo media under `root` and the index at `index_path`; return the index.

    `dataset` names the domain in the index (demo, demo_shifted: the same generator, other settings).
    """
    root = Path(root)
    renderer = DemoRenderer(gen["frame_size"], tuple(gen["face_fraction"]))
    identities = make_identities(gen["identities"], seed, gen)
    split_of = split_identities(identities, gen["split_fractions"])
    patches = {ident.name: renderer.identity_patch(ident) for ident in identities}
    geometry = {ident.name: renderer.warped_geometry(ident) for ident in identities}
    by_split: dict[str, list[Identity]] = {}
    for ident in identities:
        by_split.setdefault(split_of[ident.name], []).append(ident)
    if "face_swap" in gen["operators"] and min(len(v) for v in by_split.values()) < 2:
        raise ValueError(f"face_swap needs 2 identities in every split; {gen['identities']} identities give "
                         f"{ {k: len(v) for k, v in by_split.items()} }: raise data.generator.identities")

    rows, truth = [], []
    rng = np.random.default_rng(seed + 1)
    for ident in identities:
        split = split_of[ident.name]
        # Donors for face swaps come from the same split, so test fakes show no training face.
        donors = [d for d in by_split[split] if d.name != ident.name]
        plans = [("real", None, k) for k in range(gen["real_videos_per_identity"])]
        plans += [(op, None, k) for op in gen["operators"] for k in range(gen["fake_videos_per_operator"])]
        for kind in ("video", "image"):
            for method, _, k in plans:
                if kind == "image" and k >= gen["images_per_plan"]:
                    continue
                item_rng = np.random.default_rng(rng.integers(0, 2**63))
                donor = donors[int(item_rng.integers(len(donors)))] if method == "face_swap" else None
                n_frames = gen["video_length"] if kind == "video" else 1
                frames, frame_truth = _render_item(renderer, ident, patches, geometry, donor, method, n_frames,
                                                   item_rng, gen)
                item_id = f"{ident.name}_{kind}_{method}_{k}"
                ext = "mp4" if kind == "video" else "jpg"
                # A folder per split: the demo scan reads only the test split, media no model trained on.
                rel = f"{split}/{kind}s/{item_id}.{ext}"
                if kind == "video":
                    _write_video(root / rel, frames, gen["fps"], gen["video_crf"])
                else:
                    _write_image(root / rel, frames[0], gen["image_quality"])
                rows.append(dict(
                    id=item_id, dataset=dataset, split=split, label=0 if method == "real" else 1, method=method,
                    compression=f"crf{gen['video_crf']}" if kind == "video" else f"q{gen['image_quality']}",
                    media_type=kind, path=rel, source_identity=ident.name,
                    target_identity=donor.name if donor else None, original_id=None, mask_path=None,
                    adapter_version=ADAPTER_VERSION))
                for fi, (box, lm) in enumerate(frame_truth):
                    truth.append(dict(video_id=item_id, frame_index=fi, x0=box[0], y0=box[1], x1=box[2], y1=box[3],
                                      landmarks=lm.reshape(-1).tolist()))
    df = pd.DataFrame(rows)
    meta = {"generator": gen, "seed": seed, "synthetic": True,
            "identity": "pseudo-identity made by morphing one photograph; splits are disjoint by it"}
    write_index(df, index_path, meta)
    truth_path = Path(index_path).with_name("truth.parquet")
    with atomic_path(truth_path) as tmp:
        pd.DataFrame(truth).to_parquet(tmp, index=False)
    log.info("demo: %d items (%s) written under %s", len(df), json.dumps(df.groupby(["split", "method"]).size()
                                                                         .unstack(fill_value=0).to_dict()), root)
    return df


def _render_item(renderer: DemoRenderer, ident: Identity, patches: dict, geometry: dict, donor: Identity | None,
                 method: str, n_frames: int, rng: np.random.Generator, gen: dict):
    s = renderer.frame_size
    bg = renderer.background(rng)
    lo, hi = renderer.face_fraction
    face_h = rng.uniform(lo, hi) * s  # face box height as a fraction of the frame
    base_scale = face_h / (renderer.box[3] - renderer.box[1])
    start = np.array([rng.uniform(0.4, 0.6) * s, rng.uniform(0.45, 0.6) * s])
    velocity = rng.normal(0, gen["motion_px_per_frame"], 2)
    angle0, spin = rng.uniform(-8, 8), rng.normal(0, 0.6)
    light = (rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(0.75, 1.15))
    lm_patch, box_patch = geometry[ident.name]
    frames, truth = [], []
    for t in range(n_frames):
        scale = base_scale * (1 + 0.01 * np.sin(t / 3))
        frame, m = renderer.place(patches[ident.name], bg, scale, angle0 + spin * t, tuple(start + velocity * t), light)
        lm = renderer.transform(lm_patch, m)
        corners = renderer.transform(np.array([[box_patch[0], box_patch[1]], [box_patch[2], box_patch[1]],
                                               [box_patch[0], box_patch[3]], [box_patch[2], box_patch[3]]]), m)
        box = np.concatenate([corners.min(0), corners.max(0)])
        if method != "real":
            mask_rng = np.random.default_rng(int(rng.integers(0, 2**63)))
            mask = _inner_face_mask(lm, s, gen["blend_feather"], mask_rng)
            donor_frame = None
            if donor is not None:
                donor_frame, _ = renderer.place(patches[donor.name], bg, scale, angle0 + spin * t,
                                                tuple(start + velocity * t), light)
            frame = apply_operator(method, frame, mask, donor_frame, rng, gen)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        truth.append((box.astype(np.float32), lm.astype(np.float32)))
    return frames, truth
