"""Batch throughput: cases per hour with 1 and 2 local workers on the same cases, and peak memory per worker.

    python -m benchmarks.batch_speed [--cases 8]

Each case: a 1.5 x 1 mm synthetic IHC slide at 0.5 um/px (Aperio-style SVS)
and two 1024 x 1024 FISH fields, run end to end (IHC, tile model, ISH,
classify, outputs, HTML report) by ``run_batch``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from her2path.io.writers import write_image
from her2path.pipeline.batch import run_batch
from her2path.synthetic.ish import IshFieldSpec, render_fish
from her2path.synthetic.wsi import make_sample_slide

from .common import print_table, write_results


def make_cases(root: Path, n: int) -> None:
    for i in range(n):
        case = root / f"case{i:02d}"
        (case / "fish").mkdir(parents=True)
        make_sample_slide(case / "slide.svs", mpp=0.5, width_um=1536, height_um=1024, n_islands=2, seed=700 + i)
        for k in range(2):
            f = render_fish(IshFieldSpec(group=1 + i % 5, seed=800 + 10 * i + k))
            write_image(case / "fish" / f"field{k}.tif", f.cyx(16), f.mpp)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=8)
    args = ap.parse_args(argv)
    rows, res = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_cases(tmp / "in", args.cases)
        for workers in (1, 2):
            r = run_batch(tmp / "in", tmp / f"out{workers}", workers=workers)
            assert not r.failed, r.failed
            per_hour = 3600 * len(r.rows) / r.seconds
            peak = max(row["peak_rss_mib"] for row in r.rows)
            res[workers] = {"cases": len(r.rows), "seconds": r.seconds, "cases_per_hour": per_hour,
                            "peak_rss_mib_per_worker": peak,
                            "mean_case_seconds": sum(row["seconds"] for row in r.rows) / len(r.rows)}
            rows.append([workers, len(r.rows), r.seconds, per_hour, res[workers]["mean_case_seconds"], peak])
    print_table("her2path batch throughput (same cases, same machine, same run)",
                ["workers", "cases", "wall s", "cases/hour", "mean s/case", "peak RSS/worker MiB"], rows)
    speedup = res[2]["cases_per_hour"] / res[1]["cases_per_hour"]
    print(f"--workers 2 / --workers 1: {speedup:.2f}x cases per hour")
    path = write_results("batch_speed", {"runs": res, "speedup_2_vs_1": speedup})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
