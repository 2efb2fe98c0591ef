"""LRNet's landmark calibration (datasets/landmark_calibration.py) against the publisher's own code.

tests/data/landmark_calibration_reference.npz was made once during development by running the LRNet
repository's demo landmark path (demo/utils/landmark_utils.py, detect_frames_track, @ 9a172a0) with
its landmark detector replaced by given raw landmarks, recording its optical-flow calls:

- demo clips (ff_fake, ff_real, dfo_fake, dfo_real: the first 48 frames of the repository's
  demo/input clips, read with OpenCV): raw landmarks from faketrace's path (RetinaFace + dlib 68),
  the publisher's calibrated output and every Lucas-Kanade call's inputs and outputs. The media are
  not committed, so the flows are replayed: everything else (face-jump guard, crop boxes, grid,
  forward-backward check, Kalman merge, rounding, normalisation) is ours and must match exactly;
- the seeded synthetic clip (tests/data/synthetic_landmark_clip.py), with and without a jump to
  "another face" at frame 20: here the frames are regenerated, so our whole path, OpenCV's flow
  included, must give the publisher's output.

Outputs are stored as whole pixels of the 400-pixel crop grid (feature = (grid - 200) / 200).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from faketrace.datasets import landmark_calibration as lc
from faketrace.datasets.landmarks import lrnet_features, normalise_sequence
from faketrace.models import published

DATA = Path(__file__).parent / "data"
DEMO_CLIPS = ("ff_fake", "ff_real", "dfo_fake", "dfo_real")


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(DATA / "landmark_calibration_reference.npz"))


@pytest.fixture(scope="module")
def clip_module():
    spec = importlib.util.spec_from_file_location("synthetic_landmark_clip", DATA / "synthetic_landmark_clip.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _grid(features: np.ndarray) -> np.ndarray:
    """Features back to whole crop-grid pixels (they are whole pixels; rint only undoes the division's rounding)."""
    grid = features * (lc.CROP_SIDE // 2) + lc.CROP_SIDE // 2
    assert np.abs(grid - np.rint(grid)).max() < 1e-9
    return np.rint(grid).astype(np.int64)


@pytest.mark.parametrize("clip", DEMO_CLIPS)
def test_matches_the_publishers_code_on_the_demo_clips(clip, reference):
    r = {k.split("/", 1)[1]: v for k, v in reference.items() if k.startswith(clip + "/")}
    asked = []

    def replay(boxes):
        def track(i, start, guess):
            # the flow is asked from the same points with the same initial guess as the publisher's
            np.testing.assert_array_equal(start, r["lk_start"][i])
            np.testing.assert_array_equal(guess, r["lk_guess"][i])
            asked.append(i)
            return lc.Flow(r["forward"][i], r["forward_found"][i] != 0, r["backward"][i], r["backward_found"][i] != 0)
        return track

    height, width = (int(v) for v in r["frame_hw"])
    features, record = lc.calibrate_track(r["raw"], width, height, replay)
    assert asked == list(range(len(r["raw"]) - 1))
    np.testing.assert_array_equal(_grid(features), r["calibrated_grid"])
    assert features.shape == (len(r["raw"]), 136) and record["calibrated"]
    # the calibration did something: some points were tracked, and the output is not the raw detections'
    assert 0.5 < record["tracked_point_fraction"] <= 1.0
    boxes = lc.crop_boxes(r["raw"], width, height)
    assert not np.array_equal(lc.to_crop_grid(r["raw"], boxes).reshape(len(boxes), -1), r["calibrated_grid"])


@pytest.mark.parametrize("variant", ["synthetic", "synthetic_jump"])
def test_matches_the_publishers_code_end_to_end_on_generated_frames(variant, reference, clip_module):
    frames, _, detections = clip_module.synthetic_clip()
    np.testing.assert_array_equal(detections, reference["synthetic/raw"])  # the seeded clip is unchanged
    raw = reference[f"{variant}/raw"]
    features, record = lc.calibrate_landmarks(frames, raw)
    want = reference[f"{variant}/calibrated_grid"]
    diff = np.abs(_grid(features) - want)
    # exact with the OpenCV the reference was made with; another build's flow may move a rounding by one
    # grid pixel, never more and rarely
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.01
    assert record["face_jumps_held"] == (1 if variant == "synthetic_jump" else 0)


def _step_error(track: np.ndarray, truth: np.ndarray) -> float:
    """Mean error of the frame-to-frame motion: jitter that the true motion does not explain."""
    return float(np.abs(np.diff(track, axis=0) - np.diff(truth, axis=0)).mean())


def test_calibration_removes_jitter_and_follows_real_motion(clip_module):
    # 400 x 400 frames are the crop grid itself: the texture (and the 68 points) travel 40 px peak to peak
    frames, truth, detections = clip_module.synthetic_clip(seed=5, frames=60, noise_px=1.5, height=400, width=400)
    calibrated, counts = lc.merge_track(detections, lc.lk_tracker(frames))
    assert counts["tracked_point_fraction"] > 0.9
    raw_jitter, cal_jitter = _step_error(detections, truth), _step_error(calibrated, truth)
    assert cal_jitter < 0.5 * raw_jitter, (cal_jitter, raw_jitter)
    # it follows the motion: the error stays bounded and does not grow (the publisher's truncation to whole
    # pixels keeps the track about a pixel up and left of the truth; it does not accumulate)
    error = np.abs(calibrated - truth).mean(axis=(1, 2))
    assert error.mean() < 2.0 and error[-20:].mean() < error[20:40].mean() + 0.5, error
    moved = truth.max(axis=0) - truth.min(axis=0)
    np.testing.assert_allclose(calibrated.max(axis=0) - calibrated.min(axis=0), moved, atol=4)


def test_untracked_points_take_their_detection():
    det = np.tile(np.arange(136).reshape(1, 68, 2), (3, 1, 1)) + np.arange(3)[:, None, None] * 3

    def lost(i, start, guess):  # the flow found nothing
        return lc.Flow(start.astype(float), np.zeros(68, bool), start.astype(float), np.zeros(68, bool))

    def far_round_trip(i, start, guess):  # found, but it does not come back to where it started
        return lc.Flow(guess.astype(float), np.ones(68, bool), start + 3.0, np.ones(68, bool))

    for tracker in (lost, far_round_trip):
        track, counts = lc.merge_track(det, tracker)
        np.testing.assert_array_equal(track, det)
        assert counts["tracked_point_fraction"] == 0


def test_face_jumps_are_held_and_crops_hold_still():
    rng = np.random.default_rng(1)
    base = rng.integers(100, 200, (68, 2))
    points = np.stack([base + [i % 2, 0] for i in range(10)])  # one-pixel wobble of the whole face
    points[5] = base + 300  # another face for one frame
    held, n = lc.hold_face_jumps(points)
    assert n == 1 and np.array_equal(held[5], held[4])
    boxes = lc.crop_boxes(held, 640, 480)
    assert len({tuple(b) for b in boxes}) == 1  # a one-pixel centre wobble does not move the crop
    assert boxes[0, 2] % 2 == 0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="68"):
        lc.hold_face_jumps(np.zeros((5, 5, 2)))
    with pytest.raises(ValueError, match="frames for"):
        lc.calibrate_landmarks([np.zeros((10, 10, 3), np.uint8)], np.zeros((2, 68, 2)))
    with pytest.raises(ValueError, match="outside"):
        lc.crop_boxes(np.full((2, 68, 2), 900) + np.arange(68)[None, :, None], 320, 240)


def test_lrnet_features_switch_and_registry_record(clip_module):
    frames, _, detections = clip_module.synthetic_clip()
    plain, rec = lrnet_features(frames, detections, calibrate=False)
    np.testing.assert_array_equal(plain, normalise_sequence(detections))
    assert rec == {"calibrated": False}
    calibrated, rec = lrnet_features(frames, detections, calibrate=True)
    assert rec["calibrated"] and calibrated.shape == plain.shape and np.abs(calibrated).max() <= 1
    for name in ("lrnet_ffpp", "lrnet_deeperforensics"):
        block = published.load_entry(name)["landmark_calibration"]
        assert block["calibration_ported"] is True
        assert block["parameters"] == lc.parameters()  # the registry states the parameters the code uses


def test_crop_side_is_the_mean_face_size_of_all_frames_but_the_last():
    square = np.stack([np.arange(68) % 2, np.arange(68) // 34], axis=1)  # corners of a unit square, 68 points
    points = np.stack([200 + square * s for s in (100, 100, 100, 125)])  # the last frame grew (not a jump)
    assert lc.hold_face_jumps(points)[1] == 0
    # the publisher's demo averages every frame's size but the last: 100 -> side int(1.2 * 100) = 120
    # (all four frames would give 106 -> 126)
    assert set(lc.crop_boxes(points, 1000, 1000)[:, 2]) == {120}
