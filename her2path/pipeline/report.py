"""The per-case HTML report: one self-contained file (images inlined, no network).

Built from a case folder written by ``run_case`` (result.json, ihc/, ish/):
status, reasons and next step; the IHC heatmap and class distribution;
representative tiles with cell overlays; a montage of counted FISH nuclei
with their HER2/CEP17 counts; provenance.
"""
from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

import cv2
import numpy as np

from ..io.writers import atomic_write_bytes
from ..schema import CaseResult

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


def _bars_svg(percent: dict[str, float]) -> str:
    """Horizontal bars: percent of tumour cells per class."""
    rows = []
    for i, (cl, v) in enumerate(percent.items()):
        y = 8 + i * 28
        rows.append(f'<text x="0" y="{y + 15}" font-size="14">{cl}</text>'
                    f'<rect x="34" y="{y}" width="{3.2 * v:.1f}" height="20" fill="{CLASS_HEX[cl]}"/>'
                    f'<text x="{40 + 3.2 * v:.1f}" y="{y + 15}" font-size="13">{v:.1f}%</text>')
    return f'<svg width="420" height="122" role="img" aria-label="cell classes">{"".join(rows)}</svg>'


def nuclei_montage(ish_dir: Path, n: int = 24, crop_um: float = 14.0) -> np.ndarray | None:
    """Evaluable nuclei cut from the ISH overlays (outlines, spots, counts drawn), in a grid."""
    table = ish_dir / "nuclei.csv"
    result = ish_dir / "result.json"
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
            cache[f] = _read_rgb(ish_dir / f"overlay_{f}.png")
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


def render_report(case_dir: Path) -> str:
    r = CaseResult.from_json((case_dir / "result.json").read_text())
    e = html.escape
    parts = [f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>HER2 {e(r.status)} - {e(r.case_id or case_dir.name)}</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f6f4}}
header{{background:#fff;border-bottom:1px solid #ddd;padding:16px 28px}}
main{{padding:8px 28px 40px;max-width:1100px}} section{{background:#fff;border:1px solid #e2e2e2;border-radius:8px;padding:14px 18px;margin:14px 0}}
.badge{{display:inline-block;color:#fff;border-radius:4px;padding:3px 10px;font-weight:600}}
.ruo{{color:#8a1c1c;font-weight:600}} table{{border-collapse:collapse}} td,th{{padding:3px 12px 3px 0;text-align:left}}
img{{max-width:100%;border:1px solid #ddd}} .tiles{{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}}
code{{font-size:12px;word-break:break-all}}
</style></head><body><header>
<div class="ruo">Research use only, not for diagnosis.</div>
<h1>Case {e(r.case_id or case_dir.name)}: <span class="badge" style="background:{STATUS_HEX.get(r.status, '#555')}">HER2 {e(r.status)}</span>
{f'<span class="badge" style="background:#555">HER2-{e(r.sub_label)}</span>' if r.sub_label else ''}</h1>
<div>guideline {e(r.guideline)} &middot; {e(r.software)}</div></header><main>
<section><h2>Why</h2><ul>{''.join(f'<li>{e(x)}</li>' for x in r.reasons)}</ul>
<p><b>Next step:</b> {e(r.next_step) if r.next_step else 'none required by the guideline'}</p>
{('<p><b>For review:</b></p><ul>' + ''.join(f'<li>{e(f)}</li>' for f in r.flags) + '</ul>') if r.flags else ''}
</section>"""]
    if r.ihc:
        ihc = r.ihc
        rows = "".join(f"<tr><td>{c}</td><td>{ihc['counts'][c]}</td><td>{ihc['percent_cells'][c]:.1f}%</td></tr>"
                       for c in ihc["counts"])
        heat = _read_rgb(case_dir / "ihc" / "heatmap.png")
        parts.append(f"""<section><h2>IHC {e(ihc['score'])} ({e(ihc['sub_label'])})</h2>
<p>{ihc['tumour_cells']} invasive tumour cells scored at {ihc['mpp']:g} um/px
({ihc['excluded_cells']} excluded as out of focus); flagged tiles (tile model disagrees): {len(ihc.get('flagged_tiles', []))}.</p>
<table><tr><th>class</th><th>cells</th><th>percent</th></tr>{rows}</table>{_bars_svg(ihc['percent_cells'])}
{f'<h3>Heatmap</h3><img alt="IHC heatmap" src="{_img_data(heat)}">' if heat is not None else ''}
{''.join(f'<p>warning: {e(w)}</p>' for w in ihc['warnings'])}""")
        overlays = sorted((case_dir / "ihc" / "overlays").glob("*.png"))
        if overlays:
            parts.append("<h3>Representative tiles (cell outlines coloured by class)</h3><div class='tiles'>"
                         + "".join(f'<img alt="{e(p.stem)}" src="{_img_data(_read_rgb(p), 600)}">' for p in overlays)
                         + "</div>")
        parts.append("</section>")
    if r.ish:
        ish = r.ish
        figs = "".join(f"<tr><td>{k.replace('_', ' ')}</td><td>{e(str(ish[k]))}</td></tr>" for k in
                       ("nuclei", "her2_per_cell", "cep17_per_cell", "ratio", "group", "call", "amplified_percent"))
        montage = nuclei_montage(case_dir / "ish")
        parts.append(f"""<section><h2>ISH: {e(ish['call'])}</h2><table>{figs}</table>
{''.join(f'<p>{e(x)}</p>' for x in ish['reasons'])}
{f'<h3>Counted nuclei (HER2/CEP17)</h3><img alt="FISH nuclei montage" src="{_img_data(montage, 1024)}">' if montage is not None else ''}
</section>""")
    prov = []
    for name, res in (("IHC", r.ihc), ("ISH", r.ish)):
        if res:
            p = res["provenance"]
            prov.append(f"<tr><td>{name}</td><td><code>{e(p['input_path'])}</code><br>input sha256 <code>{p['input_sha256']}</code>"
                        f"<br>config sha256 <code>{p['config_sha256']}</code><br>model sha256 <code>{p.get('model_sha256')}</code>"
                        f"<br>{e(p['software'])}, analysed at {p['mpp_used']:g} um/px</td></tr>")
    parts.append(f"<section><h2>Provenance</h2><table>{''.join(prov)}</table></section></main></body></html>")
    return "\n".join(parts)


def write_report(case_dir: str | Path) -> Path:
    """Write ``report.html`` into a case folder."""
    case_dir = Path(case_dir)
    atomic_write_bytes(case_dir / "report.html", render_report(case_dir).encode())
    return case_dir / "report.html"
