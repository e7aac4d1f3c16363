"""``her2path calibrate``: fit the per-cell membrane cut-offs to a lab's annotated tiles.

Each tile is measured once (cells, membrane completeness and DAB intensity, with
stains estimated over the dataset); then the cut-offs that turn measurements into
cell classes -- ``min_stained_fraction`` (1+), ``weak_od`` (2+), ``intense_od`` (3+) and
``complete_fraction`` --
are searched coordinate by coordinate for the best tile-score agreement with the
annotations (ties: higher QWK). The rules stay readable: only those four numbers
change, and the new config says where they came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..config import DEFAULT_CONFIG, Settings, load_settings, read_yaml
from ..ihc.tile import analyze_tile
from ..rules.ihc import cell_classes, ihc_decision
from ..rules.tables import Guideline, load_guideline
from ..schema import CLASSES
from ..ihc.stain import stains_for
from ..io.writers import atomic_write_bytes
from .datasets import load_tile_set, read_tile
from .metrics import qwk
from .model import TILE_MPP, TILE_PX

GRID = {"min_stained_fraction": np.round(np.arange(0.05, 0.51, 0.05), 2),
        "weak_od": np.round(np.arange(0.015, 0.081, 0.005), 3),
        "intense_od": np.round(np.arange(0.04, 0.201, 0.01), 3),
        "complete_fraction": np.round(np.arange(0.5, 0.91, 0.05), 2)}


@dataclass
class Measured:
    completeness: np.ndarray
    intensity: np.ndarray
    cytoplasm: np.ndarray
    xy_um: np.ndarray


def measure(paths, settings: Settings, mpp: float = TILE_MPP) -> list[Measured]:
    """Per-tile tumour-cell measurements (in-focus cells only)."""
    tiles = [read_tile(p, TILE_PX) for p in paths]
    sample = np.concatenate([t[::4, ::4].reshape(-1, 3) for t in tiles[:: max(1, len(tiles) // 64)]])
    stains = stains_for(sample, settings.ihc.stains)
    out = []
    for rgb in tiles:
        c = analyze_tile(rgb, mpp, stains, settings.ihc)
        k = c.tumour & ~c.excluded
        out.append(Measured(c.completeness[k], c.intensity[k], c.cytoplasm[k], c.xy[k] * mpp))
    return out


def tile_scores(measured: list[Measured], cell_class, guideline: Guideline) -> np.ndarray:
    """Guideline score (0..3) of every tile under a cell-class config."""
    gastric = guideline.ihc.u_shaped_complete
    out = []
    for m in measured:
        cls = cell_classes(m.completeness, m.intensity, cell_class, gastric).cls
        # An annotated tile is scored on the cells it holds, however few (a slide's minimum is for
        # whole slides); one with no tumour cell found shows no staining and counts as 0.
        score = ihc_decision(cls, m.xy_um, guideline, min_cells=1).score if len(cls) else "0"
        out.append(CLASSES.index(score))
    return np.array(out, int)


def _agreement(pred, labels) -> tuple[float, float]:
    return float(np.mean(pred == labels)), qwk(labels, pred)


def calibrate(dataset: str | Path, out: str | Path, config: str | Path | None = None,
              guideline: str = "breast", rounds: int = 2) -> dict:
    """Fit the cut-offs on the dataset and write a config YAML; returns before/after agreement."""
    ts = load_tile_set(dataset)
    settings = load_settings(config)
    table = load_guideline(guideline)
    measured = measure(ts.paths, settings)
    mem = settings.ihc.cell_class
    before = _agreement(tile_scores(measured, mem, table), ts.labels)
    best = before
    for _ in range(rounds):
        for key, values in GRID.items():
            for v in values:
                cand = mem.model_copy(update={key: float(v)})
                if cand.intense_od <= cand.weak_od:
                    continue
                score = _agreement(tile_scores(measured, cand, table), ts.labels)
                if score > best:
                    best, mem = score, cand
    data = read_yaml(Path(config) if config else DEFAULT_CONFIG)
    changed = {k: getattr(mem, k) for k in GRID}
    data.setdefault("ihc", {}).setdefault("cell_class", {}).update(changed)
    head = (f"# her2path calibrate: cut-offs fitted to {len(ts)} annotated tiles of {dataset}\n"
            f"# tile-score agreement {before[0]:.3f} -> {best[0]:.3f} (QWK {before[1]:.3f} -> {best[1]:.3f})\n")
    Settings.model_validate(data)
    atomic_write_bytes(Path(out), (head + yaml.safe_dump(data, sort_keys=False)).encode())
    return {"tiles": len(ts), "before": {"accuracy": before[0], "qwk": before[1]},
            "after": {"accuracy": best[0], "qwk": best[1]}, "cutoffs": changed, "config": str(out)}
