"""Evaluate a checkpoint: `python evaluate.py ckpt_path=... [data=...] [split=test] [compare_with=...]`.

Metrics, intervals and plots are defined in docs/evaluation.md; settings in configs/evaluate.yaml.
"""

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> dict:
    from faketrace.engine.evaluate import evaluate_checkpoint, format_table

    result = evaluate_checkpoint(cfg)
    print(format_table(result))
    print(f"metrics: {cfg.paths.output_dir}/metrics.json (summary.md, metrics.csv, plots)")
    return result


if __name__ == "__main__":
    main()
