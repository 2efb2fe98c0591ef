"""Names from a seized disk: stored losslessly, shown readably, written as strict JSON.

A file name on Linux is bytes. Python hands names that are not UTF-8 over as str with lone
surrogates (os.fsdecode's surrogateescape), which SQLite, UTF-8 files and JSON readers refuse.
Control characters (a newline in a name) and bidirectional overrides (U+202E turns
"rtl_<U+202E>gpj.exe" into "rtl_exe.jpg" on screen) make a name lie about itself.

`visible(name)` is the one form every record, page and table shows: a name made only of
printable characters and without a backslash is itself; any other name is escaped, with every
backslash doubled, every undecodable byte as \\xNN and every control, format or bidi character as
\\uNNNN (\\xNN below 0x100). The mapping is one-to-one (a name shown unescaped holds no backslash;
an escaped one always does), so a visible name is a key no other name can take. Where the
visible form differs, the record also keeps the raw bytes (`raw_hex`), and `raw_path()` rebuilds
the path the scan opened from them.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
from pathlib import Path

# Bidirectional embedding, override and isolate controls, and the marks: they reorder what follows.
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _needs_escape(ch: str) -> bool:
    if ch == "\\" or ch in BIDI or "\udc80" <= ch <= "\udcff":
        return True
    # Cc control, Cf format (zero-width and bidi), Cs surrogate, Co private use, Cn unassigned,
    # Zl / Zp line and paragraph separators: none of them shows as itself.
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def is_plain(name: str) -> bool:
    """True when `name` shows as itself (no escape needed)."""
    return not any(_needs_escape(ch) for ch in name)


def visible(name: str | bytes | os.PathLike | None) -> str | None:
    """The escaped, printable, valid-UTF-8 form of a name (see the module doc)."""
    if name is None:
        return None
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    name = os.fspath(name)
    if is_plain(name):
        return name
    out = []
    for ch in name:
        if ch == "\\":
            out.append("\\\\")
        elif "\udc80" <= ch <= "\udcff":  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        elif _needs_escape(ch):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                       else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


def raw_hex(name: str | os.PathLike) -> str | None:
    """The name's bytes in hex when its visible form differs from it (None when it is plain)."""
    name = os.fspath(name)
    return None if is_plain(name) else os.fsencode(name).hex()


def from_hex(value: str) -> str:
    """The str (surrogateescape) that os functions take for the bytes `raw_hex` recorded."""
    return os.fsdecode(bytes.fromhex(value))


def raw_path(result: dict) -> Path:
    """The evidence path a scan result names, rebuilt from the raw bytes where they were kept."""
    root = from_hex(result["input_raw_hex"]) if result.get("input_raw_hex") else result["input"]
    if result.get("source") == "file":
        return Path(root)
    rel = from_hex(result["rel_path_raw_hex"]) if result.get("rel_path_raw_hex") else result["rel_path"]
    return Path(root) / rel


# -- strict JSON -----------------------------------------------------------------------------------
def sanitize(value):
    """A copy of `value` that strict JSON can hold: non-finite floats become their text
    ("inf", "-inf", "nan"), strings with lone surrogates (undecodable bytes) are escaped as names
    are, tuples become lists and mapping keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return visible(value)
    if isinstance(value, dict):
        return {(sanitize(k) if isinstance(k, str) else str(k)): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    return value


def dumps(value, **kwargs) -> str:
    """json.dumps that never writes NaN or Infinity and never fails on a surrogate."""
    default = kwargs.pop("default", None)
    if default is not None:
        value = json.loads(json.dumps(value, default=default, allow_nan=True))  # plain types first
    return json.dumps(sanitize(value), allow_nan=False, **kwargs)
