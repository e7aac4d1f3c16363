"""IHC accuracy on the randomised generator (``synthetic.tissue``), per nuisance axis, and its negatives.

    python -m benchmarks.ihc_random [--set test|tune] [--n 120] [--negatives 24] [--workers 1]

Every field has its nuisances drawn from their whole range (architecture,
stroma, counterstain, membrane patterns, blur, colour cast, JPEG...), is
written to disk (PNG, or JPEG at its quality) and scored through
``score_ihc`` as a user's file would be. ``--set test`` uses seeds never used
for choosing parameters (``tune`` is the set that was used). Reported: slide
score agreement, percent-of-cells MAE per class, per-cell QWK, 1+ cell recall
and tumour-cell recall/precision, for all fields and per value of each axis,
with the matched cells' confusion (true class against the class found);
and the generated negatives (nuclear DAB, H&E, cytoplasm-only DAB), which
must never score 2+ or 3+.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from her2path.classify.metrics import qwk
from her2path.errors import Her2PathError
from her2path.io.writers import write_image
from her2path.pipeline.ihc_slide import score_ihc
from her2path.schema import CLASSES
from her2path.synthetic.tissue import NEGATIVES, random_spec, render_tissue, spec_dict

from .common import Timer, match, print_table, write_results

SEEDS = {"tune": 0, "test": 100_000}
SIZE = dict(width_um=512.0, height_um=512.0)


def guideline_for(k: int) -> str:
    """The guideline of the ``k``-th field of a set: breast and gastric in alternating blocks of four.
    The target score cycles with the seed (``random_spec``), so each guideline sees every score;
    alternating field by field, breast saw only 0 and 2+ and gastric only 1+ and 3+."""
    return ("breast", "gastric")[(k // 4) % 2]


def write_field(spec, f, folder: Path) -> Path:
    """The field as a user's file: its JPEG bytes where it was encoded, else a PNG with its pixel size."""
    path = folder / f"f{spec.seed}{'.jpg' if f.encoded else '.png'}"
    if f.encoded:
        path.write_bytes(f.encoded)
        return path
    return write_image(path, f.rgb, spec.mpp)


def field_row(spec, f, r=None, refusal: Her2PathError | None = None) -> dict:
    """One field's truth against the result ``r`` (or the ``refusal``, counted as a no-call): its
    score and percentages, and the true and found class of every matched tumour cell."""
    t = f.truth
    row = {"seed": spec.seed, "axes": f.axes, "guideline": spec.guideline, "negative": spec.negative,
           "truth_score": f.decision.score, "truth_percent": f.decision.percent, "truth_cells": len(t.cls),
           "spec": spec_dict(spec)}
    if r is None:
        return {**row, "score": None, "percent": {c: 0.0 for c in CLASSES}, "pred_cells": 0, "matched": 0,
                "tc": [], "pc": [], "reasons": [refusal.one_line()], "warnings": []}
    pred = np.c_[r.cells.x, r.cells.y]
    ti, pi = match(t.xy_px, pred, 0.6 * spec.cell_um / spec.mpp)
    idx = {c: i for i, c in enumerate(CLASSES)}
    return {**row, "score": r.score, "percent": r.percent_cells, "pred_cells": r.tumour_cells, "matched": len(ti),
            "tc": [idx[c] for c in t.cls[ti]], "pc": [idx[c] for c in np.asarray(r.cells.cls, object)[pi]],
            "reasons": r.reasons, "warnings": r.warnings}


def score_field(spec, folder: Path, workers: int) -> dict:
    f = render_tissue(spec)
    path = write_field(spec, f, folder)
    try:
        r = score_ihc(path, guideline=spec.guideline, workers=workers)
    except Her2PathError as exc:             # refused as a user would see it: counted as a no-call
        return field_row(spec, f, refusal=exc)
    return field_row(spec, f, r)


def summarise(rows: list[dict]) -> dict:
    tc = np.concatenate([r["tc"] for r in rows]).astype(int) if rows else np.zeros(0, int)
    pc = np.concatenate([r["pc"] for r in rows]).astype(int) if rows else np.zeros(0, int)
    return {
        "fields": len(rows),
        "score_agreement": float(np.mean([r["score"] == r["truth_score"] for r in rows])),
        "percent_mae": {c: float(np.mean([abs(r["percent"][c] - r["truth_percent"][c]) for r in rows])) for c in CLASSES},
        "cell_qwk": qwk(tc, pc),
        "recall_1plus": float(np.mean(pc[tc == 1] == 1)) if (tc == 1).any() else float("nan"),
        "tumour_recall": float(sum(r["matched"] for r in rows) / max(sum(r["truth_cells"] for r in rows), 1)),
        "tumour_precision": float(sum(r["matched"] for r in rows) / max(sum(r["pred_cells"] for r in rows), 1)),
        # matched tumour cells: rows the true class, columns the class found (0, 1+, 2+, 3+)
        "cell_confusion": np.bincount(4 * tc + pc, minlength=16).reshape(4, 4).tolist(),
    }


def row_of(name: str, s: dict) -> list:
    m = s["percent_mae"]
    return [name, s["fields"], s["score_agreement"], m["0"], m["1+"], m["2+"], m["3+"], s["cell_qwk"],
            s["recall_1plus"], s["tumour_recall"], s["tumour_precision"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=list(SEEDS), default="test")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--negatives", type=int, default=24)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    base = SEEDS[args.set]
    specs = [random_spec(base + k, guideline=guideline_for(k), **SIZE) for k in range(args.n)]
    negs = [random_spec(base + 50_000 + k, negative=NEGATIVES[k % 3], **SIZE) for k in range(args.negatives)]
    with tempfile.TemporaryDirectory() as tmp, Timer() as t_all:
        rows = [score_field(s, Path(tmp), args.workers) for s in specs]
        neg_rows = [score_field(s, Path(tmp), args.workers) for s in negs]
    summary = {"ALL": summarise(rows)}
    table = [row_of("ALL", summary["ALL"])]
    axes = sorted(rows[0]["axes"]) if rows else []
    for axis in axes:
        for value in sorted({str(r["axes"][axis]) for r in rows}):
            sel = [r for r in rows if str(r["axes"][axis]) == value]
            s = summarise(sel)
            summary[f"{axis}={value}"] = s
            table.append(row_of(f"{axis}={value}", s))
    print_table(f"IHC accuracy on the randomised generator ({args.set} seeds, {len(rows)} fields, "
                f"{t_all.seconds:.0f} s)", ["rows", "fields", "score agree", "MAE 0", "MAE 1+", "MAE 2+", "MAE 3+",
                                            "cell QWK", "1+ recall", "tumour rec", "tumour prec"], table)
    for r in rows:
        if r["score"] != r["truth_score"]:
            print(f"  miss seed {r['seed']} {r['guideline']}: truth {r['truth_score']} "
                  f"{ {c: round(r['truth_percent'][c], 1) for c in CLASSES} } got {r['score']} "
                  f"{ {c: round(r['percent'][c], 1) for c in CLASSES} } {r['axes']}")
    print_table("Matched tumour cells, true class (rows) against the class found (columns)",
                ["true"] + [f"found {c}" for c in CLASSES],
                [[c] + row for c, row in zip(CLASSES, summary["ALL"]["cell_confusion"])])
    neg_table = []
    for kind in NEGATIVES:
        sel = [r for r in neg_rows if r["negative"] == kind]
        scores = [r["score"] or "no call" for r in sel]
        neg_table.append([kind, len(sel), sum(s in ("2+", "3+") for s in scores),
                          " ".join(f"{s}:{scores.count(s)}" for s in sorted(set(scores)))])
    print_table("Generated negatives (must never score 2+ or 3+)", ["negative", "fields", "scored 2+/3+", "scores"],
                neg_table)
    path = write_results("ihc_random" + ("" if args.set == "test" else "_tune"),
                         {"set": args.set, "seconds": t_all.seconds, "summary": summary,
                          "negatives": [{k: r[k] for k in ("seed", "negative", "score", "reasons", "warnings")}
                                        for r in neg_rows],
                          "fields": [{k: v for k, v in r.items() if k not in ("tc", "pc")} for r in rows]})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
