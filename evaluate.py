"""Evaluate a checkpoint, or scan evidence with one.

Metrics (docs/evaluation.md):  python evaluate.py ckpt_path=... [data=...] [split=test] [compare_with=...]
Evidence scan (docs/scan.md):  python evaluate.py mode=scan inputs=[...] ckpt_path=... case.id=... case.operator=...
Settings: configs/evaluate.yaml and configs/mode/.
"""

import sys

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers
from faketrace.forensics.discover import register_case_resolver

register_resolvers()
register_case_resolver()


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> dict:
    if cfg.mode_name == "scan":
        from faketrace.forensics.scan import format_summary, scan_from_config

        summary = scan_from_config(cfg)
        print(format_summary(summary))
        print(f"case: {cfg.paths.output_dir} (scan_results.jsonl, scan_summary.json, custody.json)")
        if summary["exit_status"]:
            sys.exit(summary["exit_status"])
        return summary

    from faketrace.engine.evaluate import evaluate_checkpoint, format_table

    result = evaluate_checkpoint(cfg)
    print(format_table(result))
    print(f"metrics: {cfg.paths.output_dir}/metrics.json (summary.md, metrics.csv, plots)")
    return result


if __name__ == "__main__":
    main()
