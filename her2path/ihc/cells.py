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

from ..config import CellsConfig, NucleiConfig, TumourConfig
from ..segmentation import label_moments, relabel, split_touching


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
    labels = split_touching(_nucleus_mask(h, tissue, nuclei_cfg), mpp, nuclei_cfg.split_distance_um)
    n = int(labels.max())
    area, xy, ratio, mean_h = label_moments(labels, n, h)
    area_um2 = area * mpp * mpp
    keep = (area_um2 >= nuclei_cfg.min_area_um2) & (area_um2 <= nuclei_cfg.max_area_um2)
    labels = relabel(labels, keep)
    area_um2, xy, ratio, mean_h = area_um2[keep], xy[keep], ratio[keep], mean_h[keep]
    territory = grow_cells(labels, cells_cfg.radius_um / mpp, tissue)
    tumour = classify_tumour(area_um2, ratio, mean_h, xy * mpp, tumour_cfg)
    return Cells(labels, territory, xy, area_um2, np.sqrt(area_um2 / np.pi) / mpp, ratio, mean_h, tumour)
