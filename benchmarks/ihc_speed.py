"""Speed and memory of whole-slide IHC scoring against the slide-decoding floor.

    python -m benchmarks.ihc_speed [--width 24576 --height 20480] [--workers 1 2]

Writes a synthetic Aperio-style slide at 0.5 um/px (cached in benchmarks/.cache),
about 500 Mpx with >= 300 Mpx of tissue tiles, then in fresh processes:
  raw:   tifffile + imagecodecs decoding of every stored JPEG tile the analysis touches;
  floor: plain OpenSlide decoding of every tissue tile her2path analyses;
  ihc:   ``score_ihc`` end to end (tissue, stains, cells, membranes, aggregation,
         tile model) for each --workers count, and again with the tile model off;
         peak memory is sampled for the main process and each worker from /proc,
         and the start-up is the time to the first finished tile.
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


def raw_decode(path: str, grid) -> float:
    """Seconds to decode, with tifffile + imagecodecs and nothing else, every stored level-0 tile
    that an analysis tile touches: the cost of the pixels alone."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tw, tl = page.tilewidth, page.tilelength
        across = -(-page.imagewidth // tw)
        wanted = set()
        for t in grid.tiles:
            for r in range(t.y // tl, (t.y + t.height0 - 1) // tl + 1):
                for c in range(t.x // tw, (t.x + t.width0 - 1) // tw + 1):
                    wanted.add(r * across + c)
        decode, wanted = page.decode, sorted(wanted)
        offsets = [page.dataoffsets[i] for i in wanted]
        counts = [page.databytecounts[i] for i in wanted]
        with Timer() as timer:
            for data, i in tif.filehandle.read_segments(offsets, counts, wanted):
                decode(data, i, jpegtables=page.jpegtables)
    return timer.seconds


def child(path: str, mode: str, workers: int) -> None:
    from her2path.io import open_image
    from her2path.io.tiling import tile_grid

    if mode in ("floor", "raw"):
        import openslide

        grid = tile_grid(open_image(path))
        if mode == "raw":
            seconds = raw_decode(path, grid)
        else:
            with Timer() as t:
                slide = openslide.OpenSlide(path)
                for tile in grid.tiles:
                    slide.read_region((tile.x, tile.y), 0, (tile.width0, tile.height0))
            seconds = t.seconds
        print(json.dumps({"mode": mode, "workers": 0, "seconds": seconds, "tiles": len(grid.tiles),
                          "peak_main_mib": peak_rss_mib(), "peak_total_mib": peak_rss_mib()}))
        return
    from her2path.config import load_settings
    from her2path.pipeline.ihc_slide import score_ihc
    from her2path.progress import Callback

    settings = load_settings()
    if mode == "ihc, no tile model":
        settings = settings.model_copy(update={"tile_model": settings.tile_model.model_copy(update={"enabled": False})})
    first = []
    sampler = WorkerPeaks()
    sampler.start()
    with Timer() as t:
        r = score_ihc(path, workers=workers, settings=settings,
                      progress=Callback(lambda done, total: first or first.append(time.perf_counter())))
    sampler.stop = True
    print(json.dumps({"mode": mode, "workers": workers, "seconds": t.seconds, "tiles": len(r.tiles),
                      "first_tile_s": first[0] - t.t0, "cells": r.tumour_cells, "score": r.score,
                      "model_runs": sum(x.model_probability is not None for x in r.tiles),
                      "peak_main_mib": peak_rss_mib(),
                      "peak_worker_mib": max(sampler.peaks.values(), default=0.0),
                      "peak_total_mib": peak_rss_mib() + sum(sampler.peaks.values())}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=24576)
    ap.add_argument("--height", type=int, default=20480)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
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
    plan = [("raw", 0), ("floor", 0)] + [(m, w) for w in sorted(args.workers, reverse=True)
                                         for m in ("ihc", "ihc, no tile model")]
    runs = []
    for mode, workers in plan:
        out = subprocess.run([sys.executable, "-m", "benchmarks.ihc_speed", "--child", str(path), mode,
                              str(workers)], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    raw, floor = runs[0], runs[1]
    tissue_mpx = floor["tiles"] * 512 * 512 / 1e6
    for r in runs:
        r["x_floor"], r["x_raw"] = r["seconds"] / floor["seconds"], r["seconds"] / raw["seconds"]
    print_table(f"Whole-slide IHC scoring, {args.width}x{args.height} px ({args.width * args.height / 1e6:.0f} Mpx) "
                f"at 0.5 um/px, {tissue_mpx:.0f} Mpx of tissue tiles; floor = OpenSlide decoding those tiles, "
                "raw = tifffile + imagecodecs decoding their stored tiles",
                ["run", "workers", "tiles", "seconds", "x floor", "x raw", "Mpx/s", "first tile s",
                 "tile model runs", "peak total MiB"],
                [[r["mode"], r["workers"], r["tiles"], r["seconds"], r["x_floor"], r["x_raw"],
                  tissue_mpx / r["seconds"], r.get("first_tile_s", ""), r.get("model_runs", ""),
                  r["peak_total_mib"]] for r in runs])
    p = write_results("ihc_speed", {"slide_px": [args.width, args.height], "tissue_tile_mpx": tissue_mpx,
                                    "runs": runs})
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
