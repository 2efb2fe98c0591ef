"""Re-render the case report of a finished scan: `python scripts/report.py case_dir=...`
(installed as `faketrace-report case_dir=...`).

Settings: configs/case_report.yaml and configs/report/default.yaml (docs/report.md).
"""

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="case_report")
def main(cfg: DictConfig) -> dict:
    from faketrace.forensics.cli import run_report

    return run_report(cfg)


if __name__ == "__main__":
    main()
