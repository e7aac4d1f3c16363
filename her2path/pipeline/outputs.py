"""Files derived from the result models: JSON, CSV, QuPath GeoJSON, heatmap and overlay PNGs.

Nothing is measured here: every file is a view of an ``IhcResult`` (or of the
slide pixels it points to), so two formats can never disagree.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np

from ..io.slide import SlideImage
from ..io.tiling import TileGrid
from ..io.writers import atomic_write_bytes, write_image
from ..schema import IhcResult
from .layout import IhcLayout

CLASS_RGB = {"0": (70, 130, 230), "1+": (250, 210, 0), "2+": (255, 130, 0), "3+": (215, 20, 50)}
NON_TUMOUR_RGB = (140, 140, 140)
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
    """One row per tumour cell: x, y (level-0 px), class, completeness, intensity and more."""
    c = result.cells
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["x", "y", "class", "completeness", "intensity", "cytoplasm", "nuclear_dab", "basolateral", "tile"])
    for row in zip(c.x, c.y, c.cls, c.completeness, c.intensity, c.cytoplasm, c.nuclear_dab, c.basolateral, c.tile):
        w.writerow([*row[:7], int(row[7]), row[8]])
    atomic_write_bytes(Path(path), buf.getvalue().encode())
    return Path(path)


def _polygon(cx, cy, radii) -> list[list[float]]:
    """Closed ring from radii at equal angles (y down, as image and QuPath coordinates)."""
    ang = np.linspace(0, 2 * np.pi, len(radii), endpoint=False)
    pts = [[round(cx + r * np.cos(a), 1), round(cy + r * np.sin(a), 1)] for r, a in zip(radii, ang)]
    return pts + [pts[0]]


def _ring(cx, cy, vertices) -> list[list[float]]:
    """Closed ring from vertices (dx, dy) around (cx, cy)."""
    pts = [[round(cx + dx, 1), round(cy + dy, 1)] for dx, dy in vertices]
    return pts + [pts[0]]


def cells_geojson(result: IhcResult, path: str | Path) -> Path:
    """QuPath-compatible GeoJSON: every tumour cell as a cell object (outline, nucleus,
    classification "HER2 <class>" and measurements), non-tumour nuclei as detections."""
    c = result.cells
    feats = []
    for i in range(len(c)):
        cls = c.cls[i]
        feats.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [_ring(c.x[i], c.y[i], c.outline[i])]},
            "properties": {
                "objectType": "cell",
                "classification": {"name": f"HER2 {cls}", "color": list(CLASS_RGB[cls])},
                "nucleusGeometry": {"type": "Polygon",
                                    "coordinates": [_polygon(c.x[i], c.y[i], [c.nucleus_radius[i]] * 12)]},
                "measurements": {
                    "Membrane completeness": c.completeness[i],
                    "Membrane DAB OD": c.intensity[i],
                    "Cytoplasm DAB OD": c.cytoplasm[i],
                    "Basolateral (U-shaped)": float(c.basolateral[i]),
                },
            },
        })
    r_nt = 3.0 / result.scan_mpp
    for x, y in result.non_tumour_xy:
        feats.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [_polygon(x, y, [r_nt] * 8)]},
            "properties": {"objectType": "detection",
                           "classification": {"name": "Non-tumour", "color": list(NON_TUMOUR_RGB)}},
        })
    doc = {"type": "FeatureCollection", "features": feats}
    atomic_write_bytes(Path(path), json.dumps(doc, separators=(",", ":")).encode())
    return Path(path)


def _legend(img: np.ndarray, lines: list[tuple[str, tuple]], origin=(8, 8)) -> None:
    x, y = origin
    h = 18 * len(lines) + 8
    w = 8 + max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] for t, _ in lines) + 26
    roi = img[y:y + h, x:x + w]
    roi[:] = (0.25 * roi + 0.75 * 255).astype(np.uint8)
    for i, (text, color) in enumerate(lines):
        yy = y + 16 + 18 * i
        if color is not None:
            cv2.rectangle(img, (x + 6, yy - 10), (x + 18, yy + 1), color, -1)
        cv2.putText(img, text, (x + (24 if color is not None else 6), yy), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (20, 20, 20), 1, cv2.LINE_AA)


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
            cv2.rectangle(out, (int(t.x * k), int(t.y * k)),
                          (int((t.x + t.width) * k) - 1, int((t.y + t.height) * k) - 1), (200, 200, 200), 1)
    slide = f"{result.score} ({result.sub_label})" if result.score else "no call"
    _legend(out, [(f"slide: HER2 IHC {slide}", None)]
            + [(f"tile {c}", CLASS_RGB[c]) for c in CLASS_RGB] + [(RESEARCH_ONLY, None)])
    return write_image(path, out)


def tile_views(result: IhcResult, slide: SlideImage, tile_index: int, cells: list[int],
               non_tumour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(plain, overlay) RGB of one tile at the analysis mpp: its tumour ``cells`` (indices into
    result.cells) outlined in their class colour, ``non_tumour`` nuclei ((n, 2) level-0 px) marked
    grey, and a legend."""
    t = result.tiles[tile_index]
    size = int(round(t.width * result.scan_mpp / result.mpp))
    plain = slide.read_at_mpp(t.x, t.y, size, size, result.mpp)
    rgb = plain.copy()
    k = result.scan_mpp / result.mpp                     # analysis px per level-0 px
    c = result.cells
    for i in cells:
        poly = np.array(_ring((c.x[i] - t.x) * k, (c.y[i] - t.y) * k, np.array(c.outline[i]) * k))
        cv2.polylines(rgb, [np.round(poly * 4).astype(np.int32)], True, CLASS_RGB[c.cls[i]], 2, cv2.LINE_AA, 2)
    xy = (non_tumour - (t.x, t.y)) * k
    for xx, yy in xy[np.all((xy >= 0) & (xy < size), axis=1)]:
        cv2.circle(rgb, (int(xx), int(yy)), 3, NON_TUMOUR_RGB, 1, cv2.LINE_AA)
    counts = ", ".join(f"{cl}: {t.counts[cl]}" for cl in CLASS_RGB)
    _legend(rgb, [(f"tile {tile_index} score {t.score}  ({counts})", None)]
            + [(f"{cl}", CLASS_RGB[cl]) for cl in CLASS_RGB] + [("non-tumour", NON_TUMOUR_RGB)])
    return plain, rgb


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


def write_ihc_outputs(result: IhcResult, slide: SlideImage, out: str | Path) -> dict[str, Path]:
    """result.json, cells.csv, cells.geojson, heatmap.png, overlays/tile_N.png (representative
    tiles, cell outlines) and tiles/tile_N.jpg + tile_N_cells.jpg (plain and outlined views of the
    tiles to review, ``review_tiles``) in ``out``."""
    lay = IhcLayout(out)
    lay.overlays.mkdir(parents=True, exist_ok=True)
    files = {
        "result": write_json(result, lay.result),
        "cells_csv": cells_csv(result, lay.cells_csv),
        "geojson": cells_geojson(result, lay.cells_geojson),
        "heatmap": heatmap(result, slide, lay.heatmap),
    }
    lay.tiles.mkdir(exist_ok=True)
    shown, review = representative_tiles(result), review_tiles(result)
    by_tile: dict[int, list[int]] = {}
    for i, ti in enumerate(result.cells.tile):
        by_tile.setdefault(ti, []).append(i)
    non_tumour = np.asarray(result.non_tumour_xy, float).reshape(-1, 2)
    for i in dict.fromkeys(shown + review):      # each tile read and drawn once
        plain, over = tile_views(result, slide, i, by_tile.get(i, []), non_tumour)
        if i in shown:
            files[f"overlay_{i}"] = write_image(lay.overlay(i), over)
        if i in review:
            write_image(lay.tile_image(i), plain, result.mpp, quality=88)
            write_image(lay.tile_image(i, cells=True), over, result.mpp, quality=88)
    return files
