"""Robustness sweep: `python scripts/robustness.py ckpt_path=... [distortions=...]`.

Writes robustness.csv, .json, .md and robustness.png in the run directory (configs/robustness.yaml).
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="robustness")
def main(cfg: DictConfig) -> None:
    from faketrace.engine.robustness import robustness_sweep

    robustness_sweep(cfg)
    print((Path(cfg.paths.output_dir) / "robustness.md").read_text())
    print(f"sweep: {cfg.paths.output_dir}/robustness.csv (.json, .md, .png)")


if __name__ == "__main__":
    main()
