"""LRNet (Sun et al., "Improving the Efficiency and Robustness of Deepfakes Detection through
Precise Geometric Features", CVPR 2021): a two-stream recurrent classifier over 68-point landmark
sequences.

Our PyTorch implementation, written from the paper and from the layout of the released state
dicts (15 tensors each). Stream g1 reads a window of landmark positions, stream g2 the
frame-to-frame differences of the same window; each is a one-layer bidirectional GRU (32 units,
a learned initial hidden state) whose two final hidden states are concatenated (64), passed
through a residual feed-forward block (64 -> 64 -> 64, ReLU) and a linear layer to two classes
(0 real, 1 fake) with a softmax. A window's fake probability is the mean of the two streams'
class-1 probabilities; the published video rule is the fraction of windows whose probability is
at least 0.5.

Inputs (features): each frame is 136 numbers, the 68 (x, y) points interleaved x0, y0, x1, y1, ...
in dlib's 68-point order, normalised to [-1, 1] in a square face box after the publisher's landmark
calibration (datasets/landmarks.py lrnet_features, datasets/landmark_calibration.py).
The released models were trained on windows of 30 frames taken without overlap.

The state-dict keys are the publisher's, so the released files load strictly without renaming:
`hidden_state`, `gru.*`, `dense.1.fn.net.{0,3}.*` (the residual block) and `dense.3.*` (the head).
tests/test_published.py checks this module against reference outputs computed once with the
LRNet repository's own code.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

N_POINTS = 68
FEATURES = 2 * N_POINTS
WINDOW = 30  # frames per window in the released models (BLOCK_SIZE in the publisher's configs)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x):
        return self.net(x)


class _Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return x + self.fn(x)


class LandmarkGRU(nn.Module):
    """One LRNet stream: (B, T, 136) -> (B, 2) class logits (softmax of them: P(real), P(fake))."""

    def __init__(self, features: int = FEATURES, units: int = 32, hidden: int = 64, dropout: float = 0.5):
        super().__init__()
        self.hidden_state = nn.Parameter(torch.zeros(2, 1, units))  # learned initial state (both directions)
        self.gru = nn.GRU(features, units, num_layers=1, batch_first=True, bidirectional=True)
        # indices 0 and 2 are dropouts: the publisher's Sequential numbering, kept for its keys
        self.dense = nn.Sequential(nn.Dropout(dropout), _Residual(_FeedForward(2 * units, hidden, dropout)),
                                   nn.Dropout(dropout), nn.Linear(2 * units, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x, self.hidden_state.expand(-1, x.shape[0], -1).contiguous())
        return self.dense(torch.cat([h[0], h[1]], dim=1))  # forward direction's state, then backward's


class LRNet(nn.Module):
    """Both streams. `forward(positions)` takes (B, T, 136) windows and returns the logit of the
    window's fake probability (mean of the two streams' softmax class 1), shape (B,)."""

    def __init__(self):
        super().__init__()
        self.g1 = LandmarkGRU()
        self.g2 = LandmarkGRU()

    def stream_probabilities(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P(fake) of each stream for each window: g1 on positions, g2 on their differences."""
        diffs = positions[:, 1:] - positions[:, :-1]
        p1 = torch.softmax(self.g1(positions), dim=1)[:, 1]
        p2 = torch.softmax(self.g2(diffs), dim=1)[:, 1]
        return p1, p2

    def window_probability(self, positions: torch.Tensor) -> torch.Tensor:
        p1, p2 = self.stream_probabilities(positions)
        return (p1 + p2) / 2

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        p = self.window_probability(positions).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)

    def load_streams(self, g1: dict, g2: dict) -> None:
        """Load the publisher's two state dicts strictly (a missing or unexpected key is an error)."""
        self.g1.load_state_dict(g1, strict=True)
        self.g2.load_state_dict(g2, strict=True)


def windows(features: np.ndarray, length: int = WINDOW) -> np.ndarray:
    """Non-overlapping windows of `length` frames, (N, length, 136), as the released models were evaluated.

    Like the publisher's evaluation, window starts run over range(0, T - length, length), so a
    sequence of exactly k * length frames gives k - 1 windows, and one shorter than length + 1 frames none.
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[1] != FEATURES:
        raise ValueError(f"landmark features must be (frames, {FEATURES}), got {features.shape}")
    starts = range(0, features.shape[0] - length, length)
    if not len(starts):
        return np.zeros((0, length, FEATURES), np.float32)
    return np.stack([features[s:s + length] for s in starts])


def video_vote(window_probs: np.ndarray) -> float:
    """The published video rule: the fraction of windows with fake probability >= 0.5."""
    p = np.asarray(window_probs, np.float64)
    if p.size == 0:
        raise ValueError("no window to vote on")
    return float(np.mean(p >= 0.5))


def state_dicts_to_flat(g1: dict, g2: dict) -> dict[str, torch.Tensor]:
    """One flat state dict for a safetensors file: g1.* and g2.* keys."""
    return {**{f"g1.{k}": v.detach().float().contiguous() for k, v in g1.items()},
            **{f"g2.{k}": v.detach().float().contiguous() for k, v in g2.items()}}
