"""Every model config builds, runs forward and backward on a tiny input, and loads a local weight
file made here with the key check; the families do what their configs promise."""

from __future__ import annotations

import warnings

import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import save_file

from faketrace.models.backbones import pretrained_num_classes, timm
from faketrace.models.families import BoundaryDetector, LinearProbeDetector, TemporalDetector
from faketrace.models.frequency import DCTBands, SRMResiduals, band_masks

from .conftest import CONFIGS, compose_config, resolved

MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
# The smallest input each backbone takes (ViTs: a 2 x 2 patch grid).
TINY_INPUT = {"vit_b16": 32, "clip_vit_b16": 32, "clip_vit_l14": 28, "linear_probe": 28}
# Hundreds of MB of weights: built and run in the slow suite only.
BIG = {"clip_vit_l14", "linear_probe", "efficientnet_b7"}


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


def _model_cfg(name: str, tmp_path, extra=()):
    size = TINY_INPUT.get(name, 64)
    cfg = resolved(compose_config("train", [f"model={name}", f"model.input_size={size}", *extra], output_dir=tmp_path))
    return cfg.model, size


def _build(model_cfg, **overrides):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random initialisation.*")
        return instantiate(model_cfg, **overrides)


def _batch(model, size: int, n: int = 2) -> tuple[torch.Tensor, dict]:
    shape = (n, 2, 3, size, size) if isinstance(model, TemporalDetector) else (n, 3, size, size)
    batch = {"label": torch.tensor([0, 1] * (n // 2))}
    if "mask" in model.targets:
        mask = torch.zeros(n, size, size)
        mask[1, size // 4:3 * size // 4, size // 4:3 * size // 4] = 1.0
        batch.update(mask=mask, mask_known=torch.tensor([True] * n))
    return torch.randn(*shape), batch


@pytest.mark.parametrize("name", _params(MODELS))
def test_every_model_config_runs_forward_and_backward(name, tmp_path):
    model_cfg, size = _model_cfg(name, tmp_path)
    model = _build(model_cfg).train()
    images, batch = _batch(model, size)
    logits = model(images)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    outputs = model(images, with_aux=True)
    assert outputs["logits"].shape == (2,)
    loss = model.loss(outputs, batch)
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for _, p in trainable), \
        [n for n, p in trainable if p.grad is None][:5]
    assert model.input_spec().size == (size, size)
    assert model.input_spec().layout == ("NTCHW" if model.clip_length > 1 else "NCHW")


def _file(tmp_path, state) -> str:
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


@pytest.mark.parametrize("name", _params(MODELS))
def test_every_model_config_loads_a_local_weight_file_with_the_key_check(name, tmp_path):
    """The backbone's weights come from the file exactly; the file's own classifier is used when it
    fits, reported when it does not, and a file that lost part of the body is refused."""
    model_cfg, _ = _model_cfg(name, tmp_path)
    kwargs = dict(model_cfg.get("model_kwargs") or {})
    backbone = model_cfg.backbone
    probe = model_cfg._target_.endswith("LinearProbeDetector")
    # A file as released for the backbone: its pretrained classifier (ImageNet classes, CLIP's projection).
    src = timm.create_model(backbone, pretrained=False, num_classes=pretrained_num_classes(backbone), **kwargs)
    state = src.state_dict()
    model = _build(model_cfg, weights_file=_file(tmp_path, state))
    heads = [k for k in state if any(k == h or k.startswith(h + ".") for h in _classifiers(src))]
    assert heads, "the test must see the file's classifier"
    loaded = model.backbone_state_dict()
    for k, v in state.items():
        if k in heads and not probe:
            continue
        assert torch.equal(loaded[k], v), k  # body (and the probe's frozen projection) loaded exactly
    report = model.weight_report
    assert report.missing == report.unexpected == report.mismatched == []
    if probe:
        assert report.head_reinitialised == report.head_unused == []
    elif set(model.backbone_state_dict()) & set(heads):
        assert sorted(report.head_reinitialised) == sorted(heads)  # reported, not silently dropped
    else:
        assert sorted(report.head_unused) == sorted(heads)  # features-only backbone: head named as unused
    # A dropped body tensor fails strict loading.
    dropped = next(k for k in state if k not in heads)
    partial = {k: v for k, v in state.items() if k != dropped}
    with pytest.raises(Exception, match="does not fit"):  # ValueError, wrapped by Hydra's instantiate
        _build(model_cfg, weights_file=_file(tmp_path, partial))


def _classifiers(model) -> list[str]:
    clf = model.pretrained_cfg.get("classifier")
    return [clf] if isinstance(clf, str) else list(clf)


def test_a_head_that_fits_is_loaded_not_reinitialised(tmp_path):
    model_cfg, _ = _model_cfg("xception", tmp_path)
    src = timm.create_model(model_cfg.backbone, pretrained=False, num_classes=1)
    model = _build(model_cfg, weights_file=_file(tmp_path, src.state_dict()))
    assert model.weight_report.head_reinitialised == []
    assert torch.equal(model.backbone.get_classifier().weight, src.get_classifier().weight)


def test_linear_probe_refuses_a_file_without_the_projection(tmp_path):
    model_cfg, _ = _model_cfg("linear_probe", tmp_path)
    model_cfg.backbone = "vit_base_patch16_clip_224.openai"  # the B/16 tower: same recipe, lighter
    src = timm.create_model(model_cfg.backbone, pretrained=False, num_classes=0, dynamic_img_size=True)
    with pytest.raises(Exception, match="projection"):
        _build(model_cfg, weights_file=_file(tmp_path, src.state_dict()))


def test_linear_probe_trains_only_the_probe_and_keeps_the_backbone_in_eval_mode(tmp_path):
    model_cfg, _ = _model_cfg("linear_probe", tmp_path)
    model_cfg.backbone = "vit_base_patch16_clip_224.openai"  # the B/16 tower: same recipe, lighter
    model_cfg.input_size = size = 32
    model = _build(model_cfg).train()
    assert isinstance(model, LinearProbeDetector) and not model.backbone.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    images, batch = _batch(model, size)
    model.loss(model(images, with_aux=True), batch).backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"probe.weight", "probe.bias"}


def test_boundary_loss_uses_face_xray_target_where_masks_are_known(tmp_path):
    model_cfg, size = _model_cfg("blending_boundary", tmp_path)
    model = _build(model_cfg).eval()
    assert isinstance(model, BoundaryDetector)
    images, batch = _batch(model, size)
    outputs = model(images, with_aux=True)
    assert outputs["boundary"].shape == (2, size, size)
    cls = model.classification_loss(outputs["logits"], batch)
    # The map term is BCE against 4 M (1 - M): a perfect prediction of it leaves the least loss.
    m = batch["mask"]
    target = 4 * m * (1 - m)
    perfect = {**outputs, "boundary": torch.logit(target.clamp(1e-6, 1 - 1e-6))}
    assert model.loss(perfect, batch) < model.loss(outputs, batch)
    # Unknown masks contribute nothing; no mask at all is the plain classification loss.
    unknown = {**batch, "mask_known": torch.tensor([False, False])}
    assert model.loss(outputs, unknown).item() == pytest.approx(cls.item(), rel=1e-6)
    assert model.loss(outputs, {"label": batch["label"]}).item() == pytest.approx(cls.item(), rel=1e-6)


def test_temporal_family_reads_clips_and_frames(tmp_path):
    model_cfg, size = _model_cfg("video_temporal", tmp_path, ["model.clip_length=3"])
    model = _build(model_cfg).eval()
    clip = torch.randn(2, 3, 3, size, size)
    assert model(clip).shape == (2,)
    frames = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(frames), model(frames.unsqueeze(1)))  # a frame is a clip of one
    assert model.clip_length == 3 and model.input_spec().layout == "NTCHW"


def test_family_weights_round_trip_strictly(tmp_path):
    model_cfg, size = _model_cfg("frequency", tmp_path)
    a, b = _build(model_cfg), _build(model_cfg)
    family = a.family_state_dict()
    assert family and not any(k.startswith("backbone.") for k in family)
    b.load_trained_state(a.backbone_state_dict(), family)
    images = torch.randn(2, 3, size, size)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(images), b(images))
    with pytest.raises(ValueError, match="family weights do not fit"):
        b.load_trained_state(a.backbone_state_dict(), {k: v for k, v in list(family.items())[1:]})


def test_dct_bands_partition_the_spectrum_and_srm_ignores_flat_images():
    masks = band_masks(32, [[0.0, 1 / 16], [1 / 16, 1 / 8], [1 / 8, 1.0]])
    assert torch.equal(masks.sum(0), torch.ones(32, 32))  # every coefficient in exactly one band
    assert masks[0, 0, 0] == 1 and masks[2, -1, -1] == 1  # DC is low, the corner is high
    x = torch.randn(2, 3, 32, 32)
    bands = DCTBands(32, [[0.0, 1 / 16], [1 / 16, 1 / 8], [1 / 8, 1.0]], learnable=False)(x)
    assert torch.allclose(bands.view(2, 3, 3, 32, 32).sum(1), x, atol=1e-4)
    flat = torch.full((1, 3, 16, 16), 0.3)
    srm = SRMResiduals([0.5] * 3, [0.5] * 3)(flat)
    assert srm.shape == (1, 9, 16, 16) and srm[..., 2:-2, 2:-2].abs().max() < 1e-5


@pytest.mark.parametrize("name", ["frequency", "blending_boundary"])
def test_report_heatmaps_use_grad_cam_on_families_and_fall_back_for_a_frozen_probe(name, tmp_path):
    from faketrace.forensics.heatmaps import grad_cam

    model_cfg, size = _model_cfg(name, tmp_path, ["model.backbone=resnet18"])
    x = torch.randn(1, 3, size, size).numpy()
    cam, _ = grad_cam(_build(model_cfg).eval(), x)
    assert cam.shape == (size, size)
    # The probe's backbone runs without gradients: no Grad-CAM, so the report uses occlusion.
    probe = LinearProbeDetector("resnet18", use_projection=False, input_size=size).eval()
    assert grad_cam(probe, x) is None
