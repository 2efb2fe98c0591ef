"""The case store: one SQLite file in the case directory holding the scan's state and results.

Each item's result is committed in its own transaction, so a scan killed at any point keeps every
finished item and a re-run picks up where it stopped. WAL journaling with synchronous=NORMAL is
safe against a killed process (the case this store is for); every session is recorded with its
start, end and exit status. A write that fails (a full disk: SQLITE_FULL) raises CaseStoreError
naming what could not be stored; everything committed before stays in the store. The audit table
records every report file written (path relative to the case directory, SHA-256, size), so a
report handed on can be checked against the case.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from faketrace.forensics.names import dumps, visible

STORE_NAME = "case.sqlite"
STORE_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    sha256 TEXT,
    result TEXT NOT NULL,
    session INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS items_seq ON items (seq);
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY,
    started_utc TEXT NOT NULL,
    ended_utc TEXT,
    exit_status INTEGER,
    items_scanned INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    action TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT,
    size_bytes INTEGER,
    detail TEXT
);
"""


class CaseStoreError(RuntimeError):
    pass


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class CaseStore:
    def __init__(self, case_dir: str | Path):
        self.path = Path(case_dir) / STORE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise CaseStoreError(f"cannot open the case store {self.path}: {exc}") from exc
        version = self.get_meta("store_version")
        if version is None:
            self.set_meta("store_version", STORE_VERSION)
        elif int(version) != STORE_VERSION:
            raise CaseStoreError(f"{self.path} is case-store version {version}; this faketrace reads {STORE_VERSION}")

    def close(self) -> None:
        self.db.close()

    def _write(self, what: str, sql: str, params: tuple) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, params)
        except sqlite3.Error as exc:
            full = getattr(exc, "sqlite_errorname", None) == "SQLITE_FULL" or "disk is full" in str(exc)
            try:
                stored = f"{self.db.execute('SELECT COUNT(*) FROM items').fetchone()[0]} "
            except sqlite3.Error:
                stored = ""
            kept = f"the {stored}item results stored before are kept"
            raise CaseStoreError(
                f"could not store {what} in {self.path}: {exc}{' (the disk is full)' if full else ''}. Nothing of it "
                f"was stored and {kept}; {'free space and ' if full else ''}re-run the same command to go on "
                "from there") from exc

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value) -> None:
        self._write(f"the case setting {key!r}", "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (key, dumps(value)))

    # -- sessions -----------------------------------------------------------------------------
    def start_session(self, started_utc: str, record: dict) -> int:
        cur = self._write("the record of a new session", "INSERT INTO sessions (started_utc, record) VALUES (?, ?)",
                          (started_utc, dumps(record, default=str)))
        return int(cur.lastrowid)

    def end_session(self, session: int, ended_utc: str, exit_status: int, items_scanned: int) -> None:
        self._write(f"the end of session {session}",
                    "UPDATE sessions SET ended_utc = ?, exit_status = ?, items_scanned = ? WHERE session = ?",
                    (ended_utc, exit_status, items_scanned, session))

    def sessions(self) -> list[dict]:
        # items_scanned counts the results each session stored (a killed session never recorded its
        # count at the end; its stored items say what it did).
        rows = self.db.execute("SELECT s.session, s.started_utc, s.ended_utc, s.exit_status, "
                               "(SELECT COUNT(*) FROM items i WHERE i.session = s.session), s.record "
                               "FROM sessions s ORDER BY s.session").fetchall()
        return [{"session": s, "started_utc": a, "ended_utc": b,
                 "exit_status": c, "items_scanned": n,
                 "ended": "normally" if b else "interrupted (no end recorded)", **json.loads(r)}
                for s, a, b, c, n, r in rows]

    # -- items --------------------------------------------------------------------------------
    def done(self, item_id: str) -> tuple[str, str | None] | None:
        """(status, sha256) of a finished item, or None."""
        item_id = visible(item_id) if not _utf8(item_id) else item_id
        row = self.db.execute("SELECT status, sha256 FROM items WHERE item_id = ?", (item_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def put(self, item_id: str, seq: int, result: dict, session: int) -> None:
        # Strict JSON, and no string SQLite cannot encode (a name that is not UTF-8 arrives here
        # already in its visible form; anything else with a surrogate is escaped the same way).
        item_id = visible(item_id) if not _utf8(item_id) else item_id
        self._write(f"the result of item {item_id}",
                    "INSERT OR REPLACE INTO items (item_id, seq, status, sha256, result, session) VALUES (?, ?, ?, ?, ?, ?)",
                    (item_id, seq, result["status"], result.get("sha256"), dumps(result, sort_keys=True), session))

    def results(self) -> Iterator[dict]:
        """Every stored result in discovery order, one at a time."""
        for (text,) in self.db.execute("SELECT result FROM items ORDER BY seq, item_id"):
            yield json.loads(text)

    # -- audit ------------------------------------------------------------------------------
    def audit(self, time_utc: str, action: str, path: str, sha256: str | None, size_bytes: int | None,
              detail: dict | None = None) -> None:
        self.db.execute("INSERT INTO audit (time_utc, action, path, sha256, size_bytes, detail) VALUES (?, ?, ?, ?, ?, ?)",
                        (time_utc, action, visible(path) if not _utf8(path) else path, sha256, size_bytes,
                         dumps(detail or {}, sort_keys=True)))

    def audit_log(self) -> list[dict]:
        rows = self.db.execute("SELECT id, time_utc, action, path, sha256, size_bytes, detail FROM audit ORDER BY id")
        return [{"id": i, "time_utc": t, "action": a, "path": p, "sha256": h, "size_bytes": n, "detail": json.loads(d)}
                for i, t, a, p, h, n, d in rows.fetchall()]

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM items GROUP BY status ORDER BY status").fetchall())
