"""Peak memory and time of iterating every tissue tile of a >= 500-megapixel slide.

    python -m benchmarks.tiling_memory [--width 25600 --height 20480]

Writes a synthetic Aperio-style slide at 0.25 um/px (cached in benchmarks/.cache),
then, each in a fresh process so that peak memory is its own:
  floor: plain OpenSlide decoding of the same level-0 regions the tiles cover;
  tiles: her2path's tissue detection + tile grid + reads at 0.5 um/px.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from .common import CACHE, Timer, peak_rss_mib, print_table, write_results


def child(path: str, mode: str) -> None:
    import openslide

    from her2path.io import open_image
    from her2path.io.tiling import iter_tiles, tile_grid

    with Timer() as t_all:
        img = open_image(path)
        grid = tile_grid(img)
        n_px = 0
        if mode == "floor":
            slide = openslide.OpenSlide(path)
            for tile in grid.tiles:
                region = slide.read_region((tile.x, tile.y), 0, (tile.width0, tile.height0))
                n_px += region.size[0] * region.size[1]
        else:
            for _, rgb in iter_tiles(img, grid):
                n_px += rgb.shape[0] * rgb.shape[1]
    print(json.dumps({"mode": mode, "tiles": len(grid), "seconds": t_all.seconds,
                      "peak_rss_mib": peak_rss_mib(), "pixels_out": n_px,
                      "tissue_fraction": grid.tissue.fraction}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=25600)
    ap.add_argument("--height", type=int, default=20480)
    ap.add_argument("--child", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    from her2path.synthetic.wsi import make_large_slide

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"large_{args.width}x{args.height}.svs"
    with Timer() as t_make:
        if not path.exists():
            make_large_slide(path, args.width, args.height, mpp=0.25, n_islands=6, seed=1)
    runs = []
    for mode in ("floor", "tiles"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.tiling_memory", "--child", str(path), mode],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mpx = args.width * args.height / 1e6
    floor, tiles = runs
    rows = [[r["mode"], r["tiles"], r["seconds"], r["seconds"] / floor["seconds"], r["peak_rss_mib"]] for r in runs]
    print_table(f"Tile iteration over a {mpx:.0f}-megapixel slide (0.25 um/px level 0, tiles read at 0.5 um/px)",
                ["run", "tiles", "seconds", "x floor", "peak RSS MiB"], rows)
    path_json = write_results("tiling_memory", {
        "slide_megapixels": mpx, "slide_bytes": path.stat().st_size, "generate_seconds": t_make.seconds,
        "tissue_fraction": tiles["tissue_fraction"], "runs": runs,
        "ratio_to_floor": tiles["seconds"] / floor["seconds"],
        "peak_rss_mib": tiles["peak_rss_mib"], "limit_mib": 1024,
    })
    print(f"wrote {path_json}")
    return 0 if tiles["peak_rss_mib"] < 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
