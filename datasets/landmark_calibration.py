"""LRNet's landmark calibration: optical-flow tracking of the 68 points merged with per-frame detections.

LRNet's released models were trained and evaluated on landmark tracks that the publisher smoothed
before normalising them; a detector's raw per-frame landmarks jitter more, and LRNet reads motion,
so feeding raw landmarks calls steady real faces fake. This module is our implementation of that
calibration, written from the behaviour of the publisher's demo landmark path (LRNet @ 9a172a0,
demo/utils/landmark_utils.py) and checked against outputs of their code (tests/test_landmark_calibration.py).

Steps, for one face track of T frames (integer pixel landmarks, dlib / iBUG point order):

1. Hold face jumps: a frame whose landmarks moved more than half the previous face's size, or whose
   size changed by more than 30 %, keeps the previous frame's landmarks (another face was picked).
2. Face crops: one square side for the whole track, 1.2 x the mean landmark extent (of every frame
   but the last, as the publisher computes it), rounded down to an even number of pixels; each
   frame's crop is centred on its landmark-extent centre, except that the centre stays where it
   was while it moves by less than CENTRE_HOLD_PX (sub-pixel re-centring would itself be jitter).
   Crops are clipped at the frame's top / left edge and shrunk at the bottom / right one, then
   resized to CROP_SIDE x CROP_SIDE (bicubic when enlarging, area when shrinking); landmarks go to
   that grid, rounded to whole pixels.
3. Tracking: the first frame keeps its detection. For each next frame, pyramidal Lucas-Kanade
   optical flow (LK_* parameters, on the colour crops) carries the previous frame's calibrated
   points forward, starting from this frame's detection, and back again for a forward-backward
   check. A point is tracked when both flows found it and its round trip ends within
   FEEDBACK_MAX_PX of where it started; an untracked point takes its detection.
4. Merge (a one-dimensional Kalman update per point): the tracked point is the prediction, the
   detection the measurement. The prediction's variance grows by PROCESS_NOISE per frame; the
   measurement's variance is how far the detection moved over how far the flow moved, so a
   detection that moves more than the image content is trusted less. Gain K = P / (P + R); merged
   = flow + K (detection - flow), truncated to a whole pixel; P shrinks to (1 - K) P.
5. Features: the calibrated points in the CROP_SIDE grid, mapped to [-1, 1] around the grid centre,
   interleaved x0, y0, x1, y1, ... (T, 136).

The integer roundings are the publisher's; they are kept so the features match what the released
models saw. OpenCV only (no torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

N_POINTS = 68
CROP_SIDE = 400  # the grid the points are tracked and normalised on
BOX_SCALE = 1.2  # crop side over the mean landmark extent
CENTRE_HOLD_PX = 1.42  # a crop centre moving less than this (one pixel diagonally) stays put
JUMP_MAX_SHIFT = 0.5  # of the previous face size: a larger centre shift is another face
JUMP_SIZE_RANGE = (0.7, 1.3)  # face size over the previous one: outside it is another face
LK_WINDOW = 15  # pixels, square search window at each pyramid level
LK_LEVELS = 3  # pyramid levels above the full-resolution crop
LK_ITERATIONS = 10
LK_EPSILON = 0.03
FEEDBACK_MAX_PX = 2.0  # forward-backward round trip beyond this: the flow is not trusted for that point
PROCESS_NOISE = 0.3  # variance added to the flow prediction per frame


def parameters() -> dict:
    """The calibration's parameters, for registry entries and scan records."""
    return {"crop_side": CROP_SIDE, "box_scale": BOX_SCALE, "centre_hold_px": CENTRE_HOLD_PX,
            "jump_max_shift": JUMP_MAX_SHIFT, "jump_size_range": list(JUMP_SIZE_RANGE),
            "lk": {"window": LK_WINDOW, "levels": LK_LEVELS, "iterations": LK_ITERATIONS, "epsilon": LK_EPSILON,
                   "initial_flow": "the next frame's detection", "image": "colour crop"},
            "feedback_max_px": FEEDBACK_MAX_PX, "process_noise": PROCESS_NOISE,
            "measurement_noise": "|detection shift| / |flow shift| per point"}


def _as_pixel_points(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points)
    if p.ndim != 3 or p.shape[1:] != (N_POINTS, 2) or len(p) == 0:
        raise ValueError(f"landmarks must be (frames, {N_POINTS}, 2) with at least one frame, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("landmarks contain NaN or infinity")
    return np.trunc(p).astype(np.int64)  # the calibration works on whole pixels (the publisher's detections are)


def _face_size(shape: np.ndarray) -> int:
    return int((shape.max(axis=0) - shape.min(axis=0)).max())


def hold_face_jumps(points: np.ndarray) -> tuple[np.ndarray, int]:
    """(T, 68, 2) pixel landmarks with frames that jumped to another face replaced by the previous
    frame's landmarks (step 1), and how many were replaced."""
    p = _as_pixel_points(points).copy()
    held = 0
    lo, hi = JUMP_SIZE_RANGE
    for i in range(1, len(p)):
        prev, cur = p[i - 1], p[i]
        shift = float(np.linalg.norm(prev.mean(axis=0) - cur.mean(axis=0)))
        size_prev, size_cur = _face_size(prev), _face_size(cur)
        if shift > JUMP_MAX_SHIFT * size_prev or not lo * size_prev <= size_cur <= hi * size_prev:
            p[i] = prev
            held += 1
    return p, held


def crop_boxes(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, 3) integer crops (x0, y0, side) of a track in a width x height frame (step 2)."""
    p = _as_pixel_points(points)
    sizes = [_face_size(s) for s in p]
    # the mean over every frame but the last: what the publisher's demo averages
    mean_size = int(np.rint(np.mean(sizes[:-1] if len(sizes) > 1 else sizes)))
    side0 = int(mean_size * BOX_SCALE) // 2 * 2
    boxes = np.zeros((len(p), 3), np.int64)
    centre_prev = None
    for i, s in enumerate(p):
        centre = (s.min(axis=0) + s.max(axis=0)) // 2
        if centre_prev is not None and np.linalg.norm(centre_prev - centre) < CENTRE_HOLD_PX:
            centre = centre_prev
        centre_prev = centre
        x0, y0 = max(int(centre[0]) - side0 // 2, 0), max(int(centre[1]) - side0 // 2, 0)
        side = min(side0, width - x0, height - y0)
        if side <= 0:
            raise ValueError(f"frame {i}: the face crop lies outside the {width}x{height} frame")
        boxes[i] = (x0, y0, side)
    return boxes


def to_crop_grid(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Pixel landmarks -> whole-pixel positions in each frame's CROP_SIDE x CROP_SIDE crop."""
    p = _as_pixel_points(points)
    scale = CROP_SIDE / boxes[:, 2].astype(np.float64)
    return np.rint((p - boxes[:, None, :2]) * scale[:, None, None]).astype(np.int64)


def face_crop(frame_rgb: np.ndarray, box) -> np.ndarray:
    """One frame's crop resized to CROP_SIDE, in OpenCV's BGR channel order (the publisher decoded with OpenCV)."""
    import cv2

    x0, y0, side = (int(v) for v in box)
    patch = np.ascontiguousarray(frame_rgb[y0:y0 + side, x0:x0 + side, ::-1])
    method = cv2.INTER_CUBIC if side < CROP_SIDE else cv2.INTER_AREA
    return cv2.resize(patch, (CROP_SIDE, CROP_SIDE), interpolation=method)


class _CropsOnDemand:
    """crops[i] made when asked, the last two kept: the tracker walks forward one frame at a time,
    so a long video never holds all its crops at once."""

    def __init__(self, frames_rgb: list[np.ndarray], boxes: np.ndarray):
        self.frames, self.boxes, self.kept = frames_rgb, boxes, {}

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self.kept:
            self.kept = {k: v for k, v in self.kept.items() if k >= i - 1}
            self.kept[i] = face_crop(self.frames[i], self.boxes[i])
        return self.kept[i]


@dataclass
class Flow:
    """One frame step of the tracker: forward points and status, backward points and status."""

    forward: np.ndarray  # (68, 2) float
    forward_found: np.ndarray  # (68,) bool
    backward: np.ndarray  # (68, 2) float
    backward_found: np.ndarray  # (68,) bool


# (step index i, previous calibrated points, this frame's detection) -> Flow from crop i to crop i + 1
Tracker = Callable[[int, np.ndarray, np.ndarray], Flow]


def lk_tracker(crops) -> Tracker:
    """Pyramidal Lucas-Kanade forward and backward between consecutive crops (step 3); `crops[i]` is
    frame i's crop (a list, or crops made on demand)."""
    import cv2

    params = {"winSize": (LK_WINDOW, LK_WINDOW), "maxLevel": LK_LEVELS,
              "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, LK_ITERATIONS, LK_EPSILON),
              "flags": cv2.OPTFLOW_USE_INITIAL_FLOW}

    def track(i: int, start: np.ndarray, guess: np.ndarray) -> Flow:
        start32, guess32 = start.astype(np.float32), guess.astype(np.float32)
        fw, st_fw, _ = cv2.calcOpticalFlowPyrLK(crops[i], crops[i + 1], start32, guess32.copy(), **params)
        fb, st_fb, _ = cv2.calcOpticalFlowPyrLK(crops[i + 1], crops[i], fw, start32.copy(), **params)
        return Flow(fw.reshape(N_POINTS, 2), st_fw.reshape(-1) != 0, fb.reshape(N_POINTS, 2), st_fb.reshape(-1) != 0)

    return track


def merge_track(detections: np.ndarray, tracker: Tracker) -> tuple[np.ndarray, dict]:
    """Calibrated (T, 68, 2) whole-pixel points from crop-grid detections (steps 3 and 4), and counts."""
    det = np.asarray(detections, np.int64)
    track = [det[0].copy()]  # the first frame has nothing to track from: its detection stands
    variance = np.zeros(N_POINTS)
    tracked = 0
    for i in range(len(det) - 1):
        flow = tracker(i, track[i], det[i + 1])
        predicted = np.rint(flow.forward).astype(np.int64)
        round_trip = np.linalg.norm(np.rint(flow.backward).astype(np.int64) - track[i], axis=1)
        ok = flow.forward_found & flow.backward_found & (round_trip <= FEEDBACK_MAX_PX)
        detection_moved = np.linalg.norm(det[i + 1] - det[i], axis=1)
        flow_moved = np.linalg.norm(predicted - track[i], axis=1)
        flow_moved[flow_moved == 0] = 1  # a point the flow left in place: measure the detection's move in pixels
        measurement_var = detection_moved / flow_moved
        merged = det[i + 1].copy()
        variance[ok] += PROCESS_NOISE
        gain = variance[ok] / (variance[ok] + measurement_var[ok])
        # truncation toward zero to whole pixels, as the publisher's integer arrays store it
        merged[ok] = np.trunc(predicted[ok] + gain[:, None] * (det[i + 1][ok] - predicted[ok])).astype(np.int64)
        variance[ok] = (1 - gain) * variance[ok]
        tracked += int(ok.sum())
        track.append(merged)
    steps = max(len(det) - 1, 1)
    return np.stack(track), {"tracked_point_fraction": round(tracked / (steps * N_POINTS), 4)}


def grid_features(points: np.ndarray) -> np.ndarray:
    """Crop-grid points -> (T, 136) features in [-1, 1] around the grid centre, interleaved x0, y0, ..."""
    half = CROP_SIDE // 2
    p = (np.asarray(points, np.int64) - half) / half
    return p.reshape(len(p), 2 * N_POINTS)


def calibrate_track(points: np.ndarray, width: int, height: int,
                    make_tracker: Callable[[np.ndarray], Tracker]) -> tuple[np.ndarray, dict]:
    """Steps 1-5 on (T, 68, 2) pixel landmarks in a width x height video; `make_tracker(boxes)` gives
    the tracker over the crops at those (T, 3) boxes (`calibrate_landmarks` uses Lucas-Kanade)."""
    held_points, held = hold_face_jumps(points)
    boxes = crop_boxes(held_points, width, height)
    calibrated, counts = merge_track(to_crop_grid(held_points, boxes), make_tracker(boxes))
    return grid_features(calibrated), {"calibrated": True, "face_jumps_held": held, **counts,
                                       "crop_side_px": int(np.median(boxes[:, 2]))}


def calibrate_landmarks(frames_rgb: list[np.ndarray], points: np.ndarray) -> tuple[np.ndarray, dict]:
    """One face track's calibrated LRNet features (T, 136) and what happened (module doc, steps 1-5).

    `frames_rgb` are the T frames (H, W, 3, RGB) the (T, 68, 2) pixel landmarks were detected on.
    """
    if len(frames_rgb) != len(points):
        raise ValueError(f"{len(frames_rgb)} frames for {len(points)} landmark sets")
    height, width = frames_rgb[0].shape[:2]
    return calibrate_track(points, width, height, lambda boxes: lk_tracker(_CropsOnDemand(frames_rgb, boxes)))
