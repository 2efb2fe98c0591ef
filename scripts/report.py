"""Re-render the case report of a finished scan: `python scripts/report.py case_dir=...`.

Settings: configs/case_report.yaml and configs/report/default.yaml (docs/report.md).
"""

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="case_report")
def main(cfg: DictConfig) -> dict:
    from faketrace.forensics.report import format_report, report_from_config

    report = report_from_config(cfg)
    print(format_report(report, cfg.case_dir))
    return report["summary"]


if __name__ == "__main__":
    main()
