"""Mean and standard deviation over a sweep's runs (e.g. seeds) on validation and test.

`python scripts/summarize_runs.py sweep_dir=outputs/train/multiruns/<stamp>`
"""

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="summarize_runs")
def main(cfg: DictConfig) -> None:
    from faketrace.engine.sweeps import summarize_runs

    result = summarize_runs(cfg)
    for name, s in result["summary"].items():
        if name.endswith("video_auc"):
            std = "n/a" if s["std"] is None else f"{s['std']:.4f}"
            print(f"{name:<22} mean {s['mean']:.4f}  std {std}  over {s['n_runs']} runs")
    print(f"summary: {cfg.paths.output_dir}/summary.json")


if __name__ == "__main__":
    main()
