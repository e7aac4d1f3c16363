"""A randomised HER2 IHC generator: varied tumour architecture, stroma, staining and imaging, with truth.

Real slides vary in what the first generator (``synthetic.ihc``) holds fixed,
so here everything is drawn from a range (``random_spec``):

* architecture: solid nests, sheets, glands of columnar cells around a lumen,
  cribriform nests, single files, signet-ring cells scattered in stroma;
  cell diameter 8-25 um; pleomorphic, vesicular or dense nuclei;
* staining: membranes of each class at their physical optical density
  (1+ faint and partial, 2+ weak-to-moderate and complete, 3+ intense, thick
  enough to hide the nucleus in some cells), lateral / basolateral (U-shaped)
  membranes, cytoplasmic blush, a pale or strong counterstain;
* non-tumour tissue: fibrous stroma with fibroblasts, smooth muscle (aligned
  fibres with cigar-shaped nuclei, some cut across and round), fat,
  lymphocyte infiltrates, red cells in vessels, normal ducts, and plump
  stromal cells (plasma cells, histiocytes, activated fibroblasts: round to
  oval nuclei of tumour-nucleus size, each in a little pale cytoplasm) as
  they crowd the loose stroma of real gastric cores;
* negatives that must never score 2+/3+: nuclear DAB (a Ki67/ER/PR stain),
  an H&E slide (eosin, no DAB), DAB only in the cytoplasm;
* imaging: stain-vector jitter, 20x blur or 40x sharpness, a scanner colour
  cast, JPEG at quality 70-95, camera noise.

Truth: every tumour cell's centre, class and pattern, every non-tumour
cell's centre and kind, and the guideline score of the tumour cells.

Examples
--------
>>> f = render_tissue(random_spec(3, width_um=128, height_um=128))
>>> f.rgb.dtype, f.rgb.shape[2], f.decision.score in ("0", "1+", "2+", "3+", None)
(dtype('uint8'), 3, True)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, find_boundaries

from ..io.writers import encode_jpeg
from ..rules.ihc import IhcDecision, ihc_decision
from ..schema import CLASSES
from ..segmentation import pixels
from .ihc import StainVectors, _allocate, _draw_ellipses, jitter_stains

MORPHOLOGIES = ("solid", "sheet", "glands", "cribriform", "single-file", "signet")
STROMA = ("fibrous", "muscle", "fat", "lymphocytic")
NEGATIVES = ("nuclear-dab", "he", "cytoplasm")
EOSIN = (0.07, 0.99, 0.11)
# Unstained red cells (and pigment) in an H-DAB slide: a near-neutral grey, measured on the red cells of three
# real cores of benchmarks.real_ihc (0.57-0.59, 0.59-0.60, 0.55-0.57 as a unit OD vector; 21-23 degrees from
# DAB but only 3 degrees off the hematoxylin-DAB plane), so they unmix mostly into hematoxylin and DAB, as
# on real slides. Was (0.32, 0.62, 0.72), a brown 5 degrees from DAB.
RBC_VECTOR = (0.58, 0.60, 0.56)
# Peak membrane DAB OD and completeness per class (1+ faint and partial; 2+, 3+ complete). The
# optical densities are those of real cores of each grade measured by her2path (benchmarks/real_ihc):
# moderate 2+ membranes are about half as dark as intense 3+ ones, faint 1+ ones a fifth.
CLASS_PEAK = {"1+": (0.06, 0.22), "2+": (0.3, 0.65), "3+": (0.8, 1.6)}
CLASS_COMPLETE = {"1+": (0.2, 0.65), "2+": (0.85, 1.0), "3+": (0.85, 1.0)}
U_SHAPED_COMPLETE = (0.5, 0.72)


@dataclass(frozen=True)
class TissueSpec:
    """One field to render. Lengths in um, resolution in um/px, optical densities in OD."""

    seed: int = 0
    mpp: float = 0.5
    width_um: float = 384.0
    height_um: float = 384.0
    percent: dict = field(default_factory=lambda: {"0": 60.0, "1+": 20.0, "2+": 10.0, "3+": 10.0})
    morphology: str = "solid"
    cell_um: float = 14.0                 # cell diameter
    tumour_area: float = 0.45             # share of the field in tumour
    stroma: str = "fibrous"
    lymphocytes: float = 0.3              # lymphocytes in the stroma, 0-1 (lymphocytic stroma: dense patches)
    stromal_cells: float = 0.0            # plump stromal cells (plasma cells, histiocytes) per mm^2 of stroma
    rbc: bool = False                     # red cells in vessels
    normal_ducts: int = 0                 # small normal ducts (non-tumour epithelium)
    u_shaped: float = 0.0                 # share of 2+/3+ cells stained laterally/basolaterally only
    thick_3plus: bool = False             # intense membranes thick enough to hide the nucleus
    blush: float = 0.0                    # cytoplasmic DAB OD in stained cells (at most half their membrane's peak)
    negative: str | None = None           # "nuclear-dab", "he" (H&E slide) or "cytoplasm"
    counterstain: float = 1.0             # hematoxylin strength (pale slides 0.4)
    vesicular: float = 0.5                # share of vesicular (pale, rimmed) nuclei
    stain_jitter_deg: float = 0.0
    dab_scale: float = 1.0
    blur_um: float = 0.35                 # 20x scans ~0.5-0.8, 40x ~0.25-0.4
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)   # scanner channel gains
    jpeg_quality: int | None = None
    noise: float = 2.0                    # camera noise, 8-bit grey levels at mid-grey
    guideline: str = "breast"

    def __post_init__(self):
        if self.morphology not in MORPHOLOGIES or self.stroma not in STROMA:
            raise ValueError(f"morphology in {MORPHOLOGIES}, stroma in {STROMA}")
        if self.negative not in (None, *NEGATIVES):
            raise ValueError(f"negative in {NEGATIVES}")


def random_spec(seed: int, **fixed) -> TissueSpec:
    """A field with every nuisance drawn from its range (``fixed`` pins some of them).

    The class mix is drawn so that the four guideline scores come about
    equally often, a third of the fields near a 10% cut-off.
    """
    rng = np.random.default_rng([seed, 7])
    score = CLASSES[seed % 4]
    near = rng.random() < 1 / 3
    p = {"0": [96, 3, 1, 0], "1+": [62, 35, 3, 0], "2+": [40, 25, 35, 0], "3+": [30, 15, 20, 35]}[score]
    if near:   # the deciding share a few points from its 10% cut-off, on the right side
        k = rng.uniform(12.5, 17.0)
        p = {"0": [100 - rng.uniform(4, 8), 0, 0, 0], "1+": [100 - k, k, 0, 0], "2+": [72 - k, 28, k, 0],
             "3+": [65 - k, 20, 15, k]}[score]
        if score == "0":
            p[1] = 100 - p[0]
    mix = np.array(p, float) * (rng.uniform(0.85, 1.15, 4) if not near else 1.0)
    mix = dict(zip(CLASSES, (100 * mix / mix.sum()).round(2).tolist()))
    stroma = str(rng.choice(STROMA, p=[0.45, 0.25, 0.15, 0.15]))
    high_res = rng.random() < 0.5
    gains = tuple(float(g) for g in rng.uniform(0.92, 1.03, 3)) if rng.random() < 0.6 else (1.0, 1.0, 1.0)
    values = dict(
        seed=seed, mpp=0.25 if rng.random() < 0.3 else 0.5, percent=mix,
        morphology=str(rng.choice(MORPHOLOGIES, p=[0.25, 0.1, 0.3, 0.1, 0.1, 0.15])),
        cell_um=float(rng.uniform(9, 22)), tumour_area=float(rng.uniform(0.3, 0.6)), stroma=stroma,
        lymphocytes=float(rng.uniform(0, 0.8)), rbc=bool(rng.random() < 0.4),
        normal_ducts=int(rng.random() < 0.2), u_shaped=float(rng.choice([0.0, rng.uniform(0.2, 0.8)])),
        thick_3plus=bool(rng.random() < 0.5), blush=float(rng.choice([0.0, rng.uniform(0.02, 0.1)])),
        counterstain=float(rng.uniform(0.4, 1.2)), vesicular=float(rng.uniform(0, 1)),
        stain_jitter_deg=float(rng.uniform(0, 8)), dab_scale=float(rng.uniform(0.85, 1.15)),
        blur_um=float(rng.uniform(0.25, 0.4) if high_res else rng.uniform(0.45, 0.75)), cast=gains,
        jpeg_quality=int(rng.integers(70, 96)) if rng.random() < 0.6 else None,
        noise=float(rng.uniform(1.0, 3.5)))
    # Drawn from a stream of its own, so that every other value of a seed's field stays as it was.
    extra = np.random.default_rng([seed, 13])
    values["stromal_cells"] = float(extra.uniform(300, 2500)) if extra.random() < 0.5 else 0.0
    values.update(fixed)
    return TissueSpec(**values)


@dataclass
class TissueTruth:
    """Truth of one field; tumour-cell arrays have one row per tumour cell."""

    xy_px: np.ndarray          # (n, 2) tumour cell centres, px
    nucleus_xy_px: np.ndarray  # (n, 2) their nuclei, px
    cls: np.ndarray            # (n,) "0", "1+", "2+", "3+"
    pattern: np.ndarray        # (n,) "none", "partial", "complete", "u-shaped"
    peak_od: np.ndarray        # (n,) peak membrane DAB OD as laid down
    completeness: np.ndarray   # (n,) share of the perimeter stained
    other_xy_px: np.ndarray    # (m, 2) non-tumour nuclei
    other_kind: np.ndarray     # (m,) "fibroblast", "muscle", "lymphocyte", "stromal", "duct", "adipocyte"


@dataclass
class TissueField:
    rgb: np.ndarray
    mpp: float
    spec: TissueSpec
    truth: TissueTruth
    decision: IhcDecision       # the guideline score of the true tumour cells
    encoded: bytes | None = None

    @property
    def axes(self) -> dict:
        """The nuisance values of this field, for accuracy tables per axis."""
        s = self.spec
        return {"morphology": s.morphology, "stroma": s.stroma, "scan": "40x" if s.blur_um < 0.42 else "20x",
                "mpp": s.mpp, "jpeg": "jpeg" if s.jpeg_quality else "lossless",
                "counterstain": "pale" if s.counterstain < 0.7 else "normal",
                "u_shaped": "u-shaped" if s.u_shaped > 0 else "complete", "thick_3plus": s.thick_3plus,
                "blush": "blush" if s.blush > 0 else "none", "cast": "cast" if s.cast != (1.0, 1.0, 1.0) else "none",
                "stromal_cells": "none" if s.stromal_cells == 0 else ("sparse" if s.stromal_cells < 1200 else "dense"),
                "red_cells": "vessels" if s.rbc else "none",
                "cell_um": "small" if s.cell_um < 13 else ("large" if s.cell_um > 18 else "medium")}


# -- layout ---------------------------------------------------------------------------

def _smooth(rng, shape, sigma_px):
    f = ndi.gaussian_filter(rng.normal(size=shape), sigma_px, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-9)


def _poisson(rng, region, spacing_px, n_try):
    """Points at least ``spacing_px`` apart inside the boolean ``region`` (dart throwing)."""
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return np.zeros((0, 2))
    pick = rng.integers(0, len(ys), n_try)
    cand = np.c_[xs[pick], ys[pick]].astype(float) + rng.uniform(-0.5, 0.5, (n_try, 2))
    kept = []
    from scipy.spatial import cKDTree

    for p in cand:
        if kept and cKDTree(np.array(kept)).query(p)[0] < spacing_px:
            continue
        kept.append(p)
    return np.array(kept).reshape(-1, 2)


def _hex(rng, shape, spacing_px):
    rows = np.arange(-spacing_px, shape[0] + spacing_px, spacing_px * np.sqrt(3) / 2)
    off = rng.uniform(0, spacing_px, 2)
    pts = [np.c_[np.arange(-spacing_px, shape[1] + spacing_px, spacing_px) + (spacing_px / 2) * (i % 2) + off[0],
                 np.full(int(np.ceil((shape[1] + 2 * spacing_px) / spacing_px)), y + off[1])]
           for i, y in enumerate(rows)]
    pts = np.concatenate(pts)
    return pts + rng.uniform(-0.18, 0.18, pts.shape) * spacing_px


@dataclass
class _Layout:
    centres: np.ndarray        # (n, 2) px
    territory: np.ndarray      # (H, W) int32, cell labels 1..n
    tumour: np.ndarray         # (H, W) bool, tumour epithelium (cells and their lumens' walls)
    lumen: np.ndarray          # (H, W) bool
    nucleus_xy: np.ndarray     # (n, 2) px
    nucleus_axes: np.ndarray   # (n, 2) um
    nucleus_angle: np.ndarray  # (n,) deg
    apical: np.ndarray         # (n, 2) unit vector towards the lumen (0 where none)
    signet: bool = False


def _layout(spec: TissueSpec, rng, shape) -> _Layout:
    mpp, cell = spec.mpp, spec.cell_um / spec.mpp
    H, W = shape
    lumen = np.zeros(shape, bool)
    nuc_scale = rng.uniform(0.38, 0.5)        # nucleus diameter / cell diameter
    if spec.morphology == "glands":
        region = _smooth(rng, shape, 60 / mpp) > np.quantile(_smooth(rng, (64, 64), 4), 1 - spec.tumour_area)
        r_l = rng.uniform(0.4, 1.6) * cell                 # lumen radius
        height = rng.uniform(1.3, 1.8) * cell              # columnar cells: taller than wide
        gl = _poisson(rng, region, 2 * (r_l + height) + 6 / mpp, 400)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        tumour = np.zeros(shape, bool)
        owner = np.zeros(shape, np.int32)
        best = np.full(shape, np.inf, np.float32)
        for i, (gx, gy) in enumerate(gl):
            d = np.hypot(xx - gx, yy - gy)
            closer = d < best
            best[closer] = d[closer]
            owner[closer] = i + 1
        centres, nxy, axes, ang, api = [], [], [], [], []
        markers = np.zeros(shape, np.int32)
        for i, (gx, gy) in enumerate(gl):
            mine = owner == i + 1
            d = best * mine
            tumour |= mine & (best >= r_l) & (best < r_l + height)
            lumen |= mine & (best < r_l)
            n = max(6, int(2 * np.pi * (r_l + height / 2) / (0.75 * cell)))
            for t in np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi):
                u = np.array([np.cos(t), np.sin(t)])
                c = np.array([gx, gy]) + u * (r_l + height / 2)
                centres.append(c)
                nxy.append(np.array([gx, gy]) + u * (r_l + 0.7 * height))      # basal nuclei
                axes.append([nuc_scale * spec.cell_um * rng.uniform(0.9, 1.3) / 2, nuc_scale * spec.cell_um * 0.3])
                ang.append(np.degrees(t))
                api.append(-u)
        centres = np.array(centres).reshape(-1, 2)
        ok = (centres[:, 0] >= 0) & (centres[:, 0] < W) & (centres[:, 1] >= 0) & (centres[:, 1] < H)
        idx = np.flatnonzero(ok)
        for k, i in enumerate(idx):
            x, y = np.clip(np.round(centres[i]).astype(int), 0, [W - 1, H - 1])
            markers[y, x] = k + 1
        territory = expand_labels(markers, distance=1.2 * cell) * tumour
        return _Layout(centres[idx], territory.astype(np.int32), tumour, lumen, np.array(nxy)[idx],
                       np.array(axes)[idx], np.array(ang)[idx], np.array(api)[idx])
    region = _smooth(rng, shape, 14 / mpp * (cell / 28) ** 0.5 + 8 / mpp)
    region = region > np.quantile(region, 1 - spec.tumour_area)
    if spec.morphology == "single-file":
        region = np.zeros(shape, bool)
        for _ in range(max(2, int(spec.tumour_area * W * H / (cell * 40 * cell)))):
            p = rng.uniform(0, [W, H])
            a = rng.uniform(0, np.pi)
            pts = []
            for _ in range(int(1.5 * max(W, H) / cell)):
                a += rng.normal(0, 0.15)
                p = p + cell * 0.95 * np.array([np.cos(a), np.sin(a)])
                pts.append(p.copy())
            pts = np.array(pts)
            cv2.polylines(region.view(np.uint8), [np.round(pts).astype(np.int32)], False, 1,
                          thickness=max(1, int(cell)))
        region = region.astype(bool)
    if spec.morphology == "signet":
        centres = _poisson(rng, region, 1.4 * cell, int(spec.tumour_area * W * H / cell ** 2 * 2))
        centres = centres[rng.random(len(centres)) < 0.6]
    else:
        centres = _hex(rng, shape, cell)
        inside = region[np.clip(centres[:, 1].astype(int), 0, H - 1), np.clip(centres[:, 0].astype(int), 0, W - 1)]
        centres = centres[inside & (centres[:, 0] >= 0) & (centres[:, 0] < W) & (centres[:, 1] >= 0)
                          & (centres[:, 1] < H)]
    if spec.morphology == "cribriform":
        holes = _poisson(rng, region, 3 * cell, 60)
        for hx, hy in holes[: max(1, len(holes) // 2)]:
            cv2.circle(lumen.view(np.uint8), (int(hx), int(hy)), int(rng.uniform(0.6, 1.3) * cell), 1, -1)
        lumen = lumen.astype(bool) & region
        keep = ~lumen[centres[:, 1].astype(int), centres[:, 0].astype(int)]
        centres = centres[keep]
    markers = np.zeros(shape, np.int32)
    ci = np.clip(np.round(centres).astype(int), 0, [W - 1, H - 1])
    markers[ci[:, 1], ci[:, 0]] = np.arange(1, len(ci) + 1)
    reach = 0.5 * cell if spec.morphology == "signet" else 0.62 * cell
    territory = expand_labels(markers, distance=reach)
    if spec.morphology != "signet":
        territory *= region & ~lumen
    n = len(centres)
    if spec.morphology == "signet":     # nucleus pushed aside by a mucin vacuole, flattened into a crescent
        t = rng.uniform(0, 2 * np.pi, n)
        nxy = centres + 0.32 * cell * np.c_[np.cos(t), np.sin(t)]
        axes = np.c_[rng.uniform(0.35, 0.5, n), rng.uniform(0.14, 0.2, n)] * spec.cell_um
        ang = np.degrees(t) + 90
    else:
        nxy = centres + rng.normal(0, 0.06 * cell, (n, 2))
        a = nuc_scale * spec.cell_um * rng.uniform(0.8, 1.25, n)          # pleomorphic
        axes = np.c_[a, a * rng.uniform(0.6, 0.95, n)] / 2
        ang = rng.uniform(0, 180, n)
    return _Layout(centres, territory.astype(np.int32), territory > 0 if spec.morphology == "signet" else
                   region & ~lumen, lumen, nxy, axes, ang, np.zeros((n, 2)), spec.morphology == "signet")


# -- rendering ------------------------------------------------------------------------

def render_tissue(spec: TissueSpec) -> TissueField:
    """Render one field and its truth (see the module docstring)."""
    rng = np.random.default_rng(spec.seed)
    mpp = spec.mpp
    shape = (int(round(spec.height_um / mpp)), int(round(spec.width_um / mpp)))
    H, W = shape
    lay = _layout(spec, rng, shape)
    n = len(lay.centres)
    counts = _allocate(spec.percent, n)
    order = np.argsort(_smooth(rng, shape, 30 / mpp)[np.clip(lay.centres[:, 1].astype(int), 0, H - 1),
                                                      np.clip(lay.centres[:, 0].astype(int), 0, W - 1)]
                       + rng.normal(0, 0.3, n), kind="stable")
    cls = np.empty(n, object)
    cls[order] = np.repeat(np.array(CLASSES, object), counts)
    if spec.negative:
        cls[:] = "0"
    peak = np.zeros(n)
    comp = np.zeros(n)
    pattern = np.full(n, "none", object)
    for c in CLASSES[1:]:
        sel = cls == c
        peak[sel] = rng.uniform(*CLASS_PEAK[c], sel.sum())
        comp[sel] = rng.uniform(*CLASS_COMPLETE[c], sel.sum())
        pattern[sel] = "partial" if c == "1+" else "complete"
    u = (np.isin(cls, ["2+", "3+"])) & (rng.random(n) < spec.u_shaped)
    comp[u] = rng.uniform(*U_SHAPED_COMPLETE, u.sum())
    pattern[u] = "u-shaped"
    # Breast: intense U-shaped staining is an unusual pattern scored 2+; gastric counts it complete.
    if spec.guideline == "breast":
        cls[u & (cls == "3+")] = "2+"

    hem = np.zeros(shape, np.float32)
    dab = np.zeros(shape, np.float32)
    eos = np.zeros(shape, np.float32)
    other = np.zeros(shape, np.float32)        # red cells
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cs = spec.counterstain

    # Stroma and the other non-tumour tissue, everywhere but the tumour.
    others_xy, others_kind = _stroma(spec, rng, shape, hem, other, ~(lay.tumour | lay.lumen))

    # Tumour cells: cytoplasm, membranes, nuclei.
    lab = lay.territory
    has = lab > 0
    idx = lab[has] - 1
    hem[has] = cs * rng.uniform(0.03, 0.06)
    inner = find_boundaries(lab, mode="inner") & has
    dist = ndi.distance_transform_edt(~inner) * mpp
    theta = np.arctan2(yy[has] - lay.centres[idx, 1], xx[has] - lay.centres[idx, 0])
    phase = rng.uniform(0, 2 * np.pi, n)
    arc = np.mod(theta - phase[idx], 2 * np.pi) / (2 * np.pi)
    on = np.clip((comp[idx] - arc) / 0.03, 0, 1)
    if spec.morphology == "glands":            # lateral/basolateral: the apical side (towards the lumen) spared
        ap = lay.apical[idx]
        facing = (np.cos(theta) * ap[:, 0] + np.sin(theta) * ap[:, 1])
        basal = np.clip((0.3 - facing) / 0.2, 0, 1)
        on = np.where(u[idx], basal, on)
    width = np.where((cls[idx] == "3+") & spec.thick_3plus, rng.uniform(0.55, 0.8), rng.uniform(0.3, 0.45))
    profile = np.exp(-0.5 * (dist[has] / width) ** 2)
    ripple = 1 + 0.15 * np.sin(5 * theta + phase[idx] * 3)
    dab[has] = spec.dab_scale * peak[idx] * on * ripple * profile
    stained = cls != "0"
    if spec.blush > 0:   # up to the membrane (no pale ring), and at most half its peak: still membranous
        dab[has] += np.minimum(spec.blush, 0.5 * spec.dab_scale * peak[idx]) * stained[idx]
    thick = np.zeros(n, bool)
    if spec.thick_3plus:                       # dense cytoplasmic DAB in intense cells hides their nucleus
        thick = (cls == "3+") & (rng.random(n) < 0.6)
        dab[has] += thick[idx] * rng.uniform(0.1, 0.25) * (dist[has] > 0.5)
    if spec.negative == "cytoplasm":
        cyto = rng.random(n) < 0.5
        dab[has] += cyto[idx] * rng.uniform(0.15, 0.45) * (dist[has] > 0.3)
    if lay.signet:                             # the mucin vacuole: nearly empty
        d_c = np.hypot(xx[has] - lay.centres[idx, 0], yy[has] - lay.centres[idx, 1]) * mpp
        vac = d_c < 0.3 * spec.cell_um
        hem[has] = np.where(vac, cs * 0.01, hem[has])

    nuc = np.zeros(shape, np.float32)
    nuc_od = cs * rng.uniform(0.25, 0.55, n) * np.where(thick, 0.3, 1.0)
    _draw_ellipses(nuc, lay.nucleus_xy * mpp, lay.nucleus_axes, lay.nucleus_angle, nuc_od, mpp)
    vesicular = rng.random(n) < spec.vesicular
    if vesicular.any():                        # a paler inside: rim and nucleoli carry the stain
        inner_nuc = np.zeros(shape, np.float32)
        _draw_ellipses(inner_nuc, lay.nucleus_xy[vesicular] * mpp, lay.nucleus_axes[vesicular] * 0.7,
                       lay.nucleus_angle[vesicular], nuc_od[vesicular] * 0.55, mpp)
        nuc = np.where(inner_nuc > 0, inner_nuc, nuc)
        nucleoli = lay.nucleus_xy[vesicular] + rng.normal(0, 0.6 / mpp, (vesicular.sum(), 2))
        _draw_ellipses(nuc, nucleoli * mpp, np.full((vesicular.sum(), 2), 0.7), np.zeros(vesicular.sum()),
                       nuc_od[vesicular] * 1.3, mpp)
    chromatin = 1 + 0.18 * ndi.gaussian_filter(rng.normal(size=shape), 0.4 / mpp) / 0.2 * (mpp / 0.5)
    hem = np.maximum(hem, nuc * np.clip(chromatin, 0.6, 1.4))
    if spec.negative == "nuclear-dab":
        pos = np.zeros(shape, np.float32)
        hit = rng.random(n) < rng.uniform(0.25, 0.8)
        _draw_ellipses(pos, lay.nucleus_xy[hit] * mpp, lay.nucleus_axes[hit], lay.nucleus_angle[hit],
                       rng.uniform(0.3, 0.8, hit.sum()), mpp)
        dab += pos
    hem[lay.lumen] = cs * 0.005

    # Normal ducts: small non-tumour epithelial rings.
    for _ in range(spec.normal_ducts):
        xy, kind = _normal_duct(spec, rng, shape, hem, lay.tumour | lay.lumen)
        others_xy.append(xy)
        others_kind += kind

    if spec.negative == "he":                   # an H&E slide: eosin where the DAB and tissue tint would be
        eos = np.where(hem > 0, 0.15 + 0.1 * rng.random(), 0).astype(np.float32) * (hem < 0.2)
        dab[:] = 0

    stains = jitter_stains(StainVectors(), rng, spec.stain_jitter_deg)
    m = stains.matrix()
    od = hem[..., None] * m[0] + dab[..., None] * m[1] + other[..., None] * np.asarray(RBC_VECTOR) / np.linalg.norm(
        RBC_VECTOR) + eos[..., None] * np.asarray(EOSIN) / np.linalg.norm(EOSIN)
    od += 0.01
    rgb = 250.0 * np.power(10.0, -od)
    rgb = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), spec.blur_um / mpp)
    rgb = rgb * np.asarray(spec.cast, np.float32)
    rgb = rgb + rng.normal(0, 1, rgb.shape) * spec.noise * np.sqrt(np.maximum(rgb, 1) / 128.0)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    encoded = None
    if spec.jpeg_quality:
        encoded = encode_jpeg(rgb, spec.jpeg_quality, mpp)
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    inside = (lay.centres[:, 0] >= 2) & (lay.centres[:, 0] < W - 2) & (lay.centres[:, 1] >= 2) & \
        (lay.centres[:, 1] < H - 2) & (lay.territory[np.clip(lay.centres[:, 1].astype(int), 0, H - 1),
                                                     np.clip(lay.centres[:, 0].astype(int), 0, W - 1)] > 0)
    oxy = np.concatenate(others_xy) if others_xy else np.zeros((0, 2))
    truth = TissueTruth(lay.centres[inside], lay.nucleus_xy[inside], cls[inside], pattern[inside], peak[inside],
                        comp[inside], oxy.reshape(-1, 2), np.array(others_kind, object))
    decision = ihc_decision(truth.cls, truth.xy_px * mpp, spec.guideline, min_cells=1)
    return TissueField(rgb, mpp, spec, truth, decision, encoded)


def _scatter_points(rng, density_mm2: float, mask: np.ndarray, mpp: float) -> np.ndarray:
    """Points dropped uniformly on the pixels of ``mask``, ``density_mm2`` per mm^2 on average.

    The count is Poisson, so fields of one spec vary as real ones do; ``mpp`` is um per pixel.
    Returns an (n, 2) float array of (x, y) pixel positions (n may be 0).

    Examples
    --------
    >>> m = np.zeros((100, 100), bool); m[:, :50] = True     # 50 x 100 px at 10 um/px: 0.5 mm^2
    >>> pts = _scatter_points(np.random.default_rng(0), 200, m, 10.0)
    >>> len(pts) > 50, bool((pts[:, 0] < 50).all())
    (True, True)
    """
    n = rng.poisson(density_mm2 * mask.sum() * mpp * mpp / 1e6)
    if n == 0:
        return np.zeros((0, 2))
    ys, xs = pixels(mask)
    pick = rng.integers(0, len(ys), n)
    return np.c_[xs[pick], ys[pick]].astype(float)


def _stroma(spec, rng, shape, hem, other, where) -> tuple[list, list]:
    """Paint the non-tumour tissue into ``hem`` / ``other`` where ``where``; returns nuclei positions."""
    mpp, cs = spec.mpp, spec.counterstain
    H, W = shape
    xy, kinds = [], []
    angle = rng.uniform(0, 180)

    def oriented_noise(length_um, width_um, ang):
        k = int(2 * length_um / mpp) | 1
        ker = np.zeros((k, k), np.float32)
        cv2.line(ker, (0, k // 2), (k - 1, k // 2), 1.0, 1)
        rot = cv2.getRotationMatrix2D((k // 2, k // 2), ang, 1.0)
        ker = cv2.warpAffine(ker, rot, (k, k))
        ker /= ker.sum() + 1e-9
        f = cv2.filter2D(ndi.gaussian_filter(rng.normal(size=shape), width_um / mpp).astype(np.float32), -1, ker)
        return (f - f.mean()) / (f.std() + 1e-9)

    def scatter(density_mm2, axes_um, od, kind, mask, align=None):
        pts = _scatter_points(rng, density_mm2, mask, mpp)
        n = len(pts)
        if n == 0:
            return
        ax = np.c_[rng.uniform(*axes_um[0], n), rng.uniform(*axes_um[1], n)]
        ang = np.full(n, align) + rng.normal(0, 12, n) if align is not None else rng.uniform(0, 180, n)
        nuc = np.zeros(shape, np.float32)
        _draw_ellipses(nuc, pts * mpp, ax, ang, cs * rng.uniform(*od, n), mpp)
        np.maximum(hem, nuc * where, out=hem)
        xy.append(pts)
        kinds.extend([kind] * n)

    if spec.stroma == "muscle":
        fib = oriented_noise(30, 0.5, angle)
        bundles = oriented_noise(80, 12, angle) > -0.6
        hem[where] = cs * np.clip(0.07 + 0.02 * fib[where], 0.02, 0.2) * bundles[where]
        muscle = where & bundles
        scatter(900, ((5, 8), (1.0, 1.6)), (0.25, 0.45), "muscle", muscle, align=-angle)
        scatter(180, ((2.2, 3.2), (2.0, 3.0)), (0.25, 0.45), "muscle", muscle)      # nuclei cut across: round
    elif spec.stroma == "fat":
        cells = _poisson(rng, where, rng.uniform(40, 80) / mpp, 600)
        markers = np.zeros(shape, np.int32)
        ci = np.clip(cells.astype(int), 0, [W - 1, H - 1])
        markers[ci[:, 1], ci[:, 0]] = np.arange(1, len(ci) + 1)
        lab = expand_labels(markers, distance=60 / mpp)
        walls = find_boundaries(lab, mode="thick") & where
        hem[where] = cs * 0.004
        hem[walls] = cs * 0.06
        scatter(120, ((3, 5), (1.0, 1.5)), (0.3, 0.5), "adipocyte", walls)
    else:
        fib = oriented_noise(25, 0.6, angle)
        hem[where] = cs * np.clip(0.03 + 0.02 * fib[where], 0.0, 0.12)
        scatter(700, ((4, 7), (0.9, 1.5)), (0.3, 0.55), "fibroblast", where, align=-angle)
    lym = spec.lymphocytes * (4.0 if spec.stroma == "lymphocytic" else 1.0)
    if lym > 0:
        patch = where & (_smooth(rng, shape, 25 / mpp) > (0.3 if spec.stroma == "lymphocytic" else 1.2))
        scatter(6000 * lym, ((2.3, 3.1), (2.1, 2.9)), (0.6, 0.95), "lymphocyte", patch)
        scatter(300 * lym, ((2.3, 3.1), (2.1, 2.9)), (0.6, 0.95), "lymphocyte", where)
    if spec.stromal_cells > 0:
        _stromal_cells(spec, shape, hem, where, xy, kinds)
    if spec.rbc:                               # a few vessels holding red cells
        for _ in range(rng.integers(1, 4)):
            c = rng.uniform(0, [W, H])
            r = rng.uniform(8, 20) / mpp
            vessel = np.hypot(*np.meshgrid(np.arange(W) - c[0], np.arange(H) - c[1])) < r
            vessel &= where
            pts = _poisson(rng, vessel, 6 / mpp, 200)
            disc = np.zeros(shape, np.float32)
            _draw_ellipses(disc, pts * mpp, np.full((len(pts), 2), 3.2), np.zeros(len(pts)),
                           rng.uniform(0.3, 0.6, len(pts)), mpp)
            np.maximum(other, disc, out=other)
    return xy, kinds


def _stromal_cells(spec, shape, hem, where, xy, kinds) -> None:
    """Plump stromal cells into ``hem`` where ``where``, their nuclei appended to ``xy`` / ``kinds``.

    Plasma cells, histiocytes and activated fibroblasts: oval nuclei of 20-45 um^2 (a tumour
    nucleus's size, not a lymphocyte's), moderately dark, each in a little pale cytoplasm, spread
    through the stroma ``spec.stromal_cells`` per mm^2 (the loose stroma of a real gastric core holds
    one every 20-25 um). Their own random stream: the rest of the field is drawn as without them.
    """
    rng = np.random.default_rng([spec.seed, 17])
    mpp, cs = spec.mpp, spec.counterstain
    pts = _scatter_points(rng, spec.stromal_cells, where, mpp)
    n = len(pts)
    if n == 0:
        return
    ang = rng.uniform(0, 180, n)
    a, b = rng.uniform(2.8, 4.5, n), rng.uniform(2.2, 3.2, n)
    cyto = np.zeros(shape, np.float32)
    _draw_ellipses(cyto, pts * mpp, np.c_[a + rng.uniform(1.5, 3.5, n), b + rng.uniform(1.5, 3.5, n)], ang,
                   cs * rng.uniform(0.03, 0.07, n), mpp)
    nuc = np.zeros(shape, np.float32)
    _draw_ellipses(nuc, pts * mpp, np.c_[a, b], ang, cs * rng.uniform(0.25, 0.6, n), mpp)
    np.maximum(hem, np.maximum(cyto, nuc) * where, out=hem)
    xy.append(pts)
    kinds.extend(["stromal"] * n)


def _normal_duct(spec, rng, shape, hem, avoid) -> tuple[np.ndarray, list]:
    """A small normal duct (two layers of small regular cells around a lumen), away from the tumour."""
    mpp, cs = spec.mpp, spec.counterstain
    H, W = shape
    free = ~cv2.dilate(avoid.astype(np.uint8), np.ones((int(30 / mpp),) * 2, np.uint8)).astype(bool)
    ys, xs = np.nonzero(free)
    if len(ys) == 0:
        return np.zeros((0, 2)), []
    k = rng.integers(len(ys))
    c = np.array([xs[k], ys[k]], float)
    r_l, cell = rng.uniform(5, 10) / mpp, 8 / mpp
    pts = []
    for ring, rad in enumerate((r_l + cell / 2, r_l + 1.4 * cell)):
        m = int(2 * np.pi * rad / cell)
        t = np.linspace(0, 2 * np.pi, m, endpoint=False)
        pts.append(c + rad * np.c_[np.cos(t), np.sin(t)])
    pts = np.concatenate(pts)
    nuc = np.zeros(shape, np.float32)
    _draw_ellipses(nuc, pts * mpp, np.full((len(pts), 2), 2.6), rng.uniform(0, 180, len(pts)),
                   cs * rng.uniform(0.35, 0.5, len(pts)), mpp)
    duct = np.hypot(*np.meshgrid(np.arange(W) - c[0], np.arange(H) - c[1])) < r_l + 2 * cell
    hem[duct] = np.maximum(hem[duct], cs * 0.05)
    np.maximum(hem, nuc, out=hem)
    return pts, ["duct"] * len(pts)


def spec_dict(spec: TissueSpec) -> dict:
    """The spec as plain JSON-able values."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()}

