"""Albumentations pipelines: training augmentations from config, deterministic evaluation.

Training randomness is drawn from a per-sample seed (run seed, epoch, sample index), so a run
resumed from a checkpoint, with any number of loader workers, sees exactly the same augmented
images as an uninterrupted one. A blending mask, when a sample has one, goes through the same
geometric steps as its image (flip, affine, resize) and none of the photometric ones.
"""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer version when it is imported: a network connection that an
# evidence scan must never make (tests/test_scan.py counts connects under strace).
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from faketrace.datasets.face_pipeline import resize_flag  # noqa: E402

# Augmentations added after the first release: absent from older configs, off by default.
_OPTIONAL = {"gray_p": 0.0, "affine_p": 0.0, "affine_shift": 0.1, "affine_scale": 0.2, "affine_rotate": 10.0,
             "blur_sigma": None, "white_balance_p": 0.0, "white_balance": [0.8, 1.2]}


def _finish(input_size: int, mean, std, resize: str = "bilinear") -> list:
    # The model's own resize method (its spec's input.interpolation), the one the scan and predictor use.
    return [A.Resize(input_size, input_size, interpolation=resize_flag(resize),
                     mask_interpolation=cv2.INTER_LINEAR),
            A.Normalize(mean=mean, std=std, max_pixel_value=255.0), A.ToTensorV2()]


def eval_transform(input_size: int, mean, std, resize: str = "bilinear") -> A.Compose:
    return A.Compose(_finish(input_size, mean, std, resize))


def spec_eval_transform(spec) -> A.Compose:
    """The evaluation transform of a model's `InputSpec` (models/spec.py): size, mean, std, resize method."""
    if spec.channels != "RGB" or abs(spec.scale - 1 / 255) > 1e-12:
        raise ValueError(f"the torch data path feeds RGB scaled by 1/255; this model wants {spec.channels} scaled by "
                         f"{spec.scale}")
    return eval_transform(spec.side, spec.mean, spec.std, spec.interpolation)


def train_transform(input_size: int, mean, std, augment: dict, resize: str = "bilinear") -> A.Compose:
    """Augmentations named in config; a probability of 0 switches one off."""
    a = {**_OPTIONAL, **augment}
    blur = {"sigma_limit": tuple(a["blur_sigma"])} if a["blur_sigma"] is not None else {}
    ops = [
        A.HorizontalFlip(p=a["hflip"]),
        A.ImageCompression(quality_range=tuple(a["jpeg_quality"]), p=a["jpeg_p"]),
        A.GaussianBlur(blur_limit=tuple(a["blur_limit"]), p=a["blur_p"], **blur),
        A.GaussNoise(std_range=tuple(a["noise_std"]), p=a["noise_p"]),
        A.ColorJitter(brightness=a["brightness"], contrast=a["contrast"], saturation=a["saturation"], hue=a["hue"],
                      p=a["color_p"]),
        # A colour cast over the whole picture (one gain per channel, as a camera's white balance):
        # no manipulation leaves one, so a detector should not learn skin colour as a cue. ColorJitter's
        # hue rotation is a different change (it keeps the channels' balance along the grey axis).
        A.MultiplicativeNoise(multiplier=tuple(a["white_balance"]), per_channel=True, elementwise=False,
                              p=a["white_balance_p"]),
        A.ToGray(p=a["gray_p"]),
        A.Downscale(scale_range=tuple(a["downscale"]), p=a["downscale_p"]),
        A.Affine(translate_percent=(-a["affine_shift"], a["affine_shift"]),
                 scale=(1 - a["affine_scale"], 1 + a["affine_scale"]), rotate=(-a["affine_rotate"], a["affine_rotate"]),
                 border_mode=cv2.BORDER_CONSTANT, mask_interpolation=cv2.INTER_LINEAR, p=a["affine_p"]),
    ]
    return A.Compose([op for op in ops if op.p > 0] + _finish(input_size, mean, std, resize))


def apply(transform: A.Compose, image: np.ndarray, seed: int | None, mask: np.ndarray | None = None):
    """The transformed image tensor, or (image, mask) tensors when a mask is given."""
    if seed is not None:
        transform.set_random_seed(seed)
    if mask is None:
        return transform(image=image)["image"]
    out = transform(image=image, mask=mask.astype(np.float32))
    return out["image"], torch.as_tensor(out["mask"], dtype=torch.float32)
