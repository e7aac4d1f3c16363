"""Per-cell membrane completeness and DAB intensity (the class they make is ``rules.ihc``'s).

Each cell is read along ``rays`` rays from the centre of its territory. On
every ray the membrane is the strongest DAB inside the territory, away from
the nucleus; it is compared with these references:

* the cell's own cytoplasm (median DAB between nucleus and membrane). Faint
  1+ membranes rise only a few hundredths of OD over it, about JPEG noise per
  pixel, so the value is averaged over neighbouring rays (an arc of ~2 um)
  before it is thresholded, and the baseline is local to the cell, not a
  global threshold: a JPEG 0 field and a JPEG 1+ field differ in their
  membranes, not in their background;
* the tissue just beyond its edge and just inside the membrane: a membrane
  is a ridge, higher than both sides, while DAB filling the cytoplasm only
  steps down at the cell's edge (and a territory that takes in part of a
  stained neighbour meets a plateau). The rise is counted from zero DAB at
  least: a counterstain bluer than the hematoxylin vector unmixes to
  slightly negative DAB, and a border that merely reaches zero there is not
  stained;
* the DAB image's plateau under it (``stain.dab_relief`` with a disc
  ``PLATEAU_UM`` across). A membrane, even two neighbours' merged and
  blurred by a 20x scan, is narrower; brown cytoplasm filling a tumour cell
  is wider. A territory that takes in part of such a cell, the rest of it
  beyond its edge, sees a rise over its own pale cytoplasm there: the edge
  of a plateau, which read above the plateau rises no more;
* the cytoplasm on both sides (the cell's own and the neighbour's across the
  ray): DAB filling the cytoplasm of a group of cells, with no membrane
  accentuation, is not membrane staining, and a border next to such a cell
  is a membrane only where it rises ``cytoplasm_contrast`` x the browner
  cytoplasm's OD above it;
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
is not, and the threshold follows the JPEG noise of each image. In strongly
stained fields the cytoplasm's spread is stain texture (granules, lateral
membranes crossing it), several times the pixel noise; the noise is then
capped at ``noise_cap`` x the pixel noise of the stain-free residual channel
carried into the DAB image, so that stained fields do not raise the bar their
own membranes must clear.
Completeness is the fraction of stained rays (angular coverage), a ray being
stained when the cell's own membrane there reaches ``relative_level`` of the
cell's typical level (so a complete membrane of uneven intensity stays
complete); intensity is the median membrane OD above the cytoplasm over the
stained rays.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import MembraneConfig
from ..segmentation import pixels
from .cells import Cells
from .stain import dab_relief

@dataclass
class Membranes:
    """Membrane measurements of the cells of one tile, one entry per cell."""

    completeness: np.ndarray   # (n,) 0-1, fraction of the perimeter stained
    intensity: np.ndarray      # (n,) DAB OD of the stained membrane above the cytoplasm
    cytoplasm: np.ndarray      # (n,) DAB OD of the cytoplasm (blush shows here)
    noise_od: float            # DAB noise of the field (robust sd in the cytoplasm, capped), OD
    edge_xy: np.ndarray        # (n, rays, 2) the cell boundary on each ray, x y px


def _circular_mean(a: np.ndarray, width: int) -> np.ndarray:
    """Mean over ``width`` (made odd, at most twice the number of rays) neighbouring rays (axis 1),
    wrapping around the cell.

    Examples
    --------
    >>> a = np.arange(4.0)[None, :, None]                 # one cell, 4 rays, 1 sample each
    >>> _circular_mean(a, 3)[0, :, 0].round(3).tolist()    # ray 0 averages rays 3, 0 and 1
    [1.333, 1.0, 2.0, 1.667]
    """
    k = width // 2
    if k == 0:
        return a
    K = a.shape[1]
    wrapped = np.concatenate([a[:, K - k:], a, a[:, :k]], axis=1)   # one copy; ray j sits at k + j
    out = a.copy()
    for s in range(1, k + 1):
        out += wrapped[:, k - s:k - s + K] + wrapped[:, k + s:k + s + K]
    return out / (2 * k + 1)


def _along_ray(a: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``a[i, k, at[i, k]]`` for every cell i and ray k (``at`` clipped into the samples).

    Examples
    --------
    >>> a = np.arange(6.0).reshape(1, 2, 3)                # one cell, 2 rays, 3 samples each
    >>> _along_ray(a, np.array([[2, 5]])).tolist()         # sample 5 is past the end: the last
    [[2.0, 5.0]]
    """
    return np.take_along_axis(a, np.clip(at, 0, a.shape[2] - 1)[..., None], axis=2)[..., 0]


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
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    n, K = excess.shape
    i = np.repeat(np.arange(n), K)
    j = neighbour.ravel() - 1
    y = excess.ravel().astype(float)
    has = j >= 0
    # Normal equations G a = b of the rows [1 at i, overlap at j]; G is sparse (a cell has a few
    # neighbours), so thousands of cells solve in milliseconds.
    rows = np.r_[i, i[has], j[has], j[has], np.arange(n)]
    cols = np.r_[i, j[has], i[has], j[has], np.arange(n)]
    vals = np.r_[np.ones(len(i)), np.full(has.sum(), overlap), np.full(has.sum(), overlap),
                 np.full(has.sum(), overlap * overlap), np.full(n, 1e-6)]
    G = coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsc()
    rhs = np.bincount(i, y, n) + np.bincount(j[has], overlap * y[has], n)
    # Non-negativity by a few active-set passes: fix negative levels at 0, solve for the rest.
    free = np.ones(n, bool)
    level = np.zeros(n)
    for _ in range(8):
        level[:] = 0.0
        idx = np.flatnonzero(free)
        if len(idx):
            level[idx] = np.atleast_1d(spsolve(G[idx][:, idx], rhs[idx]))
        if (level >= 0).all():
            break
        free &= level > 0
    return np.maximum(level, 0.0)


PLATEAU_UM = 5.0         # what a grey opening with a disc this wide (um) keeps of the DAB image is plateau:
                         # brown-filled cytoplasm, not membrane (3 um left the base of blurred ridges: 1+ recall
                         # 0.73 -> 0.59 on 40 tuning fields; 7 um lost 9-um brown cells)
MAX_REMAP_ROWS = 30000   # OpenCV's remap needs map sizes below 32767 px in each direction


def sample_rays(images: list[tuple[np.ndarray, int]], xy: np.ndarray, angles: np.ndarray,
                radii: np.ndarray) -> list[np.ndarray]:
    """Samples of each image along rays from every point: (n, rays, samples) per image.

    ``images`` pairs an image with its OpenCV interpolation; ``radii`` (px) are
    the distances sampled on every ray, (samples,), or on each ray its own,
    (n, rays, samples). Points are done in chunks so that no remap call exceeds
    OpenCV's size limit, however many cells a tile holds.

    Examples
    --------
    >>> img = np.arange(100, dtype=np.float32).reshape(10, 10)     # value 10 y + x
    >>> xy, ang = np.array([[5.0, 5.0]]), np.array([0.0, np.pi / 2], np.float32)   # rays to +x and +y
    >>> sample_rays([(img, cv2.INTER_LINEAR)], xy, ang, np.array([0.0, 2.0], np.float32))[0].round(3).tolist()
    [[[55.0, 57.0], [55.0, 75.0]]]
    >>> sample_rays([(img, cv2.INTER_LINEAR)], xy, ang, np.array([[[2.0], [1.0]]], np.float32))[0].round(3).tolist()
    [[[57.0], [65.0]]]
    """
    n, K, R = len(xy), len(angles), radii.shape[-1]
    out = [np.empty((n, K, R), np.float32) for _ in images]
    chunk = max(1, MAX_REMAP_ROWS // K)
    cos, sin = np.cos(angles)[None, :, None], np.sin(angles)[None, :, None]
    for a in range(0, n, chunk):
        p = xy[a:a + chunk].astype(np.float32)
        rr = radii if radii.ndim == 1 else radii[a:a + chunk]
        mx = (p[:, 0, None, None] + cos * rr).reshape(-1, R)
        my = (p[:, 1, None, None] + sin * rr).reshape(-1, R)
        for o, (img, interp) in zip(out, images):
            border = cv2.BORDER_REPLICATE if interp == cv2.INTER_LINEAR else cv2.BORDER_CONSTANT
            o[a:a + chunk] = cv2.remap(img, mx, my, interp, borderMode=border, borderValue=0).reshape(len(p), K, R)
    return out


def territory_centres(territory: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroid (n, 2) px, farthest pixel's distance from it (n,) px) of every cell territory.

    The farthest pixel of a territory lies on its edge (an inner pixel has a neighbour of its own
    territory farther from the centroid), so only edge pixels are searched: the same result from a
    fraction of the pixels.

    Examples
    --------
    >>> t = np.zeros((5, 7), np.int32); t[1:4, 1:4] = 1; t[1:4, 4:6] = 2
    >>> xy, far = territory_centres(t, 2)
    >>> xy.tolist(), far.round(3).tolist()
    ([[2.0, 2.0], [4.5, 2.0]], [1.414, 1.118])
    """
    # Sums over the whole raster (label 0, the gaps, dropped after): no index arrays to build.
    h, w = territory.shape
    flat = territory.ravel()
    cnt = np.maximum(np.bincount(flat, minlength=n + 1)[1:n + 1], 1)
    cx = np.bincount(flat, np.tile(np.arange(w, dtype=np.float64), h), n + 1)[1:n + 1] / cnt
    cy = np.bincount(flat, np.repeat(np.arange(h, dtype=np.float64), w), n + 1)[1:n + 1] / cnt
    padded = np.pad(territory, 1)
    inner = ((padded[:-2, 1:-1] == territory) & (padded[2:, 1:-1] == territory)
             & (padded[1:-1, :-2] == territory) & (padded[1:-1, 2:] == territory))
    ys, xs = pixels((territory > 0) & ~inner)
    lab = territory[ys, xs] - 1
    far = np.zeros(n)
    np.maximum.at(far, lab, np.hypot(xs - cx[lab], ys - cy[lab]))
    return np.c_[cx, cy], far


def measure_membranes(dab: np.ndarray, cells: Cells, mpp: float,
                      cfg: MembraneConfig = MembraneConfig(), max_radius_um: float = 30.0,
                      pixel_noise: float | None = None) -> Membranes:
    """Measure every cell of ``cells`` on the DAB OD image ``dab`` (same grid, ``mpp`` um/px).

    Rays start at the centre of each cell's territory (a columnar cell's
    nucleus sits at its base) and run past its edge; samples in a nucleus, or
    within 1 um of one, are left out of the membrane and the cytoplasm.
    ``pixel_noise``: the camera and JPEG noise of the DAB image (``stain.Unmixed.dab_noise``); the
    field's noise is capped at ``cfg.noise_cap`` times it.

    Returns
    -------
    Membranes
        Completeness: the share of rays stained, where a ray is stained when
        the cell's own membrane there reaches ``relative_level`` of its
        typical (75th percentile) level and ``faint_od``, and the cell passes
        the arc test; intensity: the median own membrane OD over stained rays.
    """
    n = len(cells)
    if n == 0:
        z = np.zeros(0)
        return Membranes(z, z, z, 0.0, np.zeros((0, cfg.rays, 2), np.float32))
    K = cfg.rays
    step = 0.5                                       # px between samples along a ray
    origin, far = territory_centres(cells.territory, n)
    reach = min(float(np.percentile(far, 99)) if n else 0.0, max_radius_um / mpp) + 3 / mpp
    radii = np.arange(0, reach, step, dtype=np.float32)
    ang = np.linspace(0, 2 * np.pi, K, endpoint=False, dtype=np.float32)
    smooth = cv2.GaussianBlur(dab, (0, 0), 1.2)
    # Nuclei, grown by 1 um: a stained nucleus (Ki67, ER, PR) blurs past its edge, and that is not membrane.
    grow = 2 * int(round(1.0 / mpp)) + 1
    nuclei = cv2.dilate((cells.nuclei.labels > 0).astype(np.uint8),
                        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    # Territory label and nucleus flag travel in one image (2 x label + flag; exact in float32 below 2^23
    # cells), so one nearest-neighbour remap reads both.
    code = (2 * cells.territory + nuclei).astype(np.float32)
    plateau = dab_relief(dab, mpp, PLATEAU_UM)[1]
    val, code = sample_rays([(smooth, cv2.INTER_LINEAR), (code, cv2.INTER_NEAREST)], origin, ang, radii)
    code = code.astype(np.int32)
    lab, nuc = code >> 1, code & 1
    own = lab == np.arange(1, n + 1, dtype=np.int32)[:, None, None]
    # Territory edge on each ray: the first sample that leaves the cell.
    R = len(radii)
    edge = np.where(own.all(axis=2), R, np.argmin(own, axis=2))
    idx = np.arange(R)[None, None, :]
    inside = (idx < edge[..., None]) & (nuc == 0)
    # Average neighbouring rays (~2 um of arc) before locating the membrane: noise is averaged
    # before the maximum is taken, so unstained cells do not pick up the largest noise sample.
    width = max(1, int(round(2.0 / mpp / (2 * np.pi * 6.0 / mpp / K))))
    val_arc = _circular_mean(val.reshape(n, K, R), width)
    peak_at = np.argmax(np.where(inside, val_arc, -np.inf), axis=2)
    # Membrane value: mean over +-1 um around the peak (integrated stain, robust to blur and JPEG),
    # and the plateau under it there (sampled at those points only).
    half = int(round(1.0 / mpp / step))
    window = np.arange(-half, half + 1)
    (flat,) = sample_rays([(plateau, cv2.INTER_LINEAR)], origin, ang,
                          radii[np.clip(peak_at[..., None] + window, 0, R - 1)])
    total, under, count = np.zeros((n, K)), np.zeros((n, K)), np.zeros((n, K))
    for k, o in enumerate(window):
        at = peak_at + o
        ok = (at >= 0) & (at < R)
        total += np.where(ok, _along_ray(val_arc, at), 0.0)
        under += np.where(ok, flat[..., k], 0.0)
        count += ok
    some = inside.any(axis=2)
    m_in = np.where(some, total / count, 0.0)
    m_plateau = np.where(some, under / count, 0.0)
    # Neighbour across each ray: the cell the ray enters when it leaves its own territory.
    first_out = np.take_along_axis(lab, np.minimum(edge, R - 1)[..., None], axis=2)[..., 0]
    neighbour = np.where(edge < R, first_out, 0).astype(np.int64)
    # Cytoplasm: samples outside the nucleus and more than 1.5 um short of the membrane.
    cyto_zone = inside & (idx < edge[..., None] - int(round(1.5 / mpp / step)))
    cytoplasm = np.where(cyto_zone.any(axis=(1, 2)), _masked_median(val, cyto_zone),
                         np.median(val[:, :, 0], axis=1))
    # Field noise: robust spread of cytoplasm samples around their cell's median (JPEG raises it).
    dev = np.abs(val[cyto_zone] - np.repeat(cytoplasm, cyto_zone.sum(axis=(1, 2))))
    noise_od = float(1.4826 * np.median(dev)) if dev.size else 0.0
    if pixel_noise:
        noise_od = min(noise_od, cfg.noise_cap * pixel_noise)
    arc_threshold = cfg.arc_faint_od + cfg.noise_factor * noise_od
    # A membrane stands above both sides: the cell's own cytoplasm and the tissue just beyond its
    # edge (1.5-3 um out). DAB filling a cell's cytoplasm makes a step at its edge, not a ridge.
    # The lowest in each window: a junction's other membrane beyond the edge is ignored.
    near_s, far_s = int(round(1.5 / mpp / step)), int(round(3.0 / mpp / step))
    outside = np.full((n, K), np.inf, np.float32)
    for o in range(near_s, far_s):
        at = edge + o
        outside = np.minimum(outside, np.where(at < R, _along_ray(val_arc, at), np.inf))
    # ... and just inside it (1.5-3 um in from the peak): a territory that takes in part of a stained
    # neighbour's cytoplasm meets a plateau there, not a ridge.
    inner = np.full((n, K), np.inf, np.float32)
    for o in range(near_s, far_s + 1):
        at = peak_at - o
        ok = (at >= 0) & _along_ray(inside, at)
        inner = np.minimum(inner, np.where(ok, _along_ray(val_arc, at), np.inf))
    sides = np.maximum(np.where(np.isfinite(outside), outside, cytoplasm[:, None]),
                       np.where(np.isfinite(inner), inner, cytoplasm[:, None]))
    # Nor is the edge of a plateau: the rise is counted from the plateau under the peak (brown cytoplasm
    # met by the ray). And from zero at least: a border at 0 OD in a cytoplasm unmixed to -0.03 is not a
    # stained membrane (red cells and stroma of unstained real cores read as faint 1+ that way).
    excess = m_in - np.maximum(np.maximum(np.maximum(cytoplasm[:, None], sides), m_plateau), 0.0)
    # Where two membranes merge into one ridge, a ray sees both: attribute by a joint fit.
    level = neighbour_levels(excess, neighbour, cfg.neighbour_overlap)
    own = excess - cfg.neighbour_overlap * np.r_[0.0, level][neighbour]
    # Cell-level test for faint staining: a membrane is a continuous arc, noise is not, so the
    # strongest quarter-perimeter mean separates faint 1+ membranes from JPEG noise.
    arc_signal = _circular_mean(own, K // 4).max(axis=1)
    typical = np.percentile(own, 75, axis=1)
    # DAB filling the cytoplasm is not membrane staining: on each ray the membrane must rise
    # ``cytoplasm_contrast`` x the cytoplasm's OD above it, the cell's own or the neighbour's across the
    # ray, whichever is browner (a territory that reaches into a brown neighbour sees its cytoplasm).
    across = np.maximum(cytoplasm[:, None], np.r_[0.0, cytoplasm][neighbour])
    floor = np.maximum(np.maximum(cfg.faint_od, cfg.relative_level * typical)[:, None],
                       cfg.cytoplasm_contrast * across)
    stained = (own > floor) & (arc_signal > arc_threshold)[:, None]
    edge_xy = origin[:, None, :] + radii[np.minimum(edge, R - 1)][..., None] * np.stack([np.cos(ang), np.sin(ang)], -1)
    return Membranes(stained.mean(axis=1), _masked_median(own, stained), cytoplasm.astype(float), noise_od,
                     edge_xy.astype(np.float32))
