"""Distributed data parallel helpers for `torchrun --nproc_per_node=N train.py ...`.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; the same code runs single-process without them.
CPU runs use the gloo backend, GPU runs NCCL. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_gather(self, obj):
        """A list with every rank's `obj` (rank order); [obj] when single-process."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def _export_slurm_environment() -> None:
    """Inside a multi-task SLURM job launched by submitit, set the variables torchrun would set."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        return
    TorchDistributedEnvironment().export()


def init_distributed(device_type: str) -> DistContext:
    _export_slurm_environment()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    ctx = DistContext(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                      world_size=dist.get_world_size())
    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    return ctx


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def run_stamp() -> str:
    """The run directory's name, the same on every rank of one torchrun launch.

    Hydra fixes the run directory in each worker before any process group exists, so the
    name cannot be a per-process clock reading: under torchrun it is the rendezvous id (or the
    launching agent's pid, which every local worker shares).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        return f"torchrun_{run_id if run_id not in ('', 'none') else f'agent{os.getppid()}'}"
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_stamp"):
        OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True)
    if not OmegaConf.has_resolver("root_key"):
        from faketrace.datasets.io import root_key

        # configs/data/*.yaml: derived_dir = <data_dir>/derived/<root's name>-<hash of its path>
        OmegaConf.register_new_resolver("root_key", root_key)
