"""What the custody record is made of, below both the scan and the report: the clock, the tool's
version, the offline guard, and the hashing of evidence (read-only, streamed, with a time budget).

forensics/scan.py and forensics/report.py both import from here; neither imports the other for
these (the scan still calls the report at the end of a run).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from faketrace.datasets.io import file_digests, open_readonly
from faketrace.datasets.memory_file import MemoryFile
from faketrace.forensics.names import visible


class Offline:
    """While a scan runs, Python-level network calls of the AF_INET families fail loudly.

    A guard for code we do not control (a library that phones home); the proof that the scan
    makes no connection at all, C libraries included, is the strace test in tests/test_scan.py.
    """

    active = False
    installed = False

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if not cls.active:
            return
        if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
            raise ConnectionRefusedError(f"the evidence scan makes no network connection (attempted {args[1]})")
        if event == "socket.getaddrinfo":
            raise ConnectionRefusedError(f"the evidence scan makes no network lookup (attempted {args[0]})")

    @classmethod
    def enter(cls) -> None:
        if not cls.installed:
            sys.addaudithook(cls.hook)
            cls.installed = True
        cls.active = True


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def tool_version() -> str | None:
    try:
        return metadata.version("faketrace")
    except metadata.PackageNotFoundError:
        return None


def file_identity(st: os.stat_result) -> dict:
    """What the closing check compares in `stat` mode: size, modification time, inode, device."""
    return {"size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "device": st.st_dev}


def hash_stream(path: Path, chunk: int = 1 << 20, time_limit_s: float | None = None,
                progress: bool = False, algorithms: tuple[str, ...] = ("sha256", "md5")) -> dict:
    """SHA-256 and MD5 of a file, streamed read-only, with a progress bar for large files and a
    time budget: past `time_limit_s` the hashing stops and says how far it got (sha256 None).
    The file's identity (fstat of the open file) is returned too, for the closing check."""
    t0 = time.monotonic()
    with open_readonly(path) as fh:
        # An archive member in memory has no inode: it is checked through its archive file.
        ident = ({"size_bytes": len(path.data), "inside_archive": True} if isinstance(path, MemoryFile)
                 else file_identity(os.fstat(fh.fileno())))
        total = ident["size_bytes"]
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"hashing {visible(path.name)[:40]}", leave=False,
                   file=sys.stderr, disable=not progress or total < (256 << 20))
        try:
            digests, done = file_digests(fh, algorithms, chunk, on_block=bar.update,
                                         stop=None if time_limit_s is None
                                         else lambda: time.monotonic() - t0 > time_limit_s)
        finally:
            bar.close()
    if digests is None:
        return {**dict.fromkeys(algorithms), "size_bytes": total, "stat": ident,
                "hash_note": f"hashing stopped after {done} of {total} bytes at the time budget of "
                             f"{time_limit_s:g}s (scan.hash_time_limit_s); no SHA-256 recorded"}
    return {**digests, "size_bytes": done, "stat": ident}


def hash_evidence(path: Path, chunk: int = 1 << 20) -> tuple[str, str, int]:
    """SHA-256, MD5 and size of a file read once, read-only."""
    h = hash_stream(path, chunk=chunk)
    return h["sha256"], h["md5"], h["size_bytes"]
