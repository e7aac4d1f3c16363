"""Image filters shared by IHC and ISH, cheap where the general routines are not: Gaussian smoothing
at wide kernels and the grey opening by a disc.

A Gaussian tens of pixels wide removes all detail finer than a few pixels, so
it can run on a grid that much coarser and be interpolated back: the result
differs from the full-resolution blur by well under a percent of the image's
range, at a fraction of the cost (the kernel shrinks with the grid, and the
grid holds step^2 fewer pixels).
"""
from __future__ import annotations

import cv2
import numpy as np

COARSE_FROM_PX = 12.0   # kernels at least this wide (sigma, px) run on a coarser grid ...
PX_PER_STEP = 4.0       # ... of sigma / PX_PER_STEP px per grid step


def gaussian(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing of a 2-D float32 image with sigma ``sigma_px`` (px); same shape.

    Examples
    --------
    >>> img = np.zeros((200, 200), np.float32)
    >>> img[:, 100:] = 1.0
    >>> exact = cv2.GaussianBlur(img, (0, 0), 20.0)
    >>> bool(np.abs(gaussian(img, 20.0) - exact).max() < 0.01)
    True
    """
    step = int(sigma_px // PX_PER_STEP) if sigma_px >= COARSE_FROM_PX else 1
    h, w = img.shape[:2]
    if step <= 1 or min(h, w) < 4 * step:
        return cv2.GaussianBlur(img, (0, 0), sigma_px)
    # Padded to whole grid cells, so that every cell averages exactly step x step pixels.
    padded = cv2.copyMakeBorder(img, 0, -h % step, 0, -w % step, cv2.BORDER_REFLECT)
    small = cv2.resize(padded, (padded.shape[1] // step, padded.shape[0] // step), interpolation=cv2.INTER_AREA)
    # A box average of ``step`` already blurred by step^2/12 (variance): only the rest is added.
    rest = np.sqrt(max(sigma_px ** 2 - (step ** 2 - 1) / 12.0, 0.25)) / step
    small = cv2.GaussianBlur(small, (0, 0), rest, borderType=cv2.BORDER_REFLECT)
    # Back to the padded size (an exact factor: grid cell centres land where they were), then cropped.
    return cv2.resize(small, (padded.shape[1], padded.shape[0]), interpolation=cv2.INTER_LINEAR)[:h, :w]


def disc_opening(img: np.ndarray, radius_px: int) -> np.ndarray:
    """Grey opening of a float image by a disc of ``radius_px`` (px): everything narrower goes.

    Run on integer levels, where OpenCV's morphology is fastest: an 8-bit
    image read on a 0-1 scale (every value a whole number of 1/255 steps, as
    ``io.fluorescence`` gives an 8-bit camera's field) on its own 256 levels,
    exactly and twice as fast as on 16 bits; any other image quantised to 16
    bits over its range (steps of 1/65535 of it, far below any noise).

    Examples
    --------
    >>> img = np.zeros((64, 64), np.float32)
    >>> img[30:34, 30:34] = 1.0                       # a spot 4 px wide on a flat background
    >>> img[:, :8] = 0.5                               # and a plateau 8 px wide
    >>> out = disc_opening(img, 3)
    >>> float(out[31, 31]), round(float(out[32, 3]), 4)
    (0.0, 0.5)
    >>> out = disc_opening(img * np.float32(254 / 255), 3)   # whole 8-bit steps (0, 127, 254): opened on uint8
    >>> float(out[31, 31]), float(out[32, 3] * 255)
    (0.0, 127.0)
    """
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1,) * 2)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return img.astype(np.float32, copy=True)
    if hi - lo <= 1.0 and _eight_bit_levels(img[::16, ::16], lo) is not None:   # a cheap look first
        q8 = _eight_bit_levels(img, lo)
        if q8 is not None:
            return cv2.morphologyEx(q8, cv2.MORPH_OPEN, disc).astype(np.float32) / np.float32(255) + np.float32(lo)
    scale = 65535.0 / (hi - lo)
    q = np.round((img - lo) * scale).astype(np.uint16)
    return cv2.morphologyEx(q, cv2.MORPH_OPEN, disc).astype(np.float32) / np.float32(scale) + np.float32(lo)


def _eight_bit_levels(img: np.ndarray, lo: float) -> np.ndarray | None:
    """``img`` as whole 1/255 steps above ``lo`` (uint8), or None where it does not lie on them."""
    steps = (img - np.float32(lo)) * np.float32(255)
    q = np.rint(steps)
    return q.astype(np.uint8) if np.abs(steps - q).max() < 1e-3 else None
