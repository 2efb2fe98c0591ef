"""PDQ perceptual hashes: 256 bits per image, robust to re-compression and resizing.

Written from the published description of Facebook's PDQ (ThreatExchange, "PDQ hashing"
document) because no permissively licensed PyPI package ships a Python 3.11 wheel of it (the
`pdqhash` bindings are a source distribution that compiles the C++ reference). The steps:

1. luminance Y = 0.299 R + 0.587 G + 0.114 B, as floats;
2. a Jarosz filter: two passes of a box filter along rows and along columns, each window about
   half the ratio of the old size to 64 (so the two passes approximate a tent filter), then
   64 x 64 samples taken at the centres of 64 equal strips;
3. a 2-D DCT of the 64 x 64 block, keeping the 16 x 16 lowest frequencies without the DC row and
   column;
4. one bit per coefficient: 1 where it is above the median of the 256 coefficients;
5. a quality score 0-100 from the gradients of the 64 x 64 block: flat or nearly blank images
   score low, and hashes of quality under 50 are not trusted for matching.

Hex form: 64 hex digits, most significant 16-bit word first (bit k = row * 16 + column lies in
word k // 16), the form hash-sharing programmes exchange. Two hashes of the same picture after
re-compression typically differ in a few bits; the conventional match threshold is a Hamming
distance of 31 or less.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

DOWNSAMPLED = 64
DCT_SIZE = 16
MATCH_DISTANCE = 31  # Hamming distance at or below which two PDQ hashes are the same picture
MIN_QUALITY = 50  # hashes of lower quality are reported but not used for matching


@dataclass(frozen=True)
class PDQ:
    hash_hex: str
    quality: int

    @property
    def usable(self) -> bool:
        return self.quality >= MIN_QUALITY


def luminance(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        return rgb.astype(np.float64)
    rgb = rgb[..., :3].astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def jarosz_window(old: int, new: int = DOWNSAMPLED) -> int:
    """Full box-window length for one axis: the old-to-new ratio halved, rounded up."""
    return max(1, (old + 2 * new - 1) // (2 * new))


def box_filter(x: np.ndarray, window: int, axis: int) -> np.ndarray:
    """Mean over a sliding window along `axis`, shrinking at the edges (no padding values).

    Output k averages inputs k - (window - half) .. k + half - 1, with half = (window + 2) // 2,
    clipped to the array: centred for odd windows, one more sample ahead for even ones.
    """
    if window <= 1:
        return x
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    half = (window + 2) // 2
    before = window - half
    csum = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    k = np.arange(n)
    lo = np.clip(k - before, 0, n)
    hi = np.clip(k + half, 0, n)
    out = (csum[..., hi] - csum[..., lo]) / (hi - lo)
    return np.moveaxis(out, -1, axis)


def downsample64(luma: np.ndarray) -> np.ndarray:
    """The 64 x 64 block PDQ hashes: Jarosz filter (2 box passes per axis), then centre samples."""
    h, w = luma.shape
    wy, wx = jarosz_window(h), jarosz_window(w)
    x = luma
    for _ in range(2):
        x = box_filter(x, wx, axis=1)
        x = box_filter(x, wy, axis=0)
    rows = ((np.arange(DOWNSAMPLED) + 0.5) * h / DOWNSAMPLED).astype(int)
    cols = ((np.arange(DOWNSAMPLED) + 0.5) * w / DOWNSAMPLED).astype(int)
    return x[np.ix_(np.minimum(rows, h - 1), np.minimum(cols, w - 1))]


@cache
def _dct_matrix() -> np.ndarray:
    """16 x 64 DCT-II basis rows 1..16 (the DC row left out), scaled by sqrt(2 / 64)."""
    i = np.arange(1, DCT_SIZE + 1)[:, None]
    j = np.arange(DOWNSAMPLED)[None, :]
    return np.sqrt(2.0 / DOWNSAMPLED) * np.cos(np.pi / (2 * DOWNSAMPLED) * i * (2 * j + 1))


def quality(block: np.ndarray) -> int:
    """0-100 from the summed absolute differences of neighbouring samples (in percent of 255)."""
    dy = np.trunc((block[:-1, :] - block[1:, :]) * 100 / 255)
    dx = np.trunc((block[:, :-1] - block[:, 1:]) * 100 / 255)
    total = int(np.abs(dy).sum() + np.abs(dx).sum())
    return min(100, total // 90)


def bits_to_hex(bits: np.ndarray) -> str:
    """256 booleans (bit k at index k) to the 64-hex-digit form, word 15 first."""
    words = np.asarray(bits, np.uint32).reshape(16, 16)  # word w holds bits 16w .. 16w + 15
    values = (words << np.arange(16, dtype=np.uint32)).sum(axis=1)
    return "".join(f"{int(v):04x}" for v in values[::-1])


def hex_to_words(hash_hex: str) -> np.ndarray:
    """A hash as 4 uint64 words (for fast Hamming distances)."""
    if len(hash_hex) != 64:
        raise ValueError(f"a PDQ hash has 64 hex digits, got {len(hash_hex)}")
    return np.array([int(hash_hex[i:i + 16], 16) for i in range(0, 64, 16)], np.uint64)


# Larger images are reduced (area averaging) to this many pixels before hashing: the float arrays
# of the Jarosz filter cost about 48 bytes a pixel (3 GB for a 64 M pixel frame). PDQ reduces every
# image to 64 x 64 block means anyway; the reference tools likewise hash a reduced copy.
PDQ_MAX_PIXELS = 4_000_000


def pdq(rgb: np.ndarray) -> PDQ:
    """PDQ hash and quality of an RGB (or grayscale) uint8 image."""
    h, w = rgb.shape[:2]
    if h * w > PDQ_MAX_PIXELS:
        import cv2

        scale = (PDQ_MAX_PIXELS / (h * w)) ** 0.5
        rgb = cv2.resize(np.ascontiguousarray(rgb), (max(1, int(w * scale)), max(1, int(h * scale))),
                         interpolation=cv2.INTER_AREA)
    block = downsample64(luminance(rgb))
    d = _dct_matrix()
    coeffs = d @ block @ d.T  # 16 x 16
    bits = (coeffs > np.median(coeffs)).reshape(-1)
    return PDQ(bits_to_hex(bits), quality(block))


def hamming(a: str, b: str) -> int:
    return int((int(a, 16) ^ int(b, 16)).bit_count())


def distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between rows of (N, 4) and (M, 4) uint64 word arrays: (N, M)."""
    x = a[:, None, :] ^ b[None, :, :]
    return np.bitwise_count(x).sum(axis=-1, dtype=np.int32)
