"""Choose the tumour-cell rules (``ihc.tumour``) over the randomised generator's tuning seeds.

    python -m benchmarks.tune_tumour [--n 80] [--refresh]

Every tuning field (the seeds and sizes of ``benchmarks.tune_cell_class``:
nuisances drawn over their whole range, never one preset) is measured once by
``measure_ihc`` (``score_ihc`` before the guideline decides); every cell of
every tile is kept with the features the tumour decision reads
(``ihc.tumour.TumourFeatures``) and its membrane measurements. The rules are then re-decided offline, tile by tile, for each
candidate setting, and searched coordinate by coordinate for the best
tumour-cell F1 against the generator's truth (a cell found where the truth
holds a tumour cell), ties broken by slide-score agreement. The offline
decision sees the cells of each tile's core (the pipeline also sees the
margin's), so its figures are close to, not equal to, a full run's: the
chosen setting is then checked by ``benchmarks.ihc_random --set test`` (never
used here) and ``benchmarks.real_ihc``. Writes benchmarks/results/tune_tumour.json.
"""
from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

from her2path.config import TumourConfig, load_settings
from her2path.ihc.tumour import decide_tumour
from her2path.pipeline import ihc_slide
from her2path.rules.ihc import cell_classes, ihc_decision
from her2path.rules.tables import load_guideline

from .common import CACHE, match, print_table, write_results
from .tune_cell_class import tuning_fields

GRID = {"min_area_um2": [10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 24.0],
        "max_relative_h": [1.2, 1.28, 1.4, 1.6, 2.0, 100.0],
        "lymphocyte_max_area_um2": [25.0, 30.0, 35.0, 40.0],
        "min_contrast_od": [0.02, 0.03, 0.04, 0.05],
        "max_axis_ratio": [1.8, 2.2, 2.6, 3.0],
        "link_factor": [2.0, 2.25, 2.5, 3.0, 4.0, 5.0],
        "min_group_cells": [4, 6, 8, 10, 12, 16, 20],
        "max_coherence": [0.35, 0.45, 0.55, 0.65, 1.0],
        "min_membrane_fraction": [0.04, 0.06, 0.08, 0.12, 0.2],
        "enlarged_factor": [2.0, 2.5, 3.0, 4.0, 1e9]}    # 1e9: no enlarged-nucleus rule


def measure(n: int) -> list[dict]:
    """Per field: its truth and, per tile, every cell's features, measurements and level-0 position."""
    fields = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (spec, f, path) in enumerate(tuning_fields(n, Path(tmp))):
            m = ihc_slide.measure_ihc(path, workers=1)
            margin = ihc_slide.tile_margin_px(m.settings, m.grid.mpp)
            scale = m.grid.mpp / spec.mpp                  # level-0 px per analysis px
            tiles = []
            for tile, (tc, _) in zip(m.grid.tiles, m.tiles):
                tiles.append({"features": tc.features, "excluded": tc.excluded,
                              "completeness": tc.completeness, "intensity": tc.intensity,
                              "xy0": np.c_[tile.x + (tc.xy[:, 0] - margin) * scale,
                                           tile.y + (tc.xy[:, 1] - margin) * scale]})
            fields.append({"seed": spec.seed, "guideline": spec.guideline, "mpp": spec.mpp,
                           "cell_um": spec.cell_um, "axes": f.axes, "truth_xy": f.truth.xy_px,
                           "truth_score": f.decision.score, "dab_absent": m.stains.dab_absent,
                           "tiles": tiles})
            print(f"  field {k + 1}/{n}", file=sys.stderr, flush=True)
    return fields


def evaluate(fields: list[dict], cfg: TumourConfig) -> dict:
    """Tumour-cell recall, precision, F1 and slide-score agreement of one setting of the rules."""
    settings = load_settings()
    found = truth = matched = agree = 0
    for fl in fields:
        table = load_guideline(fl["guideline"])
        xy, comp, inten = [], [], []
        for t in fl["tiles"]:
            tumour = decide_tumour(t["features"], cfg) & ~t["excluded"]
            xy.append(t["xy0"][tumour])
            comp.append(t["completeness"][tumour])
            inten.append(t["intensity"][tumour])
        xy = np.concatenate(xy) if xy else np.zeros((0, 2))
        calls = cell_classes(np.concatenate(comp), np.concatenate(inten), settings.ihc.cell_class,
                             table.ihc.u_shaped_complete, fl["dab_absent"])
        agree += ihc_decision(calls.cls, xy * fl["mpp"], table).score == fl["truth_score"]
        ti, _ = match(fl["truth_xy"], xy, 0.6 * fl["cell_um"] / fl["mpp"])
        found, truth, matched = found + len(xy), truth + len(fl["truth_xy"]), matched + len(ti)
    recall, precision = matched / max(truth, 1), matched / max(found, 1)
    return {"recall": recall, "precision": precision,
            "f1": 2 * recall * precision / max(recall + precision, 1e-9), "agreement": agree / len(fields)}


def _rank(e: dict) -> tuple:
    return round(e["f1"], 4), e["agreement"]


def search(fields: list[dict], start: TumourConfig, sweeps: int = 2) -> tuple[TumourConfig, list[list]]:
    """Coordinate search over ``GRID`` from ``start``: best F1, then agreement."""
    best = start
    best_eval = evaluate(fields, best)
    trail = [["start", "", best_eval["f1"], best_eval["recall"], best_eval["precision"], best_eval["agreement"]]]
    for _ in range(sweeps):
        for name, values in GRID.items():
            for v in values:
                cand = best.model_copy(update={name: v})
                e = evaluate(fields, cand)
                if _rank(e) > _rank(best_eval):
                    best, best_eval = cand, e
            trail.append([name, getattr(best, name), best_eval["f1"], best_eval["recall"], best_eval["precision"],
                          best_eval["agreement"]])
    return best, trail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--refresh", action="store_true", help="score the fields again instead of the cache")
    args = ap.parse_args(argv)
    cache = CACHE / f"tune_tumour_{args.n}.pkl"
    if cache.exists() and not args.refresh:
        fields = pickle.loads(cache.read_bytes())
    else:
        fields = measure(args.n)
        CACHE.mkdir(exist_ok=True)
        cache.write_bytes(pickle.dumps(fields))
    start = load_settings().ihc.tumour
    best, trail = search(fields, start)
    print_table(f"Tumour-cell rules, coordinate search over {len(fields)} tuning fields",
                ["parameter", "value", "F1", "recall", "precision", "slide agreement"], trail)
    changed = {k: getattr(best, k) for k in GRID if getattr(best, k) != getattr(start, k)}
    print("changed:", changed)
    p = write_results("tune_tumour", {"fields": len(fields), "start": start.model_dump(), "chosen": best.model_dump(),
                                      "changed": changed, "trail": trail,
                                      "start_eval": evaluate(fields, start), "chosen_eval": evaluate(fields, best)})
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
