"""Shipped published detectors against independent references.

MesoNet: Keras 3 itself (torch backend, no TensorFlow) loads the authors' original .h5 files
(tests/data/mesonet_h5/, Apache-2.0 with NOTICE) into the architecture written here in Keras; our
PyTorch port with the shipped safetensors must give the same outputs on the same image files,
through the authors' loading and resizing (Keras load_img) on one side and our published
preprocessing on the other. LRNet: reference outputs computed once with the LRNet repository's own
code (tests/data/make_lrnet_reference.py) on seeded landmark sequences.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")

from faketrace.datasets.landmarks import normalise_sequence, to_features  # noqa: E402
from faketrace.datasets.published_crops import scaled_input  # noqa: E402
from faketrace.models import published  # noqa: E402
from faketrace.models.lrnet import LRNet, video_vote, windows  # noqa: E402
from faketrace.models.mesonet import convert_keras_h5  # noqa: E402

DATA = Path(__file__).parent / "data"
H5 = DATA / "mesonet_h5"
MESO = {"meso4_df": ("Meso4_DF.h5", "meso4"), "meso4_f2f": ("Meso4_F2F.h5", "meso4"),
        "mesoinception4_df": ("MesoInception_DF.h5", "mesoinception4"),
        "mesoinception4_f2f": ("MesoInception_F2F.h5", "mesoinception4")}
LOGIT_TOL = 1e-3  # float32 on two frameworks; a wrong resize or normalisation moves logits by far more


# -- Keras reference (written from the paper and the authors' layer list; not our port) --------
def keras_mesonet(variant: str, hidden: str):
    import keras
    from keras import layers as L

    x = L.Input((256, 256, 3))

    def inception(h, a, b, c, d):
        b1 = L.Conv2D(a, 1, padding="same", activation="relu")(h)
        b2 = L.Conv2D(b, 3, padding="same", activation="relu")(L.Conv2D(b, 1, padding="same", activation="relu")(h))
        b3 = L.Conv2D(c, 3, dilation_rate=2, padding="same", activation="relu")(
            L.Conv2D(c, 1, padding="same", activation="relu")(h))
        b4 = L.Conv2D(d, 3, dilation_rate=3, padding="same", activation="relu")(
            L.Conv2D(d, 1, padding="same", activation="relu")(h))
        return L.Concatenate(axis=-1)([b1, b2, b3, b4])

    h = x
    if variant == "meso4":
        for ch, k, pool in ((8, 3, 2), (8, 5, 2), (16, 5, 2), (16, 5, 4)):
            h = L.MaxPooling2D(pool, padding="same")(L.BatchNormalization()(
                L.Conv2D(ch, k, padding="same", activation="relu")(h)))
    else:
        h = L.MaxPooling2D(2, padding="same")(L.BatchNormalization()(inception(h, 1, 4, 4, 2)))
        h = L.MaxPooling2D(2, padding="same")(L.BatchNormalization()(inception(h, 2, 4, 4, 2)))
        for pool in (2, 4):
            h = L.MaxPooling2D(pool, padding="same")(L.BatchNormalization()(
                L.Conv2D(16, 5, padding="same", activation="relu")(h)))
    h = L.Dense(16)(L.Dropout(0.5)(L.Flatten()(h)))
    if hidden == "leaky_relu":
        h = L.LeakyReLU(negative_slope=0.1)(h)
    pre = L.Dense(1)(L.Dropout(0.5)(h))  # the authors' Dense(1, sigmoid), split so that logits can be compared
    return keras.Model(x, [pre, L.Activation("sigmoid")(pre)])


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Face-like test images of sizes that need resizing (not 256), written as PNG files."""
    rng = np.random.default_rng(7)
    out = []
    d = tmp_path_factory.mktemp("meso_images")
    from PIL import Image

    for i, (h, w) in enumerate(((300, 300), (211, 187), (342, 280))):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([120 + 60 * np.sin(xx / (9 + 3 * c) + yy / 23 + c) for c in range(3)], -1)
        ellipse = ((xx - w / 2) / (0.35 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2 < 1
        base[ellipse] = base[ellipse] * 0.5 + np.array([200, 150, 120]) * 0.5
        img = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
        p = d / f"face{i}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def keras_reference(image_files):
    """Per model: (pre-sigmoid logit, P(real)) from Keras loading the original .h5 and the images itself."""
    import keras

    batch = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(256, 256))) / 255.0
                      for p in image_files]).astype(np.float32)
    ref = {}
    for name, (fname, variant) in MESO.items():
        entry = published.load_entry(name)
        model = keras_mesonet(variant, entry["architecture"]["hidden_activation"])
        model.load_weights(H5 / fname)
        pre, prob = model.predict(batch, verbose=0)
        ref[name] = (np.asarray(pre).ravel().astype(np.float64), np.asarray(prob).ravel().astype(np.float64))
    return ref


def ours(name: str, image_files, **spec_changes) -> np.ndarray:
    """Logit of P(fake) from the shipped model through the registry spec's preprocessing."""
    from PIL import Image

    model, entry = published.build_published(name)
    spec_input = {**entry["spec"]["input"], **spec_changes}
    x = scaled_input([np.asarray(Image.open(p).convert("RGB")) for p in image_files], spec_input)
    with torch.no_grad():
        return model(torch.from_numpy(x)).double().numpy()


@pytest.mark.parametrize("name", sorted(MESO))
def test_mesonet_port_matches_keras_on_image_files(name, image_files, keras_reference):
    pre, p_real = keras_reference[name]
    fake_logit = ours(name, image_files)
    # Polarity: the published sigmoid is P(real); our logit is of P(fake).
    np.testing.assert_allclose(fake_logit, -pre, atol=LOGIT_TOL, rtol=1e-4)
    np.testing.assert_allclose(1 / (1 + np.exp(-fake_logit)), 1 - p_real, atol=1e-5)
    spec = published.model_spec(published.load_entry(name))
    assert spec.output.positive_class == "real" and spec.input.interpolation == "nearest"


@pytest.mark.parametrize("change", [{"interpolation": "bilinear"}, {"interpolation": "bicubic"},
                                    {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                                    {"scale": 1.0}])
def test_a_wrong_resize_or_normalisation_is_caught(change, image_files, keras_reference):
    """The comparison above has the power to see a preprocessing mistake on these images."""
    gaps = [np.abs(ours(n, image_files, **change) + keras_reference[n][0]).max() for n in ("meso4_df", "meso4_f2f")]
    assert max(gaps) > 20 * LOGIT_TOL, (change, gaps)


@pytest.mark.parametrize("name", sorted(MESO))
def test_shipped_mesonet_equals_a_fresh_conversion(name):
    fname, variant = MESO[name]
    from safetensors.torch import load_file

    _, fresh = convert_keras_h5(H5 / fname, variant)
    shipped = load_file(str(published.shipped_path(published.load_entry(name))))
    assert fresh.keys() == shipped.keys()
    for k in fresh:
        assert torch.equal(fresh[k], shipped[k]), k


def test_mesonet_hidden_activation_is_read_from_the_file():
    """Meso4's files record no activation between the dense layers, MesoInception's a LeakyReLU."""
    from faketrace.models.mesonet import hidden_activation_in_file, read_keras_h5

    assert hidden_activation_in_file(read_keras_h5(H5 / "Meso4_DF.h5")["layer_names"]) == "linear"
    assert hidden_activation_in_file(read_keras_h5(H5 / "MesoInception_F2F.h5")["layer_names"]) == "leaky_relu"
    assert published.load_entry("meso4_f2f")["architecture"]["hidden_activation"] == "linear"


def test_build_published_refuses_an_altered_file_and_a_wrong_key(tmp_path, monkeypatch):
    entry = published.load_entry("meso4_df")
    bad = tmp_path / "published_weights" / "mesonet" / "meso4_df.safetensors"
    bad.parent.mkdir(parents=True)
    from safetensors.torch import load_file, save_file

    state = load_file(str(published.shipped_path(entry)))
    state["fc2.bias"] = state["fc2.bias"] + 1
    save_file(state, str(bad))
    monkeypatch.setattr(published, "shipped_path", lambda e: bad)
    with pytest.raises(ValueError, match="altered"):
        published.build_published("meso4_df")
    state["fc2.bias"] = state["fc2.bias"] - 1
    state["head.bias"] = state.pop("fc2.bias")
    save_file(state, str(bad))
    monkeypatch.setattr(published, "load_entry",
                        lambda n: {**entry, "shipped": {**entry["shipped"], "sha256": None}})
    with pytest.raises(RuntimeError, match="fc2.bias"):
        published.build_published("meso4_df")


# -- LRNet --------------------------------------------------------------------------------------
def _reference_module():
    spec = importlib.util.spec_from_file_location("make_lrnet_reference", DATA / "make_lrnet_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def lrnet_reference():
    import json

    return json.loads((DATA / "lrnet_reference.json").read_text()), _reference_module()


@pytest.mark.parametrize("name", ["ffpp", "deeperforensics"])
def test_lrnet_matches_the_publishers_code(name, lrnet_reference):
    ref, gen = lrnet_reference
    seqs = gen.synthetic_sequences()
    for key, meta in ref["inputs"].items():
        assert gen.digest(seqs[key]) == meta["sha256_float64"], "the seeded inputs changed"
    model, entry = published.build_published(f"lrnet_{name}")
    assert entry["spec"]["clip"]["length"] == ref["block"]
    for key, seq in seqs.items():
        want = ref["models"][name][f"synthetic/{key}"]
        x = torch.from_numpy(windows(seq.astype(np.float32), ref["block"]))
        with torch.no_grad():
            p1, p2 = model.stream_probabilities(x)
            window = model.window_probability(x).numpy()
        np.testing.assert_allclose(p1.numpy(), want["g1_fake"], atol=2e-5)
        np.testing.assert_allclose(p2.numpy(), want["g2_fake"], atol=2e-5)
        np.testing.assert_allclose(window, want["window_fake"], atol=2e-5)
        assert video_vote(window) == pytest.approx(want["video_vote"])


def test_lrnet_landmark_order_matters(lrnet_reference):
    """Features are x0, y0, x1, y1, ...: the x-then-y layout (or swapped axes) gives other scores."""
    ref, gen = lrnet_reference
    seq = gen.synthetic_sequences()["jittery_95"]
    points = seq.reshape(-1, 68, 2)
    np.testing.assert_array_equal(to_features(points), seq)
    model, _ = published.build_published("lrnet_ffpp")
    want = np.asarray(ref["models"]["ffpp"]["synthetic/jittery_95"]["window_fake"])
    for wrong in (points.transpose(0, 2, 1).reshape(-1, 136), points[:, :, ::-1].reshape(-1, 136)):
        with torch.no_grad():
            got = model.window_probability(torch.from_numpy(windows(wrong.astype(np.float32)))).numpy()
        assert np.abs(got - want).max() > 0.01


def test_every_registry_spec_is_a_valid_model_spec():
    for name in published.available():
        spec = published.model_spec(published.load_entry(name))
        assert spec.published and spec.source.files and spec.source.licence
    assert published.model_spec(published.load_entry("lrnet_ffpp")).domain.media == ("video",)


def test_lrnet_windows_follow_the_published_rule():
    f = np.zeros((90, 136), np.float32)
    assert windows(f).shape == (2, 30, 136)  # starts 0, 30 (range(0, 90 - 30, 30))
    assert windows(f[:30]).shape == (0, 30, 136)
    assert windows(f[:31]).shape == (1, 30, 136)
    assert LRNet().g1.hidden_state.shape == (2, 1, 32)


def test_landmark_normalisation_is_invariant_to_position_and_scale():
    rng = np.random.default_rng(0)
    pts = rng.uniform(100, 200, (40, 68, 2))
    a = normalise_sequence(pts)
    b = normalise_sequence(pts * 2.5 + np.array([300.0, -40.0]))
    np.testing.assert_allclose(a, b, atol=1e-9)
    extent = (pts.max(axis=1) - pts.min(axis=1)).max(axis=1)
    # each frame's points reach 1 / 1.2 of the box half-side, scaled by its extent over the mean extent
    np.testing.assert_allclose(np.abs(a).reshape(40, 68, 2).max(axis=(1, 2)), extent / extent.mean() / 1.2, rtol=1e-9)
    swapped = normalise_sequence(pts[:, :, ::-1])
    assert not np.allclose(a, swapped)
