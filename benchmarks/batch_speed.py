"""Batch throughput: cases per hour with 1 and 2 local workers on the same cases, and peak memory per worker.

    python -m benchmarks.batch_speed [--cases 10] [--baseline REV]

Each case: a 1.5 x 1 mm synthetic IHC slide at 0.5 um/px (Aperio-style SVS)
and two 1024 x 1024 FISH fields, run end to end (IHC, tile model, ISH,
classify, outputs, HTML report) by ``run_batch``, in a fresh interpreter per
run. ``--baseline REV`` runs the same cases with the code of commit REV too
(a git worktree in benchmarks/.cache), in the same run, for cases per hour
against it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from her2path.io.writers import write_image
from her2path.synthetic.ish import IshFieldSpec, render_fish
from her2path.synthetic.wsi import make_sample_slide

from .common import baseline_tree, print_table, write_results

ROOT = Path(__file__).resolve().parents[1]
# One batch in a fresh interpreter, with the code of sys.argv[1] first on the path.
RUNNER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from her2path.pipeline.batch import run_batch
r = run_batch(sys.argv[2], sys.argv[3], workers=int(sys.argv[4]))
print("RESULT " + json.dumps({"failed": len(r.failed), "seconds": r.seconds,
                              "rows": [{"seconds": x["seconds"], "peak_rss_mib": x["peak_rss_mib"]} for x in r.rows]}))
"""


def make_cases(root: Path, n: int) -> None:
    for i in range(n):
        case = root / f"case{i:02d}"
        (case / "fish").mkdir(parents=True)
        make_sample_slide(case / "slide.svs", mpp=0.5, width_um=1536, height_um=1024, n_islands=2, seed=700 + i)
        for k in range(2):
            f = render_fish(IshFieldSpec(group=1 + i % 5, seed=800 + 10 * i + k))
            write_image(case / "fish" / f"field{k}.tif", f.cyx(16), f.mpp)


def batch(code: Path, folder: Path, out: Path, workers: int) -> dict:
    """Cases per hour, wall and mean case seconds, peak RSS per worker of one batch run by ``code``."""
    r = subprocess.run([sys.executable, "-c", RUNNER, str(code), str(folder), str(out), str(workers)],
                       capture_output=True, text=True, cwd=str(code))
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"batch with {code} failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    res = json.loads(lines[-1][7:])
    if res["failed"]:
        raise SystemExit(f"batch with {code}: {res['failed']} cases failed")
    rows = res["rows"]
    return {"cases": len(rows), "seconds": res["seconds"], "cases_per_hour": 3600 * len(rows) / res["seconds"],
            "peak_rss_mib_per_worker": max(x["peak_rss_mib"] for x in rows),
            "mean_case_seconds": sum(x["seconds"] for x in rows) / len(rows)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--baseline", help="also run the batch with the code of this git commit, in the same run")
    args = ap.parse_args(argv)
    codes = {"this": ROOT} | ({args.baseline: baseline_tree(args.baseline)} if args.baseline else {})
    rows, res = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_cases(tmp / "in", args.cases)
        for name, code in codes.items():
            for workers in (1, 2):
                r = res.setdefault(name, {})[workers] = batch(code, tmp / "in", tmp / f"out-{name}-{workers}", workers)
                rows.append([name, workers, r["cases"], r["seconds"], r["cases_per_hour"], r["mean_case_seconds"],
                             r["peak_rss_mib_per_worker"]])
    print_table("her2path batch throughput (same cases, same machine, same run)",
                ["code", "workers", "cases", "wall s", "cases/hour", "mean s/case", "peak RSS/worker MiB"], rows)
    summary = {"speedup_2_vs_1": res["this"][2]["cases_per_hour"] / res["this"][1]["cases_per_hour"]}
    print(f"--workers 2 / --workers 1: {summary['speedup_2_vs_1']:.2f}x cases per hour")
    if args.baseline:
        for w in (1, 2):
            summary[f"vs_baseline_{w}_workers"] = res["this"][w]["cases_per_hour"] / res[args.baseline][w]["cases_per_hour"]
            print(f"this / {args.baseline} with {w} worker(s): {summary[f'vs_baseline_{w}_workers']:.2f}x cases per hour")
    path = write_results("batch_speed", {"runs": res, "baseline": args.baseline, **summary})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
