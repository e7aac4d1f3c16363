"""The per-case HTML report: one self-contained file (images inlined, no network).

Built from a case folder written by ``run_case`` (result.json, ihc/, ish/):
status, reasons and next step; the IHC heatmap and class distribution;
representative tiles with cell overlays; a montage of counted FISH nuclei
with their HER2/CEP17 counts; provenance.
"""
from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import cv2
import numpy as np

from ..io.writers import atomic_write_bytes
from ..schema import CaseResult
from .layout import CaseLayout, IshLayout

CLASS_HEX = {"0": "#4f79c4", "1+": "#f2c14e", "2+": "#f08a24", "3+": "#c8102e"}
STATUS_HEX = {"positive": "#c8102e", "negative": "#2e7d32", "equivocal": "#f08a24", "needs-ish": "#f08a24",
              "needs-ihc": "#f08a24", "no-call": "#757575"}


def _img_data(img: np.ndarray, max_px: int = 900, jpeg: bool = True) -> str:
    """data: URI of an RGB image (JPEG q88 for tissue, PNG for drawings), at most ``max_px`` wide."""
    if img.shape[1] > max_px:
        img = cv2.resize(img, (max_px, int(img.shape[0] * max_px / img.shape[1])), interpolation=cv2.INTER_AREA)
    ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 88]) if jpeg else (".png", [])
    ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
    return f"data:image/{'jpeg' if jpeg else 'png'};base64," + base64.b64encode(buf.tobytes()).decode()


def _read_rgb(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img is not None else None


def _bars(percent: dict[str, float]) -> list[dict]:
    """Geometry of horizontal bars (percent of tumour cells per class) for the report's SVG."""
    return [{"cls": cl, "y": 8 + i * 28, "width": round(3.2 * v, 1), "value": v, "color": CLASS_HEX[cl]}
            for i, (cl, v) in enumerate(percent.items())]


def nuclei_montage(ish_dir: Path, n: int = 24, crop_um: float = 14.0) -> np.ndarray | None:
    """Evaluable nuclei cut from the ISH overlays (outlines, spots, counts drawn), in a grid."""
    lay = IshLayout(ish_dir)
    table, result = lay.nuclei_csv, lay.result
    if not table.exists() or not result.exists():
        return None
    mpp = json.loads(result.read_text())["mpp"]
    rows = [r for r in csv.DictReader(table.open()) if r["evaluable"] == "1"]
    if not rows:
        return None
    step = max(1, len(rows) // n)
    half = int(round(crop_um / mpp / 2))
    cache: dict[str, np.ndarray | None] = {}
    tiles = []
    for r in rows[::step][:n]:
        f = r["field"]
        if f not in cache:
            cache[f] = _read_rgb(lay.overlay(int(f)))
        img = cache[f]
        if img is None:
            continue
        x, y = int(float(r["x"])), int(float(r["y"]))
        crop = np.zeros((2 * half, 2 * half, 3), np.uint8)
        ya, yb, xa, xb = max(y - half, 0), min(y + half, img.shape[0]), max(x - half, 0), min(x + half, img.shape[1])
        crop[ya - (y - half):yb - (y - half), xa - (x - half):xb - (x - half)] = img[ya:yb, xa:xb]
        crop = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA)
        cv2.putText(crop, f"{r['her2']}/{r['cep17']}", (4, 122), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(crop)
    if not tiles:
        return None
    cols = 8
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    return np.vstack(grid)


_ENV = None


def _env():
    """The Jinja2 environment of the report templates (autoescaped: every value printed is escaped)."""
    global _ENV
    if _ENV is None:
        from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

        _ENV = Environment(loader=PackageLoader("her2path.pipeline", "templates"),
                           autoescape=select_autoescape(default=True, default_for_string=True),
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return _ENV


def render_report(case_dir: Path) -> str:
    """The report of a case folder as one self-contained HTML page."""
    lay = CaseLayout(case_dir)
    r = CaseResult.from_json(lay.result.read_text())
    heat = _read_rgb(lay.ihc.heatmap) if r.ihc else None
    overlays = sorted(lay.ihc.overlays.glob("*.png")) if r.ihc else []
    montage = nuclei_montage(lay.ish.root) if r.ish else None
    return _env().get_template("report.html.j2").render(
        r=r, case_name=r.case_id or Path(case_dir).name,
        status_hex=STATUS_HEX.get(r.status, "#555"), class_hex=CLASS_HEX,
        bars=_bars(r.ihc.percent_cells) if r.ihc else [],
        heatmap=_img_data(heat) if heat is not None else None,
        overlays=[(p.stem, _img_data(_read_rgb(p), 600)) for p in overlays],
        montage=_img_data(montage, 1024) if montage is not None else None,
        ish_figures=[(k.replace("_", " "), getattr(r.ish, k)) for k in
                     ("nuclei", "her2_per_cell", "cep17_per_cell", "ratio", "group", "call", "amplified_percent")]
        if r.ish else [])


def write_report(case_dir: str | Path) -> Path:
    """Write ``report.html`` into a case folder."""
    lay = CaseLayout(case_dir)
    atomic_write_bytes(lay.report_html, render_report(lay.root).encode())
    return lay.report_html
