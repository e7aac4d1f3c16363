"""Files derived from the result models: JSON, CSV, QuPath GeoJSON, heatmap and overlay PNGs.

Nothing is measured here: every file is a view of an ``IhcResult`` (or of the
slide pixels it points to), so two formats can never disagree.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np

from ..io.slide import SlideImage
from ..progress import Progress
from ..io.tiling import TileGrid
from ..io.writers import atomic_write_bytes, write_image
from ..schema import IhcResult
from .layout import IhcLayout
from .qupath import NON_TUMOUR_RGB, cell_ids, write_qupath_geojson

CLASS_RGB = {"0": (70, 130, 230), "1+": (250, 210, 0), "2+": (255, 130, 0), "3+": (215, 20, 50)}
RESEARCH_ONLY = "research use only, not for diagnosis"


def tile_overview(slide: SlideImage, grid: TileGrid, path: str | Path, max_px: int = 1600) -> Path:
    """Thumbnail with the tissue outline (green) and the analysed tiles (blue boxes)."""
    thumb, k = _thumbnail(slide, max_px)
    mask = cv2.resize(grid.tissue.mask.astype(np.uint8), (thumb.shape[1], thumb.shape[0]),
                      interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(thumb, contours, -1, (0, 160, 0), 2)
    for t in grid.tiles:
        p0 = (int(t.x * k), int(t.y * k))
        p1 = (int((t.x + t.width0) * k) - 1, int((t.y + t.height0) * k) - 1)
        cv2.rectangle(thumb, p0, p1, (40, 90, 220), 1)
    return write_image(path, thumb)


def _thumbnail(slide: SlideImage, max_px: int) -> tuple[np.ndarray, float]:
    """A thumbnail no larger than ``max_px`` and its scale (thumbnail px per level-0 px)."""
    W, H = slide.dimensions
    mpp = max(slide.mpp * max(W, H) / max_px, slide.mpp)
    return slide.thumbnail(mpp).copy(), slide.mpp / mpp


def write_json(result, path: str | Path) -> Path:
    atomic_write_bytes(Path(path), (result.to_json() + "\n").encode())
    return Path(path)


def cells_csv(result: IhcResult, path: str | Path) -> Path:
    """One row per tumour cell: x, y (level-0 px), class, completeness, intensity and more, and the
    cell's id in ``cells.geojson``."""
    c = result.cells
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["x", "y", "class", "completeness", "intensity", "cytoplasm", "nuclear_dab", "basolateral", "tile",
                "id"])
    ids = cell_ids(result.provenance.input_sha256, c.x, c.y)
    for row in zip(c.x, c.y, c.cls, c.completeness, c.intensity, c.cytoplasm, c.nuclear_dab, c.basolateral, c.tile,
                   ids):
        w.writerow([*row[:7], int(row[7]), *row[8:]])
    atomic_write_bytes(Path(path), buf.getvalue().encode())
    return Path(path)


def with_legend(img: np.ndarray, lines: list[tuple[str, tuple | None]], scale_bar: tuple[int, str] | None = None
                ) -> np.ndarray:
    """``img`` with a legend panel below it (never over the tissue): one line per (text, colour
    swatch or None), and optionally a scale bar (length px, label)."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    h = 18 * len(lines) + 10 + (22 if scale_bar else 0)
    panel = np.full((h, img.shape[1], 3), 255, np.uint8)
    for i, (text, color) in enumerate(lines):
        yy = 16 + 18 * i
        if color is not None:
            cv2.rectangle(panel, (6, yy - 10), (18, yy + 1), color, -1)
        cv2.putText(panel, text, (24 if color is not None else 6, yy), font, size, (20, 20, 20), 1, cv2.LINE_AA)
    if scale_bar:
        length, label = scale_bar
        y = h - 10
        cv2.line(panel, (6, y), (6 + length, y), (20, 20, 20), 3)
        cv2.putText(panel, label, (12 + length, y + 4), font, size, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([img, panel])


def _scale_bar(um_per_px: float, width_px: int) -> tuple[int, str]:
    """A round length (um or mm) about a fifth of the image wide, as (px, label)."""
    target = width_px * um_per_px / 5
    nice = max(v for v in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if v <= max(target, 10))
    return int(round(nice / um_per_px)), (f"{nice // 1000} mm" if nice >= 1000 else f"{nice} um")


def heatmap(result: IhcResult, slide: SlideImage, path: str | Path, max_px: int = 1600,
            full_weight_cells: int = 150) -> Path:
    """Tile scores over the thumbnail: the tissue of each tile tinted by its guideline score,
    more strongly the more tumour cells the tile holds (``full_weight_cells`` for full colour)."""
    from ..optics import optical_density

    thumb, k = _thumbnail(slide, max_px)
    tissue = optical_density(cv2.GaussianBlur(thumb, (0, 0), 1.0)).max(axis=2) > 0.06
    alpha = np.zeros(thumb.shape[:2], np.float32)
    tint = np.zeros_like(thumb)
    for t in result.tiles:
        if t.score is None:
            continue
        x0, y0, x1, y1 = int(t.x * k), int(t.y * k), int((t.x + t.width) * k), int((t.y + t.height) * k)
        tint[y0:y1, x0:x1] = CLASS_RGB[t.score]
        alpha[y0:y1, x0:x1] = 0.6 * min(1.0, t.tumour_cells / full_weight_cells)
    alpha = (alpha * tissue)[..., None]
    out = (thumb * (1 - alpha) + tint * alpha).round().astype(np.uint8)
    for t in result.tiles:
        if t.score is not None:
            p0, p1 = (int(t.x * k), int(t.y * k)), (int((t.x + t.width) * k) - 1, int((t.y + t.height) * k) - 1)
            cv2.rectangle(out, p0, p1, (200, 200, 200), 1)
            if p1[0] - p0[0] >= 24:              # tile numbers, as in the review and result.json
                cv2.putText(out, str(t.index), (p0[0] + 3, p0[1] + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                            (40, 40, 40), 1, cv2.LINE_AA)
    slide = f"{result.score} ({result.sub_label})" if result.score else "no call"
    out = with_legend(out, [(f"slide: HER2 IHC {slide}; tiles numbered as in result.json and the review", None)]
                      + [(f"tile scored {c}", CLASS_RGB[c]) for c in CLASS_RGB]
                      + [(f"tint: full with {full_weight_cells}+ tumour cells in the tile, paler with fewer", None),
                         (RESEARCH_ONLY, None)],
                      _scale_bar(result.scan_mpp / k, out.shape[1]))
    return write_image(path, out)


def tile_views(result: IhcResult, slide: SlideImage, tile_index: int, cells: list[int],
               non_tumour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(plain, overlay) RGB of one tile at the analysis mpp: its tumour ``cells`` (indices into
    result.cells) outlined in their class colour and ``non_tumour`` nuclei ((n, 2) level-0 px)
    marked grey (the review shows it beside the plain tile, with its own legend)."""
    t = result.tiles[tile_index]
    size = int(round(t.width * result.scan_mpp / result.mpp))
    plain = slide.read_at_mpp(t.x, t.y, size, size, result.mpp)
    rgb = plain.copy()
    k = result.scan_mpp / result.mpp                     # analysis px per level-0 px
    c = result.cells
    for i in cells:
        poly = (c.polygon(i) - (t.x, t.y)) * k           # outline vertices, tile px
        cv2.polylines(rgb, [np.round(poly * 4).astype(np.int32)], True, CLASS_RGB[c.cls[i]], 2, cv2.LINE_AA, 2)
    xy = (non_tumour - (t.x, t.y)) * k
    for xx, yy in xy[np.all((xy >= 0) & (xy < size), axis=1)]:
        cv2.circle(rgb, (int(xx), int(yy)), 3, NON_TUMOUR_RGB, 1, cv2.LINE_AA)
    return plain, rgb


def marked_tile(result: IhcResult, tile_index: int, plain: np.ndarray, cells: list[int],
                non_tumour: np.ndarray) -> np.ndarray:
    """The raw tile beside the same tile with each tumour cell marked at its centre in its class
    colour (nothing drawn over the membranes being judged), with the legend and a scale bar below."""
    t = result.tiles[tile_index]
    k = result.scan_mpp / result.mpp
    marks = plain.copy()
    c = result.cells
    for i in cells:
        centre = (int(round((c.x[i] - t.x) * k)), int(round((c.y[i] - t.y) * k)))
        cv2.circle(marks, centre, 5, (30, 30, 30), -1, cv2.LINE_AA)
        cv2.circle(marks, centre, 4, CLASS_RGB[c.cls[i]], -1, cv2.LINE_AA)
    size = plain.shape[0]
    xy = (non_tumour - (t.x, t.y)) * k
    for xx, yy in xy[np.all((xy >= 0) & (xy < size), axis=1)]:
        cv2.circle(marks, (int(xx), int(yy)), 3, NON_TUMOUR_RGB, 1, cv2.LINE_AA)
    gap = np.full((size, 8, 3), 255, np.uint8)
    counts = ", ".join(f"{cl}: {t.counts[cl]}" for cl in CLASS_RGB)
    return with_legend(np.hstack([plain, gap, marks]),
                       [(f"tile {tile_index}: scored {t.score} ({counts} tumour cells); left raw, right marked", None)]
                       + [(f"tumour cell {cl}", CLASS_RGB[cl]) for cl in CLASS_RGB]
                       + [("non-tumour nucleus (ring)", NON_TUMOUR_RGB)], _scale_bar(result.mpp, size))


def review_tiles(result: IhcResult, limit: int = 48, min_cells: int = 5) -> list[int]:
    """Tiles a reviewer should see, most important first: flagged by the tile model, near a
    cut-off, then the most tumour cells."""
    tiles = [t for t in result.tiles if t.tumour_cells >= min_cells]
    tiles.sort(key=lambda t: (not t.flagged, not t.near_cutoff, -t.tumour_cells, t.index))
    return [t.index for t in tiles[:limit]]


def representative_tiles(result: IhcResult, per_class: int = 2) -> list[int]:
    """Tiles the tile model disagrees with (first), then those showing each class best; no repeats."""
    chosen: list[int] = list(result.flagged_tiles[:per_class * 4])
    for cl in ("3+", "2+", "1+", "0"):
        ranked = sorted((t for t in result.tiles if t.counts[cl] > 0), key=lambda t: (-t.counts[cl], t.index))
        for t in ranked[:per_class]:
            if t.index not in chosen:
                chosen.append(t.index)
    return chosen


def write_ihc_outputs(result: IhcResult, slide: SlideImage, out: str | Path,
                      progress: Progress | None = None) -> dict[str, Path]:
    """result.json, cells.csv, cells.geojson, heatmap.png, overlays/tile_N.png (representative
    tiles, cell outlines) and tiles/tile_N.jpg + tile_N_cells.jpg (plain and outlined views of the
    tiles to review, ``review_tiles``) in ``out``; each counted as a step of the ``outputs`` stage."""
    progress = progress or Progress()
    lay = IhcLayout(out)
    lay.overlays.mkdir(parents=True, exist_ok=True)
    lay.tiles.mkdir(exist_ok=True)
    shown, review = representative_tiles(result), review_tiles(result)
    writers = {"result": lambda: write_json(result, lay.result),
               "cells_csv": lambda: cells_csv(result, lay.cells_csv),
               "geojson": lambda: write_qupath_geojson(result, lay.cells_geojson),
               "heatmap": lambda: heatmap(result, slide, lay.heatmap)}
    drawn = list(dict.fromkeys(shown + review))
    progress.stage("outputs", len(writers) + len(drawn))
    files = {}
    for name, write in writers.items():
        files[name] = write()
        progress.advance(len(files))
    by_tile: dict[int, list[int]] = {}
    for i, ti in enumerate(result.cells.tile):
        by_tile.setdefault(ti, []).append(i)
    non_tumour = np.asarray(result.non_tumour_xy, float).reshape(-1, 2)
    for k, i in enumerate(drawn, len(writers) + 1):      # each tile read and drawn once
        plain, over = tile_views(result, slide, i, by_tile.get(i, []), non_tumour)
        if i in shown:
            files[f"overlay_{i}"] = write_image(lay.overlay(i), marked_tile(result, i, plain, by_tile.get(i, []),
                                                                            non_tumour))
        if i in review:
            write_image(lay.tile_image(i), plain, result.mpp, quality=88)
            write_image(lay.tile_image(i, cells=True), over, result.mpp, quality=88)
        progress.advance(k)
    return files
