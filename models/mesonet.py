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

DeepfakeBench's MesoNets (SCLBD/DeepfakeBench, training/networks/mesonet.py, a PyTorch rewrite)
are trained from scratch and differ from the Keras graph in ways that change every output; the
keyword options below describe them, with the Keras graph as the default (`DEEPFAKEBENCH` holds
their values, models/converters/deepfakebench.py maps the files):
- `conv_bias=False`: their convolutions have no bias;
- `bn_eps=1e-5`: PyTorch's BatchNorm default;
- `shared_norms=True`: a conv block whose width equals the previous block's reuses that block's
  batch norm (Meso-4: one for convs 1-2, one for convs 3-4; MesoInception-4: one for the two
  5x5 blocks). Shared for real, not duplicated, so fine-tuning updates one set of statistics as
  theirs does;
- `branch_activation="none"`: their inception branches have no ReLU at all (linear up to the
  batch norm);
- `flatten="chw"`: `x.view(B, -1)` on NCHW, not Keras' channels-last order;
- `output="fake"`: the last dense unit is the logit of fake (their 2-class head collapsed to
  z_fake - z_real), where the Keras unit is the logit of real.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

BN_EPS = 1e-3  # Keras BatchNormalization default
BN_MOMENTUM = 0.01  # Keras momentum 0.99 (irrelevant at inference; kept for fine-tuning)
INPUT_SIZE = 256


# The options of DeepfakeBench's PyTorch MesoNets (module docstring); build_mesonet(variant, **DEEPFAKEBENCH).
DEEPFAKEBENCH = {"conv_bias": False, "bn_eps": 1e-5, "shared_norms": True, "flatten": "chw", "output": "fake",
                 "hidden_activation": "leaky_relu"}
DEEPFAKEBENCH_INCEPTION = {**DEEPFAKEBENCH, "branch_activation": "none"}


def _conv(cin: int, cout: int, k: int, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    # "same" padding for an odd kernel at stride 1: dilation * (k - 1) / 2 on each side
    return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation, bias=bias)


def _norm(channels: int, eps: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps, momentum=BN_MOMENTUM)


class _ConvBlock(nn.Module):
    """conv -> ReLU -> batch norm -> max pool (the order both the Keras and DeepfakeBench models apply them).

    `shared_norm`: another block's batch norm, applied here too. It is held outside the module tree
    (in a tuple) so that it stays registered once, under its owner: the state dict then holds it
    once, as the publisher's file does (safetensors also refuses two keys on one tensor).
    """

    def __init__(self, cin: int, cout: int, k: int, pool: int, bias: bool = True, eps: float = BN_EPS,
                 shared_norm: nn.BatchNorm2d | None = None):
        super().__init__()
        self.conv = _conv(cin, cout, k, bias=bias)
        if shared_norm is None:
            self.bn = _norm(cout, eps)
            self._shared: tuple[nn.BatchNorm2d, ...] = ()
        else:
            if shared_norm.num_features != cout:
                raise ValueError(f"a shared batch norm of {shared_norm.num_features} channels cannot follow a "
                                 f"{cout}-channel convolution")
            self._shared = (shared_norm,)
        self.pool = nn.MaxPool2d(pool)

    @property
    def norm(self) -> nn.BatchNorm2d:
        return self._shared[0] if self._shared else self.bn

    @property
    def owns_norm(self) -> bool:
        return not self._shared

    def forward(self, x):
        return self.pool(self.norm(torch.relu(self.conv(x))))


class _Inception(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 dilated 2; 1x1 -> 3x3 dilated 3; concatenated
    on channels in that order. Keras: each convolution followed by ReLU (`activation="relu"`);
    DeepfakeBench: no activation anywhere in the branches (`activation="none"`)."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int, bias: bool = True, activation: str = "relu"):
        super().__init__()
        if activation not in ("relu", "none"):
            raise ValueError(f"branch activation must be relu or none, got {activation!r}")
        self.activation = activation
        self.b1 = _conv(cin, a, 1, bias=bias)
        self.b2_reduce, self.b2 = _conv(cin, b, 1, bias=bias), _conv(b, b, 3, bias=bias)
        self.b3_reduce, self.b3 = _conv(cin, c, 1, bias=bias), _conv(c, c, 3, dilation=2, bias=bias)
        self.b4_reduce, self.b4 = _conv(cin, d, 1, bias=bias), _conv(d, d, 3, dilation=3, bias=bias)
        self.out_channels = a + b + c + d

    def forward(self, x):
        r = torch.relu if self.activation == "relu" else (lambda t: t)
        return torch.cat([r(self.b1(x)), r(self.b2(r(self.b2_reduce(x)))), r(self.b3(r(self.b3_reduce(x)))),
                          r(self.b4(r(self.b4_reduce(x))))], dim=1)

    def convs(self) -> list[nn.Conv2d]:
        """In the order Keras created them (its layer-name suffixes count in this order)."""
        return [self.b1, self.b2_reduce, self.b2, self.b3_reduce, self.b3, self.b4_reduce, self.b4]


class _MesoBase(nn.Module):
    """Shared head: flatten -> dropout -> dense 16 -> activation -> dropout -> dense 1."""

    def __init__(self, hidden_activation: str, flatten: str = "hwc", output: str = "real"):
        super().__init__()
        if hidden_activation not in ("linear", "leaky_relu"):
            raise ValueError(f"hidden_activation must be linear or leaky_relu, got {hidden_activation!r}")
        if flatten not in ("hwc", "chw"):
            raise ValueError(f"flatten must be hwc (Keras) or chw (PyTorch view), got {flatten!r}")
        if output not in ("real", "fake"):
            raise ValueError(f"output must name the class the last unit is the logit of (real or fake), got {output!r}")
        self.hidden_activation, self.flatten, self.output = hidden_activation, flatten, output
        self.drop1, self.drop2 = nn.Dropout(0.5), nn.Dropout(0.5)
        self.fc1 = nn.Linear(1024, 16)
        self.fc2 = nn.Linear(16, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def last_unit(self, x: torch.Tensor) -> torch.Tensor:
        """The last dense unit, shape (B,): the logit of `self.output`. x: (B, 3, 256, 256)."""
        h = self.features(x)
        # Keras Flatten runs over (H, W, C); DeepfakeBench's view(B, -1) over (C, H, W)
        h = h.permute(0, 2, 3, 1).flatten(1) if self.flatten == "hwc" else h.flatten(1)
        h = self.fc1(self.drop1(h))
        if self.hidden_activation == "leaky_relu":
            h = nn.functional.leaky_relu(h, 0.1)
        return self.fc2(self.drop2(h)).squeeze(1)

    def real_logit(self, x: torch.Tensor) -> torch.Tensor:
        """The logit of P(real) (for the Keras models: their pre-sigmoid output)."""
        z = self.last_unit(x)
        return z if self.output == "real" else -z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of P(fake), shape (B,) (faketrace's Detector contract)."""
        z = self.last_unit(x)
        return z if self.output == "fake" else -z


def _blocks(specs: list[tuple[int, int, int, int]], bias: bool, eps: float, shared: bool) -> list[_ConvBlock]:
    """Conv blocks (cin, cout, kernel, pool). With `shared`, blocks pair up: a block as wide as the one
    before, when that one owns its norm, reuses it (DeepfakeBench's bn1 / bn2 pattern)."""
    out: list[_ConvBlock] = []
    for cin, cout, k, pool in specs:
        share = shared and bool(out) and out[-1].owns_norm and out[-1].conv.out_channels == cout
        out.append(_ConvBlock(cin, cout, k, pool, bias, eps, shared_norm=out[-1].norm if share else None))
    return out


class Meso4(_MesoBase):
    def __init__(self, hidden_activation: str = "linear", *, conv_bias: bool = True, bn_eps: float = BN_EPS,
                 shared_norms: bool = False, flatten: str = "hwc", output: str = "real"):
        super().__init__(hidden_activation, flatten, output)
        self.blocks = nn.Sequential(*_blocks([(3, 8, 3, 2), (8, 8, 5, 2), (8, 16, 5, 2), (16, 16, 5, 4)],
                                             conv_bias, bn_eps, shared_norms))

    def features(self, x):
        return self.blocks(x)

    def convs(self) -> list[nn.Conv2d]:
        return [b.conv for b in self.blocks]

    def norms(self) -> list[nn.BatchNorm2d]:
        """The distinct batch norms, in order (fewer than the blocks when they are shared)."""
        return [b.norm for b in self.blocks if b.owns_norm]


class MesoInception4(_MesoBase):
    def __init__(self, hidden_activation: str = "leaky_relu", *, conv_bias: bool = True, bn_eps: float = BN_EPS,
                 shared_norms: bool = False, flatten: str = "hwc", output: str = "real",
                 branch_activation: str = "relu"):
        super().__init__(hidden_activation, flatten, output)
        self.inc1 = _Inception(3, 1, 4, 4, 2, conv_bias, branch_activation)
        self.bn1 = _norm(11, bn_eps)
        self.inc2 = _Inception(11, 2, 4, 4, 2, conv_bias, branch_activation)
        self.bn2 = _norm(12, bn_eps)
        self.block3, self.block4 = _blocks([(12, 16, 5, 2), (16, 16, 5, 4)], conv_bias, bn_eps, shared_norms)

    def features(self, x):
        x = nn.functional.max_pool2d(self.bn1(self.inc1(x)), 2)
        x = nn.functional.max_pool2d(self.bn2(self.inc2(x)), 2)
        return self.block4(self.block3(x))

    def convs(self) -> list[nn.Conv2d]:
        return [*self.inc1.convs(), *self.inc2.convs(), self.block3.conv, self.block4.conv]

    def norms(self) -> list[nn.BatchNorm2d]:
        """The distinct batch norms, in order (fewer than the blocks when they are shared)."""
        return [self.bn1, self.bn2] + [b.norm for b in (self.block3, self.block4) if b.owns_norm]


ARCHITECTURES = {"meso4": Meso4, "mesoinception4": MesoInception4}


def build_mesonet(variant: str, hidden_activation: str | None = None, **options) -> _MesoBase:
    """`options`: the keyword options of Meso4 / MesoInception4 (module docstring); none: the Keras graph."""
    if variant not in ARCHITECTURES:
        raise ValueError(f"unknown MesoNet variant {variant!r}; known: {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[variant]
    return cls(**options) if hidden_activation is None else cls(hidden_activation, **options)


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
