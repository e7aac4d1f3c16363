"""Review decisions in SQLite (WAL), append-only: an audit trail in which nothing is overwritten.

Each row is one decision: a tile score (``0``-``3+``) or acceptance of the
measured score (``accept``), or a slide sign-off (``accept`` or an override
score with a comment), with its reviewer, UTC time and the value it replaced.
The current state of a tile or slide is its latest row.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id TEXT NOT NULL,
    tile INTEGER,                 -- NULL for a slide sign-off
    kind TEXT NOT NULL CHECK (kind IN ('tile', 'signoff')),
    value TEXT NOT NULL,          -- '0', '1+', '2+', '3+' or 'accept'
    comment TEXT,
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,             -- UTC, ISO 8601
    previous TEXT                 -- the value this decision replaced (NULL: first)
);
CREATE INDEX IF NOT EXISTS decisions_target ON decisions (case_id, kind, tile, id);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
"""


@dataclass(frozen=True)
class Decision:
    id: int
    case_id: str
    tile: int | None
    kind: str
    value: str
    comment: str | None
    reviewer: str
    at: str
    previous: str | None


class ReviewStore:
    """Opens one connection per call, so that it is safe from any thread or process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with closing(self._connect()) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.execute("PRAGMA busy_timeout=30000")
        return con

    def add(self, case_id: str, tile: int | None, kind: str, value: str, reviewer: str,
            comment: str | None = None) -> Decision:
        """Append a decision; the previous value is read in the same write transaction."""
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT value FROM decisions WHERE case_id=? AND kind=? AND tile IS ? "
                              "ORDER BY id DESC LIMIT 1", (case_id, kind, tile)).fetchone()
            cur = con.execute("INSERT INTO decisions (case_id, tile, kind, value, comment, reviewer, at, previous) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              (case_id, tile, kind, value, comment, reviewer, at, row[0] if row else None))
            con.execute("COMMIT")
            return Decision(cur.lastrowid, case_id, tile, kind, value, comment, reviewer, at, row[0] if row else None)
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def history(self, case_id: str | None = None) -> list[Decision]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT * FROM decisions" + (" WHERE case_id=?" if case_id else "") + " ORDER BY id",
                               (case_id,) if case_id else ()).fetchall()
        return [Decision(*r) for r in rows]

    def current(self, case_id: str | None = None) -> dict[tuple[str, str, int | None], Decision]:
        """Latest decision per (case, kind, tile)."""
        return latest(self.history(case_id))


def latest(decisions: list[Decision]) -> dict[tuple[str, str, int | None], Decision]:
    """The last of each (case, kind, tile) in a history (ordered by id)."""
    return {(d.case_id, d.kind, d.tile): d for d in decisions}


def latest_signoff(db: str | Path, case_key: str) -> Decision | None:
    """A case's latest sign-off in a review database, read without writing anything (None: none)."""
    db = Path(db)
    if not db.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            row = con.execute("SELECT * FROM decisions WHERE case_id=? AND kind='signoff' ORDER BY id DESC LIMIT 1",
                              (case_key,)).fetchone()
    except sqlite3.Error:
        return None
    return Decision(*row) if row else None
