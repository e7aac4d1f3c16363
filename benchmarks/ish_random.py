"""ISH counting on randomised fields, per nuisance axis: FISH and brightfield dual ISH.

    python -m benchmarks.ish_random [--set test|tune] [--fish 60] [--brightfield 30]

Every case draws its breast group (a third within 10% of a cut-off), its
copies per cell and every nuisance from its range (``synthetic.ish.
random_ish_spec``: PSF, brightness spread, cluster size and shape, the least
spacing of separate signals (1-2 diameters),
autofluorescence, out-of-focus nuclei, channel bleed, saturation, crowded
sections, file format; for brightfield the camera white balance, vignetting,
pale hematoxylin and 0.07 or 0.1 um/px). As a lab does, a case pools fields
until they hold at least 20 evaluable nuclei, and adds fields while the count
is a no-call for too few nuclei (at most 8 fields). Files are
written to disk and counted by ``count_ish`` as a user's would be. ``--set
test`` uses seeds never used to choose parameters.

Reported per axis value: cases, group agreement (a no-call is a miss), median
absolute ratio error, median relative error of HER2 per cell where the truth is
amplified (>= 6) and of CEP17 per cell; and the same with nucleus selection
taken out (``ish_accuracy.matched_nuclei``: our group against the truth's group
over the nuclei we counted, and the ratio error over them), which tells
counting errors from a different choice of nuclei. And how often the call is
flagged near a cut-off (``rules.ish.near_cutoff_reason``: a cut-off within
the 95% interval of the nuclei counted), and how many misses were not flagged:
the wrong calls a reviewer would not be sent to look at again.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from her2path.errors import Her2PathError
from her2path.pipeline.ish_case import count_ish
from her2path.synthetic.ish import random_ish_spec, render_brightfield, render_fish

from .common import Timer, print_table, write_results
from .ish_accuracy import matched_nuclei, truth_figures, write_field

SEEDS = {"tune": 0, "test": 500_000}
MAX_FIELDS = 8


def run_case(seed: int, brightfield: bool, folder: Path) -> dict:
    spec, fmt, axes = random_ish_spec(seed, brightfield)
    render = render_brightfield if brightfield else render_fish
    truths, paths = [], []
    for j in range(MAX_FIELDS):
        field = render(replace(spec, seed=spec.seed + j))
        truths.append(field.truth)
        paths.append(write_field(field, fmt, folder / f"c{seed}_{j}"))
        if sum(int(t.evaluable.sum()) for t in truths) >= 20:
            break
    while True:
        row = {"seed": seed, "brightfield": brightfield, "axes": axes, "fields": len(paths),
               "truth": truth_figures(truths)}
        try:
            r = count_ish(paths, brightfield=brightfield, mpp=spec.mpp)
            row.update(group=r.group, ratio=r.ratio, her2_per_cell=r.her2_per_cell,
                       cep17_per_cell=r.cep17_per_cell, nuclei=r.nuclei, call=r.call, near_cutoff=r.near_cutoff,
                       same_nuclei=matched_nuclei(r.table, truths, spec.mpp))
        except Her2PathError as exc:
            row.update(group=None, ratio=None, her2_per_cell=None, cep17_per_cell=None, nuclei=0, call="error",
                       near_cutoff=False, error=exc.one_line())
        # A no-call for too few evaluable nuclei asks for more fields: the technologist images another.
        if row["call"] != "no-call" or len(paths) >= MAX_FIELDS:
            return row
        field = render(replace(spec, seed=spec.seed + len(paths)))
        truths.append(field.truth)
        paths.append(write_field(field, fmt, folder / f"c{seed}_{len(paths)}"))


def summarise(rows: list[dict]) -> dict:
    def rel(key, only=lambda r: True):
        v = [abs(r[key] - r["truth"][key]) / r["truth"][key] for r in rows if r[key] is not None and only(r)]
        return float(np.median(v)) if v else float("nan")
    ratio = [abs(r["ratio"] - r["truth"]["ratio"]) for r in rows if r["ratio"] is not None]
    same = [(r["group"], r["same_nuclei"]) for r in rows if r.get("same_nuclei") and r["same_nuclei"]["nuclei"]]
    return {"cases": len(rows),
            "group_agreement": float(np.mean([r["group"] == r["truth"]["group"] for r in rows])) if rows else float("nan"),
            "same_nuclei_group_agreement": float(np.mean([g == m["group_truth"] for g, m in same])) if same else float("nan"),
            "same_nuclei_ratio_error": float(np.median([abs(m["ratio_ours"] - m["ratio_truth"]) for _, m in same]))
            if same else float("nan"),
            "no_calls": sum(r["group"] is None for r in rows),
            "ratio_median_abs_error": float(np.median(ratio)) if ratio else float("nan"),
            "her2_rel_error_amplified": rel("her2_per_cell", lambda r: r["truth"]["her2_per_cell"] >= 6),
            "cep17_rel_error": rel("cep17_per_cell"),
            "near_cutoff_share": float(np.mean([r["near_cutoff"] for r in rows])) if rows else float("nan"),
            "unflagged_misses": sum(r["group"] != r["truth"]["group"] and not r["near_cutoff"] for r in rows)}


def table_rows(rows: list[dict]) -> list[list]:
    out = []
    groups = {"ALL": rows}
    for axis in sorted({a for r in rows for a in r["axes"]}):
        for value in sorted({r["axes"][axis] for r in rows}):
            groups[f"{axis}={value}"] = [r for r in rows if r["axes"][axis] == value]
    for name, rs in groups.items():
        s = summarise(rs)
        out.append([name, s["cases"], s["group_agreement"], s["no_calls"], s["ratio_median_abs_error"],
                    s["her2_rel_error_amplified"], s["cep17_rel_error"], s["same_nuclei_group_agreement"],
                    s["same_nuclei_ratio_error"], s["near_cutoff_share"], s["unflagged_misses"]])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=list(SEEDS), default="test")
    ap.add_argument("--fish", type=int, default=60)
    ap.add_argument("--brightfield", type=int, default=30)
    args = ap.parse_args(argv)
    base = SEEDS[args.set]
    cols = ["rows", "cases", "group agree", "no calls", "ratio |err|", "HER2/cell err (amp)", "CEP17/cell err",
            "same-nuclei group agree", "same-nuclei ratio |err|", "flagged near cut-off", "misses not flagged"]
    result = {"set": args.set}
    with tempfile.TemporaryDirectory() as tmp, Timer() as t:
        for kind, n, bf in (("fish", args.fish, False), ("brightfield", args.brightfield, True)):
            rows = [run_case(base + (10_000 if bf else 0) + i, bf, Path(tmp)) for i in range(n)]
            print_table(f"ISH on randomised {kind} cases ({args.set} seeds, {n} cases)", cols, table_rows(rows))
            for r in rows:
                if r["group"] != r["truth"]["group"]:
                    tr = r["truth"]
                    print(f"  miss seed {r['seed']}: truth g{tr['group']} r{tr['ratio']:.2f} h{tr['her2_per_cell']:.2f} "
                          f"c{tr['cep17_per_cell']:.2f} n{tr['nuclei']} | ours g{r['group']} r{r['ratio']} "
                          f"h{r['her2_per_cell']} c{r['cep17_per_cell']} n{r['nuclei']} {r.get('error', '')} "
                          f"{'(flagged near a cut-off) ' if r['near_cutoff'] else ''}{r['axes']}")
            result[kind] = {"summary": {row[0]: dict(zip(cols[1:], row[1:])) for row in table_rows(rows)}, "cases": rows}
    result["seconds"] = t.seconds
    path = write_results("ish_random" + ("" if args.set == "test" else "_tune"), result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
