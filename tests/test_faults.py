"""Interrupted writes, made deterministic with the named fault points of every atomic write.

A checkpoint and a manifest are rewritten with a fault at each point of `datasets/io.atomic_path`
(after the temporary file is written, after its fsync, before the rename): raised, as a full disk
(ENOSPC), and as a kill (the process exits on the spot). The previous file must stay whole under
its name, and no half-written file may ever appear there.
"""

from __future__ import annotations

import errno
import os

import pandas as pd
import pytest
import torch

from faketrace.datasets.faults import (
    ATOMIC_WRITE_POINTS,
    FAULT_ENV,
    FAULT_EXIT_CODE,
    FAULT_POINTS,
    FaultInjector,
    FaultPlan,
    InjectedFault,
)
from faketrace.datasets.io import atomic_write_text
from faketrace.datasets.schema import read_manifest, write_manifest
from faketrace.engine.checkpoint import load_checkpoint, save_checkpoint
from faketrace.models.spec import ImageSpec, InputSpec, ModelSpec


def _checkpoint(version: int) -> dict:
    g = torch.Generator().manual_seed(version)
    # load_checkpoint validates the model spec: a minimal valid one, so the test reaches the file's content.
    spec = ModelSpec(level="image", input=InputSpec(size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3), image=ImageSpec())
    return {"model": {"w": torch.randn(64, 64, generator=g)}, "epoch": version, "spec": spec.to_dict()}


def _manifest(version: int) -> pd.DataFrame:
    n = 50 * version
    return pd.DataFrame({"video_id": [f"v{i % 7}" for i in range(n)], "frame_index": range(n),
                         "status": ["no_face"] * n, "n_faces": [0] * n})


def _write_checkpoint(path, version):
    save_checkpoint(_checkpoint(version), path)


def _read_checkpoint(path):
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["model"]["w"], _checkpoint(ckpt["epoch"])["model"]["w"])
    return ckpt["epoch"]


def _write_manifest(path, version):
    write_manifest(_manifest(version), path, {"version": version})


def _read_manifest(path):
    df, meta = read_manifest(path)
    assert len(df) == 50 * meta["version"]
    return meta["version"]


WRITERS = {"checkpoint": ("last.ckpt", _write_checkpoint, _read_checkpoint),
           "manifest": ("manifest.parquet", _write_manifest, _read_manifest)}


def _leftovers(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name != name)


@pytest.mark.parametrize("point", ATOMIC_WRITE_POINTS)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_raised_fault_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch, writer, point):
    name, write, read = WRITERS[writer]
    path = tmp_path / name
    write(path, 1)
    monkeypatch.setenv(FAULT_ENV, f"{point}/{name}:raise")
    with pytest.raises(InjectedFault, match=point):
        write(path, 2)
    assert read(path) == 1
    assert _leftovers(tmp_path, name) == []
    monkeypatch.delenv(FAULT_ENV)
    write(path, 2)  # and the next write goes through
    assert read(path) == 2


@pytest.mark.parametrize("point", ATOMIC_WRITE_POINTS)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_keeps_the_previous_file_and_says_what_failed(tmp_path, monkeypatch, writer, point):
    name, write, read = WRITERS[writer]
    path = tmp_path / name
    write(path, 1)
    monkeypatch.setenv(FAULT_ENV, f"{point}/{name}:enospc")
    with pytest.raises(OSError) as failed:
        write(path, 2)
    assert failed.value.errno == errno.ENOSPC
    assert str(path) in str(failed.value) and "previous version is kept" in str(failed.value)
    assert read(path) == 1 and _leftovers(tmp_path, name) == []


@pytest.mark.parametrize("point", ATOMIC_WRITE_POINTS)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_kill_at_each_point_keeps_the_previous_file(tmp_path, writer, point):
    """The writer's process ends at the point without any clean-up (os._exit, as a kill)."""
    name, write, read = WRITERS[writer]
    path = tmp_path / name
    write(path, 1)
    pid = os.fork()
    if pid == 0:  # the child: write version 2 and die at the point
        try:
            os.environ[FAULT_ENV] = f"{point}/{name}:exit"
            write(path, 2)
        finally:
            os._exit(1)  # not reached when the fault fires
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == FAULT_EXIT_CODE
    assert read(path) == 1
    # What the killed writer leaves is a temporary file under another name, never a torn final file.
    tmp = tmp_path / f".{name}.{pid}.tmp"
    assert _leftovers(tmp_path, name) == [tmp.name]
    # Complete at each of these points: only the rename was missing.
    assert read(tmp) == 2


def test_fault_plans_name_a_file_and_count_its_writes(tmp_path, monkeypatch):
    plan = FaultPlan.parse("atomic_before_rename/last.ckpt@2:pause")
    assert plan == FaultPlan("atomic_before_rename", 2, "pause", "last.ckpt")
    assert FaultPlan.parse("mid_manifest_flush@3") == FaultPlan("mid_manifest_flush", 3, "raise", None)
    assert set(ATOMIC_WRITE_POINTS) < set(FAULT_POINTS)
    assert {"after_crop_before_row", "mid_manifest_flush", "before_merge", "scan_before_item_stored"} < set(FAULT_POINTS)
    with pytest.raises(ValueError, match="unknown fault point"):
        FaultPlan.parse("atomic_after_nothing")
    monkeypatch.setenv(FAULT_ENV, "atomic_after_tmp_written/b.txt@2:raise")
    for i in range(3):
        atomic_write_text(tmp_path / "a.txt", str(i))  # another file: not counted
    atomic_write_text(tmp_path / "b.txt", "first")
    with pytest.raises(InjectedFault):
        atomic_write_text(tmp_path / "b.txt", "second")
    assert (tmp_path / "b.txt").read_text() == "first" and (tmp_path / "a.txt").read_text() == "2"


def test_an_atomic_write_point_in_a_runs_options_is_refused(monkeypatch):
    """Atomic-write points read FAKETRACE_FAULT; set in a config instead, they would never fire."""
    monkeypatch.delenv(FAULT_ENV, raising=False)
    with pytest.raises(ValueError, match="FAKETRACE_FAULT"):
        FaultInjector(FaultPlan("atomic_after_fsync"))
    monkeypatch.setenv(FAULT_ENV, "atomic_after_fsync")
    FaultInjector(FaultPlan("atomic_after_fsync"))  # the environment's own plan, passed along: fine


def test_a_full_case_store_names_the_item_and_keeps_every_stored_result(tmp_path):
    """SQLite's own full-disk error (SQLITE_FULL), from a page limit on the store's connection."""
    from faketrace.forensics.case_store import CaseStore, CaseStoreError

    store = CaseStore(tmp_path)
    session = store.start_session("2026-11-24T00:00:00Z", {"operator": "pytest"})
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 4}")
    stored = 0
    with pytest.raises(CaseStoreError) as full:
        for i in range(1000):
            store.put(f"0/item{i:04d}.jpg", i, {"status": "scanned", "sha256": f"{i:064d}", "pad": "x" * 1500},
                      session)
            stored += 1
    message = str(full.value)
    assert 0 < stored < 1000
    assert f"could not store the result of item 0/item{stored:04d}.jpg in {store.path}" in message
    assert "(the disk is full)" in message and f"the {stored} item results stored before are kept" in message
    store.close()
    again = CaseStore(tmp_path)  # a new connection: no page limit, as after freeing space
    assert again.counts() == {"scanned": stored}
    assert again.done(f"0/item{stored - 1:04d}.jpg") == ("scanned", f"{stored - 1:064d}")
    assert again.done(f"0/item{stored:04d}.jpg") is None
    again.close()
