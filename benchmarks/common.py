"""Helpers shared by the benchmarks: peak memory, timing, result files, tables."""
from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.spatial import cKDTree

from her2path.pipeline.batch import peak_rss_mib  # noqa: F401  (re-exported for the benchmarks)

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).parent / ".cache"


def baseline_tree(rev: str) -> Path:
    """A git worktree of commit ``rev`` in benchmarks/.cache (made once): the code a benchmark compares
    against in the same run."""
    root = Path(__file__).resolve().parents[1]
    tree = CACHE / f"baseline-{rev}"
    if not (tree / "her2path").is_dir():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-f", str(tree), rev], check=True,
                       capture_output=True)
    return tree


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def machine() -> dict:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}


def bigfish_version() -> str:
    """The Big-FISH that ``import bigfish`` finds: its version and where it lies.

    big-fish-reloaded (the maintained fork) installs as the same ``bigfish``
    module, so it cannot sit beside Big-FISH 0.6.2 in one environment; to
    run the peer benchmarks with it, ``pip install --no-deps --target DIR
    big-fish-reloaded`` and put DIR first on ``PYTHONPATH``.
    """
    import bigfish

    return f"{bigfish.__version__} ({Path(bigfish.__file__).parent})"


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
