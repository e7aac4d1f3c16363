"""``her2path batch``: every case of a folder, resumable and fault-isolated, local or on Dask.

Cases come from ``cases.find_cases``. Each runs end to end in a worker
(``run_one``: ``run_case`` into a private partial folder); only this process,
the coordinator, commits finished folders and writes ``results.sqlite``
(``results_store.commit``: no gap in which neither the old nor the new result
is in place). A rerun skips a case whose inputs and settings are unchanged and
whose files still match the sha256s recorded for them; a case whose files are
missing, damaged or edited is redone, and the note says why. Failed cases are
retried. A worker that dies (killed for memory, a crash in a native library)
takes down only its own case.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import queue as queue_mod
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

from .._version import SOFTWARE
from ..errors import Her2PathError
from ..progress import Progress
from ..provenance import digest_files
from .cases import CaseSpec, find_cases
from .layout import BatchLayout
from .results_store import Record, ResultsDB, commit, read_checksums, recover, verify_row, write_summary
from .workers import limit_threads, single_threaded_children


@dataclass(frozen=True)
class BatchOptions:
    """What besides the inputs decides a result: guideline, settings file and ISH reading options."""

    guideline: str = "breast"
    config: str | None = None
    channels: tuple[str, ...] = ("her2", "cep17", "dapi")
    brightfield: bool = False

    def digest(self) -> str:
        """sha256 of the settings, the guideline table, the options and the software version."""
        from ..config import load_settings
        from ..rules.tables import load_guideline

        text = json.dumps({"settings": load_settings(self.config).digest(),
                           "guideline": load_guideline(self.guideline).model_dump(mode="json"),
                           "channels": self.channels, "brightfield": self.brightfield,
                           "software": SOFTWARE}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunContext:
    """What every case of one run shares (sent to each worker with its case)."""

    out: str
    options: BatchOptions
    run_id: str
    config_sha256: str


def inputs_digest(spec: CaseSpec) -> str:
    """The input digest of a case (``provenance.digest_files``); unreadable inputs hash as such."""
    try:
        return digest_files(spec.paths)
    except OSError:
        return hashlib.sha256(("<unreadable>" + ";".join(spec.paths)).encode()).hexdigest()


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


# -- one case (runs in a worker process or on a Dask worker) --------------------

def run_one(spec: CaseSpec, ctx: RunContext, progress_queue=None) -> Record:
    """Run one case into a private partial folder; never raises for bad input or a bug."""
    from .case import run_case

    limit_threads()
    started, t0 = _stamp(), time.perf_counter()
    rec = Record(spec.case_id, "failed", ";".join(spec.paths), folder=spec.folder,
                 input_sha256=spec.input_sha256 or inputs_digest(spec), config_sha256=ctx.config_sha256,
                 started=started)
    partial = BatchLayout(ctx.out).partial(spec.folder, ctx.run_id)
    try:
        if spec.error:
            raise Her2PathError(spec.error)   # already one line with file and fix
        report = (lambda done, total: progress_queue.put((spec.case_id, done, total))) if progress_queue else False
        o = ctx.options
        result = run_case(spec.ihc, list(spec.ish) or None, partial, o.guideline, o.channels, o.brightfield,
                          case_id=spec.case_id, workers=1, progress=report, config=o.config, roi=spec.roi)
        rec.files = json.dumps(read_checksums(partial), sort_keys=True)   # written by run_case
        rec.state = "done"
        rec.status, rec.sub_label, rec.score = result.status, result.sub_label, result.ihc_score
        rec.ish_group, rec.ratio, rec.next_step = result.ish_group, result.ratio, result.next_step
        rec.model_sha256 = result.ihc.provenance.model_sha256 if result.ihc else None
        rec.partial = str(partial)
    except Her2PathError as exc:
        rec.error = exc.one_line()
    except OSError as exc:
        rec.error = f"{exc.filename or partial}: {exc.strerror or exc}. Fix: check that the output folder is " \
                    "writable and has free space"
    except Exception as exc:   # a bug: the case fails, the batch goes on
        rec.error = f"internal error: {type(exc).__name__}: {exc} (rerun the case alone with --debug and report it)"
    if rec.state == "failed":
        rec.partial = str(partial) if partial.exists() else None
    rec.finished, rec.seconds = _stamp(), round(time.perf_counter() - t0, 3)
    rec.peak_rss_mib = round(peak_rss_mib(), 1)
    return rec


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


def _plan(specs: list[CaseSpec], layout: BatchLayout, db: ResultsDB, config_sha: str, force: bool):
    """(cases to run, ids skipped as done and intact, notes on cases redone because their files changed)."""
    todo, skipped, notes = [], [], []
    for s in specs:
        s = replace(s, input_sha256=inputs_digest(s))     # hashed once per run, here
        row = db.get(s.case_id)
        same = (row and row["state"] == "done" and row["config_sha256"] == config_sha
                and row["input_sha256"] == s.input_sha256 and row["folder"] == s.folder)
        if same and not force:
            problems = verify_row(row, layout)
            if not problems:
                skipped.append(s.case_id)
                continue
            notes.append(f"{s.case_id}: redone, its files no longer match the run that made them "
                         f"({'; '.join(problems[:3])})")
        todo.append(s)
    return todo, skipped, notes


def run_batch(folder, out, workers: int = 1, scheduler: str | None = None, manifest=None,
              options: BatchOptions = BatchOptions(), force: bool = False, progress=False) -> BatchResult:
    """Run every case of ``folder`` (or of ``manifest``) into ``out``; see the module docstring.

    ``progress``: True for live bars on a terminal (cases and each running slide's tiles), a
    ``Progress`` (log lines: a line per finished case), or False."""
    t0 = time.perf_counter()
    layout = BatchLayout(out)
    layout.cases.mkdir(parents=True, exist_ok=True)
    specs, notes = find_cases(folder, manifest)
    notes += recover(layout)
    db = ResultsDB(layout.results_db)
    ctx = RunContext(str(Path(out).resolve()), options, uuid.uuid4().hex[:8], options.digest())
    todo, skipped, redo_notes = _plan(specs, layout, db, ctx.config_sha256, force)
    notes += redo_notes
    redone = {n.split(":", 1)[0] for n in redo_notes}
    if isinstance(progress, Progress):
        bars = _CaseLines(progress, len(specs), len(skipped))
    else:
        bars = _Bars(len(specs), len(skipped)) if progress else None
    try:
        if scheduler:
            _run_dask(todo, ctx, scheduler, db, bars, redone)
        else:
            _run_local(todo, ctx, max(1, workers), db, bars, redone=redone)
    finally:
        if bars:
            bars.stop()
    rows = db.rows([s.case_id for s in specs])
    db.close()
    write_summary(Path(out), rows)
    return BatchResult(Path(out), rows, skipped, notes, time.perf_counter() - t0)


def _finish(rec: Record, ctx: RunContext, db: ResultsDB, bars, redone=frozenset()) -> None:
    if rec.case_id in redone and rec.state == "done":
        rec.note = "redone: its files no longer matched the run that made them"
    commit(rec, BatchLayout(ctx.out), db, ctx.run_id)
    if bars:
        bars.case_done(rec)


def _run_local(todo, ctx: RunContext, workers: int, db: ResultsDB, bars, work=None, redone=frozenset()) -> None:
    """Cases in spawned worker processes. A worker that dies breaks the pool: the cases it took
    down are rerun one at a time in a fresh process, so that only the case that kills its worker fails."""
    if not todo:
        return
    work = work or run_one
    mpctx = mp.get_context("spawn")
    manager = mpctx.Manager() if isinstance(bars, _Bars) else None
    q = manager.Queue() if manager else None
    try:
        for spec in _pool_pass(todo, workers, work, mpctx, q, ctx, db, bars, redone):
            if _pool_pass([spec], 1, work, mpctx, q, ctx, db, bars, redone):
                rec = Record(spec.case_id, "failed", ";".join(spec.paths), folder=spec.folder,
                             error=f"cases/{spec.folder}: the worker process died on this case (out of memory "
                                   "or a crash in a native library). Fix: check the input, or run it alone",
                             input_sha256=spec.input_sha256, config_sha256=ctx.config_sha256)
                _finish(rec, ctx, db, bars)
    finally:
        if manager:
            manager.shutdown()


def _pool_pass(specs, workers, work, mpctx, q, ctx: RunContext, db, bars, redone) -> list[CaseSpec]:
    """Run ``specs`` in one pool and commit what finishes; returns the cases lost to a broken pool."""
    lost = []
    with single_threaded_children():     # workers start at the first submit: inside, they get 1 BLAS thread
        pool = ProcessPoolExecutor(workers, mp_context=mpctx)
        pending = {pool.submit(work, s, ctx, q): s for s in specs}
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
                _finish(rec, ctx, db, bars, redone)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return lost


def _run_dask(todo, ctx: RunContext, scheduler: str, db: ResultsDB, bars, redone) -> None:
    from distributed import Client, as_completed

    if not todo:
        return
    with Client(scheduler) as client:
        futures = {client.submit(run_one, s, ctx, None, key=f"her2path-{ctx.run_id}-{s.folder}", pure=False): s
                   for s in todo}
        for f in as_completed(list(futures)):
            spec = futures[f]
            try:
                rec = f.result()
            except Exception as exc:   # the worker died or the scheduler lost it: this case fails alone
                rec = Record(spec.case_id, "failed", ";".join(spec.paths), folder=spec.folder,
                             error=f"cases/{spec.folder}: the Dask worker failed on this case ({exc})",
                             input_sha256=spec.input_sha256, config_sha256=ctx.config_sha256)
            _finish(rec, ctx, db, bars, redone)


class _CaseLines:
    """Off a terminal: a line per finished case, with its state and the count so far."""

    def __init__(self, progress: Progress, total: int, skipped: int):
        self.p, self.done, self.total = progress, skipped, total
        progress.stage("cases", total)
        if skipped:
            progress.note(f"{skipped} of {total} cases already done (skipped)")

    def drain(self, q) -> None:
        """Tile progress is not logged (one line per case is enough for a log)."""

    def case_done(self, rec: Record) -> None:
        self.done += 1
        self.p.note(f"case {rec.case_id}: {rec.state}{f' ({rec.status})' if rec.status else ''} "
                    f"[{self.done}/{self.total}]")

    def stop(self) -> None:
        self.p.close()


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
