"""The analyst's console commands, installed into the environment's bin/ by pyproject.toml:

    faketrace-scan inputs=[...] model_dir=... case.id=... case.operator=...   (= evaluate.py mode=scan)
    faketrace-report case_dir=...                                             (= scripts/report.py)
    faketrace-predict EXPORT_DIR FILES_OR_FOLDERS [--allow-unvalidated]       (= scripts/predict.py)

They read the configs installed with the package, so they run from any directory. Commands that
faketrace prints for a user to run next are written with `command()`, which names the console
script of the environment that is running (e.g. `.venv/bin/faketrace-report`), so that they run
as printed whether or not that environment is activated.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def configs_dir() -> str:
    """The installed configs folder (a data package without __init__.py, so not a pkg:// path)."""
    import importlib.util

    spec = importlib.util.find_spec("faketrace.configs")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("faketrace's configs are not installed: reinstall faketrace (make install)")
    return str(Path(next(iter(spec.submodule_search_locations))).resolve())


def command(script: str) -> str:
    """The console script `script` of the running environment, as a user can paste it here."""
    exe = Path(sys.executable).parent / script
    if not exe.exists():
        return script
    try:
        return shlex.quote(str(exe.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(exe))


def _app(config_name: str, body):
    import hydra

    from faketrace.engine.distributed import register_resolvers
    from faketrace.forensics.discover import register_case_resolver

    register_resolvers()
    register_case_resolver()
    return hydra.main(version_base="1.3", config_path=configs_dir(), config_name=config_name)(body)


def run_report(cfg) -> dict:
    from faketrace.forensics.report import format_report, report_from_config

    report = report_from_config(cfg)
    print(format_report(report, cfg.case_dir))
    return report["summary"]


def scan() -> None:
    from faketrace.forensics.guard import run_scan  # what evaluate.py mode=scan runs

    sys.argv.insert(1, "mode=scan")
    _app("evaluate", run_scan)()


def report() -> None:
    _app("case_report", run_report)()


def predict() -> None:
    from faketrace.forensics.predict import main

    sys.exit(main())
