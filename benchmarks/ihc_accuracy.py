"""IHC scoring accuracy against generator truth.

    python -m benchmarks.ihc_accuracy [--set test|calibration] [--workers 2]

Fields are written to disk (PNG or JPEG with their mpp) and scored through
``score_ihc`` exactly as a user's files would be. Seeds of the test set are
never used by the unit tests or for tuning (tuning used --set calibration).
Rows: plain fields at 0.5 and 0.25 um/px, JPEG, stain variants, fractions a
few points from the 10% cut-offs, and each real-slide artefact.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from her2path.classify.metrics import qwk
from her2path.io.writers import write_image
from her2path.pipeline.ihc_slide import score_ihc
from her2path.synthetic.ihc import IhcFieldSpec, StainVectors, jitter_stains, preset, render_ihc_field

from .common import Timer, match, print_table, write_results

CLASSES = ("0", "1+", "2+", "3+")
NEAR = [  # (percent mix, note): deciding fractions 3-4 points from the 10% cut-offs
    ({"0": 80, "1+": 6, "2+": 1, "3+": 13}, "3+ at 13%"),
    ({"0": 78, "1+": 6, "2+": 9, "3+": 7}, "2+/3+ complete 16%, 3+ 7%"),
    ({"0": 80, "1+": 7, "2+": 13, "3+": 0}, "2+ at 13%"),
    ({"0": 86, "1+": 7, "2+": 7, "3+": 0}, "stained 14%, 2+ 7%"),
    ({"0": 86, "1+": 14, "2+": 0, "3+": 0}, "1+ at 14%"),
    ({"0": 93, "1+": 7, "2+": 0, "3+": 0}, "1+ at 7%"),
]


def field_specs(which: str):
    """(row, spec, suffix) for every field of a set."""
    base = 1000 if which == "test" else 5000
    rng = np.random.default_rng(base)
    out = []
    size = dict(width_um=512.0, height_um=512.0)
    for k, s in enumerate(CLASSES * 3):
        out.append(("png 0.5", preset(s, seed=base + k, **size), ".png"))
    for k, s in enumerate(CLASSES * 2):
        out.append(("png 0.25", preset(s, seed=base + 100 + k, mpp=0.25, **size), ".png"))
    for k, s in enumerate(CLASSES * 2):
        out.append(("jpeg q90 0.5", preset(s, seed=base + 200 + k, jpeg_quality=90, **size), ".jpg"))
    for k, s in enumerate(CLASSES):
        out.append(("jpeg q80 0.25", preset(s, seed=base + 300 + k, mpp=0.25, jpeg_quality=80, **size), ".jpg"))
    for k, s in enumerate(CLASSES * 2):
        stains = jitter_stains(StainVectors(), rng, 10.0)
        out.append(("stain variants", preset(s, seed=base + 400 + k, stains=stains, **size), ".png"))
    for k, (mix, _) in enumerate(NEAR):
        out.append(("near cut-off", IhcFieldSpec(percent=mix, seed=base + 500 + k, **size), ".png"))
    for a, art in enumerate(("blush", "pigment", "defocus", "weak-counterstain")):
        for k, s in enumerate(("1+", "3+")):
            out.append((f"artefact {art}", preset(s, seed=base + 600 + 10 * a + k, artefacts=(art,), **size),
                        ".png"))
    return out


def evaluate_field(spec, suffix, folder: Path, workers: int) -> dict:
    f = render_ihc_field(spec)
    path = folder / f"field_{spec.seed}{suffix}"
    if f.encoded is not None:
        path.write_bytes(f.encoded)
    else:
        write_image(path, f.rgb, spec.mpp)
    r = score_ihc(path, workers=workers)
    t = f.truth
    pred_xy = np.c_[r.cells.x, r.cells.y]
    ti, pi = match(t.xy_px, pred_xy, 3.0 / spec.mpp)
    idx = {c: i for i, c in enumerate(CLASSES)}
    tc = np.array([idx[c] for c in t.cls[ti]], int)
    pc = np.array([idx[c] for c in np.asarray(r.cells.cls, object)[pi]], int)
    return {
        "seed": spec.seed, "truth_score": f.decision.score, "score": r.score,
        "truth_percent": f.decision.percent, "percent": r.percent_cells,
        "truth_cells": len(t.cls), "pred_cells": r.tumour_cells, "matched": len(ti),
        "excluded": r.excluded_cells, "tc": tc.tolist(), "pc": pc.tolist(),
        "recall": len(ti) / max(len(t.cls), 1), "precision": len(pi) / max(r.tumour_cells, 1),
        "in_focus_truth": int(_in_focus(t).sum()),
    }


def _in_focus(t):
    if t.defocus is None:
        return np.ones(len(t.cls), bool)
    x, y, rad = t.defocus
    return np.hypot(t.xy_um[:, 0] - x, t.xy_um[:, 1] - y) > rad + 10


def summarise(rows: list[dict]) -> dict:
    tc = np.concatenate([r["tc"] for r in rows]).astype(int)
    pc = np.concatenate([r["pc"] for r in rows]).astype(int)
    mae = {c: float(np.mean([abs(r["percent"][c] - r["truth_percent"][c]) for r in rows])) for c in CLASSES}
    rec1 = float(np.mean(pc[tc == 1] == 1)) if (tc == 1).any() else float("nan")
    return {
        "fields": len(rows),
        "score_agreement": float(np.mean([r["score"] == r["truth_score"] for r in rows])),
        "percent_mae": mae,
        "cell_qwk": qwk(tc, pc),
        "cell_accuracy": float(np.mean(tc == pc)) if len(tc) else float("nan"),
        "recall_1plus": rec1,
        "tumour_recall": float(np.sum([r["matched"] for r in rows]) / np.sum([r["truth_cells"] for r in rows])),
        "tumour_precision": float(np.sum([r["matched"] for r in rows]) / max(np.sum([r["pred_cells"] for r in rows]), 1)),
        "confusion": np.histogram2d(tc, pc, bins=[np.arange(5) - 0.5] * 2)[0].astype(int).tolist(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=["test", "calibration"], default="test")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    specs = field_specs(args.set)
    by_row: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp, Timer() as t_all:
        for row, spec, suffix in specs:
            by_row.setdefault(row, []).append(evaluate_field(spec, suffix, Path(tmp), args.workers))
    table, summary = [], {}
    for row, rows in by_row.items():
        s = summarise(rows)
        summary[row] = s
        table.append([row, s["fields"], s["score_agreement"], s["percent_mae"]["0"], s["percent_mae"]["1+"],
                      s["percent_mae"]["2+"], s["percent_mae"]["3+"], s["cell_qwk"], s["recall_1plus"],
                      s["tumour_recall"], s["tumour_precision"]])
    all_rows = [r for rows in by_row.values() for r in rows]
    core = [r for row, rows in by_row.items() if not row.startswith("artefact") for r in rows]
    for name, rows in (("all but artefacts", core), ("ALL", all_rows)):
        s = summarise(rows)
        summary[name] = s
        table.append([name, s["fields"], s["score_agreement"], s["percent_mae"]["0"], s["percent_mae"]["1+"],
                      s["percent_mae"]["2+"], s["percent_mae"]["3+"], s["cell_qwk"], s["recall_1plus"],
                      s["tumour_recall"], s["tumour_precision"]])
    print_table(f"IHC accuracy vs generator truth ({args.set} set, {len(all_rows)} fields, "
                f"{t_all.seconds:.0f} s)",
                ["row", "fields", "score agree", "MAE 0", "MAE 1+", "MAE 2+", "MAE 3+", "cell QWK",
                 "1+ recall", "tumour rec", "tumour prec"], table)
    misses = [(row, r["seed"], r["truth_score"], r["score"], r["truth_percent"], r["percent"])
              for row, rows in by_row.items() for r in rows if r["score"] != r["truth_score"]]
    for m in misses:
        print("score miss:", m[0], "seed", m[1], "truth", m[2], "got", m[3],
              {c: round(m[4][c], 1) for c in CLASSES}, "->", {c: round(m[5][c], 1) for c in CLASSES})
    path = write_results(f"ihc_accuracy{'' if args.set == 'test' else '_calibration'}",
                         {"set": args.set, "seconds": t_all.seconds, "summary": summary,
                          "fields": {row: [{k: v for k, v in r.items() if k not in ("tc", "pc")} for r in rows]
                                     for row, rows in by_row.items()}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
