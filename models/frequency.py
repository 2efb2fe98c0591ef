"""Fixed (and slightly learnable) frequency and noise-residual views of an image batch.

Both modules take the normalised RGB batch the detector gets and return a multi-channel image
that a second timm backbone reads:

* `DCTBands`: the image's 2-D DCT split into bands by frequency (i + j), each band transformed
  back to the image domain, in the spirit of F3Net's frequency-aware decomposition (Qian et al.,
  ECCV 2020, Sec. 3.1): fixed band masks plus a learnable residual per band, squashed to
  [-1, 1]. Band edges are given as fractions of the spectrum's area, lowest frequencies first.
* `SRMResiduals`: three fixed high-pass kernels of the spatial rich model (Fridrich & Kodovsky,
  2012) as used by RGB-N (Zhou et al., CVPR 2018, Sec. 3.2), applied per colour channel on the
  0..255 scale and truncated at +-3, the SRM's truncation threshold.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): the 2-D DCT of x is D @ x @ D.T."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


def band_masks(n: int, bands: list[list[float]]) -> torch.Tensor:
    """(len(bands), n, n) 0/1 masks: band [a, b] holds the coefficients whose frequency i + j lies
    between the a- and b-quantiles of all coefficients' i + j (the lowest a of the spectrum's
    area excluded, up to the lowest b included)."""
    s = torch.arange(n)[:, None] + torch.arange(n)[None, :]
    flat = torch.sort(s.flatten()).values

    def edge(fraction: float) -> float:
        if fraction <= 0:
            return -math.inf
        if fraction >= 1:
            return math.inf
        return float(flat[min(len(flat) - 1, round(fraction * len(flat)))])

    masks = []
    for lo, hi in bands:
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"band {[lo, hi]} must satisfy 0 <= lo < hi <= 1")
        masks.append((s >= edge(lo)) & (s < edge(hi)))
    return torch.stack(masks).float()


class DCTBands(nn.Module):
    """(B, 3, n, n) -> (B, 3 * len(bands), n, n): each band's content back in the image domain."""

    def __init__(self, size: int, bands: list[list[float]], learnable: bool = True):
        super().__init__()
        self.size = int(size)
        self.register_buffer("dct", dct_matrix(self.size), persistent=False)
        self.register_buffer("base", band_masks(self.size, [list(b) for b in bands]), persistent=False)
        # Learnable residual filters, zero at the start so training begins from the fixed bands.
        self.residual = nn.Parameter(torch.zeros(len(bands), self.size, self.size)) if learnable else None
        self.out_channels = 3 * len(bands)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.size, self.size):
            raise ValueError(f"DCTBands was built for {self.size} px inputs, got {tuple(images.shape[-2:])}")
        d = self.dct.to(images.dtype)
        spectrum = d @ images @ d.T  # (B, 3, n, n)
        filters = self.base
        if self.residual is not None:
            filters = filters + torch.tanh(self.residual / 2)  # (1 - e^-x) / (1 + e^-x)
        bands = spectrum.unsqueeze(1) * filters[None, :, None].to(images.dtype)  # (B, nb, 3, n, n)
        return (d.T @ bands @ d).flatten(1, 2)


# Three SRM kernels (5 x 5), each normalised by its largest coefficient magnitude.
_SRM = (
    [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
    [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
)
_SRM_SCALE = (4.0, 12.0, 2.0)


class SRMResiduals(nn.Module):
    """(B, 3, H, W) normalised RGB -> (B, 9, H, W) truncated noise residuals, scaled to [-1, 1]."""

    def __init__(self, mean: list[float], std: list[float], truncation: float = 3.0):
        super().__init__()
        kernels = torch.tensor(_SRM, dtype=torch.float32) / torch.tensor(_SRM_SCALE)[:, None, None]
        # Every kernel on every colour channel: groups=3, 3 kernels per group.
        weight = kernels[None].repeat(3, 1, 1, 1).reshape(9, 1, 5, 5)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.truncation = float(truncation)
        self.out_channels = 9

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = (images * self.std.to(images.dtype) + self.mean.to(images.dtype)) * 255.0
        residual = nn.functional.conv2d(pixels, self.weight.to(images.dtype), padding=2, groups=3)
        return residual.clamp(-self.truncation, self.truncation) / self.truncation
