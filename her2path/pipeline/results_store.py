"""The results of a batch: case folders committed without a gap, ``results.sqlite``, ``summary.csv``,
and the checksums that tell an intact case folder from a damaged or edited one.

Commit (coordinator only). A worker writes a case into ``cases/.F.RUN.partial``.
The coordinator fsyncs it, moves the previous ``cases/F`` (if any) aside to
``cases/.F.RUN.old``, renames the partial folder to ``cases/F`` and writes the
database row; only when both succeeded is the old folder deleted. On any
failure the steps are undone, the previous result stays in place and its row
says that the rerun failed. A run killed between two steps leaves an
``.old`` folder that the next run puts back (or deletes, when the new folder
made it into place) and partial folders that it deletes.

Every case folder carries ``checksums.sha256`` (``sha256sum -c`` format) and
the database keeps the same sha256s, so a rerun or ``her2path verify`` finds
missing, truncated or edited files.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._version import SOFTWARE
from ..io.writers import atomic_write_bytes
from ..provenance import file_sha256
from .layout import BatchLayout, CaseLayout

COLUMNS = ("case_id", "folder", "state", "status", "sub_label", "score", "ish_group", "ratio", "next_step",
           "error", "note", "input_sha256", "config_sha256", "model_sha256", "software", "started", "finished",
           "seconds", "peak_rss_mib", "inputs", "files")
SUMMARY = ("case_id", "folder", "state", "status", "sub_label", "score", "ish_group", "ratio", "seconds", "error",
           "note")


@dataclass
class Record:
    """One row of ``results.sqlite``: the latest attempt at a case and the result in its folder."""

    case_id: str
    state: str                       # latest attempt: "done" or "failed"
    inputs: str
    folder: str = ""
    status: str | None = None        # figures of the result in cases/<folder> (kept from before if this run failed)
    sub_label: str | None = None
    score: str | None = None
    ish_group: int | None = None
    ratio: float | None = None
    next_step: str | None = None
    error: str | None = None         # why the latest attempt failed
    note: str | None = None          # e.g. why a case was redone, or that a previous result was kept
    input_sha256: str = ""
    config_sha256: str = ""
    model_sha256: str | None = None
    software: str = SOFTWARE
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    files: str = "{}"                # JSON {relative path: sha256} of the case folder's files
    partial: str | None = field(default=None, repr=False)


class ResultsDB:
    """One row per case in ``results.sqlite`` (WAL); written by the coordinator only."""

    def __init__(self, path: Path):
        self.con = sqlite3.connect(path, timeout=30)
        self.con.execute("PRAGMA journal_mode=WAL")
        cols = ", ".join(c + (" TEXT PRIMARY KEY" if c == "case_id" else "") for c in COLUMNS)
        self.con.execute(f"CREATE TABLE IF NOT EXISTS cases ({cols})")
        have = {r[1] for r in self.con.execute("PRAGMA table_info(cases)")}
        for c in COLUMNS:                      # a results.sqlite of an older version gains the new columns
            if c not in have:
                self.con.execute(f"ALTER TABLE cases ADD COLUMN {c}")
        self.con.commit()

    def get(self, case_id: str) -> dict | None:
        row = self.con.execute(f"SELECT {', '.join(COLUMNS)} FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        return dict(zip(COLUMNS, row)) if row else None

    def put(self, rec: Record) -> None:
        values = asdict(rec)
        with self.con:
            self.con.execute(f"INSERT OR REPLACE INTO cases ({', '.join(COLUMNS)}) "
                             f"VALUES ({', '.join('?' * len(COLUMNS))})", [values[c] for c in COLUMNS])

    def all(self) -> list[dict]:
        return [dict(zip(COLUMNS, r)) for r in
                self.con.execute(f"SELECT {', '.join(COLUMNS)} FROM cases ORDER BY case_id")]

    def rows(self, ids: list[str]) -> list[dict]:
        return [r for r in (self.get(i) for i in sorted(ids)) if r]

    def close(self) -> None:
        self.con.close()


# -- checksums ------------------------------------------------------------------------

def folder_files(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` but the checksum file itself."""
    skip = CaseLayout(root).checksums
    return {p.relative_to(root).as_posix(): file_sha256(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p != skip}


def write_checksums(root: str | Path) -> dict[str, str]:
    """Write ``checksums.sha256`` for a case folder; returns the sha256s."""
    root = Path(root)
    files = folder_files(root)
    atomic_write_bytes(CaseLayout(root).checksums, "".join(f"{h}  {p}\n" for p, h in files.items()).encode())
    return files


def read_checksums(root: Path) -> dict[str, str] | None:
    """The sha256s a case folder's ``checksums.sha256`` lists (None when it has none)."""
    path = CaseLayout(root).checksums
    if not path.is_file():
        return None
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            out[name] = digest
    return out


def check_files(root: Path, expected: dict[str, str]) -> list[str]:
    """What is wrong with a case folder against its expected sha256s (empty: intact)."""
    if not root.is_dir():
        return ["the case folder is missing"]
    problems = []
    for rel, digest in expected.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel} is missing")
        elif file_sha256(p) != digest:
            problems.append(f"{rel} was changed or damaged")
    known = set(expected) | {CaseLayout(root).checksums.relative_to(root).as_posix()}
    extra = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    problems += [f"{rel} was added" for rel in sorted(set(extra) - known)]
    if not problems and not expected:
        problems.append("no files were recorded for this case")
    return problems


# -- commit ---------------------------------------------------------------------------

def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk."""
    for p in [*sorted(root.rglob("*")), root]:
        fd = os.open(p, os.O_RDONLY | (os.O_DIRECTORY if p.is_dir() else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


_rename = os.replace   # module-level so that tests can inject a failure at the rename


def recover(layout: BatchLayout) -> list[str]:
    """Tidy a batch folder after a killed run; returns notes on what was put back."""
    notes = []
    for old in sorted(layout.cases.glob(".*.old")):
        folder = old.name[1:].rsplit(".", 2)[0]
        final = layout.cases / folder
        if final.exists():
            _remove(old)                            # the new folder made it into place
        else:
            _rename(old, final)                     # killed between moving aside and moving in
            notes.append(f"cases/{folder}: the previous result was put back after an interrupted commit")
    for stale in layout.cases.glob(".*.partial"):
        _remove(stale)
    return notes


def commit(rec: Record, layout: BatchLayout, db: ResultsDB, run_id: str) -> Record:
    """Put a finished (or failed) case in place and record it; see the module docstring.

    Returns the record as stored: for a run that failed, or whose commit
    failed, the figures of the previous result that was kept.
    """
    final = layout.cases / rec.folder
    if not rec.folder or final.parent != layout.cases or not layout.inside(layout.cases):
        raise ValueError(f"refusing to commit case folder {rec.folder!r} outside {layout.cases}")
    previous = db.get(rec.case_id)
    if rec.state == "done":
        partial = Path(rec.partial)
        old = layout.old(rec.folder, run_id)
        moved_aside = False
        try:
            _fsync_tree(partial)
            if final.exists() or final.is_symlink():
                _rename(final, old)
                moved_aside = True
            _rename(partial, final)
            rec.partial = None
            db.put(rec)
        except (OSError, sqlite3.Error) as exc:
            if not rec.partial and final.exists():           # the new folder got in; take it out again
                _rename(final, partial)
            if moved_aside:
                _rename(old, final)
            _remove(partial)
            rec.state, rec.partial = "failed", None
            rec.error = f"cases/{rec.folder}: the finished result could not be put in place ({_os_error(exc)})"
        else:
            if moved_aside:
                _remove(old)
            return rec
    elif rec.partial:
        _remove(Path(rec.partial))
        rec.partial = None
    return _record_failure(rec, previous, db)


def _record_failure(rec: Record, previous: dict | None, db: ResultsDB) -> Record:
    """Store a failed attempt; a result already in place stays, with its figures, and the row says so."""
    if previous and previous.get("status") and previous.get("files") not in (None, "{}"):
        for k in ("status", "sub_label", "score", "ish_group", "ratio", "next_step", "input_sha256",
                  "config_sha256", "model_sha256", "files"):
            setattr(rec, k, previous[k])
        rec.note = f"this run failed; the previous result (finished {previous['finished']}) is kept in cases/{rec.folder}"
    else:
        rec.files = "{}"
    try:
        db.put(rec)
    except sqlite3.Error as exc:
        rec.note = (rec.note or "") + f"; the database row could not be written ({exc})"
    return rec


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {exc.filename or 'the output folder'}"
    return f"{type(exc).__name__}: {exc}"


def verify_row(row: dict, layout: BatchLayout) -> list[str]:
    """Problems of a done case's folder against the sha256s its row recorded."""
    return check_files(layout.cases / row["folder"], json.loads(row["files"] or "{}"))


def write_summary(out: Path, rows: list[dict]) -> Path:
    """``summary.csv``: one line per case, derived from the database."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r[c] for c in SUMMARY])
    path = BatchLayout(out).summary_csv
    atomic_write_bytes(path, buf.getvalue().encode())
    return path
