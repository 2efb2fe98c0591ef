"""EfficientNet weights from lukemelas' `efficientnet-pytorch` layout to timm's `tf_efficientnet_b*`.

Both implement the TensorFlow EfficientNet (BatchNorm eps 1e-3, TF "same" padding, SiLU, SE on
the block input width), so the weights carry over one to one; only the names differ:

| efficientnet-pytorch | timm |
|---|---|
| `_conv_stem`, `_bn0` | `conv_stem`, `bn1` |
| `_blocks.{j}` (flat, j = 0..) | `blocks.{stage}.{i}` (the same blocks, in the same order) |
| block without expansion: `_depthwise_conv`, `_bn1`, `_se_reduce`, `_se_expand`, `_project_conv`, `_bn2` | `conv_dw`, `bn1`, `se.conv_reduce`, `se.conv_expand`, `conv_pw`, `bn2` |
| block with expansion: `_expand_conv`, `_bn0`, `_depthwise_conv`, `_bn1`, `_se_*`, `_project_conv`, `_bn2` | `conv_pw`, `bn1`, `conv_dw`, `bn2`, `se.*`, `conv_pwl`, `bn3` |
| `_conv_head`, `_bn1`, `_fc` | `conv_head`, `bn2`, `classifier` |
"""

from __future__ import annotations

import re

import torch

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
              "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
             "_bn2": "bn3"}


def timm_block_order(timm_keys) -> list[str]:
    """timm's block prefixes (`blocks.0.0`, `blocks.1.0`, ...) in forward order."""
    found = {(int(m.group(1)), int(m.group(2))) for k in timm_keys if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))}
    return [f"blocks.{s}.{i}" for s, i in sorted(found)]


def efficientnet_pytorch_to_timm(state: dict[str, torch.Tensor], timm_keys) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-pytorch state dict to timm keys; unknown names raise KeyError.

    The block count must match timm's model (the caller then compares keys and shapes exactly).
    """
    blocks = timm_block_order(timm_keys)
    expanding = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            j, module, leaf = int(m.group(1)), m.group(2), m.group(3)
            if j >= len(blocks):
                raise KeyError(f"{key}: block {j} beyond the {len(blocks)} blocks of the timm model")
            table = _INVERTED if j in expanding else _SEPARABLE
            if module not in table:
                raise KeyError(f"{key}: unknown block part {module!r}")
            out[f"{blocks[j]}.{table[module]}.{leaf}"] = value
            continue
        module, _, leaf = key.partition(".")
        if module not in _TOP or "." in leaf:
            raise KeyError(f"{key}: not an efficientnet-pytorch key")
        out[f"{_TOP[module]}.{leaf}"] = value
    return out
