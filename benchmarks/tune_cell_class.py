"""Choose the per-cell class cut-offs (``ihc.cell_class``) over the randomised generator's tuning seeds.

    python -m benchmarks.tune_cell_class [--n 80] [--workers 1]

Every tuning field (``benchmarks.ihc_random --set tune``: nuisances drawn over
their whole range, never one preset) is scored once; then the cut-offs are
searched coordinate by coordinate for the best slide-score agreement with the
truth, ties broken by per-cell quadratic weighted kappa and then by the mean
percent-of-cells error. The result is printed as a ``cell_class`` block for
configs/default.yaml and written to benchmarks/results/tune_cell_class.json.
The test seeds (``--set test``) are never used here.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from her2path.classify.metrics import qwk
from her2path.config import CellClassConfig, load_settings
from her2path.pipeline.ihc_slide import score_ihc
from her2path.rules.ihc import cell_classes, ihc_decision
from her2path.rules.tables import load_guideline
from her2path.schema import CLASSES
from her2path.synthetic.tissue import random_spec, render_tissue

from .common import CACHE, match, write_results
from .ihc_random import SEEDS, SIZE, guideline_for, write_field

GRID = {"min_stained_fraction": np.round(np.arange(0.02, 0.41, 0.03), 2),
        "complete_fraction": np.round(np.arange(0.2, 0.86, 0.05), 2),
        "weak_od": np.round(np.arange(0.01, 0.081, 0.005), 3),
        "intense_od": np.round(np.arange(0.05, 0.251, 0.01), 3),
        "basolateral_fraction": np.round(np.arange(0.1, 0.61, 0.05), 2)}


def tuning_fields(n: int, folder: Path):
    """The ``n`` tuning fields of the randomised generator, each written in ``folder`` as a user's file
    (JPEG where the field was encoded, as ``benchmarks.ihc_random`` scores them): yields (spec,
    rendered field, path). Shared by the tuning benchmarks, so they tune on the same fields."""
    for k in range(n):
        spec = random_spec(SEEDS["tune"] + k, guideline=guideline_for(k), **SIZE)
        f = render_tissue(spec)
        yield spec, f, write_field(spec, f, folder)


def measure(n: int, workers: int) -> list[dict]:
    """Per field: every tumour cell's measurements and, where matched, its true class."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, f, path in tuning_fields(n, Path(tmp)):
            r = score_ihc(path, guideline=spec.guideline, workers=workers)
            pred = np.c_[r.cells.x, r.cells.y]
            ti, pi = match(f.truth.xy_px, pred, 0.6 * spec.cell_um / spec.mpp)
            truth_cls = np.full(len(pred), -1)
            truth_cls[pi] = [CLASSES.index(c) for c in f.truth.cls[ti]]
            out.append({"guideline": spec.guideline, "truth_score": f.decision.score,
                        "truth_percent": f.decision.percent, "completeness": np.array(r.cells.completeness),
                        "intensity": np.array(r.cells.intensity), "truth_cls": truth_cls,
                        "xy_um": pred * r.scan_mpp})
    return out


def evaluate(fields: list[dict], cfg: CellClassConfig) -> tuple[float, float, float]:
    """(slide agreement, cell QWK, mean percent MAE) of the cut-offs ``cfg``."""
    agree, mae, tc, pc = [], [], [], []
    for f in fields:
        g = load_guideline(f["guideline"])
        cls = cell_classes(f["completeness"], f["intensity"], cfg, g.ihc.u_shaped_complete).cls
        d = ihc_decision(cls, f["xy_um"], g)
        agree.append(d.score == f["truth_score"])
        mae.append(np.mean([abs(d.percent[c] - f["truth_percent"][c]) for c in CLASSES]))
        m = f["truth_cls"] >= 0
        tc.append(f["truth_cls"][m])
        pc.append(np.array([CLASSES.index(c) for c in cls[m]], int))
    return float(np.mean(agree)), qwk(np.concatenate(tc), np.concatenate(pc)), float(np.mean(mae))


def search(fields: list[dict], start: CellClassConfig, rounds: int = 3) -> tuple[CellClassConfig, tuple]:
    best_cfg = start
    best = evaluate(fields, start)
    key = lambda s: (s[0], s[1], -s[2])   # noqa: E731
    for _ in range(rounds):
        for name, values in GRID.items():
            for v in values:
                try:
                    cand = CellClassConfig.model_validate({**best_cfg.model_dump(), name: float(v)})
                except ValueError:
                    continue
                s = evaluate(fields, cand)
                if key(s) > key(best):
                    best, best_cfg = s, cand
    return best_cfg, best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reuse", action="store_true", help="reuse the measurements of the last run (cut-offs only)")
    args = ap.parse_args(argv)
    import pickle

    cache = CACHE / "tune_cell_class.pkl"
    if args.reuse and cache.is_file():
        fields = pickle.loads(cache.read_bytes())
    else:
        fields = measure(args.n, args.workers)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(fields))
    start = load_settings().ihc.cell_class
    before = evaluate(fields, start)
    cfg, after = search(fields, start)
    print(f"{len(fields)} tuning fields: slide agreement {before[0]:.3f} -> {after[0]:.3f}, "
          f"cell QWK {before[1]:.3f} -> {after[1]:.3f}, percent MAE {before[2]:.2f} -> {after[2]:.2f}")
    print("  cell_class:")
    for k, v in cfg.model_dump().items():
        print(f"    {k}: {v}")
    write_results("tune_cell_class", {"fields": len(fields), "before": before, "after": after,
                                      "cell_class": cfg.model_dump()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
