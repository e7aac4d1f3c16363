"""Where the time of one IHC tile goes: every stage of ``analyze_tile`` and the tile model, timed.

    python -m benchmarks.ihc_profile [IMAGE ...] [--tiles 40] [--mpp MPP]

Without IMAGE the cached synthetic slide of ``benchmarks.ihc_speed`` is used
(written when missing). Tiles are read and analysed exactly as ``score_ihc``
does (same margin, stains and glass white), in this one process and thread, so
the milliseconds are per tile per core.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import cv2
import numpy as np

from .common import CACHE, print_table, write_results


def stage_times(rgb, mpp, stains, settings, white, model) -> dict[str, float]:
    """Seconds per stage of one tile (the stages of ``ihc.tile.analyze_tile``, in order)."""
    from her2path.classify.model import tile_probabilities
    from her2path.ihc.cells import membrane_map, segment_cells
    from her2path.ihc.focus import defocus_mask
    from her2path.ihc.membrane import measure_membranes
    from her2path.ihc.nuclei import detect_nuclei
    from her2path.ihc.stain import unmix
    from her2path.ihc.tile import TISSUE_OD
    from her2path.ihc.tumour import classify_tumour

    cfg = settings.ihc
    t, out = time.perf_counter(), {}

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        out[name] = now - t
        t = now

    u = unmix(rgb, stains, white)
    lap("unmix")
    tissue = cv2.GaussianBlur(u.h + np.maximum(u.dab, 0), (0, 0), 1.0 / mpp) > TISSUE_OD
    lap("tissue")
    mem = membrane_map(u.dab, mpp, cfg.cells, tissue, u.noise, u.h)
    lap("membrane map")
    nuclei = detect_nuclei(u.h, u.dab, mpp, cfg.nuclei, tissue, u.noise, mem)
    lap("nuclei")
    cells = segment_cells(u.h, u.dab, mpp, nuclei, mem, tissue, cfg.cells)
    lap("cells (basins + watershed)")
    classify_tumour(cells, mem, mpp, cfg.tumour, u.h)  # (tumour flags, their features)
    lap("tumour")
    measure_membranes(u.dab, cells, mpp, cfg.membrane, pixel_noise=u.dab_noise)
    lap("membranes")
    if cfg.focus.enabled:
        defocus_mask(u.h, mpp, cfg.focus)
    lap("focus")
    if model is not None:
        tile_probabilities(model, rgb, mpp, settings.tile_model.min_tissue_fraction, white)
    lap("tile model")
    return out


def profile(path: str, n_tiles: int, mpp: float | None) -> tuple[dict[str, float], int]:
    from her2path.classify.model import load_model
    from her2path.config import load_settings
    from her2path.io import open_image
    from her2path.pipeline.ihc_slide import plan_slide, read_with_margin, tile_margin_px

    settings = load_settings()
    slide = open_image(path, mpp=mpp)
    grid, white, stains = plan_slide(slide, settings)
    model = load_model(settings.tile_model.weights)[0] if settings.tile_model.enabled else None
    margin = tile_margin_px(settings, grid.mpp)
    picks = np.unique(np.linspace(0, len(grid.tiles) - 1, min(n_tiles, len(grid.tiles))).round().astype(int))
    total: dict[str, float] = defaultdict(float)
    for i in picks:
        t0 = time.perf_counter()
        rgb = read_with_margin(slide, grid.tiles[i], grid.mpp, margin)
        total["read"] += time.perf_counter() - t0
        for k, v in stage_times(rgb, grid.mpp, stains, settings, float(np.mean(white)), model).items():
            total[k] += v
    return dict(total), len(picks)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--tiles", type=int, default=40)
    ap.add_argument("--mpp", type=float)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    from her2path.pipeline.workers import limit_threads

    limit_threads(torch_too=True)
    images = args.images
    if not images:
        from her2path.synthetic.wsi import make_large_slide

        CACHE.mkdir(exist_ok=True)
        path = CACHE / "ihc_24576x20480_05.svs"
        if not path.exists():
            make_large_slide(path, 24576, 20480, mpp=0.5, n_islands=6, seed=3)
        images = [str(path)]
    rows, payload = [], {}
    for path in images:
        total, n = profile(path, args.tiles, args.mpp)
        whole = sum(total.values())
        payload[path] = {"tiles": n, "ms_per_tile": {k: 1000 * v / n for k, v in total.items()}}
        rows += [[path.rsplit("/", 1)[-1], k, 1000 * v / n, v / whole] for k, v in total.items()]
        rows.append([path.rsplit("/", 1)[-1], "total", 1000 * whole / n, 1.0])
    print_table("Time per tile (512 px + margins at 0.5 um/px), one core", ["image", "stage", "ms/tile", "share"],
                rows)
    p = write_results("ihc_profile", {"images": payload})
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
