"""The IHC result as QuPath reads GeoJSON: cells with their nuclei, tiles, and the analysed region.

QuPath's reader (qupath-core ``QuPathTypeAdapters``, 0.2-0.7) takes from each
Feature its ``id`` (a UUID), ``geometry`` and, for cells, a top-level
``nucleusGeometry``; from ``properties`` the ``objectType`` (``cell``,
``detection``, ``tile``, ``annotation``), ``name``, ``classification``
(``names``: a base class and its derived classes, ``color`` RGB) and
``measurements`` (a map of name to number). Tumour cells go under ``Tumor``
in QuPath's own intensity classes (``Negative``, ``1+``, ``2+``, ``3+`` with
QuPath's colours), so QuPath's annotation measurements (Num 1+, H-score,
Positive %) fill in when the file is imported. Every object's id is derived
from the input's sha256 and the object's position (``cell_ids``), and
``cells.csv`` carries the same id, so a cell can be matched back.

Examples
--------
>>> cell_ids("ab" * 32, [10.0], [20.5])[0] == cell_ids("ab" * 32, [10.0], [20.5])[0]
True
>>> QUPATH_CLASS["0"], h_score({"0": 50.0, "1+": 20.0, "2+": 20.0, "3+": 10.0})
('Negative', 90.0)
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from ..io.writers import atomic_write_bytes
from ..schema import CLASSES, IhcResult

QUPATH_CLASS = {"0": "Negative", "1+": "1+", "2+": "2+", "3+": "3+"}
QUPATH_RGB = {"0": (90, 90, 180), "1+": (255, 215, 0), "2+": (225, 150, 50), "3+": (200, 50, 50)}
TUMOR = "Tumor"                                   # QuPath's built-in class name (and colour)
TUMOR_RGB = (200, 0, 0)
NON_TUMOUR = "Non-tumour"
NON_TUMOUR_RGB = (140, 140, 140)
NAMESPACE = uuid.UUID("5d0f7a52-3c41-4b8e-9a57-2f3e8c1b6d90")   # her2path's; never change it


def cell_ids(input_sha256: str, xs, ys, kind: str = "cell") -> list[str]:
    """Stable UUIDs of objects at level-0 positions (x, y) px of one input: same input, same cell, same id."""
    return [str(uuid.uuid5(NAMESPACE, f"{input_sha256}/{kind}/{x:.2f},{y:.2f}")) for x, y in zip(xs, ys)]


def h_score(percent: dict[str, float]) -> float:
    """H-score 0-300 from the percentages of tumour cells per class: 1 x %1+ + 2 x %2+ + 3 x %3+."""
    return round(sum(k * percent.get(c, 0.0) for k, c in enumerate(CLASSES)), 1)


def _ring(points) -> list[list[float]]:
    pts = [[round(float(x), 1), round(float(y), 1)] for x, y in points]
    return pts + [pts[0]]


def _circle(cx: float, cy: float, r: float, n: int = 12) -> dict:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return {"type": "Polygon", "coordinates": [_ring(np.c_[cx + r * np.cos(a), cy + r * np.sin(a)])]}


def _classification(names: list[str], rgb) -> dict:
    return {"names": names, "color": list(rgb)}


def _feature(fid: str, geometry: dict, object_type: str, **properties) -> dict:
    return {"type": "Feature", "id": fid, "geometry": geometry,
            "properties": {"objectType": object_type, **{k: v for k, v in properties.items() if v is not None}}}


def tiles_outline(result: IhcResult) -> dict | None:
    """The analysed tiles as a MultiPolygon in level-0 px: one rectangle per run of adjacent tiles
    in a row (exact edges; None: no tiles)."""
    rects = []
    for t in sorted(result.tiles, key=lambda t: (t.row, t.col)):
        last = rects[-1] if rects else None
        if last and last[0] == t.row and last[1] == t.col - 1:
            last[1], last[4] = t.col, t.x + t.width
        else:
            rects.append([t.row, t.col, t.x, t.y, t.x + t.width, t.y + t.height])
    if not rects:
        return None
    return {"type": "MultiPolygon",
            "coordinates": [[_ring([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])] for _, _, x0, y0, x1, y1 in rects]}


def qupath_features(result: IhcResult) -> list[dict]:
    """The GeoJSON features (see the module docstring) of one IHC result."""
    c, digest = result.cells, result.provenance.input_sha256
    feats = []
    for i, fid in enumerate(cell_ids(digest, c.x, c.y)):
        cls = c.cls[i]
        feature = _feature(
            fid, {"type": "Polygon", "coordinates": [_ring(c.polygon(i))]}, "cell",
            classification=_classification([TUMOR, QUPATH_CLASS[cls]], QUPATH_RGB[cls]),
            measurements={"Membrane completeness": c.completeness[i], "Membrane DAB OD": c.intensity[i],
                          "Cytoplasm DAB OD": c.cytoplasm[i], "Nucleus DAB OD": c.nuclear_dab[i],
                          "Basolateral (U-shaped)": float(c.basolateral[i]), "Tile": c.tile[i]})
        feature["nucleusGeometry"] = _circle(c.x[i], c.y[i], c.nucleus_radius[i])
        feats.append(feature)
    r_nt = 3.0 / result.scan_mpp
    xy = np.asarray(result.non_tumour_xy, float).reshape(-1, 2)
    for (x, y), fid in zip(xy, cell_ids(digest, xy[:, 0], xy[:, 1], "non-tumour")):
        feats.append(_feature(fid, _circle(x, y, r_nt, 8), "detection",
                              classification=_classification([NON_TUMOUR], NON_TUMOUR_RGB)))
    for t, fid in zip(result.tiles, cell_ids(digest, [t.x for t in result.tiles], [t.y for t in result.tiles],
                                             "tile")):
        box = [(t.x, t.y), (t.x + t.width, t.y), (t.x + t.width, t.y + t.height), (t.x, t.y + t.height)]
        n = max(t.tumour_cells, 1)
        feats.append(_feature(fid, {"type": "Polygon", "coordinates": [_ring(box)]}, "tile",
                              name=f"tile {t.index}: {t.score or 'no score'}",
                              measurements={"Tile index": t.index, "Num Tumor": t.tumour_cells,
                                            "Score (0-3, -1 none)": CLASSES.index(t.score) if t.score else -1,
                                            **{f"Percent {QUPATH_CLASS[k]}": round(100 * t.counts[k] / n, 2)
                                               for k in CLASSES}}))
    outline = tiles_outline(result)
    if outline is not None:
        p = result.percent_cells
        feats.append(_feature(
            cell_ids(digest, [0.0], [0.0], "region")[0], outline, "annotation",
            name=f"her2path: IHC {result.score or 'no call'} ({result.guideline})",
            measurements={"Num Tumor": result.tumour_cells,
                          **{f"Num {QUPATH_CLASS[k]}": result.counts.get(k, 0) for k in CLASSES},
                          **{f"Percent {QUPATH_CLASS[k]}": p.get(k, 0.0) for k in CLASSES},
                          "H-score": h_score(p),
                          "Score (0-3, -1 none)": CLASSES.index(result.score) if result.score else -1}))
    return feats


def write_qupath_geojson(result: IhcResult, path: str | Path) -> Path:
    """Write ``qupath_features`` as a FeatureCollection to ``path`` (atomically)."""
    doc = {"type": "FeatureCollection", "features": qupath_features(result)}
    atomic_write_bytes(Path(path), json.dumps(doc, separators=(",", ":")).encode())
    return Path(path)
