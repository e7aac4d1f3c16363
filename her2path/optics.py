"""Beer-Lambert optical density, shared by tissue detection and stain unmixing."""
from __future__ import annotations

import numpy as np


def optical_density(rgb: np.ndarray, white=255.0) -> np.ndarray:
    """Per-channel OD -log10(I / white) as float32.

    Intensities are clipped at 1 only: pixels brighter than ``white`` (noise on
    pale cytoplasm) get a small negative OD rather than being truncated, which
    would bias local medians.
    """
    white = np.asarray(white, np.float32)
    if rgb.dtype == np.uint8 and white.size in (1, 3) and rgb.size:
        import cv2

        # By lookup: 256 values per channel, computed once instead of a logarithm per pixel, and
        # looked up by OpenCV (a tenth of the time of numpy's indexing for a 576-px tile).
        levels = np.maximum(np.arange(256, dtype=np.float32), 1.0)[:, None]
        table = -np.log10(levels / np.broadcast_to(white.reshape(-1), (3,)))      # (256, 3)
        if white.size == 3 and rgb.shape[-1] == 3:                # a table per channel
            pixels, lut = rgb.reshape(-1, 1, 3), table.reshape(256, 1, 3)
        else:
            pixels, lut = rgb.reshape(-1, 1), table[:, 0]
        return cv2.LUT(np.ascontiguousarray(pixels), np.ascontiguousarray(lut)).reshape(rgb.shape)
    i = np.maximum(rgb.astype(np.float32), 1.0)
    return -np.log10(i / white)


def illumination(rgb: np.ndarray, block_px: int = 64, percentile: float = 97.0) -> np.ndarray:
    """The light reaching the camera at every pixel, per channel: (H, W, 3) float32.

    A microscope photograph's empty glass is rarely 255: the camera's white
    balance tints it (often yellow) and the illumination falls off towards the
    corners. Both are estimated from the image itself: per block of
    ``block_px``, the ``percentile`` of each channel; blocks within 7% of the
    brightest around them are glass (a block full of tissue is not), and a
    quadratic surface fitted to the logarithm of the glass blocks, per channel,
    is the lamp: smooth, as a lamp and a camera's vignetting are. With fewer
    than six glass blocks the lamp is taken as flat (their median). Optical
    density against this field is what the stains absorbed, whatever the
    camera did.

    Examples
    --------
    >>> rgb = np.full((256, 256, 3), (230, 220, 160), np.uint8)      # yellow glass
    >>> rgb[100:140, 100:140] = (150, 140, 110)                      # something absorbing
    >>> w = illumination(rgb)
    >>> np.round(w[120, 120]).tolist(), np.round(w[5, 5]).tolist()
    ([230.0, 220.0, 160.0], [230.0, 220.0, 160.0])
    """
    import cv2

    h, w = rgb.shape[:2]
    gy, gx = max(1, int(np.ceil(h / block_px))), max(1, int(np.ceil(w / block_px)))
    pad = np.pad(rgb.astype(np.float32), ((0, gy * block_px - h), (0, gx * block_px - w), (0, 0)), mode="edge")
    blocks = pad.reshape(gy, block_px, gx, block_px, 3).transpose(0, 2, 1, 3, 4).reshape(gy, gx, -1, 3)
    grid = np.maximum(np.percentile(blocks, percentile, axis=2), 1.0).astype(np.float32)
    near = cv2.dilate(grid, np.ones((5, 5), np.uint8)).reshape(gy, gx, 3)
    glass = (grid >= 0.93 * near).all(axis=2)
    yy, xx = np.mgrid[0:gy, 0:gx].astype(np.float32)
    yy, xx = (yy + 0.5) * block_px / h - 0.5, (xx + 0.5) * block_px / w - 0.5
    terms = lambda y, x: np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], -1)  # noqa: E731
    if glass.sum() >= 6:
        coef, *_ = np.linalg.lstsq(terms(yy[glass], xx[glass]), np.log(grid[glass]), rcond=None)
        py, px = np.mgrid[0:h, 0:w].astype(np.float32)
        field = np.exp(terms(py / h - 0.5, px / w - 0.5) @ coef.astype(np.float32))
    else:
        field = np.broadcast_to(np.median(grid.reshape(-1, 3), axis=0), (h, w, 3))
    return np.maximum(field, 1.0).astype(np.float32)
