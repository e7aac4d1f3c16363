"""Progress of a run for the people watching it: named stages, counted steps, on a terminal or in a log.

A run reports ``stage(name, total)`` when it enters a stage (open, tissue,
stains, tiles, outputs ...) and ``advance(done)`` as the stage's steps finish.
On a terminal that is a live bar per stage (rich, on stderr); off a terminal
(nohup, CI, a pipe, ``> log.txt``) it is plain timestamped lines, one per
stage and one per tenth of its steps or per ``every_s`` seconds, whichever is
rarer, so a long run shows that it lives without flooding the log.
``Silent`` (``--quiet``) reports nothing.

Examples
--------
>>> import io
>>> s = io.StringIO()
>>> p = LogLines(s, "ihc", every_s=0)
>>> p.stage("tiles", 2); p.advance(1); p.advance(2); p.close()
>>> [line.split(" ", 1)[1] for line in s.getvalue().splitlines()]
['her2path ihc: tiles (2 steps)', 'her2path ihc: tiles 1/2', 'her2path ihc: tiles 2/2', 'her2path ihc: done']
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime


class Progress:
    """Reports nothing; the interface every reporter shares (and ``--quiet``)."""

    def stage(self, name: str, total: int | None = None) -> None:
        """Enter stage ``name`` of ``total`` steps (None: not counted)."""

    def advance(self, done: int) -> None:
        """``done`` steps of the current stage have finished."""

    def note(self, text: str) -> None:
        """A line worth keeping in a log (a finished case); nothing on a terminal bar."""

    def close(self) -> None:
        """The run is over."""


Silent = Progress


class Callback(Progress):
    """Calls ``fn(done, total)`` for the steps of the ``tiles`` stage (a batch relays them to its bars)."""

    def __init__(self, fn: Callable[[int, int], None]):
        self.fn, self.name, self.total = fn, "", 0

    def stage(self, name, total=None):
        self.name, self.total = name, total or 0

    def advance(self, done):
        if self.name == "tiles":
            self.fn(done, self.total)


class LogLines(Progress):
    """Timestamped lines on ``stream``: a stage, then at most one line per tenth of its steps and
    ``every_s`` seconds (the last step always)."""

    def __init__(self, stream, command: str, every_s: float = 5.0, clock=time.monotonic):
        self.stream, self.prefix, self.every_s, self.clock = stream, f"her2path {command}:", every_s, clock
        self.name, self.total, self.last_t, self.last_done = "", None, 0.0, 0

    def _line(self, text: str) -> None:
        stamp = datetime.now().isoformat(timespec="seconds")
        print(f"{stamp} {self.prefix} {text}", file=self.stream, flush=True)

    def stage(self, name, total=None):
        self.name, self.total, self.last_t, self.last_done = name, total, self.clock(), 0
        self._line(f"{name} ({total} steps)" if total else name)

    def advance(self, done):
        if not self.total:
            return
        now = self.clock()
        step = max(1, self.total // 10)
        if done >= self.total or (done - self.last_done >= step and now - self.last_t >= self.every_s):
            self._line(f"{self.name} {done}/{self.total}")
            self.last_t, self.last_done = now, done

    def note(self, text):
        self._line(text)

    def close(self):
        self._line("done")


class TerminalBar(Progress):
    """A live bar on stderr named after the current stage (cleared when the run ends)."""

    def __init__(self, command: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn, TimeRemainingColumn

        self.bars = Bars(TextColumn(f"her2path {command}: " + "{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.bars.start()
        self.task = None

    def stage(self, name, total=None):
        if self.task is not None:
            self.bars.remove_task(self.task)
        self.task = self.bars.add_task(name, total=total)

    def advance(self, done):
        if self.task is not None:
            self.bars.update(self.task, completed=done)

    def close(self):
        self.bars.stop()


def reporter(progress) -> Progress:
    """A ``Progress`` from what callers pass: a Progress, a callable ``(done, total)``, True (a bar on
    a terminal, log lines on stderr off one) or False / None (silent)."""
    if isinstance(progress, Progress):
        return progress
    if callable(progress):
        return Callback(progress)
    if progress:
        return TerminalBar("run") if sys.stderr.isatty() else LogLines(sys.stderr, "run")
    return Silent()


def for_command(command: str, quiet: bool = False, json_out: bool = False, bar: bool = True) -> Progress:
    """The reporter of a CLI command: nothing with ``--quiet``; log lines on stdout when stdout is
    not a terminal (on stderr with ``--json``, which owns stdout); else a bar on a terminal (None
    with ``bar=False``: the caller draws its own)."""
    if quiet:
        return Silent()
    if not json_out and not sys.stdout.isatty():
        return LogLines(sys.stdout, command)
    if sys.stderr.isatty():
        return TerminalBar(command) if bar else None
    return LogLines(sys.stderr, command)


@contextmanager
def reporting(progress) -> Iterator[Progress]:
    """``reporter(progress)`` for a block; a reporter made here (not passed in) is closed after it."""
    own = not isinstance(progress, Progress)
    p = reporter(progress)
    try:
        yield p
    finally:
        if own:
            p.close()
