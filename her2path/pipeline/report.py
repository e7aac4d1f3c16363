"""The per-case HTML report: one self-contained file (images inlined, no network).

Built from a case folder written by ``run_case`` (result.json, ihc/, ish/):
status, reasons and next step; the IHC reasons (with the cut-off a near call
lies near and how far), H-score, class distribution, histograms of membrane
completeness and intensity, the heatmap with tile numbers and a scale bar, and
representative tiles raw beside marked; the ISH figures with the nuclei found
and why the others were not counted, and a montage of counted nuclei with a
colour key; the scoring region and provenance.
"""
from __future__ import annotations

import base64
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np

from ..io.writers import atomic_write_bytes
from ..schema import CaseResult
from .layout import CaseLayout, IshLayout
from .qupath import h_score

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


def histograms(cells_csv: Path, bins: int = 10) -> list[dict]:
    """Distributions of membrane completeness (0-1) and intensity (DAB OD above the cytoplasm) over
    the tumour cells, as SVG bar geometry for the report (empty when there is no cells.csv)."""
    if not cells_csv.exists():
        return []
    rows = list(csv.DictReader(cells_csv.open()))
    if not rows:
        return []
    out = []
    for key, label, top in (("completeness", "membrane completeness (share of the perimeter stained)", 1.0),
                            ("intensity", "membrane intensity (DAB OD above the cytoplasm)", None)):
        v = np.array([float(r[key]) for r in rows])
        hi = top or max(float(np.percentile(v, 99)), 1e-3)
        counts, edges = np.histogram(np.clip(v, 0, hi), bins=bins, range=(0, hi))
        scale = 100 / max(counts.max(), 1)
        out.append({"label": label, "n": len(v), "bars": [
            {"x": 40 + 32 * i, "h": round(c * scale, 1), "y": 110 - round(c * scale, 1), "count": int(c),
             "edge": f"{edges[i]:.2g}"} for i, c in enumerate(counts)], "last": f"{edges[-1]:.2g}"})
    return out


def nuclei_montage(ish_dir: Path, n: int = 24, crop_um: float = 14.0) -> tuple[np.ndarray, int, int] | None:
    """Evaluable nuclei cut from the ISH overlays (outlines, spots, counts drawn), in a grid, with
    how many are shown and how many were counted."""
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
    shown = len(tiles)
    cols = 8
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    return np.vstack(grid), shown, len(rows)


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


def render_report(case_dir: Path, signoff: dict | None = None) -> str:
    """The report of a case folder as one self-contained HTML page; ``signoff`` (reviewer, at,
    value, comment) adds the reviewer's sign-off and, for an override, the recomputed status."""
    lay = CaseLayout(case_dir)
    r = CaseResult.from_json(lay.result.read_text())
    if signoff and signoff["value"] != "accept":
        from .case import signed_off_status

        signoff = {**signoff, "status": signed_off_status(case_dir, signoff["value"], r.guideline, r.case_id)}
    heat = _read_rgb(lay.ihc.heatmap) if r.ihc else None
    overlays = sorted(lay.ihc.overlays.glob("*.png")) if r.ihc else []
    montage = nuclei_montage(lay.ish.root) if r.ish else None
    return _env().get_template("report.html.j2").render(
        r=r, case_name=r.case_id or Path(case_dir).name, signoff=signoff,
        written=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        status_hex=STATUS_HEX.get(r.status, "#555"), class_hex=CLASS_HEX,
        bars=_bars(r.ihc.percent_cells) if r.ihc else [],
        h_score=h_score(r.ihc.percent_cells) if r.ihc else None,
        histograms=histograms(lay.ihc.cells_csv) if r.ihc else [],
        heatmap=_img_data(heat) if heat is not None else None,
        overlays=[(p.stem, _img_data(_read_rgb(p), 1100)) for p in overlays],
        montage=_img_data(montage[0], 1024) if montage is not None else None,
        montage_counts=montage[1:] if montage is not None else None,
        ish_figures=[(k.replace("_", " "), getattr(r.ish, k)) for k in
                     ("nuclei", "her2_per_cell", "cep17_per_cell", "ratio", "group", "call", "amplified_percent")]
        if r.ish else [])


def write_report(case_dir: str | Path) -> Path:
    """Write ``report.html`` into a case folder."""
    lay = CaseLayout(case_dir)
    atomic_write_bytes(lay.report_html, render_report(lay.root).encode())
    return lay.report_html


def write_pdf(case_dir: str | Path, pdf: str | Path, signoff: dict | None = None) -> Path:
    """The case's report printed to ``pdf`` (A4, backgrounds kept) by headless Chromium.

    The case folder is not touched (its checksums stay valid): the PDF goes
    where the lab files it, with the reviewer's ``signoff`` when there is one. Chromium is driven through Playwright (the ``dev``
    extra) and found on the PATH (``chromium``, ``chromium-browser``,
    ``google-chrome``) or in Playwright's own install.

    Raises
    ------
    InputError
        When the folder holds no case, or no browser can print.
    """
    import shutil

    from ..errors import InputError

    lay = CaseLayout(case_dir)
    if not lay.result.is_file():
        raise InputError("not a case folder (no result.json)", case_dir, "give a folder written by `her2path case`")
    fix = "install Chromium (apt-get install chromium) and Playwright (pip install playwright)"
    try:
        from playwright.sync_api import Error as PlaywrightError, sync_playwright
    except ImportError:
        raise InputError("printing a PDF needs Playwright and Chromium", case_dir, fix) from None
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    html = render_report(lay.root, signoff)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=["--headless=new", "--disable-gpu", "--no-sandbox"])
            page = browser.new_page()
            page.set_content(html, wait_until="load")
            data = page.pdf(format="A4", print_background=True,
                            margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"})
            browser.close()
    except PlaywrightError as exc:
        raise InputError(f"Chromium could not print the report ({str(exc).splitlines()[0]})", case_dir, fix) from None
    atomic_write_bytes(Path(pdf), data)
    return Path(pdf)
