"""Albumentations pipelines: training augmentations from config, deterministic evaluation.

Training randomness is drawn from a per-sample seed (run seed, epoch, sample index), so a run
resumed from a checkpoint, with any number of loader workers, sees exactly the same augmented
images as an uninterrupted one.
"""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer version when it is imported: a network connection that an
# evidence scan must never make (tests/test_scan.py counts connects under strace).
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

import albumentations as A  # noqa: E402
import numpy as np
import torch


def _finish(input_size: int, mean, std) -> list:
    return [A.Resize(input_size, input_size), A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
            A.ToTensorV2()]


def eval_transform(input_size: int, mean, std) -> A.Compose:
    return A.Compose(_finish(input_size, mean, std))


def train_transform(input_size: int, mean, std, augment: dict) -> A.Compose:
    """Augmentations named in config; a probability of 0 switches one off."""
    a = augment
    ops = [
        A.HorizontalFlip(p=a["hflip"]),
        A.ImageCompression(quality_range=tuple(a["jpeg_quality"]), p=a["jpeg_p"]),
        A.GaussianBlur(blur_limit=tuple(a["blur_limit"]), p=a["blur_p"]),
        A.GaussNoise(std_range=tuple(a["noise_std"]), p=a["noise_p"]),
        A.ColorJitter(brightness=a["brightness"], contrast=a["contrast"], saturation=a["saturation"], hue=a["hue"],
                      p=a["color_p"]),
        A.Downscale(scale_range=tuple(a["downscale"]), p=a["downscale_p"]),
    ]
    return A.Compose([op for op in ops if op.p > 0] + _finish(input_size, mean, std))


def apply(transform: A.Compose, image: np.ndarray, seed: int | None) -> torch.Tensor:
    if seed is not None:
        transform.set_random_seed(seed)
    return transform(image=image)["image"]
