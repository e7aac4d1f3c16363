"""Nuclei on a DAPI (or hematoxylin) image, and which of them are evaluable."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from ..config import IshNucleiConfig
from ..segmentation import label_moments, label_quantile, relabel, split_touching


FINE_SIGMA_UM = 0.15   # smoothing (um) of the image that touching is judged on


@dataclass
class IshNuclei:
    labels: np.ndarray       # (H, W) int32
    xy: np.ndarray           # (n, 2) centroid px
    area_um2: np.ndarray
    evaluable: np.ndarray    # (n,) bool
    why_not: list[str]       # per nucleus: "" or the reason it is not evaluable


def solidity(mask: np.ndarray) -> float:
    """Pixel area over the pixel area of the convex hull of a bool mask (1: convex).

    Examples
    --------
    >>> m = np.zeros((20, 20), bool); m[5:15, 5:15] = True
    >>> solidity(m)
    1.0
    >>> m[5:10, 5:10] = False                      # an L: a quarter cut out of the square
    >>> round(solidity(m), 2)
    0.88
    """
    m = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 1.0
    hull = np.zeros((m.shape[0] + 2, m.shape[1] + 2), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.vstack(contours)) + 1, 1)
    return float(m.sum() / max(int(hull.sum()), 1))


def fine_image(img: np.ndarray, mpp: float) -> np.ndarray:
    """A nuclear-stain image at ``mpp`` um/px lightly smoothed (``FINE_SIGMA_UM``), float32: what
    touching and edge width are judged on."""
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), FINE_SIGMA_UM / mpp)


def edge_width_um(fine: np.ndarray, labels: np.ndarray, mpp: float) -> np.ndarray:
    """(n,) how wide (um) each labelled object's edge is: its mean brightness above the background
    (median of the unlabelled pixels) over the upper-quartile gradient along the part of its outline
    that borders the background, both on ``fine`` (the image smoothed, ``fine_image``); 0 (sharp, as far as
    can be told) for an object with less than 1 um of such outline, walled in by others. The upper
    quartile, not the median: a sharp nucleus whose outline runs partly along the halo of a
    defocused one is still steep over the rest of it.

    A sharp step reads about 1 um wide. A blurred edge reads wider, and more so the lower the
    outline cuts its profile: a nucleus of another focal plane is dimmer than those in focus, and the
    threshold that the bright ones set cuts it low. A 10-um disc blurred by 2 um reads 3.7 um as
    bright as its sharp neighbour, 4.5 um at 0.4 of its brightness; on the randomised FISH fields
    of ``benchmarks.ish_random`` (tuning seeds) nuclei in focus read 0.7-1.6 um, those of another
    focal plane 5.3-11 um.

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> yy, xx = np.mgrid[:200, :400] * 0.1                               # 0.1 um/px
    >>> sharp = ((xx - 10) ** 2 + (yy - 10) ** 2 < 25).astype(np.float32)
    >>> other = ((xx - 30) ** 2 + (yy - 10) ** 2 < 25).astype(np.float32)
    >>> img = cv2.GaussianBlur(sharp, (0, 0), 3) + 0.4 * cv2.GaussianBlur(other, (0, 0), 20)  # 2 um defocus
    >>> labels, _ = ndi.label(img > 0.25)
    >>> [round(float(w), 1) for w in edge_width_um(fine_image(img, 0.1), labels, 0.1)]
    [0.8, 4.5]
    """
    n = int(labels.max())
    if n == 0:
        return np.zeros(0)
    # Sobel's 3 x 3 kernel sums 8 times the pixel difference: / 8 / mpp gives brightness per um
    grad = np.hypot(cv2.Sobel(fine, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(fine, cv2.CV_32F, 0, 1, ksize=3)) / (8 * mpp)
    # The outline where the object meets the background: where it meets another object (a watershed
    # cut through touching nuclei) the brightness runs on, and no edge is there to measure.
    on_outline = (labels > 0) & (cv2.erode((labels > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0)
    glass = labels[::2, ::2] == 0            # every other row and column: the median barely moves
    background = float(np.median(fine[::2, ::2][glass])) if glass.any() else 0.0
    flat = labels.ravel()
    inside = np.bincount(flat, fine.ravel(), n + 1)[1:] / np.maximum(np.bincount(flat, None, n + 1)[1:], 1)
    edge = np.full(n, np.inf)
    who, g = labels[on_outline], grad[on_outline]
    has = np.bincount(who, None, n + 1)[1:] >= 1 / mpp   # at least 1 um of outline on the background to judge by
    edge[has] = g[label_quantile(who, g, n, 0.75)[has]]
    return (inside - background) / np.maximum(edge, 1e-12)      # 0 where it cannot be told


def segment_nuclei(img: np.ndarray, mpp: float, cfg: IshNucleiConfig = IshNucleiConfig()) -> IshNuclei:
    """Nuclei on a nuclear-stain image (bright = nucleus), touching ones split.

    Not evaluable: cut by the field edge, out of focus (an edge wider than
    ``cfg.max_edge_um``: a nucleus of another focal plane, whose signals cannot
    be counted), touching or overlapping another nucleus that is in focus (a
    blurred nucleus behind does not hide a border), merged into a clump larger
    than ``cfg.max_area_um2``, or with a notched outline (solidity below
    ``cfg.min_solidity``: two overlapping nuclei left in one piece; single
    nuclei measure 0.98-0.99).

    With ``cfg.grid_um`` coarser than ``mpp``, the nuclei are found on a grid of
    whole multiples of ``mpp`` no coarser than it (block means) and their
    labels are given back pixel by pixel: nuclei are micrometres across and
    the spots, not the nuclei, need the full resolution.
    """
    step = max(1, int(cfg.grid_um / mpp + 1e-9))
    if step > 1:
        h, w = img.shape
        coarse = cv2.resize(img.astype(np.float32), (w // step, h // step), interpolation=cv2.INTER_AREA)
        found = segment_nuclei(coarse, mpp * step, cfg.model_copy(update={"grid_um": 0.0}))
        labels = np.zeros((h, w), np.int32)
        labels[:h // step * step, :w // step * step] = np.repeat(np.repeat(found.labels, step, 0), step, 1)
        return IshNuclei(labels, found.xy * step + (step - 1) / 2, found.area_um2, found.evaluable, found.why_not)
    smooth = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.5 / mpp)
    thr = threshold_otsu(smooth) if np.ptp(smooth) > 0 else np.inf
    mask = (smooth > thr).astype(np.uint8)
    labels = split_touching(mask, mpp, cfg.split_distance_um)
    n = int(labels.max())
    area, xy, _ = label_moments(labels, n)
    area_um2 = area * mpp * mpp
    keep = area_um2 >= cfg.min_area_um2
    labels = relabel(labels, keep)
    xy, area_um2 = xy[keep], area_um2[keep]
    n = len(xy)
    border = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    fine = fine_image(img, mpp)
    blurred = np.r_[False, edge_width_um(fine, labels, mpp) > cfg.max_edge_um]
    # Touching is judged on a lightly smoothed image: nuclei with a visible dark gap between them have a
    # clear border (the smoothing that finds the nuclei fills gaps under about a micrometre). Nuclei of
    # another focal plane take no part: the border of a sharp nucleus over a blurred one is clear.
    contact = np.where((fine > thr) & ~blurred[labels], labels, 0).astype(np.int32)
    grown = cv2.dilate(contact.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
    meet = (grown != contact) & (contact > 0) & (grown > 0)
    touching = np.union1d(np.unique(contact[meet]), np.unique(grown[meet]))
    boxes = ndi.find_objects(labels)     # a convex hull only for the nuclei that get that far
    why = []
    for i in range(1, n + 1):
        if i in border:
            why.append("cut by the field edge")
        elif blurred[i]:
            why.append("out of focus")
        elif area_um2[i - 1] > cfg.max_area_um2:
            why.append("clump of overlapping nuclei")
        elif i in touching:
            why.append("touches or overlaps another nucleus")
        elif solidity(labels[boxes[i - 1]] == i) < cfg.min_solidity:
            why.append("notched outline: overlapping nuclei")
        else:
            why.append("")
    return IshNuclei(labels, xy, area_um2, np.array([w == "" for w in why], bool), why)
