"""``her2path batch``: every case of a folder, resumable and fault-isolated, local or on Dask.

Cases come from a manifest CSV (``case_id,ihc,ish``; ``;`` separates several
ISH paths, and rows with the same case_id add up), or from the folder: each
sub-folder is a case (ISH fields in a sub-folder named ``ish`` or ``fish``, or
told apart by content: fluorescence fields are dark, IHC is brightfield), and
each image or slide file directly in the folder is an IHC case of its own.
Files are recognised by content; a file with an image extension that is not
an image becomes a failed case, so nothing is silently skipped.

Each case runs end to end in a worker (``run_case``) into a private
``cases/.ID.RUN.partial`` folder; only the coordinator moves a finished one to
``cases/ID`` and records it in ``results.sqlite`` (one row per case, WAL).
A run killed at any moment leaves at most partial folders, which the next run
deletes: no case is lost or duplicated. A rerun skips cases done with the same
input and configuration (``force`` redoes them); failed cases are retried.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import sqlite3
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import Her2PathError, InputError
from ..io.slide import sniff_format
from ..io.writers import atomic_write_bytes
from .ihc_slide import _single_threaded_children, file_sha256

IMAGE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".tif", ".tiff", ".png", ".jpg",
                  ".jpeg", ".dcm", ".svslide"}
ISH_FOLDERS = {"ish", "fish", "cish", "sish"}
MAX_FIELD_VALUES = 64 * 2**20       # an ISH field is a camera frame: bigger images are slides
COLUMNS = ("case_id", "state", "status", "sub_label", "score", "ish_group", "ratio", "next_step", "error",
           "input_sha256", "config_sha256", "model_sha256", "software", "started", "finished", "seconds",
           "peak_rss_mib", "inputs")


@dataclass(frozen=True)
class CaseSpec:
    case_id: str
    ihc: str | None = None
    ish: tuple[str, ...] = ()
    error: str | None = None         # the case cannot run (e.g. an ambiguous folder): why
    input_sha256: str = ""           # digest of the inputs, once the run has taken it ("" before)

    @property
    def paths(self) -> list[str]:
        return ([self.ihc] if self.ihc else []) + list(self.ish)


@dataclass(frozen=True)
class BatchOptions:
    guideline: str = "breast"
    config: str | None = None
    channels: tuple[str, ...] = ("her2", "cep17", "dapi")
    brightfield: bool = False

    def digest(self) -> str:
        """sha256 of everything besides the inputs that decides a result (settings, guideline, options)."""
        from ..config import load_settings
        from ..guidelines import load_guideline

        text = json.dumps({"settings": load_settings(self.config).digest(),
                           "guideline": load_guideline(self.guideline).model_dump(mode="json"),
                           "channels": self.channels, "brightfield": self.brightfield,
                           "software": __version__}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Record:
    case_id: str
    state: str                       # "done" or "failed"
    inputs: str
    status: str | None = None
    sub_label: str | None = None
    score: str | None = None
    ish_group: int | None = None
    ratio: float | None = None
    next_step: str | None = None
    error: str | None = None
    input_sha256: str = ""
    config_sha256: str = ""
    model_sha256: str | None = None
    software: str = f"her2path {__version__}"
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    partial: str | None = field(default=None, repr=False)


# -- finding cases ----------------------------------------------------------------

def _format(path: Path) -> str | None:
    """The image format by content (None: not an image or slide, or unreadable)."""
    try:
        return sniff_format(path)
    except OSError:
        return None


def _is_fluorescence(path: Path, fmt: str | None = None) -> bool:
    """A FISH field: a multichannel stack, or an RGB image whose background is dark."""
    from ..io.slide import read_plain

    fmt = fmt or _format(path)
    if fmt not in ("png", "jpeg", "tiff", "generic-tiff"):
        return False
    if "tiff" in fmt:   # the shape first: a tiled whole-slide TIFF is not read whole, a CYX stack not at all
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                if np.prod(tf.pages[0].shape) > MAX_FIELD_VALUES:
                    return False
                shape = tf.series[0].shape
        except Exception:
            return False
        if len(shape) == 3 and shape[0] <= 8 < shape[-1]:
            return True
    try:
        data, _ = read_plain(path, "tiff" if "tiff" in fmt else fmt)
    except Exception:
        return False
    top = np.iinfo(data.dtype).max if np.issubdtype(data.dtype, np.integer) else 1.0
    return float(np.median(data)) < 0.3 * top


def _case_from_folder(folder: Path) -> CaseSpec:
    ihc, ish = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        in_ish = bool(ISH_FOLDERS & {q.name.lower() for q in p.relative_to(folder).parents})
        fmt = _format(p)
        if fmt is None:
            if p.suffix.lower() in IMAGE_SUFFIXES:
                ihc.append(p)                          # named like a slide: let it fail with its reason
            continue
        (ish if in_ish or _is_fluorescence(p, fmt) else ihc).append(p)
    if len(ihc) > 1:
        raise InputError(f"case folder holds {len(ihc)} IHC images ({', '.join(p.name for p in ihc[:3])})",
                         folder, "keep one IHC slide per case folder, or list cases in a --manifest CSV")
    return CaseSpec(folder.name, str(ihc[0]) if ihc else None, tuple(map(str, ish)))


def find_cases(folder: str | Path, manifest: str | Path | None = None) -> tuple[list[CaseSpec], list[str]]:
    """(cases, notes on what was skipped) for a batch folder or a manifest CSV."""
    folder = Path(folder)
    if manifest:
        return _read_manifest(Path(manifest)), []
    if not folder.is_dir():
        raise InputError("batch input is not a folder", folder, "give the folder of slides or case folders")
    cases, notes = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            try:
                spec = _case_from_folder(p)
            except InputError as exc:
                cases.append(CaseSpec(p.name, error=exc.one_line()))
                continue
            if spec.ihc or spec.ish:
                cases.append(spec)
            else:
                notes.append(f"{p}: no slide or image inside, skipped")
        elif p.suffix.lower() in IMAGE_SUFFIXES or _format(p):
            cases.append(CaseSpec(p.stem if p.stem else p.name, ihc=str(p)))
        else:
            notes.append(f"{p}: not a slide or image, skipped")
    ids = [c.case_id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"two inputs would share case id(s) {dup}", folder, "rename one of them")
    return cases, notes


def _read_manifest(path: Path) -> list[CaseSpec]:
    if not path.is_file():
        raise InputError("manifest not found", path, "give a CSV with columns case_id,ihc,ish")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if not rows or "case_id" not in rows[0]:
        raise InputError("manifest needs a header line case_id,ihc,ish", path, "add the header")
    merged: dict[str, dict] = {}
    for r in rows:
        cid = (r.get("case_id") or "").strip()
        if not cid:
            raise InputError("a manifest row has no case_id", path, "fill in case_id on every row")
        m = merged.setdefault(cid, {"ihc": None, "ish": []})
        resolve = lambda v: str((path.parent / v.strip()).resolve())  # noqa: E731
        if (r.get("ihc") or "").strip():
            m["ihc"] = resolve(r["ihc"])
        m["ish"] += [resolve(v) for v in (r.get("ish") or "").split(";") if v.strip()]
    return [CaseSpec(cid, m["ihc"], tuple(m["ish"])) for cid, m in merged.items()]


def inputs_digest(spec: CaseSpec) -> str:
    """sha256 over the case's input files (a missing file hashes as its absence)."""
    h = hashlib.sha256()
    for p in spec.paths:
        h.update(p.encode())
        try:
            h.update(file_sha256(p).encode())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()


# -- one case (runs in a worker process or on a Dask worker) --------------------


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (VmHWM; 0 where /proc is missing).

    Not ``getrusage``: its ru_maxrss survives exec, so a child started by a
    bigger process would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def run_one(spec: CaseSpec, out: str, options: BatchOptions, run_id: str, config_sha: str,
            progress_queue=None) -> Record:
    """Run one case into a private partial folder; never raises for bad input."""
    from .case import run_case
    from .report import write_report

    _one_thread()
    started, t0 = _stamp(), time.perf_counter()
    inputs = ";".join(spec.paths)
    rec = Record(spec.case_id, "failed", inputs, input_sha256=spec.input_sha256 or inputs_digest(spec),
                 config_sha256=config_sha,
                 started=started)
    partial = Path(out) / "cases" / f".{spec.case_id}.{run_id}.partial"
    try:
        if spec.error:
            raise Her2PathError(spec.error)   # already one line with file and fix
        report = (lambda done, total: progress_queue.put((spec.case_id, done, total))) if progress_queue else False
        result = run_case(spec.ihc, list(spec.ish) or None, partial, options.guideline, options.channels,
                          options.brightfield, case_id=spec.case_id, workers=1, progress=report,
                          config=options.config)
        write_report(partial)
        rec.state = "done"
        rec.status, rec.sub_label, rec.score = result.status, result.sub_label, result.ihc_score
        rec.ish_group, rec.ratio, rec.next_step = result.ish_group, result.ratio, result.next_step
        rec.model_sha256 = (result.ihc or {}).get("provenance", {}).get("model_sha256")
        rec.partial = str(partial)
    except Her2PathError as exc:
        rec.error = exc.one_line()
    except Exception as exc:   # a bug: the case fails, the batch goes on
        rec.error = f"internal error: {type(exc).__name__}: {exc}"
    if rec.state == "failed":
        shutil.rmtree(partial, ignore_errors=True)
    rec.finished, rec.seconds = _stamp(), round(time.perf_counter() - t0, 3)
    rec.peak_rss_mib = round(peak_rss_mib(), 1)
    return rec


def _one_thread() -> None:
    """One OpenCV / torch thread per case: the cases are the parallelism (local workers or Dask)."""
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


# -- the results store ------------------------------------------------------------

class ResultsDB:
    """One row per case in ``results.sqlite`` (WAL); written by the coordinator only."""

    def __init__(self, path: Path):
        self.con = sqlite3.connect(path, timeout=30)
        self.con.execute("PRAGMA journal_mode=WAL")
        cols = ", ".join(c + (" TEXT PRIMARY KEY" if c == "case_id" else "") for c in COLUMNS)
        self.con.execute(f"CREATE TABLE IF NOT EXISTS cases ({cols})")
        self.con.commit()

    def get(self, case_id: str) -> dict | None:
        row = self.con.execute(f"SELECT {', '.join(COLUMNS)} FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        return dict(zip(COLUMNS, row)) if row else None

    def put(self, rec: Record) -> None:
        values = asdict(rec)
        with self.con:
            self.con.execute(f"INSERT OR REPLACE INTO cases ({', '.join(COLUMNS)}) "
                             f"VALUES ({', '.join('?' * len(COLUMNS))})",
                             [values[c] for c in COLUMNS])

    def rows(self, ids: list[str]) -> list[dict]:
        return [r for r in (self.get(i) for i in sorted(ids)) if r]

    def close(self) -> None:
        self.con.close()


def _commit(rec: Record, out: Path, db: ResultsDB) -> None:
    """Move a finished case into place, then record it (a crash between the two is redone next run)."""
    final = out / "cases" / rec.case_id
    if rec.state == "done":
        if final.exists():
            shutil.rmtree(final)
        os.replace(rec.partial, final)
    elif final.exists():
        shutil.rmtree(final)           # a case that now fails keeps no stale result
    rec.partial = None
    db.put(rec)


def write_summary(out: Path, rows: list[dict]) -> Path:
    cols = ("case_id", "state", "status", "sub_label", "score", "ish_group", "ratio", "seconds", "error")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r[c] is None else r[c] for c in cols])
    atomic_write_bytes(out / "summary.csv", buf.getvalue().encode())
    return out / "summary.csv"


# -- the run ----------------------------------------------------------------------

@dataclass
class BatchResult:
    out: Path
    rows: list[dict]
    skipped: list[str]
    notes: list[str]
    seconds: float

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["state"] != "done"]


def run_batch(folder, out, workers: int = 1, scheduler: str | None = None, manifest=None,
              options: BatchOptions = BatchOptions(), force: bool = False, progress: bool = False) -> BatchResult:
    """Run every case of ``folder`` (or of ``manifest``) into ``out``; see the module docstring."""
    t0 = time.perf_counter()
    out = Path(out)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    for stale in (out / "cases").glob(".*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    specs, notes = find_cases(folder, manifest)
    db = ResultsDB(out / "results.sqlite")
    config_sha = options.digest()
    todo, skipped = [], []
    for s in specs:
        s = replace(s, input_sha256=inputs_digest(s))     # hashed once per run, here
        row = db.get(s.case_id)
        if (not force and row and row["state"] == "done" and row["config_sha256"] == config_sha
                and row["input_sha256"] == s.input_sha256 and (out / "cases" / s.case_id / "result.json").exists()):
            skipped.append(s.case_id)
        else:
            todo.append(s)
    run_id = uuid.uuid4().hex[:8]
    bars = _Bars(len(specs), len(skipped)) if progress else None
    try:
        if scheduler:
            _run_dask(todo, out, options, run_id, config_sha, scheduler, db, bars)
        else:
            _run_local(todo, out, options, run_id, config_sha, max(1, workers), db, bars)
    finally:
        if bars:
            bars.stop()
    rows = db.rows([s.case_id for s in specs])
    db.close()
    write_summary(out, rows)
    return BatchResult(out, rows, skipped, notes, time.perf_counter() - t0)


def _run_local(todo, out, options, run_id, config_sha, workers, db, bars, work=None) -> None:
    """Cases in spawned worker processes. A worker that dies (killed for memory, a crash in a
    native library) breaks the pool: the cases it took down are rerun one at a time in a fresh
    process, so that only the case that kills its worker fails."""
    if not todo:
        return
    work = work or run_one
    ctx = mp.get_context("spawn")
    manager = ctx.Manager() if bars else None
    q = manager.Queue() if manager else None
    try:
        for spec in _pool_pass(todo, workers, work, ctx, q, out, options, run_id, config_sha, db, bars):
            again = _pool_pass([spec], 1, work, ctx, q, out, options, run_id, config_sha, db, bars)
            if again:
                rec = Record(spec.case_id, "failed", ";".join(spec.paths),
                             error=f"cases/{spec.case_id}: the worker process died on this case (out of memory "
                                   "or a crash in a native library). Fix: check the input, or run it alone",
                             input_sha256=spec.input_sha256, config_sha256=config_sha)
                _commit(rec, out, db)
                if bars:
                    bars.case_done(rec)
    finally:
        if manager:
            manager.shutdown()


def _pool_pass(specs, workers, work, ctx, q, out, options, run_id, config_sha, db, bars) -> list[CaseSpec]:
    """Run ``specs`` in one pool and commit what finishes; returns the cases lost to a broken pool."""
    lost = []
    with _single_threaded_children():     # workers start at the first submit: inside, they get 1 BLAS thread
        pool = ProcessPoolExecutor(workers, mp_context=ctx)
        pending = {pool.submit(work, s, str(out), options, run_id, config_sha, q): s for s in specs}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if bars:
                bars.drain(q)
            for f in done:
                spec = pending.pop(f)
                try:
                    rec = f.result()
                except BrokenProcessPool:
                    lost.append(spec)
                    continue
                _commit(rec, out, db)
                if bars:
                    bars.case_done(rec)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return lost


def _run_dask(todo, out, options, run_id, config_sha, scheduler, db, bars) -> None:
    from distributed import Client, as_completed

    if not todo:
        return
    with Client(scheduler) as client:
        futures = {client.submit(run_one, s, str(Path(out).resolve()), options, run_id, config_sha, None,
                                 key=f"her2path-{run_id}-{s.case_id}", pure=False): s for s in todo}
        for f in as_completed(list(futures)):
            spec = futures[f]
            try:
                rec = f.result()
            except Exception as exc:
                rec = Record(spec.case_id, "failed", ";".join(spec.paths), error=f"worker died: {exc}",
                             input_sha256=spec.input_sha256, config_sha256=config_sha)
            _commit(rec, out, db)
            if bars:
                bars.case_done(rec)


class _Bars:
    """A bar for the run (cases, ETA) and one per running slide (tiles)."""

    def __init__(self, total: int, skipped: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=Console(stderr=True), transient=True)
        self.p.start()
        self.run = self.p.add_task("[bold]cases[/bold]", total=total, completed=skipped)
        self.tiles: dict[str, int] = {}

    def drain(self, q) -> None:
        while True:
            try:
                case_id, done, total = q.get_nowait()
            except (queue_mod.Empty, OSError, EOFError):
                return
            if case_id not in self.tiles:
                self.tiles[case_id] = self.p.add_task(f"  {case_id} tiles", total=total)
            self.p.update(self.tiles[case_id], completed=done)

    def case_done(self, rec: Record) -> None:
        if rec.case_id in self.tiles:
            self.p.remove_task(self.tiles.pop(rec.case_id))
        self.p.advance(self.run)

    def stop(self) -> None:
        self.p.stop()
