"""Pseudo-fakes made on the fly from real faces: self-blended images and nearest-identity blends.

Both recipes paste a foreground face into a real face (the background) through a soft mask M
and return the mask, so the blending-boundary family can learn Face X-ray's 4 M (1 - M):

* ``sbi`` (self-blended images; Shiohara & Yamasaki, CVPR 2022, Sec. 3): the foreground is the
  same face, perturbed in colour and frequency and slightly shifted and scaled. As in the
  authors' release, the perturbation goes to the background instead with probability 1/2; the
  background returned is then the perturbed one, so the blend always differs from its
  background only where M > 0. Real faces get the same global perturbation with the same
  probability (the release's real of a pair is that background), so "perturbed somewhere" is
  no shortcut to "fake".
* ``xray`` (Face X-ray; Li et al., CVPR 2020, Sec. 3): the foreground is the face of another
  identity whose landmarks are among the k nearest (computed once when a data set is bound),
  aligned onto the background face by its landmarks and colour-matched inside the mask.

Masks start from a face hull: with the 5 landmarks the manifest stores (eyes, nose, mouth
corners) a face outline (jaw line and brows) is placed by the similarity that maps the 5-point
alignment template onto them; denser landmarks (68 points and the like) give their convex hull.
The hull is deformed by a smooth random field, shrunk, blurred, scaled by a blend ratio, and
kept inside the face box (zero outside it).

Everything draws from generators seeded per sample, so a sample's pseudo-fake is the same with
any number of loader workers and after a resume. The data set gives a pseudo-fake the seed (and
the frames, and the augmentation) of the real crop it is made from: as in SBI's batches of
pairs, a real and its self-blend then differ only where the mask is non-zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from faketrace.datasets.face_pipeline import PreprocessSpec, crop_matrix
from faketrace.datasets.faces import ALIGN_TEMPLATE_112, similarity_transform

log = logging.getLogger(__name__)

METHODS = ("sbi", "xray")

# A face outline (jaw line from ear level round the chin, brows on top) in the frame of the
# 112 x 112 alignment template: drawn to cover what a 68-landmark hull covers, inside the box a
# RetinaFace detection of the same face would have.
FACE_OUTLINE_112 = np.array([
    [18, 50], [19, 65], [22, 79], [28, 92], [37, 102], [46, 108], [56, 110], [66, 108], [75, 102],
    [84, 92], [90, 79], [93, 65], [94, 50], [88, 38], [74, 33], [56, 35], [38, 33], [24, 38]], np.float32)


# -- masks ---------------------------------------------------------------------------------------
def face_hull(landmarks: np.ndarray) -> np.ndarray:
    """(M, 2) polygon around the face: the placed outline for 5 points, else the convex hull."""
    pts = np.asarray(landmarks, np.float32).reshape(-1, 2)
    if len(pts) == 5:
        m = similarity_transform(ALIGN_TEMPLATE_112, pts)
        return FACE_OUTLINE_112 @ m[:, :2].T + m[:, 2]
    if len(pts) < 5:
        raise ValueError(f"need at least 5 landmarks for a face hull, got {len(pts)}")
    return cv2.convexHull(pts).reshape(-1, 2).astype(np.float32)


def hull_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary (H, W) float32 mask of the face hull."""
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(face_hull(landmarks)).astype(np.int32)], 1.0)
    return mask


def box_window(box: np.ndarray, shape: tuple[int, int], feather: float) -> np.ndarray:
    """1 inside the box, 0 outside it, with a soft inward edge of about `feather` pixels."""
    sigma = max(0.5, feather / 4)
    inset = int(np.ceil(4 * sigma)) + 1
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    window = np.zeros(shape, np.float32)
    window[max(0, y0 + inset):max(0, y1 - inset), max(0, x0 + inset):max(0, x1 - inset)] = 1.0
    blurred = cv2.GaussianBlur(window, (0, 0), sigma)
    outside = np.ones(shape, bool)
    outside[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
    blurred[outside] = 0.0
    return blurred


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], amplitude: float) -> np.ndarray:
    coarse = rng.normal(0.0, amplitude, size=(4, 4, 2)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


@dataclass
class MaskParams:
    """How a face hull becomes a soft blending mask; lengths are fractions of the face size
    (square root of the hull's area)."""

    deform: float = 0.03                  # std of the smooth random displacement
    shrink: tuple[float, float] = (0.0, 0.08)   # erosion of the hull
    blur: tuple[float, float] = (0.01, 0.06)    # Gaussian sigma of the edge
    blend_ratios: tuple[float, ...] = (1.0,)    # the mask is scaled by one of these
    box_feather: float = 0.04             # soft edge where the mask meets the face box

    def soft_mask(self, landmarks: np.ndarray, box: np.ndarray, shape: tuple[int, int],
                  rng: np.random.Generator) -> np.ndarray:
        hull = hull_mask(landmarks, shape)
        face = float(np.sqrt(max(hull.sum(), 1.0)))
        if self.deform > 0:
            field_ = _smooth_field(rng, shape, self.deform * face)
            yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
            hull = cv2.remap(hull, xx + field_[..., 0], yy + field_[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        k = int(round(rng.uniform(*self.shrink) * face))
        if k > 0:
            hull = cv2.erode(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
        sigma = rng.uniform(*self.blur) * face
        mask = cv2.GaussianBlur(hull, (0, 0), max(0.5, sigma)) if sigma > 0 else hull
        mask *= box_window(box, shape, self.box_feather * face)
        peak = float(mask.max())
        if peak <= 1e-6:
            return np.zeros(shape, np.float32)
        ratio = float(self.blend_ratios[int(rng.integers(len(self.blend_ratios)))])
        return np.clip(mask / peak, 0.0, 1.0) * ratio


@dataclass
class BlendResult:
    image: np.ndarray       # uint8 RGB: the pseudo-fake
    background: np.ndarray  # uint8 RGB: what it was blended onto (image == background where mask == 0)
    mask: np.ndarray        # float32 (H, W) in [0, 1]: the blending weight of the foreground
    method: str


def _blend(foreground: np.ndarray, background: np.ndarray, mask: np.ndarray, method: str) -> BlendResult:
    bg = np.clip(np.round(background), 0, 255).astype(np.uint8)
    fg = np.clip(np.round(foreground), 0, 255).astype(np.float32)
    m = mask[..., None]
    out = np.clip(np.round(fg * m + bg.astype(np.float32) * (1 - m)), 0, 255).astype(np.uint8)
    out[mask <= 0] = bg[mask <= 0]  # exactly the background where the foreground has no weight
    return BlendResult(out, bg, mask.astype(np.float32), method)


# -- SBI -----------------------------------------------------------------------------------------
@dataclass
class SelfBlend:
    """Self-blended image: the face pasted onto itself after colour, frequency and small
    geometric perturbations. Defaults follow the authors' release (utils/sbi.py, blend.py)."""

    perturb_background_p: float = 0.5
    rgb_shift: float = 20.0
    rgb_shift_p: float = 0.3
    brightness: float = 0.1
    contrast: float = 0.1
    frequency: tuple[str, ...] = ("downscale", "sharpen")   # one of these, chosen uniformly
    downscale_factors: tuple[int, ...] = (2, 4)
    sharpen_alpha: tuple[float, float] = (0.2, 0.5)
    sharpen_lightness: tuple[float, float] = (0.5, 1.0)
    translate: tuple[float, float] = (0.03, 0.015)          # max shift, fraction of width, height
    scale: tuple[float, float] = (0.95, 1 / 0.95)
    mask: MaskParams = field(default_factory=lambda: MaskParams(blend_ratios=(0.25, 0.5, 0.75, 1.0, 1.0, 1.0)))

    def __post_init__(self):
        if isinstance(self.mask, dict):
            self.mask = MaskParams(**self.mask)
        unknown = set(self.frequency) - {"downscale", "sharpen"}
        if unknown:
            raise ValueError(f"unknown SBI frequency perturbations {sorted(unknown)}; use downscale, sharpen")

    def perturb(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = image.astype(np.float32)
        if rng.random() < self.rgb_shift_p:
            img = img + rng.uniform(-self.rgb_shift, self.rgb_shift, 3).astype(np.float32)
        alpha = 1.0 + rng.uniform(-self.contrast, self.contrast)
        beta = 255.0 * rng.uniform(-self.brightness, self.brightness)
        img = np.clip(img * alpha + beta, 0, 255)
        if self.frequency:
            kind = self.frequency[int(rng.integers(len(self.frequency)))]
            h, w = img.shape[:2]
            if kind == "downscale":
                f = int(self.downscale_factors[int(rng.integers(len(self.downscale_factors)))])
                small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
                img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            else:
                a, light = rng.uniform(*self.sharpen_alpha), rng.uniform(*self.sharpen_lightness)
                effect = np.array([[-1, -1, -1], [-1, 8 + light, -1], [-1, -1, -1]], np.float32)
                identity = np.zeros((3, 3), np.float32)
                identity[1, 1] = 1
                img = cv2.filter2D(img, -1, (1 - a) * identity + a * effect, borderType=cv2.BORDER_REFLECT)
        return np.clip(img, 0, 255)

    def shift_scale(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        s = rng.uniform(*self.scale)
        tx, ty = rng.uniform(-1, 1) * self.translate[0] * w, rng.uniform(-1, 1) * self.translate[1] * h
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
        m[:, 2] += (tx, ty)
        return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def real_view(self, image: np.ndarray, seed: int) -> np.ndarray:
        """The real of the pair `__call__(image, ..., seed)` makes: its background, i.e. the
        image itself or, with probability `perturb_background_p`, the globally perturbed image
        (the release returns that background as the pair's real). Same seed, same draw, so the
        pair differs only where the mask is non-zero and a global change is no cue."""
        rng = np.random.default_rng([seed, 1])
        if rng.random() < self.perturb_background_p:
            return np.clip(np.round(self.perturb(image, rng)), 0, 255).astype(np.uint8)
        return image

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, box: np.ndarray, seed: int) -> BlendResult:
        pair = np.random.default_rng([seed, 1])  # shared with real_view: which side, what perturbation
        rng = np.random.default_rng([seed, 2])
        mask = self.mask.soft_mask(landmarks, box, image.shape[:2], rng)
        foreground, background = image.astype(np.float32), image.astype(np.float32)
        if pair.random() < self.perturb_background_p:
            background = self.perturb(image, pair)
        else:
            foreground = self.perturb(image, pair)
        return _blend(self.shift_scale(foreground, rng), background, mask, "sbi")


# -- Face X-ray ----------------------------------------------------------------------------------
@dataclass
class NearestIdentityBlend:
    """Another identity's face with the nearest landmarks, aligned and colour-matched."""

    neighbours: int = 100          # donors are drawn from this many nearest faces of other identities
    colour_transfer: bool = True   # match the donor's per-channel mean and std inside the hull
    mask: MaskParams = field(default_factory=MaskParams)

    def __post_init__(self):
        if isinstance(self.mask, dict):
            self.mask = MaskParams(**self.mask)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, box: np.ndarray, donor: np.ndarray,
                 donor_landmarks: np.ndarray, rng: np.random.Generator) -> BlendResult:
        h, w = image.shape[:2]
        m = similarity_transform(np.asarray(donor_landmarks).reshape(-1, 2), np.asarray(landmarks).reshape(-1, 2))
        foreground = cv2.warpAffine(donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        foreground = foreground.astype(np.float32)
        mask = self.mask.soft_mask(landmarks, box, (h, w), rng)
        if self.colour_transfer:
            region = hull_mask(landmarks, (h, w)) > 0
            if region.sum() > 16:
                fg, bg = foreground[region], image.astype(np.float32)[region]
                scale = (bg.std(0) + 1e-3) / (fg.std(0) + 1e-3)
                foreground = (foreground - fg.mean(0)) * scale + bg.mean(0)
        return _blend(foreground, image, mask, "xray")


# -- binding to a table of face crops ---------------------------------------------------------------
def crop_geometry(table: pd.DataFrame, spec: PreprocessSpec) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Landmarks (K, 2) and face boxes (x0, y0, x1, y1) of each row in its crop's pixels."""
    landmarks: list[np.ndarray | None] = []
    boxes = np.full((len(table), 4), np.nan, np.float32)
    for i, row in enumerate(table.itertuples(index=False)):
        lm = getattr(row, "landmarks", None)
        if lm is None or (not isinstance(lm, (list, tuple, np.ndarray))) or len(lm) < 10:
            landmarks.append(None)
            continue
        pts = np.asarray(lm, np.float32).reshape(-1, 2)
        box = np.array([row.x0, row.y0, row.x1, row.y1], np.float32)
        m = crop_matrix(box, pts, spec)
        landmarks.append(pts @ m[:, :2].T + m[:, 2])
        corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]], np.float32)
        c = corners @ m[:, :2].T + m[:, 2]
        boxes[i] = [c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()]
    return landmarks, boxes


class Synthesis:
    """What `synthesis=` configures: which recipes, and how they enter training and validation.

    `expand` turns a split's face table into the table a data set serves: the real rows (all
    rows unless `real_only`) followed by one pseudo-fake copy of every real row with landmarks
    per method (label 1, `method` = the recipe, `video_id` = the source video + "~" + recipe,
    `synth_source` = the row it is made from). `bind` precomputes landmarks in crop pixels and,
    for ``xray``, every row's nearest other-identity faces.
    """

    def __init__(self, methods=("sbi",), real_only: bool = True, validate_on: str = "synthetic",
                 sbi: dict | None = None, xray: dict | None = None):
        self.methods = tuple(methods)
        unknown = set(self.methods) - set(METHODS)
        if not self.methods or unknown:
            raise ValueError(f"synthesis methods must be a non-empty subset of {METHODS}, got {list(methods)}")
        if validate_on not in ("synthetic", "data"):
            raise ValueError(f"validate_on must be synthetic or data, got {validate_on!r}")
        self.real_only = bool(real_only)
        self.validate_on = validate_on
        self.sbi = SelfBlend(**_tuples(sbi or {}))
        self.xray = NearestIdentityBlend(**_tuples(xray or {}))

    def expand(self, table: pd.DataFrame) -> pd.DataFrame:
        base = (table[table["label"] == 0] if self.real_only else table).reset_index(drop=True)
        base = base.assign(synth_source=-1)
        has_lm = np.array([isinstance(v, (list, tuple, np.ndarray)) and len(v) >= 10 for v in base["landmarks"]],
                          dtype=bool)
        sources = np.flatnonzero((base["label"].to_numpy() == 0) & has_lm)
        copies = []
        for method in self.methods:
            c = base.iloc[sources].copy()
            c["synth_source"] = sources
            c["label"] = 1
            c["method"] = method
            c["video_id"] = c["video_id"].astype(str) + "~" + method
            copies.append(c)
        skipped = int(((base["label"] == 0).to_numpy() & ~has_lm).sum())
        if skipped:
            log.warning("synthesis: %d real crops have no landmarks and get no pseudo-fake", skipped)
        out = pd.concat([base, *copies], ignore_index=True)
        # Each video followed by its pseudo-fake videos, so any slice of the table holds both.
        source = out["synth_source"].to_numpy()
        video = np.where(source >= 0, base["video_id"].to_numpy()[np.maximum(source, 0)], out["video_id"].to_numpy())
        rank = np.concatenate([np.zeros(len(base), int)] + [np.full(len(sources), m + 1) for m in range(len(copies))])
        order = np.lexsort((out["frame_index"].to_numpy(), rank, video.astype(str)))
        out = out.iloc[order].reset_index(drop=True)
        new_position = np.empty(len(order), np.int64)
        new_position[order] = np.arange(len(order))
        src = out["synth_source"].to_numpy()
        out["synth_source"] = np.where(src >= 0, new_position[np.maximum(src, 0)], -1)
        return out

    def bind(self, table: pd.DataFrame, spec: PreprocessSpec) -> SynthesisPlan:
        return SynthesisPlan(self, table, spec)


def _tuples(d: dict) -> dict:
    """Config lists as tuples (the dataclasses' field types), nested mask params included."""
    out = {}
    for k, v in dict(d).items():
        if isinstance(v, dict):
            out[k] = _tuples(v)
        elif isinstance(v, list):
            out[k] = tuple(v)
        else:
            out[k] = v
    return out


class SynthesisPlan:
    """A `Synthesis` bound to one expanded table: per-row crop geometry and donor candidates."""

    def __init__(self, synthesis: Synthesis, table: pd.DataFrame, spec: PreprocessSpec):
        self.synthesis = synthesis
        self.sources = table["synth_source"].to_numpy()
        self.methods = table["method"].to_numpy()
        self.labels = table["label"].to_numpy()
        self.crop_size = int(spec.crop_size)
        self.landmarks, self.boxes = crop_geometry(table, spec)
        self.neighbours: dict[int, np.ndarray] = {}
        if "xray" in synthesis.methods:
            self.neighbours = _nearest_other_identity(table, self.landmarks, self.crop_size,
                                                      synthesis.xray.neighbours)

    def is_synthetic(self, pos: int) -> bool:
        return int(self.sources[pos]) >= 0

    def real(self, pos: int, image: np.ndarray, seed: int) -> np.ndarray:
        """A real row's image as the recipes serve it: with SBI, the background of the pseudo-fake
        made from it with the same seed (the data set gives a pair the same seed)."""
        if "sbi" not in self.synthesis.methods or int(self.labels[pos]) != 0:
            return image
        return self.synthesis.sbi.real_view(image, seed)

    def make(self, pos: int, image: np.ndarray, seed: int, load) -> BlendResult:
        """The pseudo-fake of row `pos` from its source crop `image`; `load(row)` reads a donor."""
        src = int(self.sources[pos])
        scale = image.shape[0] / self.crop_size
        lm, box = self.landmarks[src] * scale, self.boxes[src] * scale
        method = self.methods[pos]
        if method == "sbi":
            return self.synthesis.sbi(image, lm, box, seed)
        rng = np.random.default_rng([seed, 3])
        candidates = self.neighbours.get(src)
        if candidates is None or len(candidates) == 0:
            raise ValueError(f"row {src} has no face of another identity to blend with (xray needs two identities)")
        donor_row = int(candidates[int(rng.integers(len(candidates)))])
        donor = load(donor_row)
        donor_scale = donor.shape[0] / self.crop_size
        return self.synthesis.xray(image, lm, box, donor, self.landmarks[donor_row] * donor_scale, rng)


def _nearest_other_identity(table: pd.DataFrame, landmarks: list, crop_size: int, k: int) -> dict[int, np.ndarray]:
    """For every real row with landmarks: up to k rows of other identities with the closest
    landmarks (crop-normalised coordinates), nearest first."""
    from sklearn.neighbors import NearestNeighbors

    real = table["synth_source"].to_numpy() < 0
    counts = pd.Series([len(lm) for i, lm in enumerate(landmarks) if real[i] and lm is not None]).value_counts()
    if counts.empty:
        return {}
    n_points = int(counts.index[0])  # rows with the common landmark count can be compared
    rows = np.array([i for i, lm in enumerate(landmarks) if real[i] and lm is not None and len(lm) == n_points])
    feats = np.stack([landmarks[i].reshape(-1) / crop_size for i in rows])
    ident_col = table["source_identity"] if "source_identity" in table else table["video_id"]
    identity = np.array([str(v) if v is not None and v == v else str(vid)
                         for v, vid in zip(ident_col, table["video_id"], strict=True)])[rows]
    largest_group = int(pd.Series(identity).value_counts().max())
    n_query = min(len(rows), k + largest_group)
    _, idx = NearestNeighbors(n_neighbors=n_query).fit(feats).kneighbors(feats)
    out = {}
    for a, row in enumerate(rows):
        others = idx[a][identity[idx[a]] != identity[a]][:k]
        out[int(row)] = rows[others]
    return out
