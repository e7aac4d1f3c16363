"""Per-cell membrane completeness and DAB intensity, and the per-cell class 0/1+/2+/3+.

Each cell is read along ``rays`` rays from its nucleus centre. On every ray
the membrane is the strongest DAB inside the cell territory beyond the
nucleus; it is compared with two references:

* the cell's own cytoplasm (median DAB between nucleus and membrane). Faint
  1+ membranes rise only a few hundredths of OD over it, about JPEG noise per
  pixel, so the value is averaged over neighbouring rays (an arc of ~2 um)
  before it is thresholded, and the baseline is local to the cell, not a
  global threshold: a JPEG 0 field and a JPEG 1+ field differ in their
  membranes, not in their background;
* its neighbours. Membranes of neighbours lie 1-2 px apart at 0.5 um/px and
  merge into one ridge, so an unstained cell next to a 3+ cell sees its
  neighbour's stain on the shared side, and no boundary estimate is precise
  enough to tell which side a merged ridge belongs to. Instead every ray is
  modelled as own stain + ``neighbour_overlap`` x the neighbour's level; each
  shared boundary is seen from both cells, so a bounded least-squares fit over
  the tile gives every cell's own level, and the neighbour's share is
  subtracted ray by ray before anything is thresholded.

A cell is stained only if its strongest quarter-perimeter arc rises above
``arc_faint_od + noise_factor * noise``, where noise is the field's DAB
noise measured in the cytoplasm: a faint membrane is a continuous arc, noise
is not, and the threshold follows the JPEG noise of each image.
Completeness is the fraction of stained rays (angular coverage); intensity the
median membrane OD above the cytoplasm over the stained rays. The class these
make is decided by ``rules.ihc.cell_classes``, not here.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import MembraneConfig
from .cells import Cells

@dataclass
class Membranes:
    """Membrane measurements of the cells of one tile, one entry per cell."""

    completeness: np.ndarray   # (n,) 0-1, fraction of the perimeter stained
    intensity: np.ndarray      # (n,) DAB OD of the stained membrane above the cytoplasm
    cytoplasm: np.ndarray      # (n,) DAB OD of the cytoplasm (blush shows here)
    noise_od: float            # DAB noise of the field (robust sd in the cytoplasm), OD
    edge_px: np.ndarray        # (n, rays) distance from the centre to the cell boundary, px


def _circular_mean(a: np.ndarray, width: int) -> np.ndarray:
    """Mean over ``width`` (made odd) neighbouring rays (axis 1), wrapping around the cell."""
    k = width // 2
    if k == 0:
        return a
    out = a.copy()
    for s in range(1, k + 1):
        out += np.roll(a, s, axis=1) + np.roll(a, -s, axis=1)
    return out / (2 * k + 1)


def _masked_median(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise median of ``a`` where ``mask`` (vectorised); 0 for rows with no True."""
    a = a.reshape(len(a), -1)
    mask = mask.reshape(len(a), -1)
    s = np.sort(np.where(mask, a, np.inf), axis=1)
    cnt = mask.sum(axis=1)
    rows = np.arange(len(a))
    lo = s[rows, np.maximum(cnt - 1, 0) // 2]
    hi = s[rows, np.maximum(cnt, 1) // 2 - (cnt == 0)]
    return np.where(cnt > 0, (lo + hi) / 2, 0.0)


def neighbour_levels(excess: np.ndarray, neighbour: np.ndarray, overlap: float) -> np.ndarray:
    """Each cell's own membrane level ``a >= 0`` from ``excess[i, r] ~ a_i + overlap * a_j``.

    ``j = neighbour[i, r]`` is the cell across ray r (0: none). Every shared
    boundary is seen from both sides, so the system is overdetermined and a
    bounded least-squares fit separates a stained cell from an unstained
    neighbour that only shows its stain.
    """
    n, K = excess.shape
    i = np.repeat(np.arange(n), K)
    j = neighbour.ravel() - 1
    y = excess.ravel().astype(float)
    has = j >= 0
    # Normal equations G a = b of the rows [1 at i, overlap at j].
    G = np.zeros((n, n))
    np.add.at(G, (i, i), 1.0)
    np.add.at(G, (i[has], j[has]), overlap)
    np.add.at(G, (j[has], i[has]), overlap)
    np.add.at(G, (j[has], j[has]), overlap * overlap)
    rhs = np.bincount(i, y, n) + np.bincount(j[has], overlap * y[has], n)
    G[np.diag_indices(n)] += 1e-6
    # Non-negativity by a few active-set passes: fix negative levels at 0, solve for the rest.
    free = np.ones(n, bool)
    level = np.zeros(n)
    for _ in range(8):
        level[:] = 0.0
        level[free] = np.linalg.solve(G[np.ix_(free, free)], rhs[free])
        if (level >= 0).all():
            break
        free &= level > 0
    return np.maximum(level, 0.0)


def measure_membranes(dab: np.ndarray, cells: Cells, mpp: float,
                      cfg: MembraneConfig = MembraneConfig(), max_radius_um: float = 12.0) -> Membranes:
    """Measure every cell of ``cells`` on the DAB OD image ``dab`` (same grid, ``mpp`` um/px)."""
    n = len(cells)
    if n == 0:
        z = np.zeros(0)
        return Membranes(z, z, z, 0.0, np.zeros((0, cfg.rays), np.float32))
    K = cfg.rays
    step = 0.5                                       # px between samples along a ray
    radii = np.arange(0, max_radius_um / mpp + 3 / mpp, step, dtype=np.float32)
    ang = np.linspace(0, 2 * np.pi, K, endpoint=False, dtype=np.float32)
    cx, cy = cells.xy[:, 0].astype(np.float32), cells.xy[:, 1].astype(np.float32)
    map_x = cx[:, None, None] + np.cos(ang)[None, :, None] * radii[None, None, :]
    map_y = cy[:, None, None] + np.sin(ang)[None, :, None] * radii[None, None, :]
    mx = map_x.reshape(n * K, -1)
    my = map_y.reshape(n * K, -1)
    smooth = cv2.GaussianBlur(dab, (0, 0), 1.2)
    val = cv2.remap(smooth, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(n, K, -1)
    lab = cv2.remap(cells.territory.astype(np.float32), mx, my, cv2.INTER_NEAREST,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0).reshape(n, K, -1)
    own = lab == np.arange(1, n + 1, dtype=np.float32)[:, None, None]
    # Territory edge on each ray: the first sample that leaves the cell.
    R = len(radii)
    edge = np.where(own.all(axis=2), R, np.argmin(own, axis=2))
    idx = np.arange(R)[None, None, :]
    start = np.ceil(cells.radius_px * 1.1 / step).astype(int)[:, None, None]
    inside = (idx >= start) & (idx < edge[..., None])
    # Average neighbouring rays (~2 um of arc) before locating the membrane: noise is averaged
    # before the maximum is taken, so unstained cells do not pick up the largest noise sample.
    width = max(1, int(round(2.0 / mpp / (2 * np.pi * 6.0 / mpp / K))))
    val_arc = _circular_mean(val.reshape(n, K, R), width)
    peak_at = np.argmax(np.where(inside, val_arc, -np.inf), axis=2)
    # Membrane value: mean over +-1 um around the peak (integrated stain, robust to blur and JPEG).
    half = int(round(1.0 / mpp / step))
    band = np.abs(idx - peak_at[..., None]) <= half
    m_in = np.where(inside.any(axis=2), (val_arc * band).sum(axis=2) / band.sum(axis=2), 0.0)
    # Neighbour across each ray: the cell the ray enters when it leaves its own territory.
    first_out = np.take_along_axis(lab, np.minimum(edge, R - 1)[..., None], axis=2)[..., 0]
    neighbour = np.where(edge < R, first_out, 0).astype(np.int64)
    # Cytoplasm: samples between the nucleus and 1.5 um short of the membrane.
    cyto_zone = (idx >= start) & (idx < edge[..., None] - int(round(1.5 / mpp / step)))
    cytoplasm = np.where(cyto_zone.any(axis=(1, 2)), _masked_median(val, cyto_zone),
                         np.median(val[:, :, 0], axis=1))
    # Field noise: robust spread of cytoplasm samples around their cell's median (JPEG raises it).
    dev = np.abs(val - cytoplasm[:, None, None])[cyto_zone]
    noise_od = float(1.4826 * np.median(dev)) if dev.size else 0.0
    arc_threshold = cfg.arc_faint_od + cfg.noise_factor * noise_od
    excess = m_in - cytoplasm[:, None]
    # Where two membranes merge into one ridge, a ray sees both: attribute by a joint fit.
    level = neighbour_levels(excess, neighbour, cfg.neighbour_overlap)
    own = excess - cfg.neighbour_overlap * np.r_[0.0, level][neighbour]
    # Cell-level test for faint staining: a membrane is a continuous arc, noise is not, so the
    # strongest quarter-perimeter mean separates faint 1+ membranes from JPEG noise.
    arc_signal = _circular_mean(own, K // 4).max(axis=1)
    stained = (own > cfg.faint_od) & (arc_signal > arc_threshold)[:, None]
    return Membranes(stained.mean(axis=1), _masked_median(own, stained), cytoplasm.astype(float), noise_od,
                     radii[np.minimum(edge, R - 1)].astype(np.float32))
