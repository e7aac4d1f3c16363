"""Nucleus labelling shared by IHC and ISH: split touching nuclei, relabel, per-label moments and
order statistics, and the pixels a mask holds."""
from __future__ import annotations

import cv2
import numpy as np
from skimage.segmentation import watershed


def split_touching(mask: np.ndarray, mpp: float, split_distance_um: float) -> np.ndarray:
    """Label nuclei, splitting touching ones at the saddles of the distance transform."""
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    dist = cv2.GaussianBlur(dist, (0, 0), 1.0)
    k = max(3, int(round(split_distance_um / mpp)) | 1)
    peaks = (dist == cv2.dilate(dist, np.ones((k, k), np.uint8))) & (dist > 1.0) & (mask > 0)
    n, markers = cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, np.int32)
    # A piece of the mask with one marker is that nucleus whole: the watershed (which floods
    # 4-connected) is needed only in pieces holding several, and runs there alone.
    _, piece = cv2.connectedComponents(mask, connectivity=4)
    seeded = markers > 0
    pairs = np.unique(np.c_[piece[seeded], markers[seeded]], axis=0)
    count = np.bincount(pairs[:, 0], minlength=piece.max() + 1)
    single = np.zeros(len(count), np.int32)
    one = count[pairs[:, 0]] == 1
    single[pairs[one, 0]] = pairs[one, 1]
    labels = single[piece]
    shared = count[piece] > 1
    if shared.any():
        flooded = watershed(-dist, np.where(shared, markers, 0), mask=shared)
        labels[shared] = flooded[shared]
    return labels.astype(np.int32)


def pixels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the non-zero pixels of a 2-D array, in row-major order: ``np.nonzero``'s
    result at a quarter of its cost (flat indices, then split; 2.4 against 9.2 ms for a 1024 x 1024
    mask 30% set).

    Examples
    --------
    >>> m = np.array([[0, 1, 0], [1, 0, 1]])
    >>> [a.tolist() for a in pixels(m)]
    [[0, 1, 1], [1, 0, 2]]
    """
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def label_quantile(who: np.ndarray, values: np.ndarray, n: int, q: float) -> np.ndarray:
    """For each label 1..n, the position in ``values`` of the value at quantile ``q`` (0-1, by
    rank: the value ``floor(q * count)`` places up from the label's least, at most its largest)
    among those carrying that label in ``who``; -1 for a label that carries none.

    Examples
    --------
    >>> who, values = np.array([1, 1, 2, 1, 1]), np.array([5.0, 1.0, 7.0, 3.0, 4.0])
    >>> label_quantile(who, values, 3, 1.0).tolist()       # each label's largest; label 3 has none
    [0, 2, -1]
    >>> int(label_quantile(who, values, 3, 0.5)[0])   # label 1 holds 1, 3, 4, 5: 2 places up is 4.0, at 4
    4
    >>> label_quantile(np.r_[0, who], np.r_[9.0, values], 3, 1.0).tolist()   # unlabelled entries are passed over
    [1, 3, -1]
    """
    order = np.lexsort((values, who))
    count = np.bincount(who, None, n + 1)
    start = (np.cumsum(count) - count)[1:]           # after every smaller label, 0 (unlabelled) included
    count = count[1:]
    out = np.full(n, -1)
    has = count > 0
    out[has] = order[start[has] + np.minimum(count[has] - 1, np.floor(q * count[has]).astype(int))]
    return out


def relabel(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Keep labels where ``keep[label - 1]`` and renumber them 1..k."""
    lut = np.zeros(len(keep) + 1, np.int32)
    lut[1:][keep] = np.arange(1, keep.sum() + 1)
    return lut[labels]


def label_moments(labels: np.ndarray, n: int, *images: np.ndarray):
    """Area, centroid (n, 2), axis ratio and the mean of each of ``images`` per label 1..n, by bincount.

    Examples
    --------
    >>> lab = np.zeros((8, 8), np.int32)
    >>> lab[2:4, 2:6] = 1
    >>> area, xy, ratio, mean = label_moments(lab, 1, np.ones((8, 8)))
    >>> area.tolist(), xy.tolist(), mean.tolist()
    ([8.0], [[3.5, 2.5]], [1.0])
    """
    ys, xs = pixels(labels)
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
    means = [np.bincount(lab, img[ys, xs], n) / a for img in images]
    return (area, np.c_[cx, cy], ratio, *means)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (uint8 0/1) with every background region that does not reach the border filled.

    Background counts as connected through edges only (4-connected), as in
    ``scipy.ndimage.binary_fill_holes``.

    Examples
    --------
    >>> ring = np.zeros((7, 7), np.uint8)
    >>> ring[1:6, 1:6] = 1
    >>> ring[3, 3] = 0
    >>> int(fill_holes(ring)[3, 3])
    1
    """
    n, background = cv2.connectedComponents((mask == 0).astype(np.uint8), connectivity=4)
    outer = np.zeros(n, bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outer[edge] = True
    outer[0] = True                                    # label 0: the mask itself
    return (~outer[background]).astype(np.uint8) | (mask > 0).astype(np.uint8)
