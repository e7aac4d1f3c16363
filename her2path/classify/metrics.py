"""Agreement figures for ordinal HER2 scores 0..3."""
from __future__ import annotations

import numpy as np


def confusion(truth, pred, k: int = 4) -> np.ndarray:
    """(k, k) counts: rows truth, columns prediction."""
    m = np.zeros((k, k), int)
    np.add.at(m, (np.asarray(truth, int), np.asarray(pred, int)), 1)
    return m


def qwk(truth, pred, k: int = 4) -> float:
    """Quadratic weighted kappa (1 perfect, 0 chance); nan without samples.

    >>> qwk([0, 1, 2, 3], [0, 1, 2, 3])
    1.0
    """
    o = confusion(truth, pred, k).astype(float)
    if o.sum() == 0:
        return float("nan")
    w = np.subtract.outer(np.arange(k), np.arange(k)) ** 2 / (k - 1) ** 2
    e = np.outer(o.sum(1), o.sum(0)) / o.sum()
    return float(1 - (w * o).sum() / max((w * e).sum(), 1e-12))
