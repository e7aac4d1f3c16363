"""Speed and memory of whole-slide IHC scoring against the slide-decoding floor.

    python -m benchmarks.ihc_speed [--width 24576 --height 20480] [--workers 2]

Writes a synthetic Aperio-style slide at 0.5 um/px (cached in benchmarks/.cache)
with >= 200 megapixels of tissue, then in fresh processes:
  floor: plain OpenSlide decoding of every tissue tile her2path analyses;
  ihc:   ``score_ihc`` end to end (tissue, stains, cells, membranes, aggregation)
         with --workers processes; peak memory is sampled for the main process
         and each worker from /proc.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from .common import CACHE, Timer, peak_rss_mib, print_table, write_results


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class WorkerPeaks(threading.Thread):
    """Samples the peak resident memory of this process's children every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks: dict[int, float] = {}
        self.stop = False

    def run(self):
        while not self.stop:
            for c in _children(os.getpid()):
                self.peaks[c] = max(self.peaks.get(c, 0.0), _hwm_mib(c))
            time.sleep(0.2)


def child(path: str, mode: str, workers: int) -> None:
    from her2path.io import open_image
    from her2path.io.tiling import tile_grid

    if mode == "floor":
        import openslide

        with Timer() as t:
            grid = tile_grid(open_image(path))
            slide = openslide.OpenSlide(path)
            for tile in grid.tiles:
                slide.read_region((tile.x, tile.y), 0, (tile.width0, tile.height0))
        print(json.dumps({"mode": mode, "seconds": t.seconds, "tiles": len(grid.tiles),
                          "peak_main_mib": peak_rss_mib(), "peak_worker_mib": 0.0}))
        return
    from her2path.pipeline.ihc_slide import score_ihc

    sampler = WorkerPeaks()
    sampler.start()
    with Timer() as t:
        r = score_ihc(path, workers=workers)
    sampler.stop = True
    print(json.dumps({"mode": mode, "seconds": t.seconds, "tiles": len(r.tiles), "cells": r.tumour_cells,
                      "score": r.score, "peak_main_mib": peak_rss_mib(),
                      "peak_worker_mib": max(sampler.peaks.values(), default=0.0),
                      "peak_total_mib": peak_rss_mib() + sum(sampler.peaks.values())}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=24576)
    ap.add_argument("--height", type=int, default=20480)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", nargs=3, metavar=("PATH", "MODE", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    from her2path.synthetic.wsi import make_large_slide

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"ihc_{args.width}x{args.height}_05.svs"
    if not path.exists():
        make_large_slide(path, args.width, args.height, mpp=0.5, n_islands=6, seed=3)
    runs = []
    for mode in ("floor", "ihc"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.ihc_speed", "--child", str(path), mode,
                              str(args.workers)], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    floor, ihc = runs
    tissue_mpx = ihc["tiles"] * 512 * 512 / 1e6
    print_table(f"Whole-slide IHC scoring, {args.width}x{args.height} px at 0.5 um/px, "
                f"{tissue_mpx:.0f} Mpx of tissue tiles, {args.workers} workers",
                ["run", "tiles", "seconds", "x floor", "Mpx/s", "peak main MiB", "peak worker MiB"],
                [[r["mode"], r["tiles"], r["seconds"], r["seconds"] / floor["seconds"],
                  tissue_mpx / r["seconds"], r["peak_main_mib"], r["peak_worker_mib"]] for r in runs])
    p = write_results("ihc_speed", {"slide_px": [args.width, args.height], "tissue_tile_mpx": tissue_mpx,
                                    "workers": args.workers, "runs": runs,
                                    "ratio_to_floor": ihc["seconds"] / floor["seconds"],
                                    "cells": ihc["cells"], "score": ihc["score"]})
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
