"""Synthetic HER2 IHC fields (hematoxylin + DAB) with exact per-cell ground truth.

Tissue is laid out in micrometres first (nests of tumour cells in stroma with
fibroblasts and lymphocytes), then rendered at the requested mpp by
Beer-Lambert absorption of the stain vectors, optical blur, shot noise and
optionally JPEG. The same seed at two mpps gives the same tissue.

Truth per tumour cell: centre (px and um), class 0/1+/2+/3+, membrane
completeness (fraction of the perimeter, by angle, that carries DAB),
intensity (peak DAB optical density on the membrane, before blur) and pattern.

Examples
--------
>>> from her2path.synthetic.ihc import IhcFieldSpec, render_ihc_field
>>> field = render_ihc_field(IhcFieldSpec(percent={"0": 60, "1+": 20, "2+": 5, "3+": 15}, seed=1))
>>> field.rgb.shape, field.decision.score
((512, 512, 3), '3+')
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, find_boundaries

from ..rules.ihc import IhcDecision, ihc_decision
from ..schema import CLASSES
from ..io.writers import encode_jpeg

ARTEFACTS = ("blush", "pigment", "defocus", "weak-counterstain")


@dataclass(frozen=True)
class StainVectors:
    """Unit optical-density vectors (R, G, B) of hematoxylin and DAB."""

    hematoxylin: tuple[float, float, float] = (0.650, 0.704, 0.286)
    dab: tuple[float, float, float] = (0.268, 0.570, 0.776)

    def matrix(self) -> np.ndarray:
        """(2, 3) array of unit rows: hematoxylin, DAB."""
        m = np.array([self.hematoxylin, self.dab], float)
        return m / np.linalg.norm(m, axis=1, keepdims=True)


PIGMENT_VECTOR = np.array([0.52, 0.60, 0.61]) / np.linalg.norm([0.52, 0.60, 0.61])


def jitter_stains(stains: StainVectors, rng: np.random.Generator, degrees: float) -> StainVectors:
    """Rotate each stain vector by a random angle of up to ``degrees`` (lab and scanner variation)."""
    out = []
    for v in stains.matrix():
        axis = rng.normal(size=3)
        axis -= axis.dot(v) * v
        axis /= np.linalg.norm(axis)
        a = np.deg2rad(rng.uniform(0, degrees))
        w = np.cos(a) * v + np.sin(a) * axis
        out.append(tuple(float(x) for x in np.abs(w) / np.linalg.norm(w)))
    return StainVectors(*out)


# Per-class membrane parameters: (completeness range, peak DAB OD range).
CLASS_MEMBRANE = {
    "0": ((0.0, 0.0), (0.0, 0.0)),
    "1+": ((0.30, 0.70), (0.07, 0.11)),     # faint, barely perceptible, incomplete
    "2+": ((0.92, 1.00), (0.20, 0.34)),     # weak-to-moderate, complete
    "3+": ((0.95, 1.00), (0.55, 0.85)),     # intense, complete
}
BASOLATERAL_COMPLETENESS = (0.55, 0.72)     # U-shaped: intense but incomplete


@dataclass(frozen=True)
class IhcFieldSpec:
    """What to render. Lengths in um, resolution in um/px."""

    percent: dict = field(default_factory=lambda: {"0": 70.0, "1+": 20.0, "2+": 5.0, "3+": 5.0})
    width_um: float = 256.0
    height_um: float = 256.0
    mpp: float = 0.5
    seed: int = 0
    stains: StainVectors = StainVectors()
    tumour_area: float = 0.55          # fraction of tissue in tumour nests
    cell_spacing_um: float = 13.0      # centre-to-centre distance of tumour cells
    class_patch_um: float = 40.0       # size of the spatial patches that share a class
    blur_um: float = 0.35              # optical point-spread sigma
    noise: float = 2.0                 # shot-noise sigma in 8-bit grey levels at mid-grey
    jpeg_quality: int | None = None
    artefacts: tuple[str, ...] = ()
    basolateral_fraction: float = 0.0  # fraction of 3+ cells drawn with a U-shaped membrane
    tissue_mask: np.ndarray | None = None   # bool on a grid covering the field; None: all tissue
    guideline: str = "breast"
    dab_scale: float = 1.0             # antibody/chromogen strength of a lab (membrane DAB x this)

    def __post_init__(self):
        unknown = set(self.artefacts) - set(ARTEFACTS)
        if unknown:
            raise ValueError(f"unknown artefacts {sorted(unknown)}; choose from {ARTEFACTS}")
        if set(self.percent) - set(CLASSES) or abs(sum(self.percent.values()) - 100) > 1e-6:
            raise ValueError("percent must map classes 0/1+/2+/3+ to percentages summing to 100")


@dataclass
class IhcTruth:
    """Ground truth of one field. Arrays have one row per tumour cell."""

    xy_px: np.ndarray          # (n, 2) centre x, y in px of the rendered field
    xy_um: np.ndarray          # (n, 2) centre in um
    cls: np.ndarray            # (n,) object array of "0", "1+", "2+", "3+"
    completeness: np.ndarray   # (n,) 0-1
    intensity: np.ndarray      # (n,) peak membrane DAB OD
    pattern: np.ndarray        # (n,) "none", "incomplete", "complete", "basolateral"
    stroma_xy_px: np.ndarray   # (m, 2) non-tumour nuclei (not to be counted)
    stroma_kind: np.ndarray    # (m,) "fibroblast" or "lymphocyte"
    defocus: tuple[float, float, float] | None = None   # (x, y, radius) um of the blurred disc


@dataclass
class IhcField:
    rgb: np.ndarray            # (H, W, 3) uint8 as it would be read back from disk
    mpp: float
    spec: IhcFieldSpec
    truth: IhcTruth
    decision: IhcDecision      # the guideline score of the truth
    labels: np.ndarray         # (H, W) int32 tumour-cell label image, 0 = not a tumour cell
    dab: np.ndarray            # (H, W) float32 DAB optical density laid down, before optics and artefacts
    encoded: bytes | None = None   # JPEG bytes when jpeg_quality was set


# -- layout in um -------------------------------------------------------------------

def _smooth_field(rng, width_um, height_um, scale_um, grid_um=2.0):
    """Smooth Gaussian random field sampled every ``grid_um``; returns (values, grid_um)."""
    gh, gw = int(np.ceil(height_um / grid_um)) + 2, int(np.ceil(width_um / grid_um)) + 2
    f = ndi.gaussian_filter(rng.normal(size=(gh, gw)), scale_um / grid_um, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12), grid_um


def _sample(field_values, grid_um, xy_um):
    """Bilinear sample of a grid field at (n, 2) um positions."""
    coords = np.stack([xy_um[:, 1] / grid_um, xy_um[:, 0] / grid_um])
    return ndi.map_coordinates(field_values, coords, order=1, mode="nearest")


def _raster(field_values, grid_um, shape, mpp):
    """Resample a grid field onto the pixel grid of a field at ``mpp``."""
    h, w = shape
    ys = (np.arange(h) + 0.5) * mpp / grid_um
    xs = (np.arange(w) + 0.5) * mpp / grid_um
    return ndi.map_coordinates(field_values, np.meshgrid(ys, xs, indexing="ij"), order=1, mode="nearest")


def _hex_points(rng, width_um, height_um, spacing):
    """A jittered hexagonal lattice covering the field (cells packed in an epithelium)."""
    rows = np.arange(-spacing, height_um + spacing, spacing * np.sqrt(3) / 2)
    pts = []
    off = rng.uniform(0, spacing, 2)
    for i, y in enumerate(rows):
        xs = np.arange(-spacing, width_um + spacing, spacing) + (spacing / 2) * (i % 2) + off[0]
        pts.append(np.c_[xs, np.full_like(xs, y + off[1])])
    pts = np.concatenate(pts)
    pts += rng.uniform(-0.17, 0.17, pts.shape) * spacing
    return pts


def _allocate(percent: dict, n: int) -> np.ndarray:
    """Exact class counts for n cells by largest remainder."""
    p = np.array([percent.get(c, 0.0) for c in CLASSES]) * n / 100.0
    counts = np.floor(p).astype(int)
    for i in np.argsort(-(p - counts))[: n - counts.sum()]:
        counts[i] += 1
    return counts


# -- rendering ------------------------------------------------------------------------

def _draw_ellipses(canvas, centres_um, axes_um, angles_deg, values, mpp):
    """Draw filled ellipses (um geometry) into ``canvas`` at sub-pixel precision, max-blending."""
    shift = 4
    scale = (1 << shift) / mpp
    for (x, y), (a, b), ang, v in zip(centres_um, axes_um, angles_deg, values):
        tmp_box = int(np.ceil(max(a, b) / mpp)) + 2
        cx, cy = x / mpp - 0.5, y / mpp - 0.5
        x0, y0 = int(cx) - tmp_box, int(cy) - tmp_box
        x0c, y0c = max(x0, 0), max(y0, 0)
        x1c, y1c = min(x0 + 2 * tmp_box + 1, canvas.shape[1]), min(y0 + 2 * tmp_box + 1, canvas.shape[0])
        if x1c <= x0c or y1c <= y0c:
            continue
        patch = np.zeros((2 * tmp_box + 1, 2 * tmp_box + 1), np.float32)
        cv2.ellipse(patch, (int(round((cx - x0) * (1 << shift))), int(round((cy - y0) * (1 << shift)))),
                    (max(1, int(round(a * scale))), max(1, int(round(b * scale)))), float(ang), 0, 360,
                    float(v), -1, cv2.LINE_AA, shift)
        sub = patch[y0c - y0:y1c - y0, x0c - x0:x1c - x0]
        np.maximum(canvas[y0c:y1c, x0c:x1c], sub, out=canvas[y0c:y1c, x0c:x1c])


def render_ihc_field(spec: IhcFieldSpec) -> IhcField:
    """Render one IHC field and its ground truth (see module docstring)."""
    rng = np.random.default_rng(spec.seed)
    mpp = spec.mpp
    W_um, H_um = spec.width_um, spec.height_um
    shape = (int(round(H_um / mpp)), int(round(W_um / mpp)))
    yy_um = (np.arange(shape[0]) + 0.5)[:, None] * mpp
    xx_um = (np.arange(shape[1]) + 0.5)[None, :] * mpp

    # Tissue (vs glass) and tumour nests (vs stroma), both defined in um.
    nest_f, grid = _smooth_field(rng, W_um, H_um, 14.0)
    class_f, _ = _smooth_field(rng, W_um, H_um, spec.class_patch_um / 2)
    aux_f, _ = _smooth_field(rng, W_um, H_um, 25.0)
    if spec.tissue_mask is not None:
        tm = spec.tissue_mask.astype(np.float32)
        tissue_grid = cv2.resize(tm, (nest_f.shape[1], nest_f.shape[0]), interpolation=cv2.INTER_LINEAR)
    else:
        tissue_grid = np.ones_like(nest_f)
    nest_thr = np.quantile(nest_f, 1 - spec.tumour_area)
    tissue_px = _raster(tissue_grid, grid, shape, mpp) > 0.5
    nest_px = (_raster(nest_f, grid, shape, mpp) > nest_thr) & tissue_px

    # Tumour cells on a jittered lattice inside the nests, at least 2 um from the field edge.
    pts = _hex_points(rng, W_um, H_um, spec.cell_spacing_um)
    inside = (pts[:, 0] > 2) & (pts[:, 0] < W_um - 2) & (pts[:, 1] > 2) & (pts[:, 1] < H_um - 2)
    pts = pts[inside]
    in_nest = (_sample(nest_f, grid, pts) > nest_thr + 0.15) & (_sample(tissue_grid, grid, pts) > 0.75)
    cells_um = pts[in_nest]
    n = len(cells_um)

    # Classes clustered in space: rank cells along a smooth field, exact counts per class.
    counts = _allocate(spec.percent, n)
    order = np.argsort(_sample(class_f, grid, cells_um) + rng.normal(0, 0.15, n), kind="stable")
    cls = np.empty(n, object)
    cls[order] = np.repeat(np.array(CLASSES, object), counts)
    completeness = np.zeros(n)
    intensity = np.zeros(n)
    pattern = np.full(n, "none", object)
    for c in CLASSES[1:]:
        sel = cls == c
        (c0, c1), (i0, i1) = CLASS_MEMBRANE[c]
        completeness[sel] = rng.uniform(c0, c1, sel.sum())
        intensity[sel] = rng.uniform(i0, i1, sel.sum())
        pattern[sel] = "incomplete" if c == "1+" else "complete"
    baso = (cls == "3+") & (rng.random(n) < spec.basolateral_fraction)
    completeness[baso] = rng.uniform(*BASOLATERAL_COMPLETENESS, baso.sum())
    pattern[baso] = "basolateral"
    cls[baso] = "2+"   # breast: intense but incomplete (U-shaped) is an unusual pattern scored 2+
    phase = rng.uniform(0, 2 * np.pi, n)

    # Cell territories: labels grown from the centres, bounded by neighbours and the nest edge.
    markers = np.zeros(shape, np.int32)
    cpx = np.clip((cells_um / mpp).astype(int), 0, [shape[1] - 1, shape[0] - 1])
    markers[cpx[:, 1], cpx[:, 0]] = np.arange(1, n + 1)
    labels = expand_labels(markers, distance=0.62 * spec.cell_spacing_um / mpp)
    labels[~nest_px] = 0

    # Membrane DAB: angular arc of each cell, Gaussian profile across the boundary.
    inner = find_boundaries(labels, mode="inner") & (labels > 0)
    dist_um = ndi.distance_transform_edt(~inner) * mpp
    lab = labels - 1
    has = labels > 0
    idx = lab[has]
    theta = np.arctan2(np.broadcast_to(yy_um, shape)[has] - cells_um[idx, 1],
                       np.broadcast_to(xx_um, shape)[has] - cells_um[idx, 0])
    arc = np.mod(theta - phase[idx], 2 * np.pi) / (2 * np.pi)
    on = np.clip((completeness[idx] - arc) / 0.02, 0, 1)  # soft arc end
    ripple = 1 + 0.12 * np.sin(5 * theta + phase[idx] * 3)
    dab = np.zeros(shape, np.float32)
    profile = np.exp(-0.5 * (dist_um[has] / 0.45) ** 2)
    dab[has] = spec.dab_scale * intensity[idx] * on * ripple * profile
    hem = np.zeros(shape, np.float32)
    hem[has] = 0.05 + 0.015 * profile  # cytoplasm and a thin counterstained membrane

    # Stroma: fibres and non-tumour nuclei that must not be counted.
    stroma = tissue_px & ~nest_px
    fibre = ndi.gaussian_filter(rng.normal(size=shape), (0.6 / mpp, 3.0 / mpp))
    hem[stroma] = 0.05 + 0.025 * np.clip(fibre[stroma] / (fibre.std() + 1e-9), -1, 2)
    dab[tissue_px] += 0.008
    dab_laid = dab.copy()
    n_str = rng.poisson(stroma.sum() * mpp**2 / 350.0)
    s_pts = np.c_[rng.uniform(0, W_um, n_str), rng.uniform(0, H_um, n_str)]
    ok = _sample(nest_f, grid, s_pts) < nest_thr - 0.35
    ok &= _sample(tissue_grid, grid, s_pts) > 0.75
    s_pts = s_pts[ok]
    kind = np.where(rng.random(len(s_pts)) < 0.55, "fibroblast", "lymphocyte").astype(object)
    fib = kind == "fibroblast"
    s_axes = np.where(fib[:, None], np.c_[rng.uniform(4.5, 7.0, len(s_pts)), rng.uniform(1.0, 1.6, len(s_pts))],
                      np.repeat(rng.uniform(2.3, 3.0, len(s_pts))[:, None], 2, 1))
    s_val = np.where(fib, rng.uniform(0.45, 0.6, len(s_pts)), rng.uniform(0.7, 0.9, len(s_pts)))

    # Nuclei: tumour nuclei large and vesicular, stromal ones small and dark.
    nuc = np.zeros(shape, np.float32)
    a = rng.uniform(3.2, 4.4, n)
    t_axes = np.c_[a, a * rng.uniform(0.72, 0.95, n)]
    t_centres = cells_um + rng.normal(0, 0.5, cells_um.shape)
    _draw_ellipses(nuc, t_centres, t_axes, rng.uniform(0, 180, n), rng.uniform(0.32, 0.5, n), mpp)
    _draw_ellipses(nuc, s_pts, s_axes, rng.uniform(0, 180, len(s_pts)), s_val, mpp)
    chromatin = 1 + 0.25 * ndi.gaussian_filter(rng.normal(size=shape), 0.4 / mpp) / 0.25 * (mpp / 0.5)
    hem = np.maximum(hem, nuc * np.clip(chromatin, 0.6, 1.4))
    hem[~tissue_px] = 0
    dab[~tissue_px] = 0

    # Optional artefacts of real slides.
    pig = np.zeros(shape, np.float32)
    if "blush" in spec.artefacts:   # diffuse cytoplasmic DAB in a region of cells
        region = (_raster(aux_f, grid, shape, mpp) > 0.3) & has & (dist_um > 1.0)
        dab[region] += rng.uniform(0.07, 0.12)
    if "pigment" in spec.artefacts:  # brown-black granules in clumps in the stroma
        for _ in range(max(2, int(W_um * H_um / 12000))):
            c = np.array([rng.uniform(0, W_um), rng.uniform(0, H_um)])
            g = c + rng.normal(0, 4.0, (rng.integers(8, 25), 2))
            r = rng.uniform(0.5, 1.4, len(g))
            _draw_ellipses(pig, g, np.c_[r, r], np.zeros(len(g)), rng.uniform(0.6, 1.2, len(g)), mpp)
        pig[nest_px] = 0
    if "weak-counterstain" in spec.artefacts:
        hem *= 0.45

    stains = spec.stains.matrix()
    od = (hem[..., None] * stains[0] + dab[..., None] * stains[1] + pig[..., None] * PIGMENT_VECTOR)
    od += 0.01  # glass and mounting medium
    rgb = 250.0 * np.power(10.0, -od)
    rgb = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), spec.blur_um / mpp)
    defocus = None
    if "defocus" in spec.artefacts:
        defocus = (W_um * rng.uniform(0.3, 0.7), H_um * rng.uniform(0.3, 0.7), 0.3 * min(W_um, H_um))
        d = np.hypot(xx_um - defocus[0], yy_um - defocus[1])
        weight = np.clip((defocus[2] - d) / 10.0, 0, 1)[..., None]
        blurred = cv2.GaussianBlur(rgb, (0, 0), 2.5 / mpp)
        rgb = rgb * (1 - weight) + blurred * weight
    rgb = rgb + rng.normal(0, 1, rgb.shape) * spec.noise * np.sqrt(np.maximum(rgb, 1) / 128.0)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    encoded = None
    if spec.jpeg_quality:
        encoded = encode_jpeg(rgb, spec.jpeg_quality, mpp)
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)

    truth = IhcTruth(
        xy_px=cells_um / mpp - 0.5, xy_um=cells_um, cls=cls, completeness=completeness,
        intensity=intensity, pattern=pattern,
        stroma_xy_px=s_pts / mpp - 0.5, stroma_kind=kind, defocus=defocus,
    )
    decision = ihc_decision(cls, cells_um, spec.guideline, min_cells=1)   # the truth of its cells, however few
    return IhcField(rgb=rgb, mpp=mpp, spec=spec, truth=truth, decision=decision,
                    labels=labels, dab=dab_laid, encoded=encoded)


def preset(score: str, seed: int = 0, **overrides) -> IhcFieldSpec:
    """A field whose breast guideline score is ``score`` ("0", "1+", "2+", "3+")."""
    mixes = {
        "0": {"0": 95.0, "1+": 5.0, "2+": 0.0, "3+": 0.0},
        "1+": {"0": 55.0, "1+": 40.0, "2+": 5.0, "3+": 0.0},
        "2+": {"0": 35.0, "1+": 30.0, "2+": 35.0, "3+": 0.0},
        "3+": {"0": 20.0, "1+": 15.0, "2+": 20.0, "3+": 45.0},
    }
    if score not in mixes:
        raise ValueError(f"score must be one of {list(mixes)}")
    return replace(IhcFieldSpec(percent=mixes[score], seed=seed), **overrides)
