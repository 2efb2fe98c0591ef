"""Evaluate a checkpoint, or scan evidence with one.

Metrics (docs/evaluation.md):  python evaluate.py ckpt_path=... [data=...] [split=test] [compare_with=...]
Evidence scan (docs/scan.md):  python evaluate.py mode=scan inputs=[...] ckpt_path=... case.id=... case.operator=...
Settings: configs/evaluate.yaml and configs/mode/.
"""

import sys

import hydra
from omegaconf import DictConfig, OmegaConf


def register() -> None:
    """Config resolvers. Called only when run as a script: the scan's decoder processes import this
    file as their main module (multiprocessing's spawn), and must not import torch with it (about
    0.5 GB resident each, counted against their memory cap)."""
    from faketrace.engine.distributed import register_resolvers
    from faketrace.forensics.discover import register_case_resolver

    register_resolvers()
    register_case_resolver()


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> dict:
    if cfg.mode_name == "scan":
        from faketrace.forensics.guard import run_scan  # also installed as faketrace-scan

        return run_scan(cfg)  # refusals and failures: one line and an exit status (forensics/guard.py)

    if OmegaConf.is_missing(cfg, "ckpt_path"):
        sys.exit("evaluate.py needs a model: ckpt_path=CHECKPOINT (e.g. outputs/demo/train/checkpoints/best.ckpt); "
                 "an evidence scan is mode=scan inputs=[...] with ckpt_path= or model_dir=EXPORT_FOLDER "
                 "(python evaluate.py --help lists every option)")
    from faketrace.engine.evaluate import evaluate_checkpoint, format_table

    result = evaluate_checkpoint(cfg)
    print(format_table(result))
    print(f"metrics: {cfg.paths.output_dir}/metrics.json (summary.md, metrics.csv, plots)")
    return result


if __name__ == "__main__":
    register()
    main()
