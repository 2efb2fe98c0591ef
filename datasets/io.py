"""Small file-system helpers shared by every writer: atomic writes and hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success fsync it and rename it over `path`.

    A killed process leaves at most a `.tmp` file behind, never a half-written file under the
    final name, so nothing a later run trusts can be truncated.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _noatime_opener(path, flags: int) -> int:
    noatime = getattr(os, "O_NOATIME", 0)
    try:
        return os.open(path, flags | noatime)
    except PermissionError:
        if not noatime:
            raise
        return os.open(path, flags)


def open_readonly(path: str | Path):
    """Open a file for reading only, without updating its access time where the OS allows.

    Evidence must come out of a scan as it went in: O_NOATIME keeps even the access time
    unchanged (Linux grants it to the file's owner only; elsewhere a plain read-only open).
    The file object keeps the path as its name, so decoder messages name the file.
    """
    return open(path, "rb", opener=_noatime_opener)
