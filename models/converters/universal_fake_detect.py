"""UniversalFakeDetect (Ojha, Li & Lee, CVPR 2023): frozen CLIP ViT-L/14 image features + one linear layer.

Release layout (WisconsinAIVision/UniversalFakeDetect, models/clip_models.py, validate.py):
`pretrained_weights/fc_weights.pth` is the state dict of the linear head alone, `{"weight": (1, 768),
"bias": (1,)}`, applied to OpenAI CLIP's `encode_image` output (the 768-d projected embedding, not
normalised); sigmoid = fake (label 1). Evaluation: CenterCrop(224) with no resize, ToTensor,
Normalize with CLIP's mean/std.

The backbone is OpenAI's ViT-L/14, which OpenAI distributes as a TorchScript archive; faketrace
never loads a TorchScript archive (it is a program). The same weights are accepted as
- an open_clip state dict (`visual.*` keys, the text tower's keys ignored), e.g. open_clip's
  `open_clip_pytorch_model.bin` / `open_clip_model.safetensors` for ViT-L-14 'openai';
- a Hugging Face transformers CLIPModel or CLIPVisionModelWithProjection state dict
  (`vision_model.*`, `visual_projection.weight`), e.g. openai/clip-vit-large-patch14;
- a timm state dict of `vit_large_patch14_clip_quickgelu_224.openai` (with its `head`, the projection).
OpenAI trained ViT-L/14 with QuickGELU: the timm model is `vit_large_patch14_clip_quickgelu_224`
(timm's `vit_large_patch14_clip_224.openai` uses GELU with the same weights, which moves the logit by
~0.03 on a random tower: tests/test_published_import.py caught it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from faketrace.models.converters.common import (
    Converted,
    ImportRefused,
    expect_keys,
    read_tensor_file,
    refuse,
    tensors_only,
    timm_state,
)

BACKBONE = "vit_large_patch14_clip_quickgelu_224.openai"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
ACCEPTED_HEAD = ("UniversalFakeDetect's fc_weights.pth: a torch.save state dict {'weight': (1, 768), 'bias': (1,)}, "
                 "read with weights_only=True (or .safetensors)")
ACCEPTED_BACKBONE = ("the CLIP ViT-L/14 image tower as an open_clip state dict ('visual.*' keys; open_clip_pytorch_model.bin "
                     "or open_clip_model.safetensors of ViT-L-14 'openai'), a Hugging Face CLIPModel / "
                     "CLIPVisionModelWithProjection state dict ('vision_model.*' + 'visual_projection.weight'; "
                     "pytorch_model.bin or model.safetensors of openai/clip-vit-large-patch14), or a timm "
                     "vit_large_patch14_clip_quickgelu_224.openai state dict. OpenAI's own ViT-L-14.pt is a TorchScript archive, "
                     "which faketrace never loads: use one of these files instead")


def open_clip_to_timm(state: dict[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """open_clip / OpenAI CLIP image-tower keys -> timm VisionTransformer keys (other keys ignored)."""
    out: dict[str, torch.Tensor] = {}
    swaps = [("transformer.resblocks.", "blocks."), ("attn.in_proj_weight", "attn.qkv.weight"),
             ("attn.in_proj_bias", "attn.qkv.bias"), ("attn.out_proj.", "attn.proj."), ("mlp.c_fc.", "mlp.fc1."),
             ("mlp.c_proj.", "mlp.fc2."), (".ln_1.", ".norm1."), (".ln_2.", ".norm2.")]
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix):]
        if k == "class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif k == "positional_embedding":
            out["pos_embed"] = value.unsqueeze(0)
        elif k == "conv1.weight":
            out["patch_embed.proj.weight"] = value
        elif k.startswith("ln_pre."):
            out["norm_pre." + k[len("ln_pre."):]] = value
        elif k.startswith("ln_post."):
            out["norm." + k[len("ln_post."):]] = value
        elif k == "proj":
            out["head.weight"] = value.t().contiguous()
            out["head.bias"] = torch.zeros(value.shape[1], dtype=value.dtype)
        else:
            for old, new in swaps:
                k = k.replace(old, new)
            out[k] = value
    return out


def hf_clip_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers CLIP vision keys -> timm VisionTransformer keys (text keys ignored)."""
    out: dict[str, torch.Tensor] = {}
    p = "vision_model."
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "visual_projection.weight":
            out["head.weight"] = value
            out["head.bias"] = torch.zeros(value.shape[0], dtype=value.dtype)
            continue
        if not key.startswith(p):
            continue
        k = key[len(p):]
        if k == "embeddings.class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif k == "embeddings.patch_embedding.weight":
            out["patch_embed.proj.weight"] = value
        elif k == "embeddings.position_embedding.weight":
            out["pos_embed"] = value.unsqueeze(0)
        elif k == "embeddings.position_ids":
            continue  # an index buffer, not a weight
        elif k.startswith("pre_layrnorm."):
            out["norm_pre." + k.split(".", 1)[1]] = value
        elif k.startswith("post_layernorm."):
            out["norm." + k.split(".", 1)[1]] = value
        elif k.startswith("encoder.layers."):
            _, _, index, rest = k.split(".", 3)
            layers.setdefault(int(index), {})[rest] = value
        else:
            out["?" + key] = value  # reported as unexpected by the key check
    for i, parts in layers.items():
        b = f"blocks.{i}."
        for leaf in ("weight", "bias"):
            qkv = [parts.pop(f"self_attn.{n}_proj.{leaf}", None) for n in ("q", "k", "v")]
            if all(t is not None for t in qkv):
                out[b + f"attn.qkv.{leaf}"] = torch.cat(qkv, dim=0)
        renames = {"self_attn.out_proj.": "attn.proj.", "layer_norm1.": "norm1.", "layer_norm2.": "norm2.",
                   "mlp.fc1.": "mlp.fc1.", "mlp.fc2.": "mlp.fc2."}
        for rest, value in parts.items():
            for old, new in renames.items():
                if rest.startswith(old):
                    out[b + new + rest[len(old):]] = value
                    break
            else:
                out["?" + b + rest] = value
    return out


def backbone_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """timm-keyed CLIP ViT-L/14 image tower from any accepted file layout, and the layout's name."""
    obj = read_tensor_file(path, ACCEPTED_BACKBONE)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    state = tensors_only(obj, path, "the file", ACCEPTED_BACKBONE)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if "visual.class_embedding" in state:
        return open_clip_to_timm(state), "open_clip"
    if "vision_model.embeddings.class_embedding" in state:
        return hf_clip_to_timm(state), "transformers"
    if "cls_token" in state and "patch_embed.proj.weight" in state:
        return dict(state), "timm"
    raise refuse(path, "not a CLIP image tower in a known layout (no visual.class_embedding, "
                 "vision_model.embeddings.class_embedding or cls_token key)", ACCEPTED_BACKBONE)


def convert(files: dict[str, Path]) -> Converted:
    if "backbone" not in files or files["backbone"] is None:
        raise ImportRefused("UniversalFakeDetect needs two files: file=fc_weights.pth (the linear head) and "
                            f"file2=<CLIP ViT-L/14 image tower>. Accepted for file2: {ACCEPTED_BACKBONE}")
    head_path, tower_path = Path(files["weights"]), Path(files["backbone"])
    head = tensors_only(read_tensor_file(head_path, ACCEPTED_HEAD), head_path, "the file", ACCEPTED_HEAD)
    if set(head) != {"weight", "bias"} or tuple(head["weight"].shape) != (1, 768) or tuple(head["bias"].shape) != (1,):
        raise refuse(head_path, "expected exactly weight (1, 768) and bias (1,), found "
                     f"{ {k: tuple(v.shape) for k, v in head.items()} }", ACCEPTED_HEAD)
    tower, layout = backbone_state(tower_path)
    target = timm_state(BACKBONE, num_classes=768)
    # timm's head for the .openai tower is CLIP's projection (no bias in CLIP: zeros).
    expect_keys(tower, target, tower_path, ACCEPTED_BACKBONE, f"{BACKBONE} (image tower + 768-d projection)")
    init = {"_target_": "faketrace.models.families.LinearProbeDetector", "backbone": BACKBONE,
            "use_projection": True, "input_size": 224, "mean": CLIP_MEAN, "std": CLIP_STD}
    family = {"probe.weight": head["weight"].float(), "probe.bias": head["bias"].float()}
    tower = {k: v.float() for k, v in tower.items()}
    return Converted(init=init, backbone=tower, family=family,
                     notes=[f"CLIP image tower read from a {layout} state dict; text tower ignored",
                            "UniversalFakeDetect's fc -> LinearProbeDetector.probe (sigmoid = fake, unchanged)"])
