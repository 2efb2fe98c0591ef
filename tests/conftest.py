"""Shared fixtures: a small demo data set made by the real generator and face pipeline, once.

Tests compose the real Hydra configs (compose API) and override only sizes and paths.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from faketrace.engine.distributed import register_resolvers

register_resolvers()
REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# Small enough for seconds, big enough for every split to hold real and fake videos of each operator.
SMALL_DEMO = [
    "data.generator.identities=10",
    "data.generator.frames_per_video=6",
    "data.generator.frame_size=160",
    "data.generator.real_videos_per_identity=1",
]


def compose_config(config_name: str, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose a real config as Hydra would, with the run directory set to `output_dir`."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    if output_dir is None:
        output_dir = Path(tempfile.mkdtemp(prefix=f"faketrace-{config_name}-"))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
    return cfg


def resolved(cfg: DictConfig) -> DictConfig:
    """Resolve everything except the hydra node (whose runtime values only exist in a real run)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    OmegaConf.resolve(cfg)
    return cfg


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> dict:
    """Generate and preprocess a small demo data set; return its paths and overrides."""
    from faketrace.datasets.demo import generate_demo
    from faketrace.datasets.preprocess import PreprocessSpec, preprocess_index

    root = tmp_path_factory.mktemp("data")
    overrides = [f"paths.data_dir={root}"]
    cfg = resolved(compose_config("demo_data", overrides + SMALL_DEMO))
    index = generate_demo(cfg.data.root, cfg.data.index_path, int(cfg.data.seed),
                          OmegaConf.to_container(cfg.data.generator))
    pcfg = resolved(compose_config("preprocess", overrides + ["face.frames_per_video=4", "face.crop_size=64"]))
    manifest = preprocess_index(index, pcfg.data.root, pcfg.data.faces_dir,
                                PreprocessSpec.from_dict(OmegaConf.to_container(pcfg.face)), pcfg.data.manifest_path)
    return {"root": root, "overrides": overrides, "index": index, "manifest": manifest, "cfg": cfg,
            "data_overrides": overrides + SMALL_DEMO}


@pytest.fixture(autouse=True, scope="session")
def _quiet_env():
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    yield
