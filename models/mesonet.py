"""MesoNet (Afchar et al., "MesoNet: a Compact Facial Video Forgery Detection Network", WIFS 2018).

Our PyTorch port of the two published architectures, written from the paper and from what the
authors' Keras 2.1.5 weight files contain (layer list, tensor shapes), plus the converter from
those `.h5` files. The converted weights ship inside the package (models/published_weights/,
with the Apache-2.0 licence and NOTICE); tests/test_published.py checks this port against
Keras 3 itself loading the original files.

Keras facts the port reproduces (each one silently wrong if missed):
- batch normalisation epsilon 1e-3 (PyTorch's default is 1e-5);
- "same" padding of odd kernels, dilations included, is symmetric for stride 1;
- max pooling with padding "same" on 256 px input divides exactly (256 -> 128 -> 64 -> 32 -> 8);
- Flatten runs over channels-last (H, W, C) order: we permute to NHWC before flattening, so the
  first dense kernel is used exactly as stored, transposed only for `nn.Linear`;
- Conv2D kernels are (kh, kw, in, out); PyTorch wants (out, in, kh, kw).

Polarity: the authors trained with Keras' `flow_from_directory` on folders `df` and `real`
(alphabetical class indices 0 and 1), so the sigmoid output is P(real). Our Detector contract is a
logit of *fake*, so `forward` returns the negated pre-sigmoid value; `real_logit` keeps the
original orientation for reference comparisons.

The hidden activation between the two dense layers: the code in the repository today applies
LeakyReLU(0.1) in both models, but the layer list saved in the Meso4 files (Meso4_DF, Meso4_F2F)
has no activation layer between `dense_3` and `dropout_4`, while the MesoInception files record
`leaky_re_lu_1` there. The files record the graph that was trained, so Meso4 is built without it
(a Keras Dense layer's default activation is linear). `hidden_activation` makes the choice explicit.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

BN_EPS = 1e-3  # Keras BatchNormalization default
BN_MOMENTUM = 0.01  # Keras momentum 0.99 (irrelevant at inference; kept for fine-tuning)
INPUT_SIZE = 256


def _conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
    # "same" padding for an odd kernel at stride 1: dilation * (k - 1) / 2 on each side
    return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)


class _ConvBlock(nn.Module):
    """conv -> ReLU -> batch norm -> max pool (the order the Keras model applies them)."""

    def __init__(self, cin: int, cout: int, k: int, pool: int):
        super().__init__()
        self.conv = _conv(cin, cout, k)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.pool = nn.MaxPool2d(pool)

    def forward(self, x):
        return self.pool(self.bn(torch.relu(self.conv(x))))


class _Inception(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 dilated 2; 1x1 -> 3x3 dilated 3; concatenated
    on channels in that order, each convolution followed by ReLU."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.b1 = _conv(cin, a, 1)
        self.b2_reduce, self.b2 = _conv(cin, b, 1), _conv(b, b, 3)
        self.b3_reduce, self.b3 = _conv(cin, c, 1), _conv(c, c, 3, dilation=2)
        self.b4_reduce, self.b4 = _conv(cin, d, 1), _conv(d, d, 3, dilation=3)
        self.out_channels = a + b + c + d

    def forward(self, x):
        r = torch.relu
        return torch.cat([r(self.b1(x)), r(self.b2(r(self.b2_reduce(x)))), r(self.b3(r(self.b3_reduce(x)))),
                          r(self.b4(r(self.b4_reduce(x))))], dim=1)

    def convs(self) -> list[nn.Conv2d]:
        """In the order Keras created them (its layer-name suffixes count in this order)."""
        return [self.b1, self.b2_reduce, self.b2, self.b3_reduce, self.b3, self.b4_reduce, self.b4]


class _MesoBase(nn.Module):
    """Shared head: flatten (channels-last) -> dropout -> dense 16 -> activation -> dropout -> dense 1."""

    def __init__(self, hidden_activation: str):
        super().__init__()
        if hidden_activation not in ("linear", "leaky_relu"):
            raise ValueError(f"hidden_activation must be linear or leaky_relu, got {hidden_activation!r}")
        self.hidden_activation = hidden_activation
        self.drop1, self.drop2 = nn.Dropout(0.5), nn.Dropout(0.5)
        self.fc1 = nn.Linear(1024, 16)
        self.fc2 = nn.Linear(16, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def real_logit(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid output of the published model: sigmoid of it is P(real). x: (B, 3, 256, 256) in [0, 1]."""
        h = self.features(x)
        h = h.permute(0, 2, 3, 1).flatten(1)  # Keras Flatten order (H, W, C)
        h = self.fc1(self.drop1(h))
        if self.hidden_activation == "leaky_relu":
            h = nn.functional.leaky_relu(h, 0.1)
        return self.fc2(self.drop2(h)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of P(fake), shape (B,) (faketrace's Detector contract)."""
        return -self.real_logit(x)


class Meso4(_MesoBase):
    def __init__(self, hidden_activation: str = "linear"):
        super().__init__(hidden_activation)
        self.blocks = nn.Sequential(_ConvBlock(3, 8, 3, 2), _ConvBlock(8, 8, 5, 2), _ConvBlock(8, 16, 5, 2),
                                    _ConvBlock(16, 16, 5, 4))

    def features(self, x):
        return self.blocks(x)

    def convs(self) -> list[nn.Conv2d]:
        return [b.conv for b in self.blocks]

    def norms(self) -> list[nn.BatchNorm2d]:
        return [b.bn for b in self.blocks]


class MesoInception4(_MesoBase):
    def __init__(self, hidden_activation: str = "leaky_relu"):
        super().__init__(hidden_activation)
        self.inc1 = _Inception(3, 1, 4, 4, 2)
        self.bn1 = nn.BatchNorm2d(11, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.inc2 = _Inception(11, 2, 4, 4, 2)
        self.bn2 = nn.BatchNorm2d(12, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.block3 = _ConvBlock(12, 16, 5, 2)
        self.block4 = _ConvBlock(16, 16, 5, 4)

    def features(self, x):
        x = nn.functional.max_pool2d(self.bn1(self.inc1(x)), 2)
        x = nn.functional.max_pool2d(self.bn2(self.inc2(x)), 2)
        return self.block4(self.block3(x))

    def convs(self) -> list[nn.Conv2d]:
        return [*self.inc1.convs(), *self.inc2.convs(), self.block3.conv, self.block4.conv]

    def norms(self) -> list[nn.BatchNorm2d]:
        return [self.bn1, self.bn2, self.block3.bn, self.block4.bn]


ARCHITECTURES = {"meso4": Meso4, "mesoinception4": MesoInception4}


def build_mesonet(variant: str, hidden_activation: str | None = None) -> _MesoBase:
    if variant not in ARCHITECTURES:
        raise ValueError(f"unknown MesoNet variant {variant!r}; known: {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[variant]
    return cls() if hidden_activation is None else cls(hidden_activation)


# -- converter: the authors' Keras .h5 -> our state dict ------------------------------------------
def _suffix(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def read_keras_h5(path: str | Path) -> dict:
    """The weighted layers of a Keras 2 weights-only .h5, by kind, in creation order, plus the layer list.

    The two files of one architecture name their layers differently (flatten_1 vs flatten_2,
    conv2d_1.. vs conv2d_5..): Keras numbered layers per session. The numeric suffix counts in
    creation order, so layers are matched by their rank within their kind, never by name.
    (The file's own `layer_names` is in topological order, which for the inception branches
    differs from creation order.)
    """
    import h5py

    out: dict = {"conv2d": [], "batch_normalization": [], "dense": []}
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        for kind in out:
            layers = sorted((n for n in names if n.rsplit("_", 1)[0] == kind), key=_suffix)
            for n in layers:
                g = f[n]
                weight_names = [w.decode() for w in g.attrs["weight_names"]]
                out[kind].append({w.rsplit("/", 1)[1].split(":")[0]: g[w][()] for w in weight_names})
        out["layer_names"] = names
    return out


def hidden_activation_in_file(layer_names: list[str]) -> str:
    """What the saved graph applies between the two dense layers (see the module docstring)."""
    return "leaky_relu" if any(n.startswith("leaky_re_lu") for n in layer_names) else "linear"


def convert_keras_h5(path: str | Path, variant: str) -> tuple[_MesoBase, dict[str, torch.Tensor]]:
    """Build `variant` and fill it from the authors' .h5; returns the model (eval mode) and its state dict.

    Every tensor is checked for shape; a file with more or fewer layers than the architecture is refused.
    """
    layers = read_keras_h5(path)
    model = build_mesonet(variant, hidden_activation_in_file(layers["layer_names"]))
    convs, norms, dense = model.convs(), model.norms(), [model.fc1, model.fc2]
    for kind, mods in (("conv2d", convs), ("batch_normalization", norms), ("dense", dense)):
        if len(layers[kind]) != len(mods):
            raise ValueError(f"{path}: {len(layers[kind])} {kind} layers, the {variant} architecture has {len(mods)}")

    def put(param: torch.Tensor, value, what: str) -> None:
        t = torch.as_tensor(value, dtype=torch.float32)
        if t.shape != param.shape:
            raise ValueError(f"{path}: {what} has shape {tuple(t.shape)}, expected {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(t)

    for i, (conv, w) in enumerate(zip(convs, layers["conv2d"], strict=True)):
        put(conv.weight, torch.as_tensor(w["kernel"]).permute(3, 2, 0, 1), f"conv {i} kernel")  # (kh,kw,in,out)
        put(conv.bias, w["bias"], f"conv {i} bias")
    for i, (bn, w) in enumerate(zip(norms, layers["batch_normalization"], strict=True)):
        put(bn.weight, w["gamma"], f"batch norm {i} gamma")
        put(bn.bias, w["beta"], f"batch norm {i} beta")
        put(bn.running_mean, w["moving_mean"], f"batch norm {i} mean")
        put(bn.running_var, w["moving_variance"], f"batch norm {i} variance")
    for i, (fc, w) in enumerate(zip(dense, layers["dense"], strict=True)):
        put(fc.weight, torch.as_tensor(w["kernel"]).T, f"dense {i} kernel")  # Keras (in, out)
        put(fc.bias, w["bias"], f"dense {i} bias")
    model.eval()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    return model, state
