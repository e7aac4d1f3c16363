"""Optical density and hematoxylin-DAB unmixing, with per-slide stain estimation.

Beer-Lambert: OD = -log10(I / I0) is linear in stain amounts, so each pixel's
OD (R, G, B) is unmixed by the pseudo-inverse of the stain matrix (hematoxylin,
DAB, and a residual vector orthogonal to both). Vectors can be estimated per
slide from its purest pixels (nuclei for hematoxylin, DAB-dominant pixels for
DAB); an estimate far from the defaults or from too few pixels falls back to
the defaults, and a second stain that is not brown (eosin) marks DAB absent.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..filters import disc_opening
from ..optics import optical_density

DEFAULT_H = (0.650, 0.704, 0.286)     # Ruifrok & Johnston 2001
DEFAULT_DAB = (0.268, 0.570, 0.776)


@dataclass(frozen=True)
class Stains:
    """Unit OD vectors of hematoxylin and DAB, and where they came from."""

    hematoxylin: tuple[float, float, float] = DEFAULT_H
    dab: tuple[float, float, float] = DEFAULT_DAB
    source: str = "default"            # "default", "config", "estimated", "fallback: <why>" or "no DAB: <why>"
    dab_absent: bool = False           # the slide carries no brown chromogen (e.g. an H&E slide)

    def unmixing(self) -> np.ndarray:
        """(3, 3) matrix M with [H, DAB, residual] = OD @ M."""
        h = np.asarray(self.hematoxylin, float)
        d = np.asarray(self.dab, float)
        h, d = h / np.linalg.norm(h), d / np.linalg.norm(d)
        r = np.cross(h, d)
        r /= np.linalg.norm(r)
        return np.linalg.inv(np.stack([h, d, r])).astype(np.float32)


@dataclass(frozen=True)
class Unmixed:
    """Stain images of an RGB image: optical densities (float32) and the pixel noise."""

    h: np.ndarray              # hematoxylin OD
    dab: np.ndarray            # DAB OD
    noise: float               # OD noise per pixel: no stain lies along the residual vector, so what
                               # varies there from pixel to pixel is camera and JPEG noise
    dab_noise: float = 0.0     # that noise as carried into the DAB image (through the unmixing gains)


def unmix(rgb: np.ndarray, stains: Stains = Stains(), white: float = 255.0) -> Unmixed:
    """Hematoxylin and DAB optical density images (same height and width as ``rgb``) and the noise.

    Examples
    --------
    >>> u = unmix(np.full((32, 32, 3), 200, np.uint8))
    >>> u.h.shape, round(u.noise, 4), round(u.dab_noise, 4)
    ((32, 32), 0.0, 0.0)
    """
    od = optical_density(rgb, white)
    if od.size == 0:
        empty = np.zeros(rgb.shape[:2], np.float32)
        return Unmixed(empty, empty, 0.0)
    m = stains.unmixing()
    h, dab, residual = cv2.split(cv2.transform(od, m.T))    # per pixel: OD @ M
    # The noise from every other row and column: a robust spread needs no more pixels than that.
    fine = (residual - cv2.GaussianBlur(residual, (0, 0), 1.0))[::2, ::2]
    noise = float(1.4826 * np.median(np.abs(fine - np.median(fine))))
    # Noise alike in the three channels' OD reaches each stain image scaled by its column of M.
    gain = float(np.linalg.norm(m[:, 1]) / np.linalg.norm(m[:, 2]))
    return Unmixed(h, dab, noise, noise * gain)


def _angle_deg(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    c = abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def _unit(v) -> np.ndarray:
    v = np.abs(np.asarray(v, float))
    return v / np.linalg.norm(v)


def estimate_stains(rgb: np.ndarray, default: Stains = Stains(), min_od: float = 0.15,
                    max_deviation_deg: float = 20.0, min_dab_fraction: float = 0.01,
                    white: float = 255.0, min_pixels: int = 200) -> Stains:
    """Estimate the H and DAB vectors of a slide from its purest pixels, guarded.

    Hematoxylin comes from nucleus pixels (the darkest H with little DAB):
    nuclei are present on every slide and carry no HER2 DAB. DAB comes from
    DAB-dominant pixels once their hematoxylin part is removed. Two rounds,
    starting from ``default``. At the faint-1+ level a few degrees of error let
    counterstain leak into the DAB channel, so this beats the percentile-angle
    (Macenko) estimate when DAB is sparse.

    Parameters
    ----------
    rgb : (..., 3) uint8
        Tissue pixels (any shape; glass is excluded by ``min_od``).
    max_deviation_deg : float
        An estimated vector further than this from its default is unreliable.
    min_dab_fraction : float
        Fewer DAB-dominant pixels than this: the DAB vector is kept at its default.

    Returns
    -------
    Stains with ``source`` "estimated" (H, and DAB when there is enough of it),
    the defaults with "fallback: <reason>", or ``dab_absent`` set when the
    dominant second stain is not brown (an H&E slide).
    """
    od = optical_density(rgb.reshape(-1, 3), white)
    od = od[od.sum(axis=1) > min_od]
    if len(od) < 500:
        return Stains(default.hematoxylin, default.dab, "fallback: too few stained pixels")
    conc = od @ default.unmixing()
    # Eosin (an H&E slide) lies off the H-DAB plane: a large share of the light is left unexplained,
    # and it is pink, absorbing green several times more than blue (DAB and hematoxylin: 2x at most).
    unexplained = float(np.median(np.abs(conc[:, 2]) / np.maximum(np.abs(conc).sum(axis=1), 1e-6)))
    green_blue = float(np.median(od[:, 1] / np.maximum(od[:, 2], 1e-3)))
    if unexplained > 0.2 and green_blue > 3.0:
        return Stains(default.hematoxylin, default.dab,
                      f"no DAB: {unexplained:.0%} of the stain lies off hematoxylin and DAB and is pink "
                      f"(green/blue OD {green_blue:.1f}), as eosin is: an H&E slide", dab_absent=True)
    dab_dominant = conc[:, 1] > np.maximum(conc[:, 0], 0.1)
    dab_frac = float(np.mean(dab_dominant))
    if dab_frac > 0.05:
        # DAB is brown: it absorbs blue more than green. Eosin and red chromogens fall in the
        # DAB direction of an H-DAB unmixing but absorb green far more than blue.
        blue_green = float(np.median(od[dab_dominant, 2] / np.maximum(od[dab_dominant, 1], 1e-3)))
        if blue_green < 0.8:
            return Stains(default.hematoxylin, default.dab,
                          f"no DAB: the second stain is not brown (blue/green OD {blue_green:.2f}; "
                          "DAB is above 0.9), e.g. eosin", dab_absent=True)
    h, d = _unit(default.hematoxylin), _unit(default.dab)
    use_dab = dab_frac >= min_dab_fraction
    for _ in range(2):
        conc = od @ Stains(tuple(h), tuple(d)).unmixing()
        # Nuclei: the darkest 15% of hematoxylin, and of those the half with the least DAB
        # (relative, so that a poor starting DAB vector cannot empty the selection).
        dark = conc[:, 0] > np.percentile(conc[:, 0], 85)
        ratio = conc[:, 1] / np.maximum(conc[:, 0], 1e-6)
        nuclear = dark & (ratio <= np.median(ratio[dark])) if dark.any() else dark
        if nuclear.sum() < min_pixels:
            return Stains(default.hematoxylin, default.dab, "fallback: too few nucleus pixels")
        h = _unit(od[nuclear].mean(axis=0))
        if use_dab:
            brown = conc[:, 1] > np.maximum(conc[:, 0], 0.1)
            if brown.sum() >= min_pixels:
                rest = od[brown] - np.outer(np.clip(conc[brown, 0], 0, None), h)
                d = _unit(rest.mean(axis=0))
    dev_h, dev_d = _angle_deg(h, default.hematoxylin), _angle_deg(d, default.dab)
    if max(dev_h, dev_d) > max_deviation_deg:
        return Stains(default.hematoxylin, default.dab,
                      f"fallback: estimate {max(dev_h, dev_d):.0f} deg from the defaults")
    what = "H and DAB" if use_dab else f"H only, DAB in {dab_frac:.1%} of pixels"
    return Stains(tuple(float(x) for x in h), tuple(float(x) for x in d), f"estimated ({what})")


def stains_for(pixels: np.ndarray, cfg, white: float = 255.0) -> Stains:
    """The stains a slide is analysed with: the configured vectors, or (``cfg.estimate``) an
    estimate from ``pixels`` (n, 3) guarded by the config's limits. ``cfg``: a StainConfig."""
    configured = Stains(tuple(cfg.hematoxylin), tuple(cfg.dab), "config")
    if not cfg.estimate:
        return configured
    return estimate_stains(pixels, configured, max_deviation_deg=cfg.max_deviation_deg,
                           min_dab_fraction=cfg.min_dab_fraction, white=white)


def dab_relief(dab: np.ndarray, mpp: float, disc_um: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(the thin part of the DAB OD image, its plateaus), both OD: the image is smoothed over 0.5 um,
    and a grey opening with a disc ``disc_um`` across (``filters.disc_opening``) keeps what is wider than
    any membrane (cytoplasm filled with DAB, a stained nucleus): the plateaus. What it removes, the
    smoothed image less its plateaus, is the thin part: the membranes.

    Examples
    --------
    >>> dab = np.zeros((40, 40), np.float32)
    >>> dab[:, 19:21] = 0.5                      # a membrane 1 um wide at 0.5 um/px
    >>> dab[2:16, 2:16] = 0.3                    # a brown nucleus 7 um across
    >>> thin, plateau = dab_relief(dab, 0.5)
    >>> bool(thin[30, 20] > 0.2), bool(abs(thin[9, 9]) < 0.01)
    (True, True)
    """
    smooth = cv2.GaussianBlur(dab, (0, 0), 0.5 / mpp)
    plateau = disc_opening(smooth, int(round(disc_um / 2 / mpp)))
    return smooth - plateau, plateau
