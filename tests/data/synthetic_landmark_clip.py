"""A seeded synthetic face track for the landmark-calibration tests (tests/test_landmark_calibration.py).

A smoothed random texture pans across the frame along a smooth path (the image content moves, so
optical flow can follow it); 68 points fixed to the texture move with it exactly (`truth`); the
"detections" are those points plus Gaussian noise, truncated to whole pixels as a landmark
detector's output is. Frames are RGB. The same seed gives the same arrays on any machine with the
same OpenCV (blur and warp are OpenCV's).

tests/data/landmark_calibration_reference.npz holds, for `synthetic_clip()`, the calibrated
features the LRNet publisher's code produced from these frames and detections (see the test module).
"""

import numpy as np


def synthetic_clip(seed: int = 18, frames: int = 40, noise_px: float = 1.5, height: int = 240, width: int = 320):
    """(frames list of (H, W, 3) uint8 RGB, truth (T, 68, 2) float, detections (T, 68, 2) int)."""
    import cv2

    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height + 120, width + 120, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 2.0)
    t = np.arange(frames)
    path = np.stack([20 * np.sin(2 * np.pi * t / frames), 12 * np.sin(2 * np.pi * t / (0.7 * frames))], axis=1)
    template = np.stack([rng.uniform(110, 210, 68), rng.uniform(70, 170, 68)], axis=1)
    out, truth = [], []
    for dx, dy in path:
        # content shifted by (dx, dy): frame(x, y) = texture(x - dx + 60, y - dy + 60)
        m = np.array([[1, 0, dx - 60], [0, 1, dy - 60]], np.float64)
        out.append(cv2.warpAffine(texture, m, (width, height), flags=cv2.INTER_LINEAR))
        truth.append(template + [dx, dy])
    truth = np.stack(truth)
    detections = np.trunc(truth + rng.normal(0, noise_px, truth.shape)).astype(np.int64)
    return out, truth, detections
