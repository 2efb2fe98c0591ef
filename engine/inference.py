"""Inference and model loading: below both the training loop and the evidence scan.

What every caller that runs a model needs, and nothing of training: the device, the deterministic
data loader, rebuilding a Detector from a checkpoint, and scoring a data set (face crops, clips, or
image tiles aggregated per frame) into a frame table. engine/train.py validates with it,
engine/evaluate.py evaluates with it, and forensics/scoring.py loads checkpoints with it, so the
analyst path never imports the research evaluation module.
"""

from __future__ import annotations

import math
import os
import random
import warnings

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, DistributedSampler, Subset, WeightedRandomSampler

from faketrace.datasets.frames import FaceCropDataset
from faketrace.datasets.images import ImageTileDataset, collate_frames
from faketrace.engine import metrics as M
from faketrace.engine.distributed import DistContext

# -- device and loaders ----------------------------------------------------------------------------

def resolve_device(accelerator: str) -> torch.device:
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(accelerator)


def worker_init(worker_id: int) -> None:
    # Each worker's numpy/python RNG from its torch seed (itself from the epoch's generator).
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def resolve_num_workers(value) -> int:
    """Loader processes: an int as given, or 'auto': the CPUs this process may run on, less one for
    the main process (which feeds the GPU), at most 16.

    Results do not depend on it: every sample's augmentation is seeded from (seed, epoch, sample),
    not from the worker that happens to load it.
    """
    if str(value) != "auto":
        return int(value)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus - 1, 16))


def make_loader(dataset, batch_size: int, num_workers: int | str, shuffle: bool, seed: int | None = None,
                balanced: bool = False, rank: int = 0, world_size: int = 1, pin_memory: bool | None = None,
                prefetch_factor: int | None = None, drop_last: bool = False) -> DataLoader:
    """A loader whose order depends only on `seed`; `balanced` draws real and fake equally often.

    Shuffled training order comes from one permutation of the seed, split across ranks, so N
    processes with batch b see, step by step, the same samples as one process with batch N*b.
    `pin_memory` (default: whether CUDA is available) lets non-blocking host-to-device copies
    overlap the GPU; `prefetch_factor` is the batches each worker loads ahead (torch's default 2).
    Workers are not persistent: a training dataset picks its frames per epoch (set_epoch) in the
    main process, and workers kept from the last epoch would still hold the old choice.
    """
    num_workers = resolve_num_workers(num_workers)
    pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    sampler = None
    if balanced:
        labels = np.asarray(dataset.labels())
        counts = np.bincount(labels, minlength=2).astype(np.float64)
        weights = 1.0 / counts[labels]
        rank_gen = torch.Generator().manual_seed((seed or 0) + rank)
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                        num_samples=math.ceil(len(labels) / world_size), replacement=True,
                                        generator=rank_gen)
        shuffle = False
    elif shuffle:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed or 0,
                                     drop_last=False)
        shuffle = False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=num_workers,
                      worker_init_fn=worker_init, generator=generator, drop_last=drop_last,
                      persistent_workers=False, pin_memory=pin_memory,
                      prefetch_factor=prefetch_factor if num_workers > 0 else None)


# -- model loading -------------------------------------------------------------------------------

def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """Rebuild the Detector a checkpoint describes and load its weights strictly."""
    init = dict(ckpt["architecture"]["init"])
    init.update(pretrained=False, weights_file=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random initialisation.*")
        model = instantiate(init)
    model.load_trained_state(ckpt["model"], ckpt.get("model_family"))
    return model.eval()


# -- scoring -----------------------------------------------------------------------------------------

@torch.no_grad()
def predict(model, dataset: FaceCropDataset, batch_size: int, num_workers: int, device: torch.device,
            limit_batches: int | None = None, channels_last: bool = False,
            dist_ctx: DistContext | None = None) -> pd.DataFrame:
    """Frame table of a dataset: its manifest/index columns plus logit and score (probability).

    Always full precision, so training-time validation and evaluate.py give the same numbers.
    Under DDP each rank scores every world_size-th sample (no padding, so no duplicates) and the
    ranks' results are gathered and put back in dataset order on every rank.
    """
    ctx = dist_ctx or DistContext()
    model.eval()
    logits, rows = [], []
    shard = dataset if not ctx.enabled else Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    loader = make_loader(shard, batch_size, num_workers, shuffle=False)
    for b, batch in enumerate(loader):
        if limit_batches is not None and b >= limit_batches:
            break
        images = batch["image"].to(device)
        if channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        logits.append(model(images).float().cpu())
        rows.append(batch["index"])
    idx = torch.cat(rows).numpy() if rows else np.zeros(0, dtype=np.int64)
    logit = torch.cat(logits).numpy().astype(np.float64) if logits else np.zeros(0)
    if ctx.enabled:
        parts = ctx.all_gather((idx, logit))
        idx = np.concatenate([p[0] for p in parts])
        logit = np.concatenate([p[1] for p in parts])
        order = np.argsort(idx, kind="stable")
        idx, logit = idx[order], logit[order]
    table = dataset.table.iloc[idx][["video_id", "frame_index", "label", "method", "split"]].reset_index(drop=True)
    table["logit"] = logit
    table["score"] = M.sigmoid(logit)
    return table


@torch.no_grad()
def predict_tiles(model, dataset: ImageTileDataset, batch_size: int, num_workers: int, device: torch.device,
                  limit_batches: int | None = None, channels_last: bool = False,
                  dist_ctx: DistContext | None = None, with_maps: bool = False) -> tuple[pd.DataFrame, dict]:
    """Tile table of an image-level dataset (one row per tile: box, logit, score), and maps.

    The loader batches frames (`max(1, batch_size // 8)` at a time) and the model sees at most
    `batch_size` tiles per call. With `with_maps` (a model with a "map" output, single process),
    each frame that has a truth mask gets its map stitched from its tiles (the mean where tiles
    overlap): {(video_id, frame_index): (map, truth)}, both float32 at the frame's resolution.
    Frames that do not decode have no tile rows; the table's attrs list them as `errors`.
    """
    ctx = dist_ctx or DistContext()
    if with_maps and ctx.enabled:
        raise ValueError("manipulation maps are computed in a single process")
    model.eval()
    shard = dataset if not ctx.enabled else Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    frames_per_batch = max(1, int(batch_size) // 8)
    loader = DataLoader(shard, batch_size=frames_per_batch, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_frames, worker_init_fn=worker_init)
    owners, boxes, logits, errors, maps = [], [], [], {}, {}
    for b, batch in enumerate(loader):
        if limit_batches is not None and b >= limit_batches:
            break
        tiles = batch["tiles"]
        out_logits, out_maps = [], []
        for start in range(0, len(tiles), int(batch_size)):
            x = tiles[start:start + int(batch_size)].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if with_maps:
                outputs = model(x, with_aux=True)
                out_logits.append(outputs["logits"].float().cpu())
                out_maps.append(torch.sigmoid(outputs["map"].float()).cpu())
            else:
                out_logits.append(model(x).float().cpu())
        if out_logits:
            logits.append(torch.cat(out_logits))
        owners.append(batch["owner"])
        boxes.append(batch["boxes"])
        for row, error in zip(batch["rows"], batch["errors"], strict=True):
            if error:
                errors[row] = error
        if with_maps and out_maps:
            tile_maps = torch.cat(out_maps).numpy()
            owner = batch["owner"].numpy()
            for row, truth, (h, w) in zip(batch["rows"], batch["masks"], batch["shapes"], strict=True):
                if truth is None:
                    continue
                pick = np.flatnonzero(owner == row)
                acc, count = np.zeros((h, w), np.float64), np.zeros((h, w), np.int64)
                for t in pick:
                    x0, y0, x1, y1 = (int(v) for v in batch["boxes"][t])
                    acc[y0:y1, x0:x1] += tile_maps[t, :y1 - y0, :x1 - x0]
                    count[y0:y1, x0:x1] += 1
                item = dataset.table.iloc[row]
                maps[(item["video_id"], int(item["frame_index"]))] = ((acc / np.maximum(count, 1)).astype(np.float32),
                                                                      truth.astype(np.float32))
    owner = torch.cat(owners).numpy() if owners else np.zeros(0, np.int64)
    box = torch.cat(boxes).numpy() if boxes else np.zeros((0, 4), np.int64)
    logit = torch.cat(logits).numpy().astype(np.float64) if logits else np.zeros(0)
    if ctx.enabled:
        parts = ctx.all_gather((owner, box, logit, errors))
        owner = np.concatenate([p[0] for p in parts])
        box = np.concatenate([p[1] for p in parts])
        logit = np.concatenate([p[2] for p in parts])
        errors = {k: v for p in parts for k, v in p[3].items()}
        order = np.argsort(owner, kind="stable")
        owner, box, logit = owner[order], box[order], logit[order]
    table = dataset.table.iloc[owner][["video_id", "frame_index", "label", "method", "split"]].reset_index(drop=True)
    table["tile_index"] = table.groupby(["video_id", "frame_index"]).cumcount()
    table[["x0", "y0", "x1", "y1"]] = box.reshape(-1, 4)
    table["logit"] = logit
    table["score"] = M.sigmoid(logit)
    table.attrs["errors"] = {f"{dataset.table.iloc[k]['video_id']}#{dataset.table.iloc[k]['frame_index']}": v
                             for k, v in errors.items()}
    return table, maps


def frames_from_tiles(tiles: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Frame table from a tile table: score = max or mean of tile probabilities (named by `rule`).

    `logit` is the logit of that score (for max, exactly the largest tile logit), so temperature
    calibration works on image-level frames as on face crops.
    """
    if rule not in ("max", "mean"):
        raise ValueError(f"unknown tile aggregation {rule!r}; known: max, mean")
    keys = ["video_id", "frame_index"]
    grouped = tiles.groupby(keys, sort=True)
    out = grouped[["label", "method", "split"]].first()
    out["n_tiles"] = grouped.size()
    if rule == "max":
        out["logit"] = grouped["logit"].max()
        out["score"] = M.sigmoid(out["logit"].to_numpy())
    else:
        out["score"] = grouped["score"].mean()
        out["logit"] = M.logit(out["score"].to_numpy())
    out = out.reset_index()
    out.attrs = dict(tiles.attrs, tile_aggregation=rule)
    return out


def score_frames(model, dataset, batch_size: int, num_workers: int, device: torch.device,
                 limit_batches: int | None = None, channels_last: bool = False,
                 dist_ctx: DistContext | None = None) -> pd.DataFrame:
    """Frame table of any evaluation dataset: face crops as scored, image tiles aggregated per frame."""
    if isinstance(dataset, ImageTileDataset):
        tiles, _ = predict_tiles(model, dataset, batch_size, num_workers, device, limit_batches, channels_last,
                                 dist_ctx)
        return frames_from_tiles(tiles, dataset.spec.aggregation)
    return predict(model, dataset, batch_size, num_workers, device, limit_batches, channels_last, dist_ctx)
