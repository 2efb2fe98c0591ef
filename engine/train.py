"""The training loop: fine-tune a Detector on face crops or whole images, validate every epoch, checkpoint.

`data.level` picks what the model sees: `face` (crops from the face manifest, the default) or
`image` (random native-resolution crops of whole images and video frames for training, fixed tiles
aggregated per image for validation; configs/train.yaml `image:`). Both give the loop the same
batches and the same frame table, so the loop itself has no level-specific branch.

Model selection uses the validation split only (video AUC by default); the test split is never
touched here. `last.ckpt` is written every epoch and `best.ckpt` when validation improves, both
atomically; `ckpt_path=` resumes exactly (weights, optimiser, scheduler, RNG states, epoch).
At the end, the calibration (engine/calibration.py) is fitted on the best epoch's validation
scores and stored in best.ckpt, so the checkpoint one keeps is calibrated without a second pass
over the data; last.ckpt, the one to resume from, stays uncalibrated.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset, WeightedRandomSampler
from tqdm import tqdm

from faketrace.datasets.face_pipeline import resize_method
from faketrace.datasets.frames import FaceCropDataset, load_face_table
from faketrace.datasets.image_pipeline import ImageSpec
from faketrace.datasets.images import ImageCropDataset, ImageTileDataset, collate_frames, load_image_table
from faketrace.datasets.preprocess import PreprocessSpec
from faketrace.datasets.transforms import eval_transform, train_transform
from faketrace.engine import metrics as M
from faketrace.engine.calibration import fit_calibration, maps_summary
from faketrace.engine.checkpoint import (
    NOT_FIT_REASON_DEMO,
    git_sha,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    versions,
)
from faketrace.engine.distributed import DistContext, init_distributed, shutdown_distributed
from faketrace.engine.loggers import MetricsFile
from faketrace.engine.optim import SAM, build_param_groups
from faketrace.engine.recipes import check_face_crops
from faketrace.engine.sample_size import selection_record

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(accelerator: str) -> torch.device:
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(accelerator)


def resolve_precision(device: torch.device, precision: str) -> str:
    """'auto' is full precision on CPU and mixed precision (AMP) on a GPU: bf16 where supported."""
    precision = str(precision)
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32"


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CPU or GPU, fp16 AMP on GPU; '32' runs in full precision."""
    precision = str(precision)
    if precision in ("32", "32-true", "fp32"):
        return nullcontext()
    if precision in ("bf16", "bf16-mixed"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision in ("16", "16-mixed", "fp16"):
        if device.type != "cuda":
            raise ValueError("fp16 mixed precision needs a GPU; use trainer.precision=bf16 on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    raise ValueError(f"unknown precision {precision!r}; use 32, bf16 or 16-mixed")


def _worker_init(worker_id: int) -> None:
    # Each worker's numpy/python RNG from its torch seed (itself from the epoch's generator).
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def make_loader(dataset, batch_size: int, num_workers: int, shuffle: bool, seed: int | None = None,
                balanced: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A loader whose order depends only on `seed`; `balanced` draws real and fake equally often.

    Shuffled training order comes from one permutation of the seed, split across ranks, so N
    processes with batch b see, step by step, the same samples as one process with batch N*b.
    """
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
                      worker_init_fn=_worker_init, generator=generator, drop_last=False,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


class ModelEma:
    """Exponential moving average of a model's weights (buffers copied), updated per step.

    The decay is warmed up as min(decay, (1 + n) / (10 + n)) so early averages are not
    dominated by the random initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_v, v in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_v.dtype.is_floating_point:
                ema_v.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                ema_v.copy_(v)


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
                        collate_fn=collate_frames, worker_init_fn=_worker_init)
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


def image_spec_from_config(cfg: DictConfig, input_size: int) -> ImageSpec:
    """The ImageSpec of a training run: `image.tile_size` null means the model's input size."""
    c = cfg.image
    tile = int(c.tile_size or input_size)
    if tile != int(input_size):
        log.warning("image.tile_size %d differs from the model's input size %d: every crop is resampled, which "
                    "changes the native-resolution traces image-level models look for", tile, input_size)
    return ImageSpec(tile_size=tile, stride=c.stride, aggregation=c.aggregation, resize=c.resize, crop=c.crop)


def casework_fitness(cfg: DictConfig) -> tuple[bool, str]:
    if str(cfg.data.name).startswith("demo"):  # demo, its shifted domain and the image-level demo: all synthetic
        return False, cfg.data.get("not_fit_reason") or NOT_FIT_REASON_DEMO
    if not cfg.get("casework", {}).get("validated_on_real_data", False):
        return False, "not validated on real data (set casework.validated_on_real_data after a documented validation)"
    return True, "validated on real data by the operator of this run"


class Trainer:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.run_dir = Path(cfg.paths.output_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = resolve_device(cfg.trainer.accelerator)
        self.dist = init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.precision = resolve_precision(self.device, cfg.trainer.precision)
        if cfg.trainer.get("threads"):
            torch.set_num_threads(int(cfg.trainer.threads))
        if cfg.trainer.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(int(cfg.seed))

        self.level = str(cfg.data.get("level", "face"))
        if self.level not in ("face", "image"):
            raise ValueError(f"data.level must be face or image, got {self.level!r}")
        self.model = instantiate(cfg.model).to(self.device)
        # Same initial weights everywhere (seed), then a different stream per rank (seed + rank).
        seed_everything(int(cfg.seed) + self.dist.rank)
        spec = self.model.input_spec()
        self.channels_last = self.device.type == "cuda" and cfg.trainer.channels_last in (True, "auto")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Pseudo-fakes from real faces (configs/synthesis/); validation uses them too when asked,
        # so that model selection never sees the data set's own manipulations.
        self.synthesis = instantiate(cfg.synthesis) if cfg.get("synthesis") else None
        self.val_synthesis = (self.synthesis if self.synthesis is not None
                              and self.synthesis.validate_on == "synthetic" else None)
        self.train_set, self.val_set, self.preprocessing = build_datasets(
            cfg, spec, synthesis=self.synthesis, val_synthesis=self.val_synthesis, targets=self.model.targets)
        self.index_meta = self.preprocessing.pop("index_meta")
        if self.synthesis is not None:
            log.info("synthesis %s: train %s, val %s", list(self.synthesis.methods),
                     _count_by_method(self.train_set.table), _count_by_method(self.val_set.table))
        self.batches_per_epoch = math.ceil(len(self.train_set) / self.dist.world_size / cfg.loader.batch_size)
        if cfg.trainer.limit_train_batches:
            self.batches_per_epoch = min(self.batches_per_epoch, int(cfg.trainer.limit_train_batches))
        self.accumulate = max(1, int(cfg.trainer.accumulate_grad_batches))
        # Optimiser steps; a last partial accumulation window still steps.
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / self.accumulate)
        self.total_steps = self.steps_per_epoch * int(cfg.trainer.max_epochs)
        pg = cfg.param_groups
        groups = build_param_groups(self.model, float(cfg.optim.lr), float(pg.backbone_lr_mult),
                                    float(pg.head_lr_mult), bool(pg.freeze_backbone))
        self.optimizer = instantiate(cfg.optim)(params=groups)
        self.scheduler = instantiate(cfg.scheduler)(optimizer=self.optimizer, total_steps=self.total_steps)
        # EMA of the weights: when on, the EMA model is the one validated and saved.
        self.ema = ModelEma(self.model, float(cfg.trainer.ema_decay)) if cfg.trainer.ema_decay else None
        self.forward_model = self.model
        if cfg.trainer.compile:
            # Compiles the forward pass (inductor); weights stay shared with self.model.
            self.forward_model = torch.compile(self.model)
        if self.dist.enabled:
            self.forward_model = DistributedDataParallel(
                self.forward_model, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None)
        self.epochs_without_improvement = 0
        self.stopped_early = False
        self.epoch = 0
        self.global_step = 0
        self.best_score = -math.inf
        self.best_metrics: dict | None = None
        self.best_val_table: pd.DataFrame | None = None  # frame logits of the best epoch, for calibration
        self.fit, self.fit_reason = casework_fitness(cfg)
        # What the best epoch was chosen on (AUC, interval, class counts), and whether the validation
        # items are stills (one frame each), so records say "image" where they would say "video".
        self.selection: dict | None = None
        self.selection_warned = False
        self.val_stills = False

    # -- checkpoints -------------------------------------------------------------------------
    def _payload(self, val_report: dict) -> dict:
        cfg_yaml = OmegaConf.to_yaml(self.cfg, resolve=True)
        evaluated = self.ema.module if self.ema is not None else self.model
        return {
            # The weights that were validated (the EMA weights when EMA is on): the timm backbone
            # under plain timm keys, and what a detector family adds beside it.
            "model": _cpu(evaluated.backbone_state_dict()),
            "model_family": _cpu(evaluated.family_state_dict()),
            "model_raw": None if self.ema is None else _cpu(self.model.backbone_state_dict()),
            "model_family_raw": None if self.ema is None else _cpu(self.model.family_state_dict()),
            "ema": None if self.ema is None else {"decay": self.ema.decay, "updates": self.ema.updates},
            "epochs_without_improvement": self.epochs_without_improvement,
            "model_spec": {"target": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
                           "family": self.model.family, "backbone": self.model.backbone_name,
                           "init": OmegaConf.to_container(self.cfg.model, resolve=True),
                           "input": self.model.input_spec()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "global_step": self.global_step,
            "best_score": float(self.best_score), "monitor": self.cfg.monitor,
            "config": cfg_yaml,
            "preprocessing": {**self.preprocessing, "input": self.model.input_spec(),
                              "aggregation": self.cfg.aggregation},
            "calibration": {"method": "none", "temperature": 1.0,
                            "note": "uncalibrated: probabilities are sigmoid(logit)"},
            "metrics": {"val": val_report, "best_val": self.best_metrics},
            "selection": self.selection,
            "data": {"name": self.cfg.data.name, "index_meta": {"synthetic": bool(self.index_meta.get("synthetic"))},
                     # The media the model is trained for; a scan never lets it decide outside them.
                     "domain": (OmegaConf.to_container(self.cfg.data.domain, resolve=True)
                                if self.cfg.data.get("domain") else None)},
            "versions": versions(), "git_sha": git_sha(),
            "fit_for_casework": self.fit, "casework_note": self.fit_reason,
            "rng": rng_state(),
        }

    def resume(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        if self.ema is not None:
            if ckpt.get("model_raw") is None:
                raise ValueError(f"{path} was trained without EMA; resume it with trainer.ema_decay=null")
            self.model.load_trained_state(ckpt["model_raw"], ckpt.get("model_family_raw"))
            self.ema.module.load_trained_state(ckpt["model"], ckpt.get("model_family"))
            self.ema.updates = int(ckpt["ema"]["updates"])
        else:
            self.model.load_trained_state(ckpt["model"], ckpt.get("model_family"))
        self.epochs_without_improvement = int(ckpt.get("epochs_without_improvement", 0))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.epoch, self.global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        self.best_score = float(ckpt["best_score"])
        self.best_metrics = ckpt["metrics"].get("best_val")
        self.selection = ckpt.get("selection")
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.global_step)

    # -- loop ----------------------------------------------------------------------------------
    def _forward_loss(self, batch: dict, scale: float) -> torch.Tensor:
        images = batch["image"].to(self.device, non_blocking=True)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with autocast_context(self.device, self.precision):
            outputs = self.forward_model(images, with_aux=True)
        return self.model.loss(outputs, batch) * scale

    def _backward(self, window: list[dict], scaler) -> float:
        """Gradients of the mean loss over all samples of the window (equal to one big batch)."""
        total = sum(len(w["image"]) for w in window)
        loss_sum = 0.0
        for i, w in enumerate(window):
            # Under DDP, gradients are averaged across ranks once, on the window's last micro-batch.
            sync = not self.dist.enabled or i == len(window) - 1
            with nullcontext() if sync else self.forward_model.no_sync():
                loss = self._forward_loss(w, len(w["image"]) / total)
                (scaler.scale(loss) if scaler is not None else loss).backward()
            loss_sum += float(loss.detach())
        return loss_sum

    def optimizer_step(self, window: list[dict], scaler=None) -> float:
        """One optimiser step over a window of micro-batches (gradient accumulation), SAM-aware."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._backward(window, scaler)
        clip = self.cfg.trainer.grad_clip
        if isinstance(self.optimizer, SAM):
            if clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
            self.optimizer.first_step()
            self.optimizer.zero_grad(set_to_none=True)
            self._backward(window, scaler)
            if clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
            self.optimizer.second_step()
        else:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            if clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
            if scaler is not None:
                scaler.step(self.optimizer)
                scaler.update()
            else:
                self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1
        return loss

    def validate(self) -> tuple[dict, pd.DataFrame]:
        evaluated = self.ema.module if self.ema is not None else self.model
        table = score_frames(evaluated, self.val_set, self.cfg.loader.batch_size, self.cfg.loader.num_workers,
                             self.device, self.cfg.trainer.limit_val_batches, self.channels_last, self.dist)
        return M.report_levels(table, self.cfg.aggregation), table

    def fit_loop(self) -> dict:
        cfg = self.cfg
        logger = MetricsFile(self.run_dir, OmegaConf.to_container(cfg.logger, resolve=True).get("wandb"),
                             OmegaConf.to_container(cfg, resolve=True)) if self.dist.is_main else _NoLogger()
        if cfg.ckpt_path:
            self.resume(cfg.ckpt_path)
        scaler = torch.amp.GradScaler("cuda") if self.precision.startswith("16") else None
        val_report: dict = {}
        for epoch in range(self.epoch, int(cfg.trainer.max_epochs)):
            self.model.train()
            self.train_set.set_epoch(epoch)
            loader = make_loader(self.train_set, cfg.loader.batch_size, cfg.loader.num_workers, shuffle=True,
                                 seed=int(cfg.seed) * 100_003 + epoch, balanced=bool(cfg.loader.balanced),
                                 rank=self.dist.rank, world_size=self.dist.world_size)
            bar = tqdm(loader, total=self.batches_per_epoch, desc=f"epoch {epoch}", unit="batch", leave=False,
                       disable=not cfg.trainer.progress_bar, mininterval=1.0)
            t0, seen, losses = time.perf_counter(), 0, []
            window: list[dict] = []
            for b, batch in enumerate(bar):
                if b >= self.batches_per_epoch:
                    break
                window.append(batch)
                if len(window) < self.accumulate and b + 1 < self.batches_per_epoch:
                    continue
                loss = self.optimizer_step(window, scaler)
                seen += sum(len(w["image"]) for w in window)
                window = []
                losses.append(loss)
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", img_s=f"{rate:.0f}", refresh=False)
                if self.global_step % int(cfg.trainer.log_every_n_steps) == 0:
                    logger.log({"step": self.global_step, "epoch": epoch, "train/loss": loss,
                                "lr": self.optimizer.param_groups[0]["lr"], "train/images_per_s": rate})
            self.epoch = epoch + 1
            val_report, val_table = self.validate()
            score = _monitor_value(val_report, cfg.monitor)
            improved = score is not None and score > self.best_score
            row = {"step": self.global_step, "epoch": epoch, "train/loss_epoch": float(np.mean(losses)) if losses
                   else None, "train/images_per_s": seen / max(time.perf_counter() - t0, 1e-9),
                   **_flat_val(val_report)}
            if improved and score > self.best_score + float(cfg.trainer.early_stopping.min_delta):
                self.epochs_without_improvement = 0
            else:
                self.epochs_without_improvement += 1
            if improved:
                self.best_score = float(score)
                self.best_metrics = val_report
                self.best_val_table = val_table
            logger.log(row)
            self.val_stills = stills_only(val_table)
            if improved:
                self.selection = selection_record(val_report, cfg.monitor, self.val_stills)
                if self.selection["warning"] and not self.selection_warned:
                    log.warning("%s", self.selection["warning"])
                    self.selection_warned = True
            item = "image" if self.val_stills else "video"
            log.info("epoch %d: loss %.4f, val %s AUC %s, frame AUC %s%s", epoch, row["train/loss_epoch"] or 0, item,
                     _fmt(val_report["video"]["auc"]), _fmt(val_report["frame"]["auc"]), " (best)" if improved else "")
            if self.dist.is_main:
                payload = self._payload(val_report)
                save_checkpoint(payload, self.ckpt_dir / "last.ckpt")
                if improved:
                    save_checkpoint(payload, self.ckpt_dir / "best.ckpt")
            self.dist.barrier()
            patience = cfg.trainer.early_stopping.patience
            if patience is not None and self.epochs_without_improvement >= int(patience):
                log.info("early stopping after epoch %d: %s did not improve for %d epochs", epoch, cfg.monitor,
                         self.epochs_without_improvement)
                self.stopped_early = True
                break
        logger.close()
        if self.dist.is_main and not (self.ckpt_dir / "best.ckpt").exists() and (self.ckpt_dir / "last.ckpt").exists():
            # No epoch improved on a single-class validation set: keep last as best, and say so.
            log.warning("validation %s was never defined; best.ckpt is the last epoch", cfg.monitor)
            os.link(self.ckpt_dir / "last.ckpt", self.ckpt_dir / "best.ckpt")
        calibration = self.calibrate_best() if self.dist.is_main else None
        self.dist.barrier()
        return {"stopped_early": self.stopped_early, "epochs_run": self.epoch, "calibration": calibration,
                "best_ckpt": str(self.ckpt_dir / "best.ckpt"), "last_ckpt": str(self.ckpt_dir / "last.ckpt"),
                "best_score": self.best_score, "monitor": cfg.monitor, "val": val_report, "run_dir": str(self.run_dir)}

    def calibrate_best(self) -> dict | None:
        """Fit the calibration on the best epoch's validation scores and store it in best.ckpt."""
        settings = self.cfg.get("calibration") or {}
        if not settings.get("fit", False):
            return None
        if self.best_val_table is None:
            log.info("best.ckpt is from before this run (resumed) or never improved: not calibrated here; "
                     "use scripts/calibrate.py")
            return None
        try:
            calibration = fit_calibration(self.best_val_table, self.cfg.aggregation, "val", "all",
                                          int(settings.seed), float(settings.target_fpr), int(settings.folds))
        except ValueError as err:  # a validation split with one class cannot calibrate anything
            log.warning("best.ckpt left uncalibrated: %s", err)
            return None
        calibration["fitted_on"].update(dataset=self.cfg.data.name, index=str(self.cfg.data.index_path),
                                        checkpoint="this one: the validation scores of its epoch, at the end of "
                                                   "training")
        if self.val_synthesis is not None:
            # The fakes it was fitted on are pseudo-fakes, not the data set's manipulations.
            calibration["fitted_on"]["fakes"] = f"synthesised from the val split's real faces: {list(self.synthesis.methods)}"
        path = self.ckpt_dir / "best.ckpt"
        save_checkpoint({**load_checkpoint(path), "calibration": calibration}, path)
        log.info("best.ckpt calibration fitted on %d validation %s: %s", calibration["fitted_on"]["n_videos"],
                 calibration["fitted_on"].get("items", "videos"), maps_summary(calibration))
        held = calibration["held_out"]
        for level in ("frame", "video") if held and not self.val_stills else ("frame",) if held else ():
            log.info("cross-fitted %s ECE %.4f -> %.4f, log loss %.4f -> %.4f", level, held["before"][level]["ece"],
                     held["after"][level]["ece"], held["before"][level]["log_loss"], held["after"][level]["log_loss"])
        return calibration


def media_of(*tables: pd.DataFrame) -> str:
    """'stills', 'videos' or 'videos and stills': items of one frame row are stills."""
    counts = pd.concat([t.groupby("video_id").size() for t in tables if len(t)]) if any(len(t) for t in tables) \
        else pd.Series(dtype=int)
    several, single = int((counts > 1).sum()), int((counts == 1).sum())
    return "videos and stills" if several and single else "videos" if several else "stills"


def stills_only(table: pd.DataFrame) -> bool:
    """Whether every item of a frame table is a single frame (a set of still images)."""
    return len(table) > 0 and bool((table.groupby("video_id").size() == 1).all())


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def _count_by_method(table: pd.DataFrame) -> dict:
    return {str(k): int(v) for k, v in table.groupby("method").size().items()}


def build_datasets(cfg: DictConfig, input_spec: dict, synthesis=None, val_synthesis=None,
                   targets: tuple[str, ...] = ()) -> tuple:
    """Training and validation sets of `data.level`, and the preprocessing record for checkpoints.

    Face level: `synthesis` adds pseudo-fakes of the real training faces (`val_synthesis` of the
    validation ones), `targets` names what the model trains on beyond labels ("mask").

    The record holds `level`, the face spec and detector (face level) or the ImageSpec (image
    level), `frames_per_video_eval`, and `index_meta` (popped by the Trainer).
    """
    aug = OmegaConf.to_container(cfg.augment, resolve=True)
    size, mean, std = input_spec["input_size"], input_spec["mean"], input_spec["std"]
    resize = resize_method(input_spec)  # the model's recorded resize, used wherever it is fed
    level = str(cfg.data.get("level", "face"))
    if level == "image":
        if synthesis is not None:
            raise ValueError("synthesis= makes face-level pseudo-fakes; the image level has its own pasted-region "
                             "synthesis (image.synthesis)")
        image_cfg = cfg.image
        spec = image_spec_from_config(cfg, size)
        n_frames = int(image_cfg.frames_per_video)
        table, index_meta = load_image_table(cfg.data.index_path, n_frames)
        # The crop is already the model's input size: the transform's resize is then a no-op.
        train_set = ImageCropDataset(table, cfg.data.root, train_transform(spec.tile_size, mean, std, aug, resize), spec,
                                     split="train", crops_per_item=int(image_cfg.crops_per_item), seed=int(cfg.seed),
                                     frames_per_video=n_frames, fake_crop=str(image_cfg.fake_crop),
                                     synthesis=OmegaConf.to_container(image_cfg.synthesis, resolve=True))
        val_set = ImageTileDataset(table, cfg.data.root, spec, input_spec, split="val", frames_per_video=n_frames)
        preprocessing = {"level": "image", "image": spec.to_dict(), "face": None, "detector": None,
                         "frames_per_video_eval": n_frames,
                         "synthesis": OmegaConf.to_container(image_cfg.synthesis, resolve=True)}
        what = f"images or frames in {cfg.data.index_path}"
    else:
        faces, index_meta, manifest_meta = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
        face_spec = PreprocessSpec.from_dict(manifest_meta.get("spec", {}))
        # Refuses (literature recipe) or warns when the crops are not what the model needs.
        crop_check = check_face_crops(face_spec.to_dict(), int(size), _required_face(cfg), _literature(cfg),
                                      (cfg.get("recipe") or {}).get("name"), str(cfg.data.manifest_path))
        # What the model asks of the data: blending masks as targets, clips instead of frames.
        common = {"crop_spec": face_spec, "clip_length": input_spec.get("clip_length")}
        train_set = FaceCropDataset(faces, cfg.data.faces_dir, train_transform(size, mean, std, aug, resize), split="train",
                                    frames_per_video=cfg.loader.frames_per_video, seed=cfg.seed,
                                    synthesis=synthesis, masks="mask" in targets, **common)
        val_set = FaceCropDataset(faces, cfg.data.faces_dir, eval_transform(size, mean, std, resize), split="val",
                                  seed=cfg.seed, synthesis=val_synthesis, **common)
        preprocessing = {"level": "face", "face": face_spec.to_dict(), "detector": manifest_meta.get("detector", {}),
                         "frames_per_video_eval": face_spec.frames_per_video, "crop_check": crop_check}
        what = f"face crops in {cfg.data.manifest_path}"
    # What the items were: a set of stills is recorded as such, not with a frames-per-video figure
    # that never applied to it (a video given to the model later is still sampled at that figure).
    preprocessing["trained_media"] = media_of(train_set.table, val_set.table)
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"need {level}-level items in both train and val splits; found {len(train_set)} train and "
                         f"{len(val_set)} val {what}")
    return train_set, val_set, {**preprocessing, "index_meta": index_meta}


def _required_face(cfg: DictConfig) -> dict | None:
    """The face crop the run's recipe names (configs/face/), or None."""
    face = cfg.get("face")
    return OmegaConf.to_container(face, resolve=True) if face else None


def _literature(cfg: DictConfig) -> bool:
    return bool((cfg.get("recipe") or {}).get("literature", False))


class _NoLogger:
    """What ranks other than 0 log to: nothing."""

    def log(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _monitor_value(report: dict, monitor: str) -> float | None:
    # monitor like "val/video_auc" -> report["video"]["auc"]
    level, name = monitor.split("/", 1)[1].split("_", 1)
    value = report[level][name]
    return None if value is None else float(value)


def _flat_val(report: dict) -> dict:
    out = {}
    for level in ("frame", "video"):
        for k in ("auc", "ap", "eer", "accuracy@0.5", "log_loss", "n"):
            out[f"val/{level}_{k}"] = report[level][k]
    return out


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def train(cfg: DictConfig) -> dict:
    """Entry point used by train.py: build everything from the config and run the loop."""
    trainer = Trainer(cfg)
    try:
        return trainer.fit_loop()
    finally:
        shutdown_distributed()
