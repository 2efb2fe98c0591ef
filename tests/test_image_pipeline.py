"""The torch-free image-level pipeline: tiles cover every pixel, boxes say where they came from."""

from __future__ import annotations

import numpy as np
import pytest

from faketrace.datasets.image_pipeline import (
    ImageSpec,
    aggregate_tiles,
    eval_crops,
    image_model_input,
    image_tiles,
    random_crop,
    tile_score_map,
)
from faketrace.models.spec import InputSpec


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("h,w,tile,stride", [(100, 130, 32, None), (64, 64, 64, None), (97, 50, 32, 20),
                                             (33, 33, 32, 32), (200, 120, 48, 16)])
def test_tiles_cover_every_pixel_and_match_their_boxes(h, w, tile, stride):
    img = _image(h, w)
    tiles, boxes = image_tiles(img, tile, stride)
    assert tiles.shape == (len(boxes), tile, tile, 3) and tiles.dtype == np.uint8
    covered = np.zeros((h, w), bool)
    for t, (x0, y0, x1, y1) in zip(tiles, boxes, strict=True):
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert x1 - x0 == tile and y1 - y0 == tile  # image larger than a tile: no padding
        np.testing.assert_array_equal(t, img[y0:y1, x0:x1])
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    # The last column and row of tiles end at the border.
    assert max(b[2] for b in boxes) == w and max(b[3] for b in boxes) == h
    # Without a stride, tiles step by their size (plus one border-aligned tile where needed).
    if stride is None:
        xs = sorted({b[0] for b in boxes})
        assert all(b - a == tile for a, b in zip(xs[:-2], xs[1:-1], strict=True))


def test_small_image_is_padded_by_edge_replication():
    img = _image(20, 30)
    tiles, boxes = image_tiles(img, 32)
    assert tiles.shape == (1, 32, 32, 3) and boxes == [(0, 0, 30, 20)]
    np.testing.assert_array_equal(tiles[0, :20, :30], img)
    np.testing.assert_array_equal(tiles[0, 25, :30], img[19])       # bottom rows repeat the last row
    np.testing.assert_array_equal(tiles[0, :20, 31], img[:, 29])    # right columns repeat the last column
    # One side smaller: tiles along the other side, each padded.
    tiles, boxes = image_tiles(_image(20, 70), 32)
    assert [b[0] for b in boxes] == [0, 32, 38] and all(b[3] == 20 for b in boxes)


def test_spec_round_trip_and_validation():
    spec = ImageSpec(tile_size=96, stride=48, aggregation="mean", resize=256)
    d = spec.to_dict()
    assert d["level"] == "image" and ImageSpec.from_dict({**d, "unknown": 1}) == spec
    for bad in ({"aggregation": "median"}, {"level": "face"}, {"tile_size": 4}, {"crop": "random"}):
        with pytest.raises(ValueError):
            ImageSpec(**bad)


def test_eval_crops_resize_and_centre():
    img = _image(100, 200)
    crops, boxes = eval_crops(img, ImageSpec(tile_size=50, resize=50))  # shorter side 100 -> 50: 50 x 100
    assert crops.shape[0] == 2 and boxes == [(0, 0, 50, 50), (50, 0, 100, 50)]
    crops, boxes = eval_crops(img, ImageSpec(tile_size=64, crop="centre"))
    assert crops.shape == (1, 64, 64, 3) and boxes == [(68, 18, 132, 82)]
    np.testing.assert_array_equal(crops[0], img[18:82, 68:132])


def test_random_crop_is_native_resolution_and_seeded():
    img = _image(90, 120)
    a, box = random_crop(img, 64, np.random.default_rng(3))
    b, _ = random_crop(img, 64, np.random.default_rng(3))
    x0, y0, x1, y1 = box
    np.testing.assert_array_equal(a, img[y0:y1, x0:x1])
    np.testing.assert_array_equal(a, b)


def test_aggregation_and_score_map():
    assert aggregate_tiles([0.1, 0.9, 0.2], "max") == 0.9
    assert aggregate_tiles([0.1, 0.9, 0.2], "mean") == pytest.approx(0.4)
    with pytest.raises(ValueError):
        aggregate_tiles([0.5], "median")
    boxes = [(0, 0, 4, 4), (2, 0, 6, 4)]
    m = tile_score_map([0.2, 0.8], boxes, 5, 6, "max")
    assert m[0, 0] == pytest.approx(0.2) and m[0, 3] == pytest.approx(0.8) and np.isnan(m[4, 0])
    m = tile_score_map([0.2, 0.8], boxes, 5, 6, "mean")
    assert m[0, 3] == pytest.approx(0.5) and m[0, 5] == pytest.approx(0.8)


def test_model_input_needs_no_resampling_at_tile_size():
    img = _image(64, 96)
    x, boxes = image_model_input(img, ImageSpec(tile_size=32), InputSpec(size=(32, 32), mean=[0.5] * 3,
                                                                          std=[0.5] * 3))
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.float32 and len(boxes) == 6
    x0, y0, x1, y1 = boxes[4]
    expected = (img[y0:y1, x0:x1].astype(np.float32) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(x[4], expected.transpose(2, 0, 1), atol=1e-5)
