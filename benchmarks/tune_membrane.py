"""Choose the membrane tests (``ihc.membrane``), the stained-cell and intense cut-offs over the generator's tuning seeds.

    python -m benchmarks.tune_membrane [--n 80] [--negatives 24] [--workers 2]

Every tuning field (``benchmarks.tune_cell_class.tuning_fields``: nuisances
drawn over their whole range, JPEG where the field is, never one preset) and
the tuning negatives (nuclear DAB, H&E, cytoplasm-only DAB; seeds of
``benchmarks.ihc_random --set tune``) are segmented once, tile by tile, as
``measure_ihc`` does (``ihc.tile.segment_tile``: nuclei, cells, tumour). For
each candidate setting only the membranes are measured again
(``ihc.tile.measure_tile``) and the slide result is assembled by the
pipeline's own ``assemble``, so every rule (cell classes, the stain pattern,
the guideline) decides as it does for a user. The settings are searched
coordinate by coordinate: first the fewest negatives scored at all (a
negative is 0 or a no-call; 1+ would make it HER2-low), then the best
slide-score agreement, then cell QWK. The test
seeds are never used here; the chosen setting is checked by
``benchmarks.ihc_random --set test``, ``benchmarks.ihc_accuracy`` and
``benchmarks.real_ihc``. Writes benchmarks/results/tune_membrane.json.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
from pathlib import Path

import numpy as np

from her2path.config import Settings, load_settings
from her2path.ihc.tile import core_cells, measure_tile, segment_tile
from her2path.io.slide import open_image
from her2path.pipeline.ihc_slide import (SlideMeasurements, assemble, plan_slide, read_with_margin,
                                         tile_margin_px)
from her2path.rules.tables import load_guideline
from her2path.synthetic.tissue import NEGATIVES, random_spec, render_tissue

from .common import print_table, write_results
from .ihc_random import SEEDS, SIZE, field_row, summarise, write_field
from .tune_cell_class import tuning_fields

GRID = {"membrane.cytoplasm_contrast": [0.2, 0.3, 0.4, 0.5, 0.6],
        "membrane.relative_level": [0.25, 0.3, 0.4, 0.5],
        "membrane.noise_factor": [1.2, 1.5, 1.8, 2.2, 2.6],
        "membrane.arc_faint_od": [0.002, 0.005, 0.01],
        "membrane.faint_od": [0.02, 0.025, 0.03],   # below 0.02 OD (5% of the light) texture of unstained
                                                    # real tissue reads as 1+ (a real core: 5% -> 14% 1+)
        "cell_class.min_stained_fraction": [0.02, 0.04, 0.06, 0.08, 0.1, 0.14, 0.18],
        "cell_class.intense_od": [0.1, 0.11, 0.12, 0.13]}   # cell classes only: with the stained-cell cut-off,
                                                             # what benchmarks.tune_cell_class moved (it does not
                                                             # count the negatives, this search does first)

_FIELDS: list[dict] = []     # segmented fields, shared with forked workers


def segment_field(spec, f, path: Path, settings: Settings) -> dict:
    """The field's tiles segmented as ``measure_ihc`` segments them (membranes not yet measured)."""
    slide = open_image(path)
    grid, white, stains = plan_slide(slide, settings)
    margin = tile_margin_px(settings, grid.mpp)
    segs = [segment_tile(read_with_margin(slide, t, grid.mpp, margin), grid.mpp, stains, settings.ihc,
                         float(np.mean(white))) for t in grid.tiles]
    return {"spec": spec, "field": f, "slide": slide, "grid": grid, "stains": stains, "margin": margin,
            "segs": segs, "table": load_guideline(spec.guideline)}


def with_values(settings: Settings, values: dict) -> Settings:
    """``settings`` with ``{"section.name": value}`` set under ``ihc``."""
    ihc = settings.ihc
    for key, v in values.items():
        section, name = key.split(".")
        ihc = ihc.model_copy(update={section: getattr(ihc, section).model_copy(update={name: v})})
    return settings.model_copy(update={"ihc": ihc})


def field_result(i: int, settings: Settings) -> dict:
    """Field ``i`` measured and decided under ``settings``: its row as ``benchmarks.ihc_random`` makes it."""
    fl = _FIELDS[i]
    spec, grid = fl["spec"], fl["grid"]
    tiles = [(core_cells(measure_tile(seg, grid.mpp, settings.ihc), fl["margin"], t.size), (None, False))
             for t, seg in zip(grid.tiles, fl["segs"])]
    m = SlideMeasurements(fl["slide"], grid, fl["stains"], settings, tiles, "", fl["slide"].mpp, None)
    return field_row(spec, fl["field"], assemble(m, fl["table"]))


def evaluate(pool, settings: Settings) -> dict:
    """Summary over the tuning fields (``ihc_random.summarise``) and the negatives scored 1+ or more."""
    rows = pool.starmap(field_result, [(i, settings) for i in range(len(_FIELDS))])
    fields = [r for r in rows if r["negative"] is None]
    s = summarise(fields)
    s["negatives_scored"] = sum(r["score"] not in ("0", None) for r in rows if r["negative"] is not None)
    return s


def _rank(s: dict) -> tuple:
    return -s["negatives_scored"], round(s["score_agreement"], 4), round(s["cell_qwk"], 4)


def current(settings: Settings) -> dict:
    """The values of ``GRID``'s settings in ``settings``."""
    return {k: getattr(getattr(settings.ihc, k.split(".")[0]), k.split(".")[1]) for k in GRID}


def search(pool, start: Settings, sweeps: int = 2) -> tuple[dict, list[list]]:
    """Coordinate search over ``GRID`` from ``start``'s values: the best ``_rank``."""
    best = current(start)
    best_eval = evaluate(pool, with_values(start, best))
    trail = [["start", "", best_eval]]
    for _ in range(sweeps):
        for name, values in GRID.items():
            for v in values:
                if v == best[name]:
                    continue
                cand = {**best, name: v}
                e = evaluate(pool, with_values(start, cand))
                print(f"  {name}={v}: agreement {e['score_agreement']:.3f} QWK {e['cell_qwk']:.3f} "
                      f"negatives scored {e['negatives_scored']}", file=sys.stderr, flush=True)
                if _rank(e) > _rank(best_eval):
                    best, best_eval = cand, e
            trail.append([name, best[name], best_eval])
    return best, trail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--negatives", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    settings = load_settings()
    settings = settings.model_copy(update={"tile_model": settings.tile_model.model_copy(update={"enabled": False})})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, (spec, f, path) in enumerate(tuning_fields(args.n, folder)):
            _FIELDS.append(segment_field(spec, f, path, settings))
            print(f"  field {k + 1}/{args.n}", file=sys.stderr, flush=True)
        for k in range(args.negatives):
            spec = random_spec(SEEDS["tune"] + 50_000 + k, negative=NEGATIVES[k % 3], **SIZE)
            f = render_tissue(spec)
            _FIELDS.append(segment_field(spec, f, write_field(spec, f, folder), settings))
        with mp.get_context("fork").Pool(args.workers) as pool:
            best, trail = search(pool, settings)
    rows = [[name, value, e["score_agreement"], e["cell_qwk"], e["recall_1plus"], e["percent_mae"]["0"],
             e["percent_mae"]["1+"], e["negatives_scored"]] for name, value, e in trail]
    print_table(f"Membrane tests, coordinate search over {args.n} tuning fields and {args.negatives} negatives",
                ["parameter", "value", "agreement", "cell QWK", "1+ recall", "MAE 0", "MAE 1+", "negatives scored"],
                rows)
    changed = {k: v for k, v in best.items() if v != current(settings)[k]}
    print("changed:", changed)
    p = write_results("tune_membrane", {"fields": args.n, "negatives": args.negatives, "chosen": best,
                                        "changed": changed, "start_eval": trail[0][2], "chosen_eval": trail[-1][2],
                                        "trail": [[n, v] for n, v, _ in trail]})
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
