"""Tumour cells: epithelial cells by their nucleus, inside regions that are epithelium.

Two levels, because stroma, smooth muscle and lymphocytes each fool one:

* the cell: a nucleus large enough (lymphocytes and most fibroblast profiles
  are smaller), standing clearly above its background (``min_contrast_od``:
  texture that passes the nucleus detector does not), not spindle-shaped (fibroblasts, smooth muscle) unless packed
  among many close nuclei (columnar epithelium), and not lymphocyte-dark; a
  cell with a hidden nucleus inside a membrane-enclosed basin is epithelial
  (only epithelium carries HER2 on its membranes);
* the region: epithelium is cohesive. A cell must belong to a group of at
  least ``min_group_cells`` candidates, each within ``link_factor`` nuclear
  diameters of the next (relative to the cells' size), or lie where stained
  membranes make at least ``min_membrane_fraction`` of the tissue (Gaussian
  window of ``region_um``). Scattered stromal or muscle cells that pass the
  cell test fail both. Enlarged nuclei (``enlarged_factor`` x the area of
  the tile's median nucleus) may be as elongated as packed ones, and need
  no close group when at least ``enlarged_min_cells`` of them lie linked
  within ``enlarged_link_um``: poorly cohesive carcinoma (signet-ring cells,
  whose nucleus the mucin flattens into a crescent) lies scattered in the
  stroma, and nuclear enlargement is what sets it apart from the stromal
  cells around it; a stray large nucleus (smooth muscle cut across) is not
  a population;
* the texture: smooth muscle and dense fibrous stroma are made of aligned
  fibres, epithelium is not. Where the hematoxylin texture's orientation
  coherence (structure tensor over ``region_um``) exceeds ``max_coherence``
  no cell is tumour unless stained membranes say otherwise.

Examples
--------
>>> import numpy as np
>>> xy = np.array([[0, 0], [8, 0], [16, 0], [60, 60]], float)
>>> in_groups(xy, np.ones(4, bool), 10.0, 3).tolist()
[True, True, True, False]
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..config import TumourConfig
from ..filters import gaussian
from .cells import Cells, MembraneMap


@dataclass
class TumourFeatures:
    """What the tumour decision reads, per cell (cells with a hidden nucleus: NaN nucleus features)."""

    xy_um: np.ndarray            # (n, 2) cell centre, um (tile coordinates)
    has_nucleus: np.ndarray      # (n,) bool: seeded by a visible nucleus (else a membrane-walled basin)
    area_um2: np.ndarray         # (n,) nucleus area
    axis_ratio: np.ndarray       # (n,) nucleus major / minor axis
    mean_h: np.ndarray           # (n,) nucleus hematoxylin OD
    contrast: np.ndarray         # (n,) nucleus hematoxylin OD above its background
    coherence: np.ndarray        # (n,) orientation coherence of the hematoxylin texture around the cell, 0-1
    membrane_share: np.ndarray   # (n,) share of stained membrane in the tissue around the cell, 0-1

    def __len__(self) -> int:
        return len(self.xy_um)

    def subset(self, keep: np.ndarray) -> "TumourFeatures":
        return TumourFeatures(*(getattr(self, f.name)[keep] for f in fields(self)))


def tumour_features(cells: Cells, mem: MembraneMap, mpp: float, cfg: TumourConfig = TumourConfig(),
                    h: np.ndarray | None = None) -> TumourFeatures:
    """The per-cell features of the tumour decision; ``h`` the hematoxylin image (texture; without
    it coherence is 0)."""
    n = len(cells)
    nu, idx = cells.nuclei, cells.nucleus
    has = idx >= 0
    j = np.maximum(idx, 0)

    def of_nucleus(a):
        return np.where(has, a[j], np.nan) if len(a) else np.full(n, np.nan)

    shape = cells.territory.shape
    xi = np.clip(np.round(cells.xy[:, 0]).astype(int), 0, shape[1] - 1)
    yi = np.clip(np.round(cells.xy[:, 1]).astype(int), 0, shape[0] - 1)
    share = gaussian(mem.mask.astype(np.float32), cfg.region_um / mpp)[yi, xi]
    coh = coherence(h, mpp, cfg.region_um)[yi, xi] if h is not None and n else np.zeros(n)
    return TumourFeatures(cells.xy * mpp, has, of_nucleus(nu.area_um2), of_nucleus(nu.axis_ratio),
                          of_nucleus(nu.mean_h), of_nucleus(nu.contrast), coh.astype(float), share.astype(float))


def candidate_nuclei(f: TumourFeatures, cfg: TumourConfig = TumourConfig()) -> np.ndarray:
    """(n_cells,) bool: cells whose nucleus looks epithelial (basin cells: always)."""
    has = f.has_nucleus
    out = np.ones(len(f), bool)
    if not has.any():
        return out
    area, ratio, mean_h, contrast = f.area_um2[has], f.axis_ratio[has], f.mean_h[has], f.contrast[has]
    big = area >= cfg.min_area_um2
    round_ = ratio <= cfg.max_axis_ratio
    # The typical nucleus a lymphocyte is darker than: the round nuclei of candidate size that stand
    # above their background. Elongated profiles (fibroblasts, smooth muscle) are paler and would set
    # it too low, as would faint texture taken for nuclei in stroma; and where tumour nuclei are small,
    # "large" nuclei are mostly those. Enlarged nuclei join them whatever their shape: scattered in an
    # infiltrate, the crescent nuclei of signet-ring cells are the paler population lymphocytes are told from.
    large = enlarged(f, cfg)[has]
    typical = big & (round_ | large) & (contrast >= cfg.min_contrast_od)
    ref, infiltrate = darkness_reference(mean_h[typical], area[typical], ratio[typical], cfg) if typical.any() \
        else (float(np.median(mean_h)), False)
    xy = f.xy_um[has]
    packed = np.array([len(c) - 1 for c in cKDTree(xy).query_ball_point(xy, cfg.packed_um)])
    shape_ok = round_ | ((ratio <= cfg.packed_max_axis_ratio) & ((packed >= cfg.packed_neighbours) | large))
    # In an infiltrate lymphocytes touch, and two of them make one dark object up to twice the size.
    max_area = cfg.lymphocyte_max_area_um2 * (cfg.infiltrate_cluster_factor if infiltrate else 1.0)
    lymphocyte = (area <= max_area) & (mean_h > cfg.max_relative_h * ref)
    out[has] = big & shape_ok & ~lymphocyte & (contrast >= cfg.min_contrast_od)
    return out


def darkness_reference(mean_h: np.ndarray, area_um2: np.ndarray, axis_ratio: np.ndarray,
                       cfg: TumourConfig = TumourConfig()) -> tuple[float, bool]:
    """(the hematoxylin OD (mean over the nucleus) of a typical tumour nucleus, which a lymphocyte is
    ``max_relative_h`` x darker than; whether a lymphocyte population was found).

    The median of the given (round, candidate-size) nuclei, unless they fall into two populations
    (Otsu's threshold on log OD, each of at least 8 nuclei) of which the darker looks like
    lymphocytes: ``max_relative_h`` x darker than the paler one, small (median area at most
    ``lymphocyte_max_area_um2`` um^2) and round (median axis ratio at most
    ``lymphocyte_max_axis_ratio``). It need not be smaller than the paler population: where an
    infiltrate surrounds scattered tumour cells, pale lymphocytes and stromal profiles join the paler
    population and make its median area a lymphocyte's too. The paler population's median is then
    the reference: in a dense infiltrate lymphocytes outnumber the tumour nuclei, the median is a
    lymphocyte's, and no lymphocyte is darker than itself. The roundness matters on real tissue: on the real 3+ core of
    ``benchmarks.real_ihc`` the darker half of the tumour's own nuclei (median axis ratio 1.5) is
    1.6x darker than the paler half and no larger, and without the roundness test it was taken for
    lymphocytes.

    Examples
    --------
    >>> tumour, lymph = np.full(20, 0.25), np.full(80, 0.5)        # four lymphocytes to a tumour nucleus
    >>> mean_h = np.r_[tumour, lymph] * np.linspace(0.9, 1.1, 100)
    >>> area, axis_ratio = np.r_[np.full(20, 50.0), np.full(80, 25.0)], np.r_[np.full(20, 1.5), np.full(80, 1.1)]
    >>> ref, infiltrate = darkness_reference(mean_h, area, axis_ratio)
    >>> round(ref, 2), infiltrate
    (0.23, True)
    >>> round(float(np.median(mean_h)), 2)                          # what the plain median gives
    0.5
    >>> ref, infiltrate = darkness_reference(mean_h, area, np.full(100, 1.5))  # dark, small, not round
    >>> round(ref, 2), infiltrate
    (0.5, False)
    """
    from skimage.filters import threshold_otsu

    ref = float(np.median(mean_h))
    if len(mean_h) < 16:
        return ref, False
    log_h = np.log(np.maximum(mean_h, 1e-3))
    dark = log_h > threshold_otsu(log_h)
    if min(dark.sum(), (~dark).sum()) < 8:
        return ref, False
    pale_h, dark_h = np.exp(np.median(log_h[~dark])), np.exp(np.median(log_h[dark]))
    small = np.median(area_um2[dark]) <= cfg.lymphocyte_max_area_um2
    if dark_h > cfg.max_relative_h * pale_h and small and np.median(axis_ratio[dark]) <= cfg.lymphocyte_max_axis_ratio:
        return float(pale_h), True
    return ref, False


def enlarged(f: TumourFeatures, cfg: TumourConfig = TumourConfig()) -> np.ndarray:
    """(n_cells,) bool: nuclei at least ``enlarged_factor`` x the area of the tile's median nucleus."""
    area = f.area_um2[f.has_nucleus]
    if not len(area):
        return np.zeros(len(f), bool)
    return f.has_nucleus & (np.nan_to_num(f.area_um2) >= cfg.enlarged_factor * float(np.median(area)))


def link_reach(f: TumourFeatures, cand: np.ndarray, cfg: TumourConfig) -> np.ndarray:
    """(n_cells,) how far (um) each cell reaches to touch a neighbour: ``link_factor`` of its own nuclear
    diameters (cells with a hidden nucleus: the tile's median candidate nucleus), within ``link_um``.
    Cohesion is judged relative to the cells' own size, so small and large cells are treated alike,
    and many small stromal nuclei do not shorten the reach of large tumour cells."""
    diameter = 2 * np.sqrt(f.area_um2 / np.pi)
    typical = diameter[cand & f.has_nucleus]
    fill = float(np.median(typical)) if len(typical) else cfg.link_um[1] / cfg.link_factor
    return np.clip(cfg.link_factor * np.where(np.isfinite(diameter), diameter, fill), *cfg.link_um)


def coherence(h: np.ndarray, mpp: float, window_um: float, gradient_um: float = 1.0) -> np.ndarray:
    """Orientation coherence (0: isotropic, 1: all structure aligned) of an image's texture: the
    structure tensor of gradients at ``gradient_um``, averaged over a Gaussian of ``window_um``.

    Examples
    --------
    >>> stripes = np.tile(np.sin(np.arange(64) / 2.0).astype(np.float32), (64, 1))
    >>> round(float(coherence(stripes, 0.5, 5.0)[32, 32]), 2)
    1.0
    """
    g = cv2.GaussianBlur(h, (0, 0), gradient_um / mpp)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    s = window_um / mpp
    jxx, jyy, jxy = (gaussian(a, s) for a in (gx * gx, gy * gy, gx * gy))
    return np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / np.maximum(jxx + jyy, 1e-12)


def decide_tumour(f: TumourFeatures, cfg: TumourConfig = TumourConfig()) -> np.ndarray:
    """(n_cells,) bool tumour cells of one tile from their features (see the module docstring)."""
    if len(f) == 0:
        return np.zeros(0, bool)
    cand = candidate_nuclei(f, cfg)
    stained_region = f.membrane_share >= cfg.min_membrane_fraction
    cand &= (f.coherence <= cfg.max_coherence) | stained_region
    grouped = in_groups(f.xy_um, cand, link_reach(f, cand, cfg), cfg.min_group_cells)
    scattered = in_groups(f.xy_um, cand & enlarged(f, cfg), cfg.enlarged_link_um, cfg.enlarged_min_cells)
    return cand & (grouped | stained_region | scattered)


def classify_tumour(cells: Cells, mem: MembraneMap, mpp: float, cfg: TumourConfig = TumourConfig(),
                    h: np.ndarray | None = None) -> tuple[np.ndarray, TumourFeatures]:
    """(n_cells,) bool tumour cells, and the features they were decided on; ``h`` the hematoxylin image."""
    f = tumour_features(cells, mem, mpp, cfg, h)
    return decide_tumour(f, cfg), f


def in_groups(xy_um: np.ndarray, member: np.ndarray, reach_um, min_cells: int) -> np.ndarray:
    """``member`` cells that belong to a group of at least ``min_cells`` members, two members linked
    when their centres lie within the mean of their reaches (``reach_um``: one for all, or per cell).

    Examples
    --------
    >>> xy = np.array([[0, 0], [10, 0], [20, 0], [100, 100]], float)
    >>> in_groups(xy, np.ones(4, bool), 15.0, 3).tolist()
    [True, True, True, False]
    >>> in_groups(xy, np.ones(4, bool), np.array([8.0, 8.0, 12.0, 12.0]), 3).tolist()   # pairs at most
    [False, False, False, False]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    idx = np.flatnonzero(member)
    out = np.zeros(len(member), bool)
    if len(idx) < min_cells:
        return out
    xy, reach = xy_um[idx], np.broadcast_to(np.asarray(reach_um, float), member.shape)[idx]
    pairs = cKDTree(xy).query_pairs(float(reach.max()), output_type="ndarray")
    a, b = pairs[:, 0], pairs[:, 1]
    pairs = pairs[np.hypot(*(xy[a] - xy[b]).T) <= (reach[a] + reach[b]) / 2]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(idx),) * 2)
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    out[idx] = sizes[labels] >= min_cells
    return out
