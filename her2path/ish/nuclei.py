"""Nuclei on a DAPI (or hematoxylin) image, and which of them are evaluable."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from ..segmentation import label_moments, relabel, split_touching


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


def segment_nuclei(img: np.ndarray, mpp: float, min_area_um2: float = 12.0, max_area_um2: float = 200.0,
                   split_distance_um: float = 6.0, min_solidity: float = 0.97, grid_um: float = 0.0) -> IshNuclei:
    """Nuclei on a nuclear-stain image (bright = nucleus), touching ones split.

    Not evaluable: cut by the field edge, touching or overlapping another
    nucleus, merged into a clump larger than ``max_area_um2``, or with a
    notched outline (solidity below ``min_solidity``: two overlapping nuclei
    left in one piece; single nuclei measure 0.98-0.99).

    With ``grid_um`` coarser than ``mpp``, the nuclei are found on a grid of
    whole multiples of ``mpp`` no coarser than it (block means) and their
    labels are given back pixel by pixel: nuclei are micrometres across and
    the spots, not the nuclei, need the full resolution.
    """
    step = max(1, int(grid_um / mpp + 1e-9))
    if step > 1:
        h, w = img.shape
        coarse = cv2.resize(img.astype(np.float32), (w // step, h // step), interpolation=cv2.INTER_AREA)
        found = segment_nuclei(coarse, mpp * step, min_area_um2, max_area_um2, split_distance_um, min_solidity)
        labels = np.zeros((h, w), np.int32)
        labels[:h // step * step, :w // step * step] = np.repeat(np.repeat(found.labels, step, 0), step, 1)
        return IshNuclei(labels, found.xy * step + (step - 1) / 2, found.area_um2, found.evaluable, found.why_not)
    smooth = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.5 / mpp)
    thr = threshold_otsu(smooth) if np.ptp(smooth) > 0 else np.inf
    mask = (smooth > thr).astype(np.uint8)
    labels = split_touching(mask, mpp, split_distance_um)
    n = int(labels.max())
    area, xy, _ = label_moments(labels, n)
    area_um2 = area * mpp * mpp
    keep = area_um2 >= min_area_um2
    labels = relabel(labels, keep)
    xy, area_um2 = xy[keep], area_um2[keep]
    n = len(xy)
    border = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    # Touching is judged on a lightly smoothed image: nuclei with a visible dark gap between them have a
    # clear border (the smoothing that finds the nuclei fills gaps under about a micrometre).
    fine = cv2.GaussianBlur(img.astype(np.float32), (0, 0), FINE_SIGMA_UM / mpp) > thr
    contact = np.where(fine, labels, 0).astype(np.int32)
    grown = cv2.dilate(contact.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
    meet = (grown != contact) & (contact > 0) & (grown > 0)
    touching = np.union1d(np.unique(contact[meet]), np.unique(grown[meet]))
    boxes = ndi.find_objects(labels)     # a convex hull only for the nuclei that get that far
    why = []
    for i in range(1, n + 1):
        if i in border:
            why.append("cut by the field edge")
        elif area_um2[i - 1] > max_area_um2:
            why.append("clump of overlapping nuclei")
        elif i in touching:
            why.append("touches or overlaps another nucleus")
        elif solidity(labels[boxes[i - 1]] == i) < min_solidity:
            why.append("notched outline: overlapping nuclei")
        else:
            why.append("")
    return IshNuclei(labels, xy, area_um2, np.array([w == "" for w in why], bool), why)
