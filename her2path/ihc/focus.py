"""Out-of-focus tissue: detected so that its cells are left out of the score, with a warning.

Defocus removes detail at the scale of nuclear edges but keeps coarser
structure, so the ratio of band-pass energies (0.5-1 um over 1-2 um) drops
where a region is out of focus; shot noise sits below the finer band.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import FocusConfig


def _blur(a: np.ndarray, sigma_px: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), sigma_px)


def defocus_mask(h: np.ndarray, mpp: float, cfg: FocusConfig = FocusConfig()) -> np.ndarray:
    """Boolean mask of out-of-focus tissue on a hematoxylin OD image at ``mpp`` um/px."""
    g1, g2, g4 = (_blur(h, s / mpp) for s in (0.5, 1.0, 2.0))
    window = cfg.window_um / mpp
    mid = _blur(np.abs(g1 - g2), window)
    coarse = _blur(np.abs(g2 - g4), window)
    structured = coarse > cfg.min_structure_od
    mask = (mid < cfg.min_ratio * coarse) & structured
    r = max(1, int(round(cfg.window_um / mpp)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disk)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] * mpp * mpp >= cfg.min_area_um2
    return keep[lab]
