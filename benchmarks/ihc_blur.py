"""Does the membrane measurement hold across scanners? The same fields drawn sharp (40x) and blurred (20x),
at two pixel sizes, scored end to end.

    python -m benchmarks.ihc_blur [--n 16]

Each field of the randomised generator (``synthetic.tissue``; seeds from
200000, used for no choice) is drawn four times with everything but the
imaging fixed: optical blur 0.3 um (a 40x scan) or 0.6 um (a 20x scan, both
Gaussian sigmas applied to the transmitted light, as a microscope blurs), at
0.25 or 0.5 um/px, lossless, so that only the scan differs. Each is scored
through ``score_ihc`` as a user's file would be. Printed per scan: slide-score
agreement, how many truth-3+ and truth-2+ cells keep their class, and the
median membrane intensity (OD above the cytoplasm) of matched truth-2+ and
truth-3+ cells, with its ratio to the same field's sharp 0.25-um/px drawing.

A measurement that holds across scanners keeps the ratio near 1 and the
classes where they are; ``ihc.cell_class.intense_od`` is one OD for every
scan, so where blur lowers the intensity of intense membranes, 3+ cells
read as 2+.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from her2path.pipeline.ihc_slide import score_ihc
from her2path.synthetic.tissue import random_spec, render_tissue

from .common import Timer, match, print_table, write_results
from .ihc_random import guideline_for, write_field

SEED0 = 200_000
SCANS = {"40x 0.25": (0.3, 0.25), "40x 0.5": (0.3, 0.5), "20x 0.25": (0.6, 0.25), "20x 0.5": (0.6, 0.5)}
SIZE = dict(width_um=384.0, height_um=384.0)


def scored(seed: int, k: int, blur_um: float, mpp: float, folder: Path) -> dict:
    """One drawing of field ``seed`` scored: its truth and found score, and the found class and
    intensity of every matched truth cell."""
    spec = random_spec(seed, guideline=guideline_for(k), blur_um=blur_um, mpp=mpp, jpeg_quality=None, **SIZE)
    f = render_tissue(spec)
    r = score_ihc(write_field(spec, f, folder), guideline=spec.guideline, workers=1)
    ti, pi = match(f.truth.xy_px, np.c_[r.cells.x, r.cells.y], 0.6 * spec.cell_um / mpp)
    return {"seed": seed, "truth_score": f.decision.score, "score": r.score,
            "truth_cls": f.truth.cls[ti].tolist(), "cls": np.asarray(r.cells.cls, object)[pi].tolist(),
            "intensity": np.asarray(r.cells.intensity)[pi].tolist()}


def median_of(row: dict, cls: str) -> float:
    """Median measured intensity of the matched truth-``cls`` cells of one scored drawing (NaN: none)."""
    v = [i for t, i in zip(row["truth_cls"], row["intensity"]) if t == cls]
    return float(np.median(v)) if v else float("nan")


def summarise(rows: list[dict], sharp: list[dict]) -> dict:
    """Agreement, class kept and intensity of truth-2+ and -3+ cells over one scan's drawings; ``sharp``
    the same fields' 40x 0.25-um/px drawings (the intensity ratio's reference)."""
    out = {"fields": len(rows), "score_agreement": float(np.mean([r["score"] == r["truth_score"] for r in rows]))}
    t = np.concatenate([np.asarray(r["truth_cls"], object) for r in rows])
    c = np.concatenate([np.asarray(r["cls"], object) for r in rows])
    for cls in ("2+", "3+"):
        out[f"kept_{cls}"] = float(np.mean(c[t == cls] == cls)) if (t == cls).any() else float("nan")
        med = np.array([median_of(r, cls) for r in rows])
        ref = np.array([median_of(r, cls) for r in sharp])
        ok = np.isfinite(med) & np.isfinite(ref) & (ref > 0)
        out[f"intensity_{cls}"] = float(np.nanmedian(med)) if ok.any() else float("nan")
        out[f"ratio_{cls}"] = float(np.median(med[ok] / ref[ok])) if ok.any() else float("nan")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="fields (each drawn in the four scans)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, Timer() as t_all:
        rows = {scan: [scored(SEED0 + k, k, blur, mpp, Path(tmp)) for k in range(args.n)]
                for scan, (blur, mpp) in SCANS.items()}
    summary = {scan: summarise(rows[scan], rows["40x 0.25"]) for scan in SCANS}
    print_table(f"The same {args.n} fields in four scans ({t_all.seconds:.0f} s)",
                ["scan", "fields", "score agree", "3+ cells kept", "2+ cells kept", "3+ intensity", "x sharp",
                 "2+ intensity", "x sharp"],
                [[scan, s["fields"], s["score_agreement"], s["kept_3+"], s["kept_2+"], s["intensity_3+"],
                  s["ratio_3+"], s["intensity_2+"], s["ratio_2+"]] for scan, s in summary.items()])
    path = write_results("ihc_blur", {"seconds": t_all.seconds, "summary": summary,
                                      "fields": {scan: [{k: r[k] for k in ("seed", "truth_score", "score")}
                                                        for r in rs] for scan, rs in rows.items()}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
