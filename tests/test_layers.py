"""The import direction of DESIGN.md section 2, checked on the source (no imports run).

entry scripts -> engine/ and forensics/ -> models/ and datasets/; models/ never imports datasets/
(except the model contract's home, models/spec.py, which datasets/ may import: it is pure Python);
neither imports engine/ or forensics/; engine/ never imports forensics/; the analyst path
(forensics/) loads and runs models through engine/inference.py, never through the training loop
or the research evaluation module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .conftest import REPO

PACKAGES = ("datasets", "models", "engine", "forensics")


def imports(package: str) -> dict[str, set[str]]:
    """{module file: the faketrace modules it imports, at any depth (inside functions too)}."""
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("faketrace."):
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("faketrace."))
        out[path.relative_to(REPO).as_posix()] = names
    return out


def offenders(package: str, forbidden) -> list[str]:
    return [f"{f} imports {m}" for f, mods in imports(package).items() for m in sorted(mods) if forbidden(m)]


def test_models_import_neither_data_nor_engine_nor_forensics():
    assert offenders("models", lambda m: m.split(".")[1] in ("datasets", "engine", "forensics")) == []


def test_datasets_import_only_the_model_contract_from_models_and_nothing_above():
    def forbidden(m):
        top = m.split(".")[1]
        return top in ("engine", "forensics") or (top == "models" and not m.startswith("faketrace.models.spec"))

    assert offenders("datasets", forbidden) == []


def test_engine_never_imports_forensics():
    assert offenders("engine", lambda m: m.split(".")[1] == "forensics") == []


def test_the_scan_loads_models_through_inference_not_training_or_evaluation():
    banned = ("faketrace.engine.train", "faketrace.engine.evaluate")
    assert offenders("forensics", lambda m: m.startswith(banned)) == []
    # ...and inference itself stands below the loop and the evaluation.
    inference = imports("engine")["engine/inference.py"]
    assert not {m for m in inference if m.startswith(banned)}


def test_no_package_imports_an_entry_script():
    scripts = {p.stem for p in (REPO / "scripts").glob("*.py")} | {"train", "evaluate"}
    for package in PACKAGES:
        assert offenders(package, lambda m: m.split(".")[1] in scripts and m.split(".")[1] not in PACKAGES) == []
    assert Path(REPO / "engine" / "inference.py").is_file()


def test_the_report_and_the_scan_do_not_import_each_other():
    """The scan calls the report at the end of a run; what both need (clock, hashing, the offline
    guard, the tool version) lives below them in forensics/custody.py."""
    report = imports("forensics")["forensics/report.py"]
    assert not {m for m in report if m.startswith("faketrace.forensics.scan")}


def test_generic_code_tests_no_data_set_name():
    """Whether media are synthetic is the index's `synthetic` flag, not a name starting with "demo"."""
    pattern = re.compile(r"""(startswith\(\s*["']demo|==\s*["']demo["']|["']demo["']\s*==)""")
    hits = [f"{p.relative_to(REPO)}:{i}" for package in ("engine", "forensics", "models")
            for p in sorted((REPO / package).rglob("*.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_casework_fitness_follows_the_index_synthetic_flag_not_the_name():
    from omegaconf import OmegaConf

    from faketrace.engine.train import casework_fitness

    cfg = OmegaConf.create({"data": {"name": "ffpp"}, "casework": {"validated_on_real_data": True}})
    assert casework_fitness(cfg, synthetic=True)[0] is False
    assert casework_fitness(cfg, synthetic=False) == (True, "validated on real data by the operator of this run")
    named_demo = OmegaConf.create({"data": {"name": "demo"}, "casework": {"validated_on_real_data": True}})
    assert casework_fitness(named_demo, synthetic=False)[0] is True  # the name alone decides nothing
