"""Nuclei on the hematoxylin channel, cells by bounded expansion, tumour vs non-tumour.

Classical methods (StarDist or Cellpose weights cannot be downloaded here):
a hematoxylin threshold, touching nuclei split by a distance-transform
watershed, cells grown from their nucleus to ``radius_um`` or to the
neighbouring cell (Voronoi limit). ``segment_cells`` is the swappable step:
any function with its signature and return type can replace it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from ..config import CellsConfig, NucleiConfig, TumourConfig


@dataclass
class Cells:
    """Segmentation of one tile. Per-cell arrays share the index ``label - 1``."""

    nuclei: np.ndarray        # (H, W) int32 nucleus labels, 0 = none
    territory: np.ndarray     # (H, W) int32 cell labels (nucleus grown to the cell), 0 = none
    xy: np.ndarray            # (n, 2) nucleus centroid x, y in px
    area_um2: np.ndarray      # (n,) nucleus area
    radius_px: np.ndarray     # (n,) equivalent nucleus radius
    axis_ratio: np.ndarray    # (n,) major / minor axis of the nucleus
    mean_h: np.ndarray        # (n,) mean hematoxylin OD in the nucleus
    tumour: np.ndarray        # (n,) bool

    def __len__(self) -> int:
        return len(self.xy)


def _nucleus_mask(h: np.ndarray, tissue: np.ndarray | None, cfg: NucleiConfig) -> np.ndarray:
    hs = cv2.GaussianBlur(h, (0, 0), 1.0)
    vals = hs[tissue] if tissue is not None and tissue.any() else hs.ravel()
    vals = vals[vals > cfg.min_h_od * 0.5]
    thr = cfg.min_h_od
    if vals.size > 100 and np.ptp(vals) > 1e-3:
        thr = max(cfg.min_h_od, float(threshold_otsu(vals)))
    mask = (hs > thr).astype(np.uint8)
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))


def _split_touching(mask: np.ndarray, mpp: float, cfg: NucleiConfig) -> np.ndarray:
    """Label nuclei, splitting touching ones at the saddles of the distance transform."""
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    dist = cv2.GaussianBlur(dist, (0, 0), 1.0)
    k = max(3, int(round(cfg.split_distance_um / mpp)) | 1)
    peaks = (dist == cv2.dilate(dist, np.ones((k, k), np.uint8))) & (dist > 1.0) & (mask > 0)
    n, markers = cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, np.int32)
    return watershed(-dist, markers, mask=mask.astype(bool)).astype(np.int32)


def _relabel(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Keep labels where ``keep[label - 1]`` and renumber them 1..k."""
    lut = np.zeros(len(keep) + 1, np.int32)
    lut[1:][keep] = np.arange(1, keep.sum() + 1)
    return lut[labels]


def _moments(labels: np.ndarray, n: int, h: np.ndarray):
    """Area, centroid, axis ratio and mean of ``h`` per label, by bincount."""
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs] - 1
    area = np.bincount(lab, minlength=n).astype(np.float64)
    a = np.maximum(area, 1)
    cx = np.bincount(lab, xs, n) / a
    cy = np.bincount(lab, ys, n) / a
    dx, dy = xs - cx[lab], ys - cy[lab]
    sxx = np.bincount(lab, dx * dx, n) / a + 1 / 12
    syy = np.bincount(lab, dy * dy, n) / a + 1 / 12
    sxy = np.bincount(lab, dx * dy, n) / a
    tr, det = sxx + syy, sxx * syy - sxy * sxy
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0))
    ratio = np.sqrt((tr / 2 + disc) / np.maximum(tr / 2 - disc, 1e-6))
    mean_h = np.bincount(lab, h[ys, xs], n) / a
    return area, np.c_[cx, cy], ratio, mean_h


def grow_cells(nuclei: np.ndarray, radius_px: float, tissue: np.ndarray | None = None) -> np.ndarray:
    """Cell territories: every pixel within ``radius_px`` goes to its nearest nucleus (Voronoi)."""
    background = (nuclei == 0).astype(np.uint8)
    dist, nearest = cv2.distanceTransformWithLabels(background, cv2.DIST_L2, 5,
                                                    labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(background == 0)            # nucleus pixels, numbered in scan order
    lut = np.zeros(len(ys) + 1, np.int32)
    lut[1:] = nuclei[ys, xs]
    territory = lut[nearest]
    territory[dist > radius_px] = 0
    if tissue is not None:
        territory[~tissue] = 0
    return territory


def classify_tumour(area_um2, axis_ratio, mean_h, xy_um, cfg: TumourConfig) -> np.ndarray:
    """Tumour cells: large enough, not lymphocyte-dark, in a cohesive group, and either not
    spindle-shaped or elongated but packed among many close nuclei (columnar epithelium, unlike
    the scattered fibroblasts of stroma)."""
    n = len(area_um2)
    if n == 0:
        return np.zeros(0, bool)
    ref = np.median(mean_h[area_um2 >= cfg.min_area_um2]) if (area_um2 >= cfg.min_area_um2).any() \
        else np.median(mean_h)
    packed = np.array([len(c) - 1 for c in cKDTree(xy_um).query_ball_point(xy_um, cfg.packed_um)])
    shape_ok = (axis_ratio <= cfg.max_axis_ratio) | \
               ((axis_ratio <= cfg.packed_max_axis_ratio) & (packed >= cfg.packed_neighbours))
    ok = (area_um2 >= cfg.min_area_um2) & shape_ok & (mean_h <= cfg.max_relative_h * ref)
    if cfg.min_neighbours > 0 and ok.any():
        tree = cKDTree(xy_um[ok])
        counts = np.array([len(c) - 1 for c in tree.query_ball_point(xy_um[ok], cfg.neighbour_um)])
        idx = np.flatnonzero(ok)
        ok[idx[counts < cfg.min_neighbours]] = False
    return ok


def segment_cells(h: np.ndarray, mpp: float, nuclei_cfg: NucleiConfig = NucleiConfig(),
                  cells_cfg: CellsConfig = CellsConfig(), tumour_cfg: TumourConfig = TumourConfig(),
                  tissue: np.ndarray | None = None) -> Cells:
    """Segment nuclei and cells on a hematoxylin OD image at ``mpp`` um/px."""
    labels = _split_touching(_nucleus_mask(h, tissue, nuclei_cfg), mpp, nuclei_cfg)
    n = int(labels.max())
    area, xy, ratio, mean_h = _moments(labels, n, h)
    area_um2 = area * mpp * mpp
    keep = (area_um2 >= nuclei_cfg.min_area_um2) & (area_um2 <= nuclei_cfg.max_area_um2)
    labels = _relabel(labels, keep)
    area_um2, xy, ratio, mean_h = area_um2[keep], xy[keep], ratio[keep], mean_h[keep]
    territory = grow_cells(labels, cells_cfg.radius_um / mpp, tissue)
    tumour = classify_tumour(area_um2, ratio, mean_h, xy * mpp, tumour_cfg)
    return Cells(labels, territory, xy, area_um2, np.sqrt(area_um2 / np.pi) / mpp, ratio, mean_h, tumour)
