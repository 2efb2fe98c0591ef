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
from tqdm import tqdm

from faketrace.datasets.frames import FaceCropDataset, load_face_table
from faketrace.datasets.image_pipeline import ImageSpec
from faketrace.datasets.images import ImageCropDataset, ImageTileDataset, load_image_table
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
from faketrace.engine.distributed import init_distributed, shutdown_distributed
from faketrace.engine.inference import make_loader, resolve_device, resolve_num_workers, score_frames
from faketrace.engine.loggers import MetricsFile
from faketrace.engine.optim import SAM, build_param_groups
from faketrace.engine.recipes import check_face_crops
from faketrace.engine.sample_size import selection_record
from faketrace.models.spec import (
    ClipSpec,
    DomainSpec,
    InputSpec,
    ModelSpec,
    TrainingSpec,
    VideoSpec,
    face_spec_from_pipeline,
)

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


# torch.compile modes that replay the compiled step as CUDA graphs (on a GPU).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def speed_settings(cfg: DictConfig, device: torch.device) -> dict:
    """What the run trades between speed and repeatability, resolved for this device; checkpoints store it.

    `trainer.deterministic` asks PyTorch for deterministic algorithms (warning where none exists);
    `trainer.cudnn_benchmark` auto lets cuDNN time and pick its fastest kernels exactly when
    determinism is off, on a GPU (the choice can differ run to run, and so can the results).
    """
    t = cfg.trainer
    deterministic = bool(t.deterministic)
    bench = t.get("cudnn_benchmark", "auto")
    cudnn_benchmark = device.type == "cuda" and (not deterministic if str(bench) == "auto" else bool(bench))
    mode = t.get("compile_mode")
    if mode is not None and str(mode) not in ("default", *CUDA_GRAPH_MODES, "max-autotune-no-cudagraphs"):
        raise ValueError(f"trainer.compile_mode must be null, default, reduce-overhead, max-autotune or "
                         f"max-autotune-no-cudagraphs; got {mode!r}")
    drop_last = cfg.loader.get("drop_last", False)
    return {"deterministic": deterministic, "cudnn_benchmark": cudnn_benchmark, "compile": bool(t.compile),
            "compile_mode": None if mode is None else str(mode),
            # A compiled step meets each new batch shape with another compilation (another CUDA
            # graph): auto drops the epoch's last, partial batch exactly then.
            "drop_last": bool(t.compile) if str(drop_last) == "auto" else bool(drop_last),
            "num_workers": resolve_num_workers(cfg.loader.num_workers),
            "note": "deterministic algorithms: repeated runs on one machine agree bit for bit on CPU"
                    if deterministic else "fast path (trainer.deterministic=false): repeated runs agree within "
                                          "noise, not bit for bit"}


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


def image_spec_from_config(cfg: DictConfig, input_size: int) -> ImageSpec:
    """The ImageSpec of a training run: `image.tile_size` null means the model's input size."""
    c = cfg.image
    tile = int(c.tile_size or input_size)
    if tile != int(input_size):
        log.warning("image.tile_size %d differs from the model's input size %d: every crop is resampled, which "
                    "changes the native-resolution traces image-level models look for", tile, input_size)
    return ImageSpec(tile_size=tile, stride=c.stride, aggregation=c.aggregation, resize=c.resize, crop=c.crop)


def casework_fitness(cfg: DictConfig, synthetic: bool) -> tuple[bool, str]:
    """Fit for casework only when validated on real data; never when the index says its media are synthetic."""
    if synthetic:  # the demo, its shifted domain and the image-level demo write synthetic: true
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
        # Deterministic algorithms by default (CPU runs repeat bit for bit); the literature experiments
        # turn them off for speed on a GPU, and let cuDNN pick its fastest kernels (recorded in checkpoints).
        self.speed = speed_settings(cfg, self.device)
        torch.use_deterministic_algorithms(self.speed["deterministic"], warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.speed["cudnn_benchmark"]
        if not self.speed["deterministic"]:
            log.info("trainer.deterministic=false: the fast path; repeated runs agree within noise, not bit for bit")
        seed_everything(int(cfg.seed))

        self.level = str(cfg.data.get("level", "face"))
        if self.level not in ("face", "image"):
            raise ValueError(f"data.level must be face or image, got {self.level!r}")
        self.model = instantiate(cfg.model).to(self.device)
        # Same initial weights everywhere (seed), then a different stream per rank (seed + rank).
        seed_everything(int(cfg.seed) + self.dist.rank)
        # auto: on a GPU only. true also on a CPU, where oneDNN's NHWC convolutions ran ResNet-18
        # training about 15 % faster on 2 cores (ResNet-18, 128 px, batch 32: 46 -> 54 images/s).
        channels_last = cfg.trainer.channels_last
        self.channels_last = channels_last is True or (channels_last == "auto" and self.device.type == "cuda")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Pseudo-fakes from real faces (configs/synthesis/); validation uses them too when asked,
        # so that model selection never sees the data set's own manipulations.
        self.synthesis = instantiate(cfg.synthesis) if cfg.get("synthesis") else None
        self.val_synthesis = (self.synthesis if self.synthesis is not None
                              and self.synthesis.validate_on == "synthetic" else None)
        self.train_set, self.val_set, self.spec, records = build_datasets(
            cfg, self.model.input_spec(), clip_length=self.model.clip_length, synthesis=self.synthesis,
            val_synthesis=self.val_synthesis, targets=self.model.targets)
        self.index_meta, self.crop_check = records["index_meta"], records["crop_check"]
        if self.synthesis is not None:
            log.info("synthesis %s: train %s, val %s", list(self.synthesis.methods),
                     _count_by_method(self.train_set.table), _count_by_method(self.val_set.table))
        per_rank, batch_size = math.ceil(len(self.train_set) / self.dist.world_size), int(cfg.loader.batch_size)
        self.batches_per_epoch = per_rank // batch_size if self.speed["drop_last"] else math.ceil(per_rank / batch_size)
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
        if self.speed["compile"]:
            # Compiles the forward pass (inductor); weights stay shared with self.model. The mode
            # "reduce-overhead" replays the step's kernels as CUDA graphs (no launch cost per kernel).
            self.forward_model = torch.compile(self.model, mode=self.speed["compile_mode"])
        self.cuda_graphs = self.speed["compile"] and self.speed["compile_mode"] in CUDA_GRAPH_MODES \
            and self.device.type == "cuda"
        # StepTimer (engine/step_timing.py) of the benchmark's breakdown pass; None in training.
        self.step_timer = None
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
        self.fit, self.fit_reason = casework_fitness(cfg, bool(self.index_meta.get("synthetic")))
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
            # How to rebuild the network, and what it looks at (models/spec.py).
            "architecture": {"target": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
                             "family": self.model.family, "backbone": self.model.backbone_name,
                             "init": OmegaConf.to_container(self.cfg.model, resolve=True)},
            "spec": self.spec.to_dict(),
            "crop_check": self.crop_check,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "global_step": self.global_step,
            "best_score": float(self.best_score), "monitor": self.cfg.monitor,
            "config": cfg_yaml,
            "calibration": {"method": "none", "temperature": 1.0,
                            "note": "uncalibrated: probabilities are sigmoid(logit)"},
            "metrics": {"val": val_report, "best_val": self.best_metrics},
            "selection": self.selection,
            # The training domain (media, faces) is the spec's `domain`: one record, not two.
            "data": {"name": self.cfg.data.name, "index_meta": {"synthetic": bool(self.index_meta.get("synthetic"))}},
            "versions": versions(), "git_sha": git_sha(),
            "fit_for_casework": self.fit, "casework_note": self.fit_reason,
            "rng": rng_state(),
            # How fast and how repeatable the run was set to be (the resolved config has the same values).
            "speed": self.speed,
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
    def _phase(self, name: str):
        """A phase of the step for the benchmark's breakdown; a no-op in training."""
        return nullcontext() if self.step_timer is None else self.step_timer.phase(name)

    def _forward_loss(self, batch: dict, scale: float) -> torch.Tensor:
        with self._phase("h2d"):
            # One copy of each tensor; non-blocking, so from the loader's pinned memory it overlaps the GPU.
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            images = batch["image"]
            if self.channels_last and images.ndim == 4:
                images = images.contiguous(memory_format=torch.channels_last)
        with self._phase("forward"):
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with autocast_context(self.device, self.precision):
                outputs = self.forward_model(images, with_aux=True)
            return self.model.loss(outputs, batch) * scale

    def _backward(self, window: list[dict], scaler) -> torch.Tensor:
        """Gradients of the mean loss over all samples of the window (equal to one big batch).

        Returns the window's loss as a tensor on the device: reading it (`.item()`) would make the
        host wait for the GPU every step, so the loop reads it only where it logs.
        """
        total = sum(len(w["image"]) for w in window)
        loss_sum = None
        for i, w in enumerate(window):
            # Under DDP, gradients are averaged across ranks once, on the window's last micro-batch.
            sync = not self.dist.enabled or i == len(window) - 1
            with nullcontext() if sync else self.forward_model.no_sync():
                loss = self._forward_loss(w, len(w["image"]) / total)
                with self._phase("backward"):
                    (scaler.scale(loss) if scaler is not None else loss).backward()
            # A copy, not the output itself: a CUDA-graph replay of the next step overwrites that.
            loss_sum = loss.detach().float().clone() if loss_sum is None else loss_sum + loss.detach().float()
        return loss_sum

    def optimizer_step(self, window: list[dict], scaler=None) -> torch.Tensor:
        """One optimiser step over a window of micro-batches (gradient accumulation), SAM-aware.

        Returns the window's mean loss as a 0-d tensor on the device (`float()` it to read it).
        """
        self.model.train()
        with self._phase("optimizer"):
            self.optimizer.zero_grad(set_to_none=True)
        loss = self._backward(window, scaler)
        clip = self.cfg.trainer.grad_clip
        if isinstance(self.optimizer, SAM):
            with self._phase("optimizer"):
                if clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
                self.optimizer.first_step()
                self.optimizer.zero_grad(set_to_none=True)
            self._backward(window, scaler)
            with self._phase("optimizer"):
                if clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
                self.optimizer.second_step()
        else:
            with self._phase("optimizer"):
                if scaler is not None:
                    scaler.unscale_(self.optimizer)
                if clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
                if scaler is not None:
                    scaler.step(self.optimizer)
                    scaler.update()
                else:
                    self.optimizer.step()
        with self._phase("optimizer"):
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
        self.global_step += 1
        return loss

    def run_steps(self, batches, n_batches: int, scaler=None, epoch: int = 0, logger=None, bar=None) -> dict:
        """The training loop over up to `n_batches` batches: steps, logging; what fit_loop runs each epoch.

        The loss stays on the device: its running sum is read once per log point
        (`trainer.log_every_n_steps`) and once at the end, never per step.
        """
        log_every = int(self.cfg.trainer.log_every_n_steps)
        t0, seen, steps = time.perf_counter(), 0, 0
        loss_sum = torch.zeros((), device=self.device)
        window: list[dict] = []
        batches = iter(batches)
        for b in range(n_batches):
            with self._phase("data"):  # only the batches used are fetched: the caller's iterator goes on
                batch = next(batches, None)
            if batch is None:
                break
            window.append(batch)
            if len(window) < self.accumulate and b + 1 < n_batches:
                continue
            loss = self.optimizer_step(window, scaler)
            seen += sum(len(w["image"]) for w in window)
            window = []
            loss_sum += loss
            steps += 1
            if self.global_step % log_every == 0:
                with self._phase("host_sync"):
                    value = float(loss)
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    if bar is not None:
                        bar.set_postfix(loss=f"{value:.4f}", img_s=f"{rate:.0f}", refresh=False)
                    if logger is not None:
                        logger.log({"step": self.global_step, "epoch": epoch + 1, "train/loss": value,
                                    "lr": self.optimizer.param_groups[0]["lr"], "train/images_per_s": rate})
            if self.step_timer is not None:
                self.step_timer.end_step()
        return {"seen": seen, "steps": steps, "seconds": time.perf_counter() - t0,
                "loss_mean": float(loss_sum) / steps if steps else None}

    def train_loader(self, seed: int):
        """The training loader of one epoch (`seed`), with the run's loader settings."""
        cfg = self.cfg
        return make_loader(self.train_set, cfg.loader.batch_size, self.speed["num_workers"], shuffle=True, seed=seed,
                           balanced=bool(cfg.loader.balanced), rank=self.dist.rank, world_size=self.dist.world_size,
                           pin_memory=self.device.type == "cuda", prefetch_factor=cfg.loader.get("prefetch_factor"),
                           drop_last=self.speed["drop_last"])

    def validate(self) -> tuple[dict, pd.DataFrame]:
        evaluated = self.ema.module if self.ema is not None else self.model
        table = score_frames(evaluated, self.val_set, self.cfg.loader.batch_size, self.speed["num_workers"],
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
            loader = self.train_loader(int(cfg.seed) * 100_003 + epoch)
            # Epochs are counted from 1 wherever a person reads them (log, metrics rows, checkpoint).
            bar = tqdm(loader, total=self.batches_per_epoch, desc=f"epoch {epoch + 1}/{cfg.trainer.max_epochs}",
                       unit="batch", leave=False,
                       disable=not cfg.trainer.progress_bar, mininterval=1.0)
            done = self.run_steps(bar, self.batches_per_epoch, scaler, epoch, logger, bar)
            bar.close()
            self.epoch = epoch + 1
            val_report, val_table = self.validate()
            score = _monitor_value(val_report, cfg.monitor)
            improved = score is not None and score > self.best_score
            row = {"step": self.global_step, "epoch": epoch + 1, "train/loss_epoch": done["loss_mean"],
                   "train/images_per_s": done["seen"] / max(done["seconds"], 1e-9), **_flat_val(val_report)}
            if improved and score > self.best_score + float(cfg.trainer.early_stopping.min_delta):
                self.epochs_without_improvement = 0
            else:
                self.epochs_without_improvement += 1
            if improved:
                self.best_score = float(score)
                self.best_metrics = val_report
                self.best_val_table = val_table
            logger.log(row)
            val_media = media_of(val_table)
            self.val_stills = val_media == "stills"
            if improved:
                self.selection = selection_record(val_report, cfg.monitor, val_media)
                if self.selection["warning"] and not self.selection_warned:
                    log.warning("%s", self.selection["warning"])
                    self.selection_warned = True
            item = "image" if self.level == "image" or self.val_stills else "video"
            aucs = f"val {item} AUC {_fmt(val_report['video']['auc'])}" + (
                "" if self.level == "image" else f", frame AUC {_fmt(val_report['frame']['auc'])}")
            log.info("epoch %d/%d: loss %.4f, %s%s", epoch + 1, cfg.trainer.max_epochs, row["train/loss_epoch"] or 0,
                     aucs, " (best)" if improved else "")
            if self.dist.is_main:
                payload = self._payload(val_report)
                save_checkpoint(payload, self.ckpt_dir / "last.ckpt")
                if improved:
                    save_checkpoint(payload, self.ckpt_dir / "best.ckpt")
            self.dist.barrier()
            patience = cfg.trainer.early_stopping.patience
            if patience is not None and self.epochs_without_improvement >= int(patience):
                log.info("early stopping after epoch %d: %s did not improve for %d epochs", epoch + 1, cfg.monitor,
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


# media_of's words as the spec's domain.media.
MEDIA_OF = {"stills": ("still",), "videos": ("video",), "videos and stills": ("still", "video")}


def media_of(*tables: pd.DataFrame) -> str:
    """'stills', 'videos' or 'videos and stills': items of one frame row are stills."""
    counts = pd.concat([t.groupby("video_id").size() for t in tables if len(t)]) if any(len(t) for t in tables) \
        else pd.Series(dtype=int)
    several, single = int((counts > 1).sum()), int((counts == 1).sum())
    return "videos and stills" if several and single else "videos" if several else "stills"


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def _count_by_method(table: pd.DataFrame) -> dict:
    return {str(k): int(v) for k, v in table.groupby("method").size().items()}


def build_datasets(cfg: DictConfig, input_spec: InputSpec, clip_length: int = 1, synthesis=None, val_synthesis=None,
                   targets: tuple[str, ...] = ()) -> tuple:
    """Training and validation sets of `data.level`, the model spec they define, and the training records.

    The records: `index_meta` (the index's metadata, popped by the Trainer) and `crop_check` (face
    level: how the manifest's crops fit the model and the recipe; None at image level).

    Face level: `synthesis` adds pseudo-fakes of the real training faces (`val_synthesis` of the
    validation ones), `targets` names what the model trains on beyond labels ("mask"), and a
    `clip_length` above 1 makes every sample a clip of consecutive crops (the clip level).
    """
    aug = OmegaConf.to_container(cfg.augment, resolve=True)
    size, mean, std, interp = input_spec.side, input_spec.mean, input_spec.std, input_spec.interpolation
    level = str(cfg.data.get("level", "face"))
    if level == "image":
        if synthesis is not None:
            raise ValueError("synthesis= makes face-level pseudo-fakes; the image level has its own pasted-region "
                             "synthesis (image.synthesis)")
        image_cfg = cfg.image
        spec = image_spec_from_config(cfg, size)
        n_frames = int(image_cfg.frames_per_video)
        table, index_meta = load_image_table(cfg.data.index_path, n_frames)
        crop_check = None
        # The crop is already the model's input size: the transform's resize is then a no-op.
        train_set = ImageCropDataset(table, cfg.data.root, train_transform(spec.tile_size, mean, std, aug, interp),
                                     spec, split="train", crops_per_item=int(image_cfg.crops_per_item),
                                     seed=int(cfg.seed), frames_per_video=n_frames, fake_crop=str(image_cfg.fake_crop),
                                     synthesis=OmegaConf.to_container(image_cfg.synthesis, resolve=True))
        val_set = ImageTileDataset(table, cfg.data.root, spec, input_spec, split="val", frames_per_video=n_frames)
        sections = {"level": "image", "image": spec,
                    "video": VideoSpec(frames_per_video=n_frames, rule=str(cfg.aggregation))}
        what = f"images or frames in {cfg.data.index_path}"
    else:
        faces, index_meta, manifest_meta = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
        face_spec = PreprocessSpec.from_dict(manifest_meta.get("spec", {}))
        # Refuses (literature recipe) or warns when the crops are not what the model needs.
        crop_check = check_face_crops(face_spec.to_dict(), int(size), _required_face(cfg), _literature(cfg),
                                      (cfg.get("recipe") or {}).get("name"), str(cfg.data.manifest_path))
        # What the model asks of the data: blending masks as targets, clips instead of frames.
        common = {"crop_spec": face_spec, "clip_length": clip_length if clip_length > 1 else None}
        train_set = FaceCropDataset(faces, cfg.data.faces_dir, train_transform(size, mean, std, aug, interp),
                                    split="train", crops_per_video=cfg.loader.crops_per_video, seed=cfg.seed,
                                    synthesis=synthesis, masks="mask" in targets, **common)
        val_set = FaceCropDataset(faces, cfg.data.faces_dir, eval_transform(size, mean, std, interp), split="val",
                                  seed=cfg.seed, synthesis=val_synthesis, **common)
        sections = {"level": "clip" if clip_length > 1 else "face",
                    "face": face_spec_from_pipeline(face_spec.to_dict(), manifest_meta.get("detector")),
                    "clip": ClipSpec(length=clip_length) if clip_length > 1 else None,
                    "video": VideoSpec(frames_per_video=face_spec.frames_per_video, rule=str(cfg.aggregation),
                                       sampling=face_spec.sampling,
                                       every_k=face_spec.every_k if face_spec.sampling == "every_k" else None)}
        what = f"face crops in {cfg.data.manifest_path}"
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"need {level}-level items in both train and val splits; found {len(train_set)} train and "
                         f"{len(val_set)} val {what}")
    methods = sorted({str(m) for m in train_set.table["method"].unique()} - {"real"})
    trained_on = TrainingSpec(datasets=(str(cfg.data.name),), methods=tuple(methods),
                              synthetic=bool(index_meta.get("synthetic")))
    # What the items were: a set of stills is recorded as such, not with a frames-per-video figure
    # that never applied to it (a video given to the model later is still sampled at that figure).
    # The media are what the split held; whether they showed faces and their description come from
    # the data option's `domain` (configs/data/*.yaml), which the scan's in-domain rule reads.
    declared = cfg.data.get("domain") or {}
    domain = DomainSpec(media=MEDIA_OF[media_of(train_set.table, val_set.table)], faces=declared.get("faces"),
                        notes=str(declared.get("description") or ""))
    spec = ModelSpec(input=input_spec, trained_on=trained_on, domain=domain, **sections)
    return train_set, val_set, spec, {"index_meta": index_meta, "crop_check": crop_check}


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
