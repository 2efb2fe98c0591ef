"""The case store: one SQLite file in the case directory holding the scan's state and results.

Each item's result is committed in its own transaction, so a scan killed at any point keeps every
finished item and a re-run picks up where it stopped. WAL journaling with synchronous=NORMAL is
safe against a killed process (the case this store is for); every session is recorded with its
start, end and exit status.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

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
"""


class CaseStoreError(RuntimeError):
    pass


class CaseStore:
    def __init__(self, case_dir: str | Path):
        self.path = Path(case_dir) / STORE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        version = self.get_meta("store_version")
        if version is None:
            self.set_meta("store_version", STORE_VERSION)
        elif int(version) != STORE_VERSION:
            raise CaseStoreError(f"{self.path} is case-store version {version}; this faketrace reads {STORE_VERSION}")

    def close(self) -> None:
        self.db.close()

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- sessions -----------------------------------------------------------------------------
    def start_session(self, started_utc: str, record: dict) -> int:
        cur = self.db.execute("INSERT INTO sessions (started_utc, record) VALUES (?, ?)",
                              (started_utc, json.dumps(record, default=str)))
        return int(cur.lastrowid)

    def end_session(self, session: int, ended_utc: str, exit_status: int, items_scanned: int) -> None:
        self.db.execute("UPDATE sessions SET ended_utc = ?, exit_status = ?, items_scanned = ? WHERE session = ?",
                        (ended_utc, exit_status, items_scanned, session))

    def sessions(self) -> list[dict]:
        rows = self.db.execute("SELECT session, started_utc, ended_utc, exit_status, items_scanned, record "
                               "FROM sessions ORDER BY session").fetchall()
        return [{"session": s, "started_utc": a, "ended_utc": b,
                 "exit_status": c, "items_scanned": n,
                 "ended": "normally" if b else "interrupted (no end recorded)", **json.loads(r)}
                for s, a, b, c, n, r in rows]

    # -- items --------------------------------------------------------------------------------
    def done(self, item_id: str) -> tuple[str, str | None] | None:
        """(status, sha256) of a finished item, or None."""
        row = self.db.execute("SELECT status, sha256 FROM items WHERE item_id = ?", (item_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def put(self, item_id: str, seq: int, result: dict, session: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO items (item_id, seq, status, sha256, result, session) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (item_id, seq, result["status"], result.get("sha256"),
                         json.dumps(result, sort_keys=True), session))

    def results(self) -> Iterator[dict]:
        """Every stored result in discovery order, one at a time."""
        for (text,) in self.db.execute("SELECT result FROM items ORDER BY seq, item_id"):
            yield json.loads(text)

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM items GROUP BY status ORDER BY status").fetchall())
