"""Cells bounded by their membranes: nuclei and membrane-enclosed basins seed a watershed on DAB.

Where HER2 is strong the brown membrane hides the hematoxylin, and a
nuclei-first method finds nothing to grow cells from. So cells have two kinds
of seed:

* every nucleus (``nuclei.detect_nuclei``);
* every basin of the membrane map that is wide enough for a cell, enclosed by
  membrane in most directions, and holds no nucleus (the nucleus is hidden).

Territories are a watershed from these seeds over a landscape of the DAB
image (``watershed_landscape``) plus a small cost per micrometre from the
seed: where membranes are stained the boundaries settle on them, where a
cell's cytoplasm is filled with DAB they settle on the edge of the brown
cell (not half-way into it), elsewhere they fall half-way between seeds
(Voronoi), and no cell reaches further than ``radius_um`` from its seed. The
flooding runs on a grid of ``watershed_um`` (``grow_territories``); the
membranes are then read at full resolution (``ihc.membrane``).

Examples
--------
>>> import numpy as np
>>> from her2path.config import CellsConfig
>>> dab = np.zeros((60, 60), np.float32)
>>> dab[:, 29:31] = 0.4                         # one stained membrane down the middle
>>> m = membrane_map(dab, 0.5, CellsConfig())
>>> bool(m.mask[30, 30]), bool(m.mask[30, 10])
(True, False)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.segmentation import watershed

from ..config import CellsConfig
from ..segmentation import pixels
from .nuclei import Nuclei
from .stain import dab_relief


@dataclass
class MembraneMap:
    """Ridges of the DAB image: where membranes run."""

    strength: np.ndarray      # (H, W) float32 ridge strength (scale-normalised curvature of DAB), OD
    mask: np.ndarray          # (H, W) bool membrane pixels
    threshold: float          # ridge strength that marks a membrane here
    relief: tuple[np.ndarray, np.ndarray]   # the DAB image's thin part (membranes) and plateaus (``stain.dab_relief``)


@dataclass
class Cells:
    """Cells of one tile; per-cell arrays share the index ``label - 1`` of ``territory``."""

    territory: np.ndarray     # (H, W) int32 cell labels, 0 = no cell
    xy: np.ndarray            # (n, 2) cell centre (its nucleus, or its basin), px
    nucleus: np.ndarray       # (n,) index into ``nuclei`` (-1: hidden nucleus, a membrane basin)
    radius_px: np.ndarray     # (n,) equivalent nucleus radius (0 for basin cells)
    nuclei: Nuclei

    def __len__(self) -> int:
        return len(self.xy)


def ridge_strength(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Bright-ridge strength: minus the most negative Hessian eigenvalue of the smoothed image,
    scale-normalised (x sigma^2): a line of peak contrast c as wide as ``sigma_px`` gives about c/3."""
    g = cv2.GaussianBlur(img, (0, 0), sigma_px)
    # Sobel's 3x3 second derivatives carry a factor 4 (the [1, 2, 1] smoothing across, or two central
    # differences): scaled back to derivatives per pixel.
    dxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3, scale=0.25)
    dyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3, scale=0.25)
    dxy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3, scale=0.25)
    lam = (dxx + dyy) / 2 - np.sqrt(((dxx - dyy) / 2) ** 2 + dxy ** 2)
    return np.maximum(-lam, 0) * np.float32(sigma_px * sigma_px)


def membrane_map(dab: np.ndarray, mpp: float, cfg: CellsConfig = CellsConfig(),
                 tissue: np.ndarray | None = None, noise: float = 0.0, h: np.ndarray | None = None) -> MembraneMap:
    """Membrane ridges of a DAB OD image at ``mpp`` um/px.

    A pixel is membrane where the ridge strength at ``membrane_sigma_um``
    exceeds ``ridge_od``, or ``noise_factor`` times the pixel ``noise`` (OD)
    when that is larger; and, given the hematoxylin image ``h``, where the DAB
    ridge is at least ``dab_over_h`` times the hematoxylin ridge there. Stain
    vectors are never exact, so fibres and nuclear edges leave a faint copy
    of their hematoxylin ridges in the DAB image: those are not membranes.
    """
    s = cfg.membrane_sigma_um / mpp
    r = ridge_strength(dab, s)
    thr = max(cfg.ridge_od, cfg.noise_factor * noise)
    mask = r > thr
    if h is not None:
        mask &= r >= cfg.dab_over_h * ridge_strength(h, s)
    if tissue is not None:
        mask &= tissue
    return MembraneMap(r, mask, thr, dab_relief(dab, mpp))


def _enclosure(membranes: np.ndarray, xy: np.ndarray, reach_px: np.ndarray, rays: int = 16) -> np.ndarray:
    """Fraction of ``rays`` directions from each point that meet membrane within ``reach_px``."""
    if len(xy) == 0:
        return np.zeros(0)
    steps = np.linspace(0.3, 1.0, 8, dtype=np.float32)
    ang = np.linspace(0, 2 * np.pi, rays, endpoint=False, dtype=np.float32)
    out = np.zeros(len(xy))
    m = membranes.astype(np.float32)
    for k in range(0, len(xy), 2048):          # bounded remap sizes (OpenCV maps must stay < 32767 px)
        p, rr = xy[k:k + 2048].astype(np.float32), reach_px[k:k + 2048].astype(np.float32)
        mx = p[:, 0, None, None] + np.cos(ang)[None, :, None] * rr[:, None, None] * steps[None, None, :]
        my = p[:, 1, None, None] + np.sin(ang)[None, :, None] * rr[:, None, None] * steps[None, None, :]
        hit = cv2.remap(m, mx.reshape(-1, len(steps)), my.reshape(-1, len(steps)), cv2.INTER_NEAREST,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0).reshape(len(p), rays, -1)
        out[k:k + 2048] = (hit.max(axis=2) > 0).mean(axis=1)
    return out


def basin_seeds(mem: MembraneMap, nuclei: Nuclei, tissue: np.ndarray, mpp: float,
                cfg: CellsConfig = CellsConfig()) -> np.ndarray:
    """Centres (x, y px) of membrane-enclosed basins that hold no nucleus: cells whose nucleus is hidden."""
    free = (tissue & ~mem.mask).astype(np.uint8)
    dist = cv2.distanceTransform(free, cv2.DIST_L2, 5)
    lo, hi = cfg.min_basin_um / mpp, cfg.radius_um / mpp
    k = 2 * int(round(lo)) + 1
    peaks = (dist == cv2.dilate(dist, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))) & (dist >= lo) \
        & (dist <= hi) & (nuclei.labels == 0)
    n, lab = cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros((0, 2))
    ys, xs = pixels(lab)
    idx = lab[ys, xs] - 1
    cnt = np.bincount(idx, minlength=n - 1)
    xy = np.c_[np.bincount(idx, xs, n - 1) / cnt, np.bincount(idx, ys, n - 1) / cnt]
    reach = np.array([dist[int(y), int(x)] for x, y in xy]) * 1.6 + 2
    xy = xy[_enclosure(mem.mask, xy, reach) >= cfg.enclosed_fraction]
    if len(nuclei) and len(xy):                        # not where a nucleus already seeds the cell
        from scipy.spatial import cKDTree

        d, _ = cKDTree(nuclei.xy).query(xy)
        xy = xy[d > cfg.min_basin_um * 2 / mpp]
    return xy


def watershed_landscape(dab: np.ndarray, mpp: float,
                        relief: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The relief cells are grown over: DAB ridges (membranes) plus the edges of DAB plateaus (OD).

    The DAB image (smoothed over 0.5 um) is split by a grey opening with a
    disc 3 um across (``filters.disc_opening``) into its plateaus (cytoplasm filled with DAB, wider than
    any membrane) and its ridges (membranes, narrower). The relief is the
    ridges plus the plateaus' edge strength (morphological gradient over
    1 um): a membrane is a crest the watershed settles on, as before, and the
    edge of a brown-filled cell is a step it settles on too. Over raw DAB a
    brown cell's plateau floods from every side at once and its neighbours
    take its outer half, so that unstained cells beside it read its
    cytoplasm as their membrane. ``relief``: the split when it is made already
    (``MembraneMap.relief``).

    Examples
    --------
    >>> import numpy as np
    >>> dab = np.zeros((60, 60), np.float32)
    >>> dab[20:40, 20:40] = 0.3                    # a brown-filled cell 10 um across at 0.5 um/px
    >>> r = watershed_landscape(dab, 0.5)
    >>> bool(r[30, 30] < 0.05), bool(r[30, 20] > 0.1)     # flat inside, a wall at its edge
    (True, True)
    """
    thin, plateau = relief if relief is not None else dab_relief(dab, mpp)
    edge = 2 * int(round(0.5 / mpp)) + 1
    step = cv2.morphologyEx(plateau, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (edge, edge)))
    return thin + step


def grow_territories(landscape: np.ndarray, markers: np.ndarray, mask: np.ndarray, step: int) -> np.ndarray:
    """Watershed of ``markers`` over ``landscape`` within ``mask``, flooded on a grid ``step`` px coarse.

    The flooding (scikit-image's watershed, a priority queue over every
    pixel) was a third of a tile's time; cells are micrometres across, so the
    territories are grown on blocks of ``step`` x ``step`` pixels (the
    landscape averaged over each block) and given back pixel by pixel. Seeds
    keep every pixel of their own, so no nucleus is split, and a seed too
    small to hold a block centre still gets one. Boundaries move by at most
    half a block. (Settling the boundaries again at full resolution in a band
    around them gave back most of the gain: scikit-image's queue starts from
    every seed pixel.)

    Examples
    --------
    >>> import numpy as np
    >>> land = np.zeros((40, 40), np.float32); land[:, 20] = 1.0     # one wall down the middle
    >>> seeds = np.zeros((40, 40), np.int32); seeds[20, 8] = 1; seeds[20, 31] = 2
    >>> t = grow_territories(land, seeds, np.ones((40, 40), bool), 2)
    >>> int(t[5, 5]), int(t[5, 35]), int((t == 0).sum())
    (1, 2, 0)
    """
    if step <= 1:
        return watershed(landscape, markers, mask=mask).astype(np.int32)
    H, W = landscape.shape
    h, w = -(-H // step), -(-W // step)
    pad = ((0, h * step - H), (0, w * step - W))
    coarse = cv2.resize(np.pad(landscape, pad, mode="edge"), (w, h), interpolation=cv2.INTER_AREA)
    seeds = np.pad(markers, pad)[step // 2::step, step // 2::step].copy()
    n = int(markers.max()) + 1
    missing = (np.bincount(markers.ravel(), minlength=n) > 0) & (np.bincount(seeds.ravel(), minlength=n) == 0)
    lost = np.flatnonzero(missing[1:]) + 1
    if len(lost):                    # small seeds that hold no block centre: put them in their blocks
        ys, xs = np.nonzero(np.isin(markers, lost))
        seeds[ys // step, xs // step] = markers[ys, xs]
    inside = np.pad(mask, pad).reshape(h, step, w, step).any(axis=(1, 3)) | (seeds > 0)
    grown = watershed(coarse, seeds, mask=inside)
    full = np.repeat(np.repeat(grown, step, 0), step, 1)[:H, :W]
    return np.where(mask, np.where(markers > 0, markers, full), 0).astype(np.int32)


def segment_cells(h: np.ndarray, dab: np.ndarray, mpp: float, nuclei: Nuclei, mem: MembraneMap,
                  tissue: np.ndarray, cfg: CellsConfig = CellsConfig()) -> Cells:
    """Cells of a tile from its nuclei and membrane basins (see the module docstring).

    Parameters
    ----------
    h, dab : (H, W) float32
        Hematoxylin and DAB optical densities.
    mpp : float
        Pixel size, um/px.
    nuclei : Nuclei
    mem : MembraneMap
    tissue : (H, W) bool
    cfg : CellsConfig

    Returns
    -------
    Cells
        Nucleus cells first (in nucleus order), then basin cells.
    """
    basins = basin_seeds(mem, nuclei, tissue, mpp, cfg)
    n_nuc = len(nuclei)
    markers = nuclei.labels.copy()
    if len(basins):
        r = max(1, int(round(cfg.min_basin_um / mpp / 2)))
        for i, (x, y) in enumerate(basins):
            cv2.circle(markers, (int(round(x)), int(round(y))), r, n_nuc + 1 + i, -1)
    seeded = markers > 0
    dist = cv2.distanceTransform((~seeded).astype(np.uint8), cv2.DIST_L2, 5)
    landscape = watershed_landscape(dab, mpp, mem.relief) + cfg.distance_weight * mpp * dist
    mask = (tissue | seeded) & (dist <= cfg.radius_um / mpp)
    territory = grow_territories(landscape, markers, mask, max(1, int(round(cfg.watershed_um / mpp)))) \
        if (n_nuc + len(basins)) else np.zeros(h.shape, np.int32)
    xy = np.r_[nuclei.xy, basins] if len(basins) else nuclei.xy
    radius = np.r_[np.sqrt(nuclei.area_um2 / np.pi) / mpp, np.zeros(len(basins))]
    nucleus = np.r_[np.arange(n_nuc), np.full(len(basins), -1)]
    return Cells(territory, xy.reshape(-1, 2), nucleus, radius, nuclei)
