"""Pseudo-fake synthesis on the face crops the real face pipeline made from the demo generator."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from faketrace.datasets.face_pipeline import PreprocessSpec, crop_matrix, crop_pixels
from faketrace.datasets.faces import Face
from faketrace.datasets.frames import FaceCropDataset, load_face_table
from faketrace.datasets.synthesis import MaskParams, SelfBlend, Synthesis, face_hull, hull_mask
from faketrace.datasets.transforms import eval_transform

from .conftest import compose_config, resolved


@pytest.fixture(scope="module")
def crops(demo_data):
    cfg = resolved(compose_config("train", demo_data["overrides"]))
    faces, _, manifest_meta = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
    return {"faces": faces, "faces_dir": cfg.data.faces_dir, "spec": PreprocessSpec.from_dict(manifest_meta["spec"])}


def _dataset(crops, methods=("sbi", "xray"), split="train", masks=True, **kw):
    synthesis = Synthesis(methods=methods, **kw)
    return FaceCropDataset(crops["faces"], crops["faces_dir"], eval_transform(64, [0.5] * 3, [0.5] * 3),
                           split=split, synthesis=synthesis, crop_spec=crops["spec"], masks=masks)


def _blends(ds, n_per_method=8):
    """(source crop, landmarks, box, BlendResult) for some pseudo-fake rows of each method."""
    out = []
    for method in ds.plan.synthesis.methods:
        rows = np.flatnonzero(ds.table["method"].to_numpy() == method)[:n_per_method]
        for k, pos in enumerate(rows):
            src = int(ds.plan.sources[pos])
            image = ds.read_crop(src)
            out.append((image, ds.plan.landmarks[src], ds.plan.boxes[src], ds.plan.make(int(pos), image, k, ds.read_crop)))
    return out


def test_crop_geometry_maps_frame_points_into_the_crop(crops):
    spec = crops["spec"]
    frame = np.zeros((200, 240, 3), np.uint8)
    box = np.array([80, 50, 150, 140], np.float32)
    point = np.array([[101.0, 83.0]], np.float32)
    cv2.circle(frame, (101, 83), 2, (255, 255, 255), -1)
    crop = crop_pixels(frame, Face(box=box, landmarks=np.repeat(point, 5, 0), score=1.0), spec)
    m = crop_matrix(box, None, spec)
    want = point @ m[:, :2].T + m[:, 2]
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert abs(xs.mean() - want[0, 0]) < 1.0 and abs(ys.mean() - want[0, 1]) < 1.0


def test_masks_lie_inside_the_face_box_and_cover_the_landmarks(crops):
    ds = _dataset(crops)
    for _image, landmarks, box, blend in _blends(ds):
        h, w = blend.mask.shape
        assert blend.mask.dtype == np.float32 and 0.0 <= blend.mask.min() and blend.mask.max() <= 1.0
        yy, xx = np.mgrid[0:h, 0:w]
        outside = (xx < np.floor(box[0])) | (xx > np.ceil(box[2])) | (yy < np.floor(box[1])) | (yy > np.ceil(box[3]))
        assert blend.mask[outside].max() == 0.0, blend.method
        peak = blend.mask.max()
        assert peak >= 0.25  # the smallest blend ratio
        for x, y in landmarks:  # eyes, nose and mouth are blended (the hull is not a sliver)
            assert blend.mask[int(round(y)), int(round(x))] > 0.5 * peak, (blend.method, x, y)


def test_blends_differ_from_their_background_only_where_the_mask_is_nonzero(crops):
    ds = _dataset(crops)
    for image, _, _, blend in _blends(ds):
        changed = np.any(blend.image != blend.background, axis=2)
        assert not changed[blend.mask == 0].any(), blend.method
        assert changed[blend.mask > 0.5 * blend.mask.max()].mean() > 0.2, blend.method  # and they do differ inside
        if blend.method == "xray":
            assert np.array_equal(blend.background, image)  # pasted onto the untouched real face


def test_self_blend_perturbing_the_pasted_face_keeps_the_rest_of_the_image(crops):
    ds = _dataset(crops, methods=("sbi",))
    pos = int(np.flatnonzero(ds.table["method"].to_numpy() == "sbi")[0])
    src = int(ds.plan.sources[pos])
    image = ds.read_crop(src)
    sbi = SelfBlend(perturb_background_p=0.0, mask=MaskParams(blend_ratios=(1.0,)))
    blend = sbi(image, ds.plan.landmarks[src], ds.plan.boxes[src], 0)
    assert np.array_equal(blend.background, image)
    assert np.array_equal(blend.image[blend.mask == 0], image[blend.mask == 0])


def test_a_real_and_its_self_blend_differ_only_inside_the_mask(crops):
    """As in SBI's release, the real of a pair is the blend's (sometimes perturbed) background, so
    a global colour or sharpness change says nothing about the label; Face X-ray leaves reals alone."""
    ds = _dataset(crops, methods=("sbi",), split="val", masks=True)
    fakes = np.flatnonzero(ds.table["synth_source"].to_numpy() >= 0)[:24]
    perturbed = 0
    for i in fakes:
        src = int(ds.plan.sources[i])
        fake, real = ds[int(np.flatnonzero(ds.rows == i)[0])], ds[int(np.flatnonzero(ds.rows == src)[0])]
        outside = fake["mask"] == 0
        assert torch.equal(fake["image"][:, outside], real["image"][:, outside])
        perturbed += not np.array_equal(ds._sample(src, int(i))[0], ds.read_crop(src))
    assert 0 < perturbed < len(fakes)
    xray = _dataset(crops, methods=("xray",), masks=False)
    reals = np.flatnonzero(xray.table["synth_source"].to_numpy() < 0)[:12]
    assert all(np.array_equal(xray._sample(int(p), seed)[0], xray.read_crop(int(p))) for seed, p in enumerate(reals))


def test_dataset_labels_and_masks_are_consistent(crops):
    ds = _dataset(crops)
    table = ds.table
    assert set(table.loc[table["label"] == 0, "method"]) == {"real"}  # real_only: stored fakes dropped
    assert set(table.loc[table["label"] == 1, "method"]) == {"sbi", "xray"}
    assert (table.loc[table["synth_source"] >= 0, "label"] == 1).all()
    src = table.loc[table["synth_source"] >= 0, "synth_source"].to_numpy()
    assert (table["label"].to_numpy()[src] == 0).all()
    assert (table["crop_path"].to_numpy()[src] == table.loc[table["synth_source"] >= 0, "crop_path"].to_numpy()).all()
    assert (table.groupby("method").size() == (table["method"] == "real").sum()).all()  # one copy per method
    for i in np.linspace(0, len(ds) - 1, 24).round().astype(int):
        sample = ds[int(i)]
        assert sample["mask"].shape == (64, 64) and bool(sample["mask_known"])
        if int(sample["label"]) == 0:
            assert torch.count_nonzero(sample["mask"]) == 0
        else:
            assert sample["mask"].max() > 0.2
    # Evaluation draws are fixed per sample.
    fake = int(np.flatnonzero(ds.labels() == 1)[0])
    assert torch.equal(ds[fake]["image"], ds[fake]["image"])


def test_stored_fakes_have_unknown_masks_and_real_only_false_keeps_them(crops):
    ds = _dataset(crops, methods=("sbi",), real_only=False)
    methods = set(ds.table["method"])
    assert {"face_swap", "local_resample", "double_jpeg", "real", "sbi"} <= methods
    stored_fake = int(np.flatnonzero((ds.table["label"].to_numpy() == 1) & (ds.table["synth_source"].to_numpy() < 0))[0])
    sample = ds[stored_fake]
    assert not bool(sample["mask_known"]) and int(sample["label"]) == 1


def test_xray_donors_are_other_identities_with_near_landmarks(crops):
    ds = _dataset(crops, methods=("xray",))
    identity = ds.table["source_identity"].to_numpy()
    assert ds.plan.neighbours
    for src, donors in list(ds.plan.neighbours.items())[:50]:
        assert len(donors) > 0 and (identity[donors] != identity[src]).all()
        d = [np.linalg.norm(ds.plan.landmarks[src] - ds.plan.landmarks[j]) for j in donors]
        assert d == sorted(d)  # nearest first


def test_dense_landmarks_use_their_convex_hull():
    ring = np.stack([64 + 30 * np.cos(np.linspace(0, 2 * np.pi, 68, endpoint=False)),
                     64 + 40 * np.sin(np.linspace(0, 2 * np.pi, 68, endpoint=False))], 1)
    assert len(face_hull(ring)) >= 30
    mask = hull_mask(ring, (128, 128))
    assert mask[64, 64] == 1 and mask[64, 20] == 0 and abs(mask.sum() - np.pi * 30 * 40) / (np.pi * 1200) < 0.05


def test_training_with_synthesis_and_the_boundary_family_runs(demo_data, tmp_path):
    from faketrace.engine.checkpoint import load_checkpoint
    from faketrace.engine.train import train

    cfg = compose_config("train", demo_data["overrides"] + [
        "model=blending_boundary", "model.backbone=test_efficientnet", "model.input_size=64", "synthesis=sbi_xray",
        "debug=fast", "trainer.limit_train_batches=1"], output_dir=tmp_path)
    result = train(resolved(cfg))
    ckpt = load_checkpoint(result["last_ckpt"])
    assert ckpt["model_family"] and all(k.startswith("boundary_head.") for k in ckpt["model_family"])
    assert OmegaConf.create(ckpt["config"]).synthesis.methods == ["sbi", "xray"]
    val = ckpt["metrics"]["val"]
    assert val["frame"]["n"] > 0
