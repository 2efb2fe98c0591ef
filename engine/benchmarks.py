"""Throughput benchmarks (timm's protocol: warm-up steps, then timed steps, GPU synchronised).

Numbers are medians over repeats; the ratios compare the real pipeline with the model alone,
so a slow data path shows up as a ratio well below 1.
"""

from __future__ import annotations

import statistics
import time
from itertools import islice

import torch
from omegaconf import DictConfig

from faketrace.engine.train import Trainer, make_loader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - t0


def train_throughput(cfg: DictConfig, steps: int = 20, warmup: int = 5, repeats: int = 3) -> dict:
    """(a) model-only, (b) end-to-end with the real loader, (c) loader-only, in images/s."""
    trainer = Trainer(cfg)
    bs = int(cfg.loader.batch_size)
    size = trainer.model.input_size
    device = trainer.device
    synthetic = {"image": torch.randn(bs, 3, size, size, device=device),
                 "label": torch.randint(0, 2, (bs,), device=device), "index": torch.arange(bs)}

    def loader_iter():
        while True:
            yield from make_loader(trainer.train_set, bs, int(cfg.loader.num_workers), shuffle=True, seed=0)

    def model_step():
        trainer.optimizer_step([synthetic])

    results: dict[str, list[float]] = {"model_only": [], "end_to_end": [], "loader_only": []}
    for _ in range(repeats):
        results["model_only"].append(bs * steps / _timed(model_step, steps, warmup, device))
        it = loader_iter()
        results["end_to_end"].append(bs * steps / _timed(lambda it=it: trainer.optimizer_step([next(it)]),
                                                         steps, warmup, device))
        it = loader_iter()
        # Count loader time including the first workers' start, as a training epoch pays it.
        t0 = time.perf_counter()
        n = sum(len(b["image"]) for b in islice(it, steps + warmup))
        results["loader_only"].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in results.items()}
    return {"unit": "images/s", "batch_size": bs, "input_size": size, "backbone": trainer.model.backbone_name,
            "device": str(device), "precision": trainer.precision, "num_workers": int(cfg.loader.num_workers),
            "steps": steps, "warmup": warmup, "repeats": repeats, "median": med, "all": results,
            "ratio_end_to_end_over_model": med["end_to_end"] / med["model_only"],
            "ratio_loader_over_model": med["loader_only"] / med["model_only"]}
