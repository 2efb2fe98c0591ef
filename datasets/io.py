"""Small file-system helpers shared by every writer: atomic writes and hashing."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import faketrace.datasets.offline  # noqa: F401 - no telemetry: set before any library that sends it is imported
from faketrace.datasets.faults import atomic_write_fault

# What a write to a full disk (or a full quota) fails with.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success fsync it and rename it over `path`.

    A killed process leaves at most a `.tmp` file behind, never a half-written file under the
    final name, so nothing a later run trusts can be truncated; any previous file under the
    final name stays as it was until the rename. A full disk raises an OSError (errno ENOSPC)
    that names the file. Fault points (datasets/faults.py): `atomic_after_tmp_written`,
    `atomic_after_fsync`, `atomic_before_rename`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        atomic_write_fault("atomic_after_tmp_written", path)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        atomic_write_fault("atomic_after_fsync", path)
        atomic_write_fault("atomic_before_rename", path)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        kept = "the previous version is kept" if path.exists() else "nothing was written under that name"
        raise OSError(exc.errno, f"{exc.strerror or os.strerror(exc.errno)} while writing {path} ({kept})") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def file_digests(fh, algorithms: tuple[str, ...] = ("sha256",), chunk: int = 1 << 20, on_block=None,
                 stop=None) -> tuple[dict[str, str] | None, int]:
    """Hex digests of an open binary file read to its end, and the bytes read: the one file hasher.

    `on_block(n)` is called after each block; `stop()` is asked after each block, and when it
    says so while the file has more, the digests are None (the bytes read so far are returned).
    """
    hashes = {a: hashlib.new(a, usedforsecurity=a != "md5") for a in algorithms}
    done = 0
    while block := fh.read(chunk):
        for h in hashes.values():
            h.update(block)
        done += len(block)
        if on_block is not None:
            on_block(len(block))
        if stop is not None and stop() and fh.read(1):
            return None, done
    return {a: h.hexdigest() for a, h in hashes.items()}, done


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    with open(path, "rb") as fh:
        return file_digests(fh, ("sha256",), chunk)[0]["sha256"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# How evidence opens went (files and folders): O_NOATIME granted, refused (not the owner nor
# root: the access time may change), or unavailable on this platform. The custody record says.
NOATIME = {"available": hasattr(os, "O_NOATIME"), "granted": 0, "refused": 0}


def _noatime_opener(path, flags: int) -> int:
    noatime = getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(path, flags | noatime)
    except PermissionError:
        if not noatime:
            raise
        fd = os.open(path, flags)
        NOATIME["refused"] += 1
        return fd
    NOATIME["granted" if noatime else "refused"] += 1
    return fd


def noatime_report() -> str:
    """One sentence for the custody record: whether reading the evidence could change access times."""
    if not NOATIME["available"]:
        return "this platform has no O_NOATIME: reading the evidence may have updated its access times"
    if NOATIME["refused"]:
        return (f"O_NOATIME was refused for {NOATIME['refused']} of {NOATIME['refused'] + NOATIME['granted']} "
                "opens of evidence files and folders (allowed only to their owner or root): the access times of "
                "those may have changed")
    return (f"every evidence file and folder ({NOATIME['granted']} opens) was opened with O_NOATIME: access "
            "times unchanged")


def listdir_noatime(folder: str | Path) -> list[str]:
    """Names in a folder, read without updating the folder's access time where the OS allows."""
    fd = _noatime_opener(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def walk_noatime(top: str | Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(top, followlinks=False), top-down, each folder read through listdir_noatime.

    Like os.walk: links to folders are listed among the dirnames and not entered; `dirnames` may
    be edited in place to prune; an unreadable folder is skipped.
    """
    top = os.fspath(top)
    try:
        names = listdir_noatime(top)
    except OSError:
        return
    dirs, files = [], []
    for name in names:
        (dirs if os.path.isdir(os.path.join(top, name)) else files).append(name)
    yield top, dirs, files
    for name in dirs:
        path = os.path.join(top, name)
        if not os.path.islink(path):
            yield from walk_noatime(path)


def open_readonly(path: str | Path):
    """Open a file for reading only, without updating its access time where the OS allows.

    Evidence must come out of a scan as it went in: O_NOATIME keeps even the access time
    unchanged (Linux grants it to the file's owner only; elsewhere a plain read-only open).
    The file object keeps the path as its name, so decoder messages name the file. An archive
    member held in memory (datasets/memory_file.py) opens as its bytes.
    """
    from faketrace.datasets.memory_file import MemoryFile

    if isinstance(path, MemoryFile):
        return path.open()
    return open(path, "rb", opener=_noatime_opener)


def root_key(root: str | Path) -> str:
    """A directory name for what is derived from a data set root: its base name and a hash of its path.

    Index, face crops and manifests go under the project's data directory, in a folder keyed by
    this (configs/data/*.yaml `derived_dir`), never into the root: data set roots on clusters are
    read-only and shared, and two copies of one data set (raw and c23, say) must not share
    derived files. The same root gives the same key from any working directory.
    """
    import re

    absolute = Path(os.path.abspath(os.path.expanduser(str(root))))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", absolute.name) or "root"
    return f"{name}-{hashlib.sha256(absolute.as_posix().encode()).hexdigest()[:10]}"
