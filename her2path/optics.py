"""Beer-Lambert optical density, shared by tissue detection and stain unmixing."""
from __future__ import annotations

import numpy as np


def optical_density(rgb: np.ndarray, white=255.0) -> np.ndarray:
    """Per-channel OD -log10(I / white) as float32.

    Intensities are clipped at 1 only: pixels brighter than ``white`` (noise on
    pale cytoplasm) get a small negative OD rather than being truncated, which
    would bias local medians.
    """
    i = np.maximum(rgb.astype(np.float32), 1.0)
    return -np.log10(i / np.asarray(white, np.float32))
