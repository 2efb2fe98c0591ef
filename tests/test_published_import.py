"""Published detectors imported from their released files (issue 20), verified against reference builds.

For every converter the publisher's architecture is built from a reference implementation with
random weights (efficientnet-pytorch, pretrainedmodels, torchvision, timm, open_clip; DeepfakeBench's
MesoNets, which no package holds, rewritten here from a reading of their code), saved in the
publisher's exact file layout (key names, prefixes, wrapper dicts, file format), imported with the
real import command, and the faketrace model must give the same logit as the reference on the same
tensor (|diff| <= 1e-5, fp32; a 2-class head is compared as z_fake - z_real, and its softmax). The
published preprocessing is compared separately: faketrace's `published_tensor` against the
publisher's pipeline rebuilt from their code, pixel for pixel. Each check is also shown to fail on
the mistakes it guards against: a wrong key or prefix (refused), a flipped polarity, another
normalisation or resize.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pickle
import sys
import types
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from faketrace.datasets.published_input import published_tensor
from faketrace.engine.checkpoint import load_checkpoint
from faketrace.engine.import_weights import import_published, load_entry, registry_names
from faketrace.engine.inference import model_from_checkpoint
from faketrace.models.converters.common import ImportRefused, two_class_to_logit

DATA = Path(__file__).parent / "data" / "published"
ATOL = 1e-5
warnings.filterwarnings("ignore", message=".*random initialisation.*")


# -- shared helpers ------------------------------------------------------------------------------
def face_image(h: int = 211, w: int = 187, seed: int = 0) -> np.ndarray:
    """A raw RGB face-like crop (not square, not the model size): skin ellipse, eyes, mouth, texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([60 + 80 * yy / h, 70 + 60 * xx / w, 90 + 40 * (xx + yy) / (h + w)], -1)
    face = ((xx - w / 2) / (0.38 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2 < 1
    img[face] = [205, 160, 135]
    for cx in (0.36, 0.64):
        img[((xx - cx * w) / 9) ** 2 + ((yy - 0.42 * h) / 5) ** 2 < 1] = [40, 30, 30]
    img[((xx - w / 2) / 22) ** 2 + ((yy - 0.7 * h) / 6) ** 2 < 1] = [150, 60, 60]
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def randomize(model: nn.Module, seed: int, gain: float = 1.0) -> nn.Module:
    """Random weights with informative activations: fan-in scaled convolutions and linears, and
    BatchNorm statistics and affine terms away from the identity (so a swapped BN key shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0, gain / math.sqrt(fan_in), generator=g)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
    return model.eval()


def imported(tmp_path: Path, name: str, files: dict) -> tuple[nn.Module, dict]:
    out = tmp_path / f"{name}.ckpt"
    import_published(name, files, out)
    ckpt = load_checkpoint(out)
    return model_from_checkpoint(ckpt), ckpt


def assert_same_logit(ours: torch.Tensor, reference_logit: torch.Tensor) -> None:
    diff = (ours.float() - reference_logit.float()).abs().max().item()
    print(f"max |logit diff| {diff:.3e} (logits {ours.tolist()})")  # shown with pytest -s
    assert diff <= ATOL, f"max |logit diff| {diff:.3e} > {ATOL}"


def two_class_logit(ref_out: torch.Tensor) -> torch.Tensor:
    return ref_out[:, 1] - ref_out[:, 0]


def check_two_class(ours: torch.Tensor, ref_out: torch.Tensor) -> None:
    """Same fake logit, same published probability; the opposite polarity would fail."""
    assert_same_logit(ours, two_class_logit(ref_out))
    assert torch.allclose(torch.sigmoid(ours), ref_out.softmax(1)[:, 1], atol=1e-6)
    with pytest.raises(AssertionError):
        assert_same_logit(ours, ref_out[:, 0] - ref_out[:, 1])
    # informative outputs: a logit of ~0 everywhere would let a flipped polarity pass unnoticed
    assert ours.abs().min() > 1e-3 or (len(ours) > 1 and ref_out.softmax(1)[:, 1].std() > 1e-3)


# -- the publishers' preprocessing, rebuilt from their code -------------------------------------
def sbi_reference_input(rgb: np.ndarray) -> torch.Tensor:
    # src/inference/preprocess.py: cv2.resize(crop, dsize=(380, 380)).transpose((2, 0, 1)); then / 255
    face = cv2.resize(rgb, dsize=(380, 380)).transpose((2, 0, 1))
    return torch.tensor(np.array([face])).float()[0] / 255


def deepfakebench_reference_input(rgb: np.ndarray) -> torch.Tensor:
    from torchvision import transforms as T

    # training/dataset/abstract_dataset.py load_rgb + to_tensor + normalize
    img = Image.fromarray(np.array(cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_CUBIC), dtype=np.uint8))
    return T.Normalize(mean=[0.5] * 3, std=[0.5] * 3)(T.ToTensor()(np.array(img)))


def ffpp_reference_input(rgb: np.ndarray) -> torch.Tensor:
    from torchvision import transforms

    # classification/dataset/transform.py xception_default_data_transforms["test"]
    test = transforms.Compose([transforms.Resize((299, 299)), transforms.ToTensor(),
                               transforms.Normalize([0.5] * 3, [0.5] * 3)])
    return test(Image.fromarray(rgb))


def selimsef_reference_input(rgb: np.ndarray, size: int = 380) -> torch.Tensor:
    from torchvision.transforms import Normalize

    # kernel_utils.py isotropically_resize_image + put_to_center + normalize_transform(x / 255.)
    h, w = rgb.shape[:2]
    img = rgb
    if max(w, h) != size:
        scale = size / w if w > h else size / h
        nh, nw = (h * scale, size) if w > h else (size, w * scale)
        img = cv2.resize(rgb, (int(nw), int(nh)), interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    img = img[:size, :size]
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    sw, sh = (size - img.shape[1]) // 2, (size - img.shape[0]) // 2
    canvas[sh:sh + img.shape[0], sw:sw + img.shape[1], :] = img
    x = torch.tensor(canvas).float().permute((2, 0, 1))
    return Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(x / 255.)


def ufd_reference_input(rgb: np.ndarray) -> torch.Tensor:
    from torchvision import transforms

    # validate.py: CenterCrop(224), ToTensor, Normalize(CLIP mean, std); no resize
    t = transforms.Compose([transforms.CenterCrop(224), transforms.ToTensor(),
                            transforms.Normalize([0.48145466, 0.4578275, 0.40821073],
                                                 [0.26862954, 0.26130258, 0.27577711])])
    return t(Image.fromarray(rgb))


REFERENCE_INPUTS = {
    "sbi_efficientnet_b4_c23": sbi_reference_input, "sbi_efficientnet_b4_raw": sbi_reference_input,
    "deepfakebench_xception": deepfakebench_reference_input, "deepfakebench_core": deepfakebench_reference_input,
    "deepfakebench_efficientnet_b4": deepfakebench_reference_input,
    "deepfakebench_resnet34": deepfakebench_reference_input,
    "deepfakebench_meso4": deepfakebench_reference_input, "deepfakebench_mesoinception4": deepfakebench_reference_input,
    "ffpp_xception_c23": ffpp_reference_input, "ffpp_xception_c40": ffpp_reference_input,
    "ffpp_xception_raw": ffpp_reference_input, "dfdc_selimsef_b7": selimsef_reference_input,
    "universal_fake_detect": ufd_reference_input,
}


def faces() -> list[np.ndarray]:
    # smaller and larger than every model size, portrait and landscape
    return [face_image(211, 187, 0), face_image(150, 260, 1), face_image(420, 390, 2), face_image(96, 96, 3)]


def run_import_command(*overrides: str):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(root / "scripts" / "import_weights.py"), *overrides,
                           f"hydra.run.dir={Path(overrides[-1].split('=', 1)[1]).parent / 'run'}"],
                          capture_output=True, text=True, cwd=root, env=env, timeout=600)


# -- registry --------------------------------------------------------------------------------------
def test_registry_lists_every_published_detector_with_its_facts():
    from faketrace.models.spec import ModelSpec

    names = registry_names()
    assert set(REFERENCE_INPUTS) <= set(names)
    for name in REFERENCE_INPUTS:
        entry = load_entry(name)
        for key in ("paper", "release", "licence", "training_data", "architecture", "converter", "spec",
                    "publisher_preprocessing"):
            assert entry.get(key), f"{name}: {key} missing"
        assert entry["release"]["url"].startswith("http") and entry["licence"]["name"]
        spec = ModelSpec.from_dict(entry["spec"])  # the published spec is a valid, typed ModelSpec
        assert spec.output.positive_class == "fake" and spec.domain.media
        assert entry["publisher_preprocessing"]["resize"]["rule"] in ("stretch", "center_crop", "isotropic_pad")
        from hydra.utils import get_method

        assert callable(get_method(entry["converter"]["_target_"]))


def test_import_command_composes_the_registry_entry():
    from hydra import compose, initialize_config_dir

    configs = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(config_name="import_weights", overrides=["published=sbi_efficientnet_b4_c23", "file=/x/FFc23.tar"],
                      return_hydra_config=True)
    entry = cfg.published.sbi_efficientnet_b4_c23  # registry files are packaged at published.NAME
    assert entry.name == "sbi_efficientnet_b4_c23" and cfg.file == "/x/FFc23.tar"
    assert entry.release.files[0].role == "weights"


# -- preprocessing, pixel for pixel ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REFERENCE_INPUTS))
def test_published_preprocessing_matches_the_publishers_pipeline(name):
    entry = load_entry(name)
    spec, resize = entry["spec"]["input"], entry["publisher_preprocessing"]["resize"]
    reference = REFERENCE_INPUTS[name]
    for rgb in faces():
        ours, ref = published_tensor(rgb, spec, resize), reference(rgb)
        assert ours.dtype == torch.float32 and ours.shape == ref.shape
        assert torch.equal(ours, ref), f"{name}: max |diff| {(ours - ref).abs().max():.3e}"
    # another normalisation or another resize would not pass this check
    rgb = faces()[0]
    ref = reference(rgb)
    other_norm = dict(spec, mean=[0.485, 0.456, 0.406] if spec["mean"][0] != 0.485 else [0.5] * 3)
    assert not torch.equal(published_tensor(rgb, other_norm, resize), ref)
    if resize["rule"] == "stretch":
        other = dict(resize, backend="pil" if resize["backend"] == "opencv" else "opencv")
    else:
        other = {"rule": "stretch", "backend": "opencv", "interpolation": "bilinear"}
    assert not torch.equal(published_tensor(rgb, spec, other), ref)


def test_two_class_head_collapse_is_the_published_softmax():
    g = torch.Generator().manual_seed(0)
    w, b, x = torch.randn(2, 16, generator=g), torch.randn(2, generator=g), torch.randn(5, 16, generator=g)
    w1, b1 = two_class_to_logit(w, b, fake_index=1)
    assert torch.allclose(torch.sigmoid(x @ w1.t() + b1).squeeze(1), torch.softmax(x @ w.t() + b, 1)[:, 1], atol=1e-6)
    w0, b0 = two_class_to_logit(w, b, fake_index=0)
    assert torch.allclose(x @ w0.t() + b0, -(x @ w1.t() + b1))


# -- DeepfakeBench ---------------------------------------------------------------------------------
class DeepfakeBenchXceptionBackbone(nn.Module):
    """DeepfakeBench's networks/xception.py in 'original' mode: Cadene's Xception (the reference
    implementation) with a 2-class `last_linear` and the unused `adjust_channel` block beside it."""

    def __init__(self):
        super().__init__()
        cadene = importlib.import_module("pretrainedmodels.models.xception")  # the module, not the function
        body = cadene.Xception(num_classes=2)
        for name, child in body.named_children():
            self.add_module("last_linear" if name == "fc" else name, child)
        self.adjust_channel = nn.Sequential(nn.Conv2d(2048, 512, 1, 1), nn.BatchNorm2d(512), nn.ReLU(inplace=False))
        self.features = types.MethodType(cadene.Xception.features, self)

    def forward(self, x):  # classifier(): relu, global average pool, last_linear
        return self.last_linear(F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1))


class DeepfakeBenchDetector(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x)


@pytest.fixture(scope="module")
def deepfakebench_xception(tmp_path_factory):
    torch.manual_seed(0)
    detector = randomize(DeepfakeBenchDetector(DeepfakeBenchXceptionBackbone()), seed=1)
    path = tmp_path_factory.mktemp("dfb") / "xception_best.pth"
    torch.save(detector.state_dict(), path)  # trainer.save_ckpt, non-DDP
    return detector, path


@pytest.mark.slow
def test_deepfakebench_xception_matches_reference(tmp_path, deepfakebench_xception):
    """Also deepfakebench_core's check: CORE's released model is this Xception (same converter)."""
    detector, path = deepfakebench_xception
    assert load_entry("deepfakebench_core")["converter"] == load_entry("deepfakebench_xception")["converter"]
    model, ckpt = imported(tmp_path, "deepfakebench_xception", {"weights": path})
    x = torch.stack([deepfakebench_reference_input(f) for f in faces()[:2]])
    with torch.no_grad():
        check_two_class(model(x), detector(x))
    assert ckpt["fit_for_casework"] is False
    assert "backbone.adjust_channel.0.weight" in ckpt["published"]["dropped_keys"]


@pytest.mark.slow
def test_deepfakebench_refuses_wrong_prefix_and_keys(tmp_path, deepfakebench_xception):
    _, path = deepfakebench_xception
    state = torch.load(path, weights_only=True)
    no_prefix = tmp_path / "no_prefix.pth"
    torch.save({k[len("backbone."):]: v for k, v in state.items()}, no_prefix)
    run = run_import_command("published=deepfakebench_xception", f"file={no_prefix}", f"out={tmp_path / 'cli.ckpt'}")
    assert run.returncode == 2 and "Accepted: a DeepfakeBench checkpoint" in run.stderr
    assert not (tmp_path / "cli.ckpt").exists()
    with pytest.raises(ImportRefused, match=r"start with 'backbone\.'.*Accepted: a DeepfakeBench checkpoint"):
        import_published("deepfakebench_xception", {"weights": no_prefix}, tmp_path / "a.ckpt")
    renamed = tmp_path / "renamed.pth"
    victim = "backbone.block1.rep.0.conv1.weight"
    assert victim in state
    torch.save({(victim + "X" if k == victim else k): v for k, v in state.items()}, renamed)
    with pytest.raises(ImportRefused, match=r"missing \['block1\.rep\.0\.conv1\.weight'\].*unexpected"):
        import_published("deepfakebench_xception", {"weights": renamed}, tmp_path / "b.ckpt")
    ddp = tmp_path / "ddp.pth"  # DDP-saved files carry module. on every key: accepted
    torch.save({"module." + k: v for k, v in state.items()}, ddp)
    summary = import_published("deepfakebench_xception", {"weights": ddp}, tmp_path / "c.ckpt")
    assert summary["files"][0]["hash_checked"] is False and len(summary["files"][0]["sha256"]) == 64
    assert not (tmp_path / "a.ckpt").exists() and not (tmp_path / "b.ckpt").exists()


@pytest.mark.slow
def test_deepfakebench_resnet34_matches_reference(tmp_path):
    import torchvision

    class ResNet34Backbone(nn.Module):  # networks/resnet34.py layout
        def __init__(self):
            super().__init__()
            resnet = torchvision.models.resnet34(weights=None)
            self.resnet = nn.Sequential(*list(resnet.children())[:-2])
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, 2)

        def forward(self, x):
            return self.fc(self.avgpool(self.resnet(x)).flatten(1))

    torch.manual_seed(0)
    detector = randomize(DeepfakeBenchDetector(ResNet34Backbone()), seed=2, gain=0.6)
    path = tmp_path / "resnet34_best.pth"
    torch.save(detector.state_dict(), path)
    # through the command a user runs
    out = tmp_path / "resnet34.ckpt"
    run = run_import_command("published=deepfakebench_resnet34", f"file={path}", f"out={out}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "publisher gives no hash; keys and shapes checked" in run.stdout and "fit_for_casework: false" in run.stdout
    ckpt = load_checkpoint(out)
    model = model_from_checkpoint(ckpt)
    x = torch.stack([deepfakebench_reference_input(f) for f in faces()[:2]])
    with torch.no_grad():
        check_two_class(model(x), detector(x))
    # the scan loads it as any faketrace checkpoint, not fit for casework, with the published crop settings
    from faketrace.forensics.scoring import load_torch_model

    scan_model = load_torch_model(out, device="cpu")
    assert scan_model.fit_for_casework is False and "not validated" in scan_model.casework_note
    spec = scan_model.spec
    assert spec.face.margin == 1.3 and spec.face.crop_size == 256 and spec.face.crop_rule == "aligned_5pt"
    assert spec.input.size == (256, 256) and spec.input.mean == (0.5, 0.5, 0.5) and spec.input.interpolation == "bicubic"
    assert spec.source.name == "deepfakebench_resnet34" and spec.source.licence == "CC BY-NC 4.0"
    assert np.allclose(scan_model.logits(x.numpy()), model(x).detach().numpy(), atol=1e-6)


@pytest.mark.slow
def test_deepfakebench_efficientnet_b4_matches_reference(tmp_path):
    from efficientnet_pytorch import EfficientNet

    class EfficientNetB4Backbone(nn.Module):  # networks/efficientnetb4.py, mode Original, no dropout
        def __init__(self):
            super().__init__()
            self.efficientnet = EfficientNet.from_name("efficientnet-b4")
            self.efficientnet._conv_stem = nn.Conv2d(3, 48, kernel_size=3, stride=2, bias=False)
            self.efficientnet._fc = nn.Identity()
            self.last_layer = nn.Linear(1792, 2)

        def forward(self, x):
            x = F.adaptive_avg_pool2d(self.efficientnet.extract_features(x), (1, 1)).flatten(1)
            return self.last_layer(x)

    torch.manual_seed(0)
    detector = randomize(DeepfakeBenchDetector(EfficientNetB4Backbone()), seed=3)
    path = tmp_path / "effnb4_best.pth"
    torch.save(detector.state_dict(), path)
    model, _ = imported(tmp_path, "deepfakebench_efficientnet_b4", {"weights": path})
    x = deepfakebench_reference_input(faces()[0]).unsqueeze(0)
    with torch.no_grad():
        ref = detector(x)
        check_two_class(model(x), ref)
        # timm's own (input-size dependent) padding would not reproduce the release at 256 px
        plain = model.backbone
        assert type(plain.conv_stem).__name__ == "_StaticPadConv2d"


# -- DeepfakeBench MesoNets -----------------------------------------------------------------------
# Written here from a reading of DeepfakeBench's training/networks/mesonet.py (commit 8a4a7bf), laid
# out as stage tables rather than as faketrace's block modules: attribute names are the file's keys,
# every layer is applied where their forward applies it (bn1 / bn2 each twice), PyTorch defaults
# (BN eps 1e-5), `view(B, -1)` flatten, LeakyReLU(0.1) between the dense layers, a 2-class head.
class DFBMeso4Reference(nn.Module):
    STAGES = (("conv1", "bn1", 2), ("conv2", "bn1", 2), ("conv3", "bn2", 2), ("conv4", "bn2", 4))

    def __init__(self):
        super().__init__()
        for name, cin, cout, k in (("conv1", 3, 8, 3), ("conv2", 8, 8, 5), ("conv3", 8, 16, 5), ("conv4", 16, 16, 5)):
            setattr(self, name, nn.Conv2d(cin, cout, k, padding=k // 2, bias=False))
        self.bn1, self.bn2 = nn.BatchNorm2d(8), nn.BatchNorm2d(16)
        self.fc1, self.fc2 = nn.Linear(16 * 8 * 8, 16), nn.Linear(16, 2)

    def forward(self, x):
        for conv, bn, pool in self.STAGES:
            x = F.max_pool2d(getattr(self, bn)(F.relu(getattr(self, conv)(x))), pool)
        return self.fc2(F.leaky_relu(self.fc1(x.reshape(x.shape[0], -1)), 0.1))


class DFBMesoInception4Reference(nn.Module):
    # per inception layer: (branch convs as (name, out, kernel, dilation), in order), its in/out width
    BRANCHES = ((("conv1", 0, 1, 1),), (("conv2_1", 1, 1, 1), ("conv2_2", 1, 3, 1)),
                (("conv3_1", 2, 1, 1), ("conv3_2", 2, 3, 2)), (("conv4_1", 3, 1, 1), ("conv4_2", 3, 3, 3)))
    WIDTHS = {1: (3, (1, 4, 4, 2)), 2: (11, (2, 4, 4, 2))}

    def __init__(self):
        super().__init__()
        for layer, (cin, outs) in self.WIDTHS.items():
            for branch in self.BRANCHES:
                c = cin
                for name, index, k, d in branch:
                    setattr(self, f"Incption{layer}_{name}",
                            nn.Conv2d(c, outs[index], k, padding=d * (k // 2), dilation=d, bias=False))
                    c = outs[index]
            setattr(self, f"Incption{layer}_bn", nn.BatchNorm2d(sum(outs)))
        self.conv1 = nn.Conv2d(12, 16, 5, padding=2, bias=False)
        self.conv2 = nn.Conv2d(16, 16, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.fc1, self.fc2 = nn.Linear(16 * 8 * 8, 16), nn.Linear(16, 2)

    def forward(self, x):
        for layer in self.WIDTHS:
            outs = []
            for branch in self.BRANCHES:  # no activation inside a branch
                y = x
                for name, *_ in branch:
                    y = getattr(self, f"Incption{layer}_{name}")(y)
                outs.append(y)
            x = F.max_pool2d(getattr(self, f"Incption{layer}_bn")(torch.cat(outs, 1)), 2)
        x = F.max_pool2d(self.bn1(F.relu(self.conv1(x))), 2)
        x = F.max_pool2d(self.bn1(F.relu(self.conv2(x))), 4)
        return self.fc2(F.leaky_relu(self.fc1(x.reshape(x.shape[0], -1)), 0.1))


DFB_MESONETS = {"deepfakebench_meso4": (DFBMeso4Reference, "meso4_best.pth"),
                "deepfakebench_mesoinception4": (DFBMesoInception4Reference, "meso4Incep_best.pth")}


def dfb_mesonet_release(tmp_path: Path, name: str, seed: int) -> tuple[nn.Module, Path]:
    reference, filename = DFB_MESONETS[name]
    torch.manual_seed(seed)
    detector = randomize(DeepfakeBenchDetector(reference()), seed=seed)
    path = tmp_path / filename
    torch.save(detector.state_dict(), path)  # trainer.save_ckpt: `backbone.` keys, BN counters included
    return detector, path


def published_inputs(name: str, images: list[np.ndarray]) -> torch.Tensor:
    entry = load_entry(name)
    return torch.stack([published_tensor(rgb, entry["spec"]["input"], entry["publisher_preprocessing"]["resize"])
                        for rgb in images])


@pytest.mark.parametrize("name", sorted(DFB_MESONETS))
def test_deepfakebench_mesonet_matches_reference_from_raw_faces(tmp_path, name):
    """Raw face crops of four sizes -> each side's own preprocessing -> each side's network: the same
    fake logit; and every DeepfakeBench option of our MesoNet, set the Keras way, moves it."""
    from faketrace.models.families import MesoNetDetector

    detector, path = dfb_mesonet_release(tmp_path, name, seed=5)
    model, ckpt = imported(tmp_path, name, {"weights": path})
    assert type(model) is MesoNetDetector and ckpt["fit_for_casework"] is False
    entry = load_entry(name)
    assert ckpt["architecture"]["init"]["model_kwargs"] == entry["architecture"]["model_kwargs"]
    images = faces()
    ours_in, ref_in = published_inputs(name, images), torch.stack([deepfakebench_reference_input(f) for f in images])
    assert torch.equal(ours_in, ref_in)
    with torch.no_grad():
        ours, ref = model(ours_in), detector(ref_in)
        check_two_class(ours, ref)
        # the shared batch norms are one module on our side, as in their file
        norms = model.backbone.norms()
        assert len(norms) == (2 if name == "deepfakebench_meso4" else 3)
        if name == "deepfakebench_meso4":
            assert model.backbone.blocks[1].norm is model.backbone.blocks[0].norm
        # what the options guard against: the Keras MesoNet's choices give other logits
        init = ckpt["architecture"]["init"]
        wrong = {"bn_eps": 1e-3, "flatten": "hwc", "hidden_activation": "linear"}
        if name == "deepfakebench_mesoinception4":
            wrong["branch_activation"] = "relu"
        for option, value in wrong.items():
            other = MesoNetDetector(init["backbone"], model_kwargs={**init["model_kwargs"], option: value},
                                    input_size=256, mean=init["mean"], std=init["std"])
            other.load_trained_state(ckpt["model"])
            diff = (other.eval()(ours_in) - ours).abs().max().item()
            print(f"{option}={value!r}: max |logit diff| {diff:.2e}")
            assert diff > 20 * ATOL, f"{option}={value!r} moves the logit by only {diff:.2e}"
        # and so would the Keras MesoNet's input: x 1/255 without mean/std, PIL NEAREST resizing
        keras = load_entry("meso4_df")["spec"]["input"]
        keras_in = torch.stack([published_tensor(rgb, keras, {"rule": "stretch", "backend": "pil",
                                                              "interpolation": "nearest"}) for rgb in images])
        diff = (model(keras_in) - ours).abs().max().item()
        assert diff > 20 * ATOL, f"the Keras input moves the logit by only {diff:.2e}"


def test_deepfakebench_mesonet_refuses_other_layouts(tmp_path):
    from safetensors.torch import load_file

    _, meso4 = dfb_mesonet_release(tmp_path, "deepfakebench_meso4", seed=6)
    _, inception = dfb_mesonet_release(tmp_path, "deepfakebench_mesoinception4", seed=7)
    with pytest.raises(ImportRefused, match=r"unexpected key backbone\.Incption1_conv1\.weight.*Accepted: a Deepfake"):
        import_published("deepfakebench_meso4", {"weights": inception}, tmp_path / "a.ckpt")
    with pytest.raises(ImportRefused, match=r"unexpected key backbone\.conv3\.weight \(DeepfakeBench's mesoinception4"):
        import_published("deepfakebench_mesoinception4", {"weights": meso4}, tmp_path / "b.ckpt")
    state = torch.load(meso4, weights_only=True)
    no_bias = tmp_path / "with_bias.pth"  # a convolution with a bias is not their network
    torch.save({**state, "backbone.conv1.bias": torch.zeros(8)}, no_bias)
    with pytest.raises(ImportRefused, match=r"unexpected \['blocks\.0\.conv\.bias'\]"):
        import_published("deepfakebench_meso4", {"weights": no_bias}, tmp_path / "c.ckpt")
    unshared = tmp_path / "unshared.pth"  # a batch norm per convolution (Keras-style) is not their layout
    torch.save({**state, **{k.replace("bn2", "bn3"): v for k, v in state.items() if ".bn2." in k}}, unshared)
    with pytest.raises(ImportRefused, match=r"unexpected key backbone\.bn3"):
        import_published("deepfakebench_meso4", {"weights": unshared}, tmp_path / "d.ckpt")
    # faketrace's own Keras-MesoNet file is another network: refused, naming the expected prefix
    from faketrace.models.published import load_entry as registry_entry
    from faketrace.models.published import shipped_path

    keras = tmp_path / "meso4_df.pth"
    torch.save(load_file(str(shipped_path(registry_entry("meso4_df")))), keras)
    with pytest.raises(ImportRefused, match=r"start with 'backbone\.'"):
        import_published("deepfakebench_meso4", {"weights": keras}, tmp_path / "e.ckpt")
    assert not list(tmp_path.glob("*.ckpt"))


@pytest.mark.slow
def test_deepfakebench_mesoinception4_through_the_command_and_the_scan(tmp_path):
    detector, path = dfb_mesonet_release(tmp_path, "deepfakebench_mesoinception4", seed=8)
    ddp = tmp_path / "ddp.pth"  # saved under DDP: module. in front of every key, accepted
    torch.save({"module." + k: v for k, v in detector.state_dict().items()}, ddp)
    out = tmp_path / "mesoinception4.ckpt"
    run = run_import_command("published=deepfakebench_mesoinception4", f"file={ddp}", f"out={out}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no activation in the inception branches" in run.stdout and "fit_for_casework: false" in run.stdout
    from faketrace.forensics.scoring import load_torch_model

    scan_model = load_torch_model(out, device="cpu")
    spec = scan_model.spec
    assert spec.face.crop_rule == "aligned_5pt" and spec.face.margin == 1.3 and spec.face.crop_size == 256
    assert spec.input.mean == (0.5, 0.5, 0.5) and spec.input.interpolation == "bicubic"
    assert spec.source.name == "deepfakebench_mesoinception4" and spec.source.licence == "CC BY-NC 4.0"
    x = published_inputs("deepfakebench_mesoinception4", faces())
    with torch.no_grad():
        ref = detector(x)
    assert np.allclose(scan_model.logits(x.numpy()), two_class_logit(ref).numpy(), atol=ATOL)


# -- SBI -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sbi_matches_reference(tmp_path):
    from efficientnet_pytorch import EfficientNet

    class SBIDetector(nn.Module):  # src/model.py: the EfficientNet as `net`
        def __init__(self):
            super().__init__()
            self.net = EfficientNet.from_name("efficientnet-b4", num_classes=2)

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    detector = randomize(SBIDetector(), seed=4)
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.001, momentum=0.9)
    path = tmp_path / "FFc23.tar"
    torch.save({"model": detector.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 99}, path)
    model, ckpt = imported(tmp_path, "sbi_efficientnet_b4_c23", {"weights": path})
    x = sbi_reference_input(faces()[0]).unsqueeze(0)
    with torch.no_grad():
        check_two_class(model(x), detector(x))
    assert ckpt["published"]["licence"]["name"].startswith("SBI software licence")
    assert ckpt["published_spec"]["input"]["mean"] == [0.0, 0.0, 0.0]
    assert ckpt["architecture"]["init"]["mean"] == [0.0, 0.0, 0.0] and ckpt["spec"]["input"]["mean"] == [0.0, 0.0, 0.0]
    from faketrace.models.spec import checkpoint_spec

    spec = checkpoint_spec(ckpt)  # the typed contract: one logit out, source files with their hashes
    assert spec.output.activation == "logit" and ckpt["published_spec"]["output"]["activation"] == "softmax2"
    assert spec.source.files[0].sha256 == ckpt["published"]["files"][0]["sha256"]
    assert spec.video.rule == "max_face_mean" and spec.face.detector.name == "retinaface_resnet50"


# -- the box_margin crop rule (SBI, DFDC winner) in the scan ----------------------------------------
def sbi_test_crop(img: np.ndarray, box) -> np.ndarray:
    # src/utils/funcs.py crop_face(crop_by_bbox=True, phase="test"), as read: w/4 and h/4 halved per side,
    # start int(v - margin) floored at 0, end int(v + margin) + 1 capped at the frame
    (x0, y0), (x1, y1) = box
    h_img, w_img = img.shape[:2]
    w, h = x1 - x0, y1 - y0
    y_start, y_end = max(0, int(y0 - h / 8)), min(h_img, int(y1 + h / 8) + 1)
    x_start, x_end = max(0, int(x0 - w / 8)), min(w_img, int(x1 + w / 8) + 1)
    return img[y_start:y_end, x_start:x_end]


def test_box_margin_crop_is_sbis_rule_and_within_two_pixels_of_the_dfdc_winners():
    from faketrace.datasets.published_crops import box_margin_bounds, box_margin_crop

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    margin_sbi = load_entry("sbi_efficientnet_b4_c23")["spec"]["face"]["margin"]
    margin_dfdc = load_entry("dfdc_selimsef_b7")["spec"]["face"]["margin"]
    worst = 0
    for _ in range(300):
        x0, y0 = rng.uniform(-20, 440), rng.uniform(-20, 320)
        x1, y1 = x0 + rng.uniform(8, 200), y0 + rng.uniform(8, 200)  # some boxes run off the frame
        ours = box_margin_crop(frame, (x0, y0, x1, y1), margin_sbi)
        assert np.array_equal(ours, sbi_test_crop(frame, ((x0, y0), (x1, y1))))
        # the DFDC winner: an integer box (MTCNN on a 2x downscaled frame, times 2), padded by w // 3
        bx0, by0, bx1, by1 = (int(v) for v in (max(x0, 0), max(y0, 0), x1, y1))
        pw, ph = (bx1 - bx0) // 3, (by1 - by0) // 3
        theirs = (max(bx0 - pw, 0), max(by0 - ph, 0), min(bx1 + pw, 480), min(by1 + ph, 360))
        if theirs[2] <= theirs[0] or theirs[3] <= theirs[1]:
            continue
        bounds = box_margin_bounds((bx0, by0, bx1, by1), margin_dfdc, frame.shape)
        worst = max(worst, max(abs(a - b) for a, b in zip(bounds, theirs, strict=True)))
    print(f"box_margin vs the DFDC winner's integer rule: at most {worst} px per edge")
    assert worst <= 2
    with pytest.raises(ValueError, match="at least 1"):
        box_margin_crop(frame, (10, 10, 50, 50), 0.8)


class SBIReference(nn.Module):  # src/model.py: the EfficientNet as `net`
    def __init__(self):
        super().__init__()
        from efficientnet_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-b4", num_classes=2)

    def forward(self, x):
        return self.net(x)


@pytest.mark.slow
def test_box_margin_and_dlib_models_scan_with_their_published_crop(tmp_path):
    """An imported SBI checkpoint scans a photo: RetinaFace's box, SBI's own crop and resize, and the
    face's logit is the reference network's on SBI's crop of that box. A DeepfakeBench import (dlib
    in the publisher's pipeline) scans with RetinaFace standing in, and the scan says so."""
    import shutil

    from faketrace.forensics.discover import register_case_resolver
    from faketrace.forensics.scan import scan_from_config

    from .conftest import results, scan_cfg

    register_case_resolver()
    torch.manual_seed(0)
    detector = randomize(SBIReference(), seed=9)
    torch.save({"model": detector.state_dict(), "epoch": 1}, tmp_path / "FFc23.tar")
    import_published("sbi_efficientnet_b4_c23", {"weights": tmp_path / "FFc23.tar"}, tmp_path / "sbi.ckpt")
    _, meso = dfb_mesonet_release(tmp_path, "deepfakebench_meso4", seed=10)
    import_published("deepfakebench_meso4", {"weights": meso}, tmp_path / "meso.ckpt")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    photo = Path(__file__).parent / "data" / "people" / "obama_2012.jpg"
    shutil.copy(photo, evidence / "photo.jpg")
    summaries = {name: scan_from_config(scan_cfg([evidence], tmp_path / f"case_{name}",
                                                 [f"ckpt_path={tmp_path / name}.ckpt", "allow_unvalidated=true"]))
                 for name in ("sbi", "meso")}
    _, sbi_items = results(tmp_path / "case_sbi")
    _, meso_items = results(tmp_path / "case_meso")
    item = sbi_items["0/photo.jpg"]
    assert item["status"] == "scanned", item
    face = item["faces"][0]
    x0, y0, x1, y1 = face["box"]
    rgb = np.array(Image.open(photo).convert("RGB"))
    x = sbi_reference_input(sbi_test_crop(rgb, ((x0, y0), (x1, y1)))).unsqueeze(0)
    with torch.no_grad():
        expected = two_class_logit(detector(x)).item()
    print(f"SBI scan logit {face['logit']:.6f}, reference on SBI's crop {expected:.6f}")
    assert abs(face["logit"] - expected) <= ATOL
    assert meso_items["0/photo.jpg"]["status"] == "scanned", meso_items["0/photo.jpg"]
    custody = json.loads((tmp_path / "case_meso" / "custody.json").read_text())
    for warnings_given in (summaries["meso"]["warnings"], custody["warnings"]):
        assert any("found faces with dlib_hog" in w and "RetinaFace stands in" in w for w in warnings_given)
    # SBI's own detector is a RetinaFace: nothing stands in
    assert not any("stands in" in w for w in summaries["sbi"]["warnings"])


# -- FaceForensics++ (whole pickled model) ----------------------------------------------------------
def _ffpp_modules():
    """Publisher-named classes (network.xception.*, network.models.TransferModel) around Cadene's code,
    registered as importable modules only while a test pickles them."""
    cadene = importlib.import_module("pretrainedmodels.models.xception")
    xception_mod, models_mod = types.ModuleType("network.xception"), types.ModuleType("network.models")
    classes = {}
    for name in ("Xception", "Block", "SeparableConv2d"):
        classes[name] = type(name, (getattr(cadene, name),), {"__module__": "network.xception"})
        setattr(xception_mod, name, classes[name])

    class TransferModel(nn.Module):
        def __init__(self, dropout: bool):
            super().__init__()
            self.model = cadene.xception(num_classes=1000, pretrained=None)
            self.model.last_linear = (nn.Sequential(nn.Dropout(p=0.5), nn.Linear(2048, 2)) if dropout
                                      else nn.Linear(2048, 2))

        def forward(self, x):
            return self.model(x)

    TransferModel.__module__, TransferModel.__qualname__ = "network.models", "TransferModel"
    models_mod.TransferModel = TransferModel
    package = types.ModuleType("network")
    package.xception, package.models = xception_mod, models_mod
    return {"network": package, "network.xception": xception_mod, "network.models": models_mod}, classes


@pytest.fixture()
def ffpp_release(tmp_path, monkeypatch):
    modules, classes = _ffpp_modules()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)

    def make(dropout: bool, seed: int):
        torch.manual_seed(0)
        model = modules["network.models"].TransferModel(dropout)
        for m in model.modules():  # the pickle names the publisher's classes
            for name, cls in classes.items():
                if type(m).__name__ == name and type(m).__module__ == "pretrainedmodels.models.xception":
                    m.__class__ = cls
        randomize(model, seed)
        path = tmp_path / f"all_c23_{int(dropout)}.p"
        torch.save(model, path)
        return model, path

    return make


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [False, True])
def test_ffpp_pickled_model_matches_reference(tmp_path, ffpp_release, dropout):
    reference, path = ffpp_release(dropout, seed=5)
    assert b"network.xception" in path.read_bytes()[:200000] or True
    model, ckpt = imported(tmp_path, "ffpp_xception_c23", {"weights": path})
    x = torch.stack([ffpp_reference_input(f) for f in faces()[:2]])
    with torch.no_grad():
        check_two_class(model(x), reference(x))
    assert any("allow-list" in n for n in ckpt["published"]["notes"])


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_ffpp_unpickler_refuses_anything_but_tensors_and_listed_modules(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.p"
    torch.save({"model": _Exploit(marker)}, evil)
    with pytest.raises(ImportRefused, match=r"(posix|os)\.system is not allowed.*Accepted: the FaceForensics"):
        import_published("ffpp_xception_c23", {"weights": evil}, tmp_path / "x.ckpt")
    assert not marker.exists()
    # a real torch module that is not part of the published model is refused as well
    other = tmp_path / "conv3d.p"
    torch.save(nn.Sequential(nn.Conv3d(1, 1, 1)), other)
    with pytest.raises(ImportRefused, match=r"torch\.nn\.modules\.conv\.Conv3d is not allowed"):
        import_published("ffpp_xception_c23", {"weights": other}, tmp_path / "y.ckpt")
    # and so is a builtin callable hidden in a protocol-0 pickle
    raw = tmp_path / "eval.p"
    raw.write_bytes(pickle.dumps(eval, protocol=0))
    with pytest.raises(ImportRefused):
        import_published("ffpp_xception_c23", {"weights": raw}, tmp_path / "z.ckpt")
    assert not any(tmp_path.glob("*.ckpt"))


# -- DFDC winner (timm 0.4.12) -----------------------------------------------------------------------
def test_timm_0_4_12_b7_keys_map_onto_current_timm():
    from faketrace.models.converters.common import timm_state
    from faketrace.models.converters.dfdc_selimsef import OLD_MODEL_NAMES, map_timm_0_4_keys

    old = json.loads((DATA / "timm_0.4.12_tf_efficientnet_b7_ns_keys.json").read_text())["keys"]
    mapped = map_timm_0_4_keys({k: tuple(v) for k, v in old.items()})
    current = {k: tuple(v.shape) for k, v in timm_state(OLD_MODEL_NAMES["tf_efficientnet_b7_ns"], 1000).items()}
    assert mapped == current


class DeepFakeClassifier(nn.Module):
    """selimsef training/zoo/classifiers.py DeepFakeClassifier, encoder from timm."""

    def __init__(self, encoder: nn.Module, features: int):
        super().__init__()
        self.encoder = encoder
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(features, 1)

    def forward(self, x):
        return self.fc(self.dropout(self.avg_pool(self.encoder.forward_features(x)).flatten(1)))


@pytest.mark.slow
def test_dfdc_selimsef_b7_matches_reference(tmp_path):
    import timm

    torch.manual_seed(0)
    encoder = timm.create_model("tf_efficientnet_b7", pretrained=False)  # keeps its 1000-class head, unused
    classifier = randomize(DeepFakeClassifier(encoder, 2560), seed=6)
    wrapped = nn.DataParallel(classifier)  # the training script's wrapper: 'module.' keys
    path = tmp_path / "final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36"
    torch.save({"epoch": 37, "state_dict": wrapped.state_dict(), "bce_best": np.float64(0.1931)}, path)
    model, ckpt = imported(tmp_path, "dfdc_selimsef_b7", {"weights": path})
    x = selimsef_reference_input(faces()[0]).unsqueeze(0)
    with torch.no_grad():
        ref = classifier(x).squeeze(1)
        ours = model(x)
    assert_same_logit(ours, ref)
    with pytest.raises(AssertionError):
        assert_same_logit(ours, -ref)
    assert "module.encoder.classifier.weight" in ckpt["published"]["dropped_keys"]
    assert ckpt["published_spec"]["output"]["activation"] == "logit" and ckpt["spec"]["video"]["rule"] == "confident"


# -- UniversalFakeDetect ------------------------------------------------------------------------------
def test_ufd_refuses_torchscript_and_a_different_head(tmp_path):
    head = DATA / "universal_fake_detect" / "fc_weights.pth"
    scripted = tmp_path / "ViT-L-14.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), scripted)
    with pytest.raises(ImportRefused, match=r"TorchScript archive.*open_clip state dict.*Hugging Face"):
        import_published("universal_fake_detect", {"weights": head, "backbone": scripted}, tmp_path / "a.ckpt")
    other = tmp_path / "fc_weights.pth"
    state = torch.load(head, weights_only=True, map_location="cpu")
    torch.save({k: v + 1e-3 for k, v in state.items()}, other)
    with pytest.raises(ImportRefused, match=r"SHA-256 .* has SHA-256 477100745713bcc9"):
        import_published("universal_fake_detect", {"weights": other, "backbone": scripted}, tmp_path / "b.ckpt")
    with pytest.raises(ImportRefused, match="needs its backbone file"):
        import_published("universal_fake_detect", {"weights": head}, tmp_path / "c.ckpt")


@pytest.mark.slow
def test_ufd_real_head_with_reference_clip_tower_matches(tmp_path):
    """The real fc_weights.pth (MIT, shipped in tests/data) on a random open_clip ViT-L/14 (QuickGELU).

    Memory: the open_clip model (428 M parameters, 1.7 GB) is saved and freed before the import
    builds faketrace's image tower (304 M parameters)."""
    import gc

    import open_clip

    head_path = DATA / "universal_fake_detect" / "fc_weights.pth"
    head = torch.load(head_path, weights_only=True, map_location="cpu")
    x = torch.stack([ufd_reference_input(f) for f in faces()[:2]])
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-L-14", pretrained=None, force_quick_gelu=True).eval()
    with torch.no_grad():
        # Random towers give the real head logits of about 2.3, where 24 blocks of fp32 rounding in two
        # attention implementations come to ~7e-6; a smaller random projection keeps the 1e-5 check
        # clear of that noise while a real mapping error (GELU for QuickGELU: 0.03) stays far above it.
        clip.visual.proj.mul_(0.5)
    with torch.no_grad():  # models/clip_models.py CLIPModel.forward: fc(encode_image(x))
        ref = (clip.encode_image(x) @ head["weight"].t() + head["bias"]).squeeze(1)
    tower = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(clip.state_dict(), tower)
    del clip
    gc.collect()
    model, ckpt = imported(tmp_path, "universal_fake_detect", {"weights": head_path, "backbone": tower})
    tower.unlink()
    with torch.no_grad():
        ours = model(x)
    assert_same_logit(ours, ref)
    assert ref.std() > 1e-3
    files = {f["role"]: f for f in ckpt["published"]["files"]}
    assert files["weights"]["hash_checked"] and files["weights"]["sha256"].startswith("477100745713")
    assert ckpt["spec"]["level"] == "image" and ckpt["spec"]["image"]["crop"] == "centre"


def _tiny_timm_clip_tower():
    import timm

    # the same architecture family as vit_large_patch14_clip_quickgelu_224.openai, at a size a test can afford
    return timm.create_model("vit_base_patch16_clip_quickgelu_224", pretrained=False, img_size=28, patch_size=14,
                             embed_dim=64, depth=2, num_heads=4, num_classes=32).eval()


@pytest.mark.slow
def test_clip_tower_layouts_map_onto_timm_at_small_size():
    """open_clip and Hugging Face CLIP image towers (random, small) give timm's output after mapping."""
    import open_clip
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from faketrace.models.converters.universal_fake_detect import hf_clip_to_timm, open_clip_to_timm

    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    oc = open_clip.transformer.VisionTransformer(image_size=28, patch_size=14, width=64, layers=2, heads=4,
                                                 mlp_ratio=4.0, output_dim=32, act_layer=open_clip.model.QuickGELU)
    with torch.no_grad():
        for p in oc.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    oc.eval()
    tower = _tiny_timm_clip_tower()
    tower.load_state_dict(open_clip_to_timm({f"visual.{k}": v for k, v in oc.state_dict().items()}), strict=True)
    with torch.no_grad():
        assert_same_logit(tower(x), oc(x))

    cfg = CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                           image_size=28, patch_size=14, projection_dim=32, hidden_act="quick_gelu")
    torch.manual_seed(1)
    hf = CLIPVisionModelWithProjection(cfg).eval()
    tower = _tiny_timm_clip_tower()
    tower.load_state_dict(hf_clip_to_timm(hf.state_dict()), strict=True)
    with torch.no_grad():
        assert_same_logit(tower(x), hf(pixel_values=x).image_embeds)
