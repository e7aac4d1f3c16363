"""Out-of-focus tissue: detected so that its cells are left out of the score, with a warning.

Defocus removes detail at the scale of nuclear edges but keeps coarser
structure, so the ratio of band-pass energies (0.5-1 um over 1-2 um) drops
where a region is out of focus; shot noise sits below the finer band.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import FocusConfig

COARSE = 4   # grid step of the focus judgement, in analysis pixels


def _blur(a: np.ndarray, sigma_px: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), sigma_px)


def defocus_mask(h: np.ndarray, mpp: float, cfg: FocusConfig = FocusConfig()) -> np.ndarray:
    """Boolean mask of out-of-focus tissue on a hematoxylin OD image at ``mpp`` um/px.

    The band energies are smooth over ``window_um``, so they are averaged, judged
    and cleaned on a grid ``COARSE`` times coarser, then brought back to full size.
    """
    g1, g2, g4 = (_blur(h, s / mpp) for s in (0.5, 1.0, 2.0))
    k = COARSE if min(h.shape) >= 8 * COARSE else 1
    small = (max(1, h.shape[1] // k), max(1, h.shape[0] // k))
    window = cfg.window_um / mpp / k
    mid = _blur(cv2.resize(np.abs(g1 - g2), small, interpolation=cv2.INTER_AREA), window)
    coarse = _blur(cv2.resize(np.abs(g2 - g4), small, interpolation=cv2.INTER_AREA), window)
    structured = coarse > cfg.min_structure_od
    mask = (mid < cfg.min_ratio * coarse) & structured
    r = max(1, int(round(cfg.window_um / mpp / k)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disk)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(n, np.uint8)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] * (mpp * k) ** 2 >= cfg.min_area_um2
    return cv2.resize(keep[lab], (h.shape[1], h.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
