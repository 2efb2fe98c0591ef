"""Does the data a run is given fit the model and the recipe? Checked before any step is taken.

A face crop smaller than the model input is enlarged by the transform's resize: a 128 px crop fed
to a 380 px EfficientNet is interpolated about 3x, which smooths away the blending and resampling
traces these detectors learn. A literature recipe (an experiment with `recipe.literature: true`)
also names the crop its paper used (configs/face/<recipe>.yaml: crop rule, margin, alignment and
a crop size equal to the model input, so no second resize happens). Such a recipe refuses a
manifest whose crops do not match; any other run is warned and goes on (the demo trains on its
own small crops on purpose). The outcome is stored in the checkpoint's preprocessing record.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# What decides the geometry and resolution of a crop. Thresholds, sampling and the file format
# are not compared: they change which faces and frames are kept, not what a crop looks like.
CROP_KEYS = ("detector", "margin", "crop_size", "align")


class RecipeMismatch(ValueError):
    """The manifest's crops are not the ones a literature recipe trains on."""


def crop_problems(manifest_spec: dict, input_size: int, required: dict | None) -> list[str]:
    """What is wrong with the manifest's crops for this model and recipe (empty: nothing)."""
    problems = []
    crop = manifest_spec.get("crop_size")
    if crop is not None and int(crop) < int(input_size):
        problems.append(f"crops of {int(crop)} px are enlarged {int(input_size) / int(crop):.2f}x to the model "
                        f"input of {int(input_size)} px")
    for key in CROP_KEYS if required else ():
        want, have = required.get(key), manifest_spec.get(key)
        if want is None:
            continue
        same = abs(float(want) - float(have)) < 1e-6 if key == "margin" and have is not None else want == have
        if not same:
            problems.append(f"{key}: the recipe needs {want!r}, the manifest has {have!r}")
    return problems


def check_face_crops(manifest_spec: dict, input_size: int, required: dict | None, literature: bool,
                     recipe: str | None = None, manifest_path: str | None = None) -> dict:
    """Refuse (literature recipe) or warn (any other run) when the crops do not fit; the record to store."""
    problems = crop_problems(manifest_spec, input_size, required)
    record = {"recipe": recipe, "literature": bool(literature), "input_size": int(input_size),
              "manifest_crop_size": manifest_spec.get("crop_size"), "required": required,
              "problems": problems, "outcome": "ok" if not problems else ("refused" if literature else "warned")}
    if problems:
        fix = (f"preprocess with the recipe's crop: python scripts/preprocess.py data=... face={recipe}"
               if recipe and required else
               f"preprocess with face.crop_size={int(input_size)} (and the crop rule the model was designed for)")
        text = f"{manifest_path or 'the manifest'}: " + "; ".join(problems) + f". {fix}"
        if literature:
            raise RecipeMismatch(f"literature recipe {recipe!r} refuses these crops: {text}")
        log.warning("%s", text)
    return record
