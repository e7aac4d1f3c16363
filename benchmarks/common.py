"""Helpers shared by the benchmarks: peak memory, timing, result files, tables."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.spatial import cKDTree

from her2path.pipeline.batch import peak_rss_mib  # noqa: F401  (re-exported for the benchmarks)

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).parent / ".cache"


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def machine() -> dict:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(*columns, title=title)
    for r in rows:
        table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in r])
    Console(width=200).print(table)


def match(truth_xy, pred_xy, radius):
    """Mutual nearest neighbours within ``radius`` px: (truth index, pred index) arrays."""
    if len(truth_xy) == 0 or len(pred_xy) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d1, i1 = cKDTree(pred_xy).query(truth_xy)
    _, i2 = cKDTree(truth_xy).query(pred_xy)
    ok = (d1 <= radius) & (i2[i1] == np.arange(len(truth_xy)))
    return np.flatnonzero(ok), i1[ok]
