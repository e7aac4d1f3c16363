"""Signals of one probe: difference-of-Gaussians detection and integrated intensities.

The detection threshold is automatic per channel: ``k_noise`` times the
robust noise of the band-pass image. Touching maxima form one blob; its
background-subtracted integrated intensity, divided by the single-signal
reference of the case, estimates its copies (``copies_from_intensity``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..filters import disc_opening
from ..segmentation import label_quantile, pixels


@dataclass
class Blobs:
    xy: np.ndarray           # (n, 2) intensity-weighted centre, px
    integrated: np.ndarray   # (n,) background-subtracted sum over the blob
    maxima: np.ndarray       # (n,) local maxima inside the blob
    threshold: float
    saturated: np.ndarray | None = None   # (n,) bool: the blob reaches the camera's limit (full scale, or black)
    peak: np.ndarray | None = None        # (n,) band-pass peak of the blob (``threshold`` units: >= 1)
    peak_light: np.ndarray | None = None  # (n,) light at the blob's brightest pixel (PSF-smoothed, floor removed)
    other_light: np.ndarray | None = None  # (n,) the other probe's light at that pixel, the same way
    separate: np.ndarray | None = None    # (n,) its maxima that lie more than one signal's diameter apart (groups)


@dataclass
class ProbeLight:
    """One probe's image made ready for detection (float32, px)."""

    top: np.ndarray      # light above the background (a grey opening wider than a cluster), its floor removed
    smooth: np.ndarray   # ``top`` smoothed by the PSF: the light at a pixel, as the echo test reads it
    dog: np.ndarray      # band-pass (difference of Gaussians at 1 and 1.6 PSF sigma) the signals are found in
    sample: np.ndarray   # bool, every other row and column: where noise and floor are measured


def probe_light(img: np.ndarray, mpp: float, sigma_um: float, noise_mask: np.ndarray | None = None,
                cluster_um: float = 1.5) -> ProbeLight:
    """A signal image (bright = signal, PSF sigma ``sigma_um``) less its background, smoothed and
    band-passed (``ProbeLight``).

    The background is a grey opening wider than a cluster (``cluster_um``) and
    than the PSF (4 sigma), so that a cluster's own light is not taken for
    background. ``noise_mask`` (e.g. the nuclei) is where noise and floor are
    measured: signals are sought there, and shot noise is higher there than on
    the dark glass. A top-hat is never negative: its median over signal-free
    pixels is a floor that would otherwise pile up over an integration region;
    it is taken after the PSF blur, so that 8-bit quantisation does not round it
    to a whole grey level.
    """
    s = sigma_um / mpp
    img = img.astype(np.float32)
    top = img - disc_opening(img, max(2, int(round(max(4 * s, cluster_um / mpp)))))
    smooth = cv2.GaussianBlur(top, (0, 0), s)
    dog = smooth - cv2.GaussianBlur(top, (0, 0), 1.6 * s)
    where = noise_mask if noise_mask is not None and noise_mask.sum() > 100 else np.ones(img.shape, bool)
    # Every other row and column (a quarter of the pixels; neighbours are correlated by the blur, so
    # the robust estimates barely move).
    sample = where[::2, ::2]
    floor = float(np.median(smooth[::2, ::2][sample]))
    return ProbeLight(top - floor, smooth - floor, dog, sample)


def detect_blobs(img: np.ndarray, mpp: float, sigma_um: float, k_noise: float = 6.0,
                 noise_mask: np.ndarray | None = None, cluster_um: float = 1.5,
                 reach_um: float = 0.6, ring_um: float = 0.5, at_limit: np.ndarray | None = None,
                 light: ProbeLight | None = None, other: ProbeLight | None = None) -> Blobs:
    """Spots in a signal image (bright = signal) whose PSF sigma is ``sigma_um``.

    The image is prepared by ``probe_light`` (``light``: its result, if it was
    already computed); the detection threshold is ``k_noise`` times the robust
    noise of the band-pass image where ``noise_mask`` holds. With ``other``
    (the other probe's ``probe_light``), each blob's light and the other
    probe's at its brightest pixel are kept (``peak_light``, ``other_light``):
    an echo of the other colour peaks where that colour does. A blob's light is summed
    over every pixel within ``reach_um`` of it, less the mean of a ring
    ``ring_um`` wide just outside that (aperture photometry): autofluorescence
    and the nucleus' own glow vary within a nucleus, and summed over the ~200
    pixels of a sharp signal's region at 0.1 um/px, a local glow of one or two
    grey levels weighs as much as the signal. With ``at_limit`` (bool
    image: pixels where the camera reached its limit, its full scale in
    fluorescence or black in brightfield), blobs holding such a pixel are marked
    saturated: their integrated light, and so their copies, is a lower bound.
    """
    s = sigma_um / mpp
    light = probe_light(img, mpp, sigma_um, noise_mask, cluster_um) if light is None else light
    top, smooth, dog = light.top, light.smooth, light.dog
    ref = dog[::2, ::2][light.sample]
    noise = 1.4826 * float(np.median(np.abs(ref - np.median(ref)))) + 1e-9
    thr = k_noise * noise
    fg = (dog > thr).astype(np.uint8)
    n, lab = cv2.connectedComponents(fg, connectivity=8)
    if n <= 1:
        none = np.zeros(0, np.float32)
        return Blobs(np.zeros((0, 2)), np.zeros(0), np.zeros(0, int), thr,
                     None if at_limit is None else np.zeros(0, bool), none, none, None if other is None else none)
    k = max(3, int(round(2 * s)) | 1)
    peaks = (dog == cv2.dilate(dog, np.ones((k, k), np.uint8))) & (dog > thr)
    # Integrate each blob's light over every pixel within ``reach`` of it, split between
    # neighbouring blobs by nearest blob (Voronoi): a cluster's wide tails are counted, and
    # separate signals are never merged.
    dist, near = cv2.distanceTransformWithLabels((fg == 0).astype(np.uint8), cv2.DIST_L2, 5,
                                                  labelType=cv2.DIST_LABEL_PIXEL)
    fy, fx = pixels(fg)
    lut = np.zeros(len(fy) + 1, np.int32)
    lut[1:] = lab[fy, fx]
    # Every pixel within reach of a blob, and the ring beyond, with the blob it belongs to.
    wy, wx = pixels(dist <= (reach_um + ring_um) / mpp)
    owner = lut[near[wy, wx]] - 1
    inner = dist[wy, wx] <= reach_um / mpp
    ys, xs, ids = wy[inner], wx[inner], owner[inner]
    w = top[ys, xs]
    total = np.bincount(ids, w, n - 1) - np.bincount(ids, minlength=n - 1) * _ring_means(
        owner[~inner], top[wy[~inner], wx[~inner]], n - 1)
    wp = np.maximum(w, 0)
    mass = np.maximum(np.bincount(ids, wp, n - 1), 1e-12)
    cx = np.bincount(ids, wp * xs, n - 1) / mass
    cy = np.bincount(ids, wp * ys, n - 1) / mass
    maxima = np.bincount(lab[peaks] - 1, minlength=n - 1)
    ok = maxima > 0
    separate = separate_signals(np.argwhere(peaks), lab[peaks] - 1, n - 1, 4 * s)
    saturated = None
    if at_limit is not None:
        saturated = (np.bincount(ids, at_limit[ys, xs], n - 1) > 0)[ok]
    # The brightest pixel of each blob: its band-pass pixels sorted by blob, then by value; the last of each.
    fv = dog[fy, fx]
    last = label_quantile(lab[fy, fx], fv, n - 1, 1.0)
    py, px = fy[last][ok], fx[last][ok]
    return Blobs(np.c_[cx, cy][ok], total[ok], maxima[ok], thr, saturated, (fv[last] / thr)[ok],
                 smooth[py, px], None if other is None else other.smooth[py, px], separate[ok])


def separate_signals(points: np.ndarray, blob: np.ndarray, n: int, diameter_px: float) -> np.ndarray:
    """How many signals the maxima of each of ``n`` blobs show: maxima closer than one signal's
    diameter to another of the same blob are one signal (the guideline's rule for touching
    signals), so the count is the number of groups linked at that distance.

    Examples
    --------
    >>> pts = np.array([[0, 0], [0, 2], [0, 9], [5, 5]])   # blob 0: two touching maxima, one apart
    >>> separate_signals(pts, np.array([0, 0, 0, 1]), 3, 4.0).tolist()
    [2, 1, 0]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(points):
        return np.zeros(n, int)
    pairs = cKDTree(points).query_pairs(diameter_px, output_type="ndarray")
    pairs = pairs[blob[pairs[:, 0]] == blob[pairs[:, 1]]]
    m = len(points)
    _, group = connected_components(coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m)),
                                    directed=False)
    first = np.unique(np.c_[blob, group], axis=0)[:, 0]       # one row per (blob, group)
    return np.bincount(first, minlength=n)


def _ring_means(ids: np.ndarray, values: np.ndarray, n: int, least: int = 20) -> np.ndarray:
    """Mean of the ring pixels' ``values`` per blob (``ids``: the blob of each pixel); 0 for a blob
    with fewer than ``least`` ring pixels (crowded among others: the image's floor stands)."""
    count = np.bincount(ids, minlength=n)
    return np.where(count >= least, np.bincount(ids, values, n) / np.maximum(count, 1), 0.0)


def single_reference(blobs: list[Blobs], inside: list[np.ndarray]) -> float:
    """Integrated intensity of one signal: median over in-nucleus blobs with one maximum (0 if none)."""
    vals = np.concatenate([b.integrated[(b.maxima == 1) & m] for b, m in zip(blobs, inside)]) \
        if blobs else np.zeros(0)
    return float(np.median(vals)) if len(vals) else 0.0


def copies_from_intensity(integrated: np.ndarray, reference: float, cluster_min: float = 2.5,
                          faint: float = 0.3, separate: np.ndarray | None = None) -> np.ndarray:
    """Copies per blob from its light in single-signal ``reference`` units.

    Below ``faint`` references: 0 (bleed-through of the other probe or dust, not a
    signal); below ``cluster_min``: 1 (a signal, or two touching same-size signals,
    which count as one), or, with ``separate`` (``Blobs.separate``), as many
    signals as the blob shows apart, up to its light (two signals a diameter
    apart whose light runs together are two); above: the rounded ratio (a
    cluster is estimated, not counted as one).
    """
    if reference <= 0:
        return np.ones(len(integrated), int)
    ratio = integrated / reference
    small = np.ones(len(ratio)) if separate is None else np.clip(np.minimum(separate, np.round(ratio)), 1, None)
    return np.where(ratio < faint, 0, np.where(ratio < cluster_min, small, np.round(ratio))).astype(int)
