"""DFDC winner (Seferbekov, 2020): `DeepFakeClassifier` on timm 0.4.12's tf_efficientnet_b7_ns.

Release layout (selimsef/dfdc_deepfake_challenge, training/pipelines/train_classifier.py and
predict_folder.py; files `final_{seed}_DeepFakeClassifier_tf_efficientnet_b7_ns_0_{epoch}`, no
suffix): `torch.save({"epoch", "state_dict", "bce_best"})`; the model was wrapped in
DataParallel, so keys are `module.encoder.*` (the timm EfficientNet, with its unused 1000-class
ImageNet `classifier` still inside) and `module.fc.*` (one logit, sigmoid = fake). `bce_best` may
be a NumPy float, admitted as data. Input: the MTCNN box grown by a third of its size per side,
isotropically resized to 380 (cv2 INTER_AREA down, INTER_CUBIC up), centred on a black 380 x 380
canvas, / 255, ImageNet mean/std.

timm key drift: the release used timm 0.4.12. Its `tf_efficientnet_b7_ns` and timm 1.0's
`tf_efficientnet_b7` have the same 1200 parameter and buffer names and shapes (checked by building
both; tests/data/published/timm_0.4.12_tf_efficientnet_b7_ns_keys.json keeps the old list, which
the tests map). What changed is the model name (`tf_efficientnet_b7_ns` is now the `ns_jft_in1k`
tag of `tf_efficientnet_b7`) and where the head lives: DeepFakeClassifier's `fc` becomes timm's
`classifier` and the encoder's ImageNet classifier is dropped. TIMM_0_4_RENAMES lists every
rename applied to encoder keys (none are needed for this architecture).
"""

from __future__ import annotations

import re
from pathlib import Path

from faketrace.models.converters.common import (
    Converted,
    expect_keys,
    read_tensor_file,
    refuse,
    strip_prefix,
    tensors_only,
    timm_state,
)

ACCEPTED = ("a selimsef DFDC checkpoint (final_*_DeepFakeClassifier_tf_efficientnet_b7_ns_0_*): a torch.save dict "
            "{'epoch', 'state_dict', 'bce_best'} whose state dict has 'module.encoder.*' (timm 0.4.12 "
            "tf_efficientnet_b7_ns) and 'module.fc.*' keys, read with weights_only=True (NumPy scalars admitted); "
            "or that state dict alone as .pth/.safetensors")
OLD_MODEL_NAMES = {"tf_efficientnet_b7_ns": "tf_efficientnet_b7", "tf_efficientnet_b6_ns": "tf_efficientnet_b6",
                   "tf_efficientnet_b5_ns": "tf_efficientnet_b5", "tf_efficientnet_b4_ns": "tf_efficientnet_b4"}
# (regex on timm 0.4.12 encoder keys, replacement for timm 1.0): empty for EfficientNet (see above).
TIMM_0_4_RENAMES: list[tuple[str, str]] = []


def map_timm_0_4_keys(keys_to_values: dict) -> dict:
    out = {}
    for k, v in keys_to_values.items():
        for pattern, repl in TIMM_0_4_RENAMES:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def convert(files: dict[str, Path], encoder: str = "tf_efficientnet_b7_ns", input_size: int = 380) -> Converted:
    path = Path(files["weights"])
    obj = read_tensor_file(path, ACCEPTED, allow_numpy_scalars=True)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    state = tensors_only(obj, path, "the state dict", ACCEPTED)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    head = {k: v for k, v in state.items() if k.startswith("fc.")}
    encoder_state = strip_prefix({k: v for k, v in state.items() if not k.startswith("fc.")}, "encoder.", path,
                                 ACCEPTED)
    if set(head) != {"fc.weight", "fc.bias"}:
        raise refuse(path, f"expected the one-logit head fc.weight and fc.bias, found {sorted(head)}", ACCEPTED)
    dropped = {f"module.encoder.{k}": "timm encoder's ImageNet classifier, unused (DeepFakeClassifier pools "
               "forward_features into its own fc)" for k in encoder_state if k.startswith("classifier.")}
    mapped = map_timm_0_4_keys({k: v for k, v in encoder_state.items() if not k.startswith("classifier.")})
    mapped["classifier.weight"], mapped["classifier.bias"] = head["fc.weight"], head["fc.bias"]
    backbone = OLD_MODEL_NAMES.get(encoder, encoder)
    expect_keys(mapped, timm_state(backbone, num_classes=1), path, ACCEPTED, f"{backbone} with a one-logit head")
    init = {"_target_": "faketrace.models.detector.Detector", "backbone": backbone, "input_size": input_size,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    return Converted(init=init, backbone=mapped, dropped=dropped,
                     notes=[f"timm 0.4.12 {encoder} -> timm {backbone}: parameter names unchanged"])
