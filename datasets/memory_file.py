"""A file that exists only in memory: an archive member, decoded without being written anywhere.

It stands in for a path wherever evidence is read: `datasets.io.open_readonly` opens it as a
BytesIO, `stat()` gives its size, `str()` its path inside the archive (`outer.zip!/photos/a.jpg`).
It deliberately has no `__fspath__`, so nothing can open it on disk by mistake. It pickles with its
bytes, so the isolated decoder process receives the member itself.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field


@dataclass
class MemoryFile:
    data: bytes
    display_path: str  # "<archive rel path>!/<member>[!/<member of a nested archive>]"
    container: dict = field(default_factory=dict)  # what the item record says about where it came from

    @property
    def name(self) -> str:
        return self.display_path.rsplit("/", 1)[-1]

    def open(self) -> io.BytesIO:
        buf = io.BytesIO(self.data)
        buf.name = self.display_path  # decoder messages name the member, as they name a file
        return buf

    def stat(self) -> os.stat_result:
        return os.stat_result((0o100444, 0, 0, 1, 0, 0, len(self.data), 0, 0, 0))

    def is_file(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.display_path

    def __repr__(self) -> str:
        return f"MemoryFile({self.display_path!r}, {len(self.data)} bytes)"
