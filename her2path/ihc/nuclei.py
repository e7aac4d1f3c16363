"""Nuclei on the hematoxylin image by local contrast, with the features that tell cell types apart.

A pixel belongs to a nucleus when its hematoxylin optical density stands above
the local background by ``min_contrast_od``, or by ``noise_factor`` times the
image's noise when that is larger (JPEG). The background is the median over a
window ``background_um`` wide: in a dense cluster of nuclei it is still the
cytoplasm between them (nuclei cover less than half of such a window), and in
the fibre texture of stroma and smooth muscle it is the texture's middle, so
texture rises little above it; structures narrower than ``min_width_um``
(fibres) are dropped, and each nucleus is cut at ``peak_share`` of its peak contrast. A local, not a global, threshold:
pale vesicular nuclei in pale cytoplasm are found, while the fibre texture of
stroma and smooth muscle, with little contrast at nuclear scale, is not.
Touching nuclei are split at the saddles of their distance transform.

Dark DAB leaks into the hematoxylin image. A thin membrane of OD 1-1.6,
blurred by the optics in transmitted light (a 20x scan), is not a linear
mixture any more: its blue channel saturates first, so its optical density
looks partly like hematoxylin, and every intense membrane shows as a faint
blue ridge in the hematoxylin image (the generator's 20x fields; on the
real 3+ core of ``benchmarks.real_ihc``, a 40x JPEG, it is measured at a
median 0.23 of the thin DAB per tile). The detector took those ridges for
nuclei lining each 3+ membrane, and the cells grown from them were slivers
along the membrane that read unstained. Given the tile's membranes, the
share of the thin part of the DAB image (what a grey opening 3 um across
removes: membranes, not cytoplasm or nuclei) that shows in the hematoxylin
image there (``dab_crosstalk``) is taken off the hematoxylin contrast before
nuclei are sought. Only the thin part: a nucleus stained by a nuclear
marker (Ki67, ER, PR) is wider than the opening and keeps its contrast, so
nuclear DAB is still found and refused, and a nucleus in brown cytoplasm
holds less DAB than its surroundings anyway.

Examples
--------
>>> import numpy as np
>>> h = np.full((80, 80), 0.05, np.float32)
>>> yy, xx = np.mgrid[:80, :80]
>>> h[(yy - 40) ** 2 + (xx - 30) ** 2 < 36] = 0.25      # a nucleus of 6 px radius (3 um at 0.5 um/px)
>>> nu = detect_nuclei(h, np.zeros_like(h), 0.5)
>>> len(nu), nu.xy.round().tolist()
(1, [[30.0, 40.0]])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..config import NucleiConfig
from ..segmentation import fill_holes, label_moments, relabel, split_touching

if TYPE_CHECKING:                   # cells.py imports this module
    from .cells import MembraneMap


@dataclass
class Nuclei:
    """Nuclei of one image; per-nucleus arrays share the index ``label - 1``."""

    labels: np.ndarray        # (H, W) int32, 0 = no nucleus
    xy: np.ndarray            # (n, 2) centroid x, y, px
    area_um2: np.ndarray      # (n,)
    axis_ratio: np.ndarray    # (n,) major / minor axis
    contrast: np.ndarray      # (n,) mean hematoxylin OD above the local tissue mean
    mean_h: np.ndarray        # (n,) mean hematoxylin OD
    mean_dab: np.ndarray      # (n,) mean DAB OD inside the nucleus (nuclear stains: Ki67, ER, PR)

    def __len__(self) -> int:
        return len(self.xy)

    def subset(self, keep: np.ndarray) -> "Nuclei":
        """The nuclei where ``keep`` holds, relabelled 1..k."""
        return Nuclei(relabel(self.labels, keep), self.xy[keep], self.area_um2[keep], self.axis_ratio[keep],
                      self.contrast[keep], self.mean_h[keep], self.mean_dab[keep])


def local_median(img: np.ndarray, mpp: float, window_um: float, step_um: float = 1.0) -> np.ndarray:
    """Median of ``img`` (an OD image, 0-2) over a square window ``window_um`` wide, at full size.

    Computed on a 1-um grid with OpenCV's histogram median (uint8 steps of 1/128 OD) and brought
    back with bilinear interpolation: cheap for windows of tens of micrometres.
    """
    k = max(1, int(round(step_um / mpp)))
    small = cv2.resize(img, (max(1, img.shape[1] // k), max(1, img.shape[0] // k)), interpolation=cv2.INTER_AREA)
    q = np.clip(small * 128, 0, 255).astype(np.uint8)
    size = max(3, int(round(window_um / step_um)) | 1)
    med = cv2.medianBlur(q, size).astype(np.float32) / 128
    return cv2.resize(med, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)


def dab_crosstalk(h_contrast: np.ndarray, thin_dab: np.ndarray, membranes: np.ndarray, mpp: float,
                  cfg: NucleiConfig = NucleiConfig()) -> float:
    """The share of thin DAB (membrane-wide structure, OD) that shows as hematoxylin contrast (OD above
    the local background) on the tile's intense membranes, where there is no hematoxylin: the median
    ratio over membrane pixels with at least ``crosstalk_min_dab_od`` of thin DAB, kept within 0 and
    ``crosstalk_max``; 0 where such membranes cover less than ``crosstalk_min_um2`` (um^2).

    Examples
    --------
    >>> thin = np.zeros((40, 40), np.float32); thin[:, 20] = 0.5     # one intense membrane
    >>> hc = 0.15 * thin                                               # ... leaking 15% into hematoxylin
    >>> round(dab_crosstalk(hc, thin, thin > 0, 0.5, NucleiConfig(crosstalk_min_um2=5.0)), 3)
    0.15
    >>> dab_crosstalk(hc, thin, thin > 0, 0.5)                         # too little membrane to tell
    0.0
    """
    strong = membranes & (thin_dab >= cfg.crosstalk_min_dab_od)
    if strong.sum() * mpp * mpp < cfg.crosstalk_min_um2:
        return 0.0
    return float(np.clip(np.median(h_contrast[strong] / thin_dab[strong]), 0.0, cfg.crosstalk_max))


def detect_nuclei(h: np.ndarray, dab: np.ndarray, mpp: float, cfg: NucleiConfig = NucleiConfig(),
                  tissue: np.ndarray | None = None, noise: float = 0.0,
                  membranes: MembraneMap | None = None) -> Nuclei:
    """Nuclei of a hematoxylin OD image at ``mpp`` um/px.

    Parameters
    ----------
    h, dab : (H, W) float32
        Hematoxylin and DAB optical densities (``stain.unmix``).
    mpp : float
        Pixel size, um/px.
    cfg : NucleiConfig
        ``background_um``, ``min_contrast_od``, ``noise_factor``, size limits
        (um^2) and ``split_distance_um``.
    tissue : (H, W) bool, optional
        Where there is tissue; nuclei are sought there only.
    noise : float
        Pixel noise of the OD images (``stain.unmix``).
    membranes : MembraneMap, optional
        The tile's membranes (``cells.membrane_map``): the thin DAB that leaks into the
        hematoxylin image is measured on them and taken off (``dab_crosstalk``).

    Returns
    -------
    Nuclei
        Objects between ``min_area_um2`` and ``max_area_um2``.
    """
    tissue = np.ones(h.shape, bool) if tissue is None else tissue
    hs = cv2.GaussianBlur(h, (0, 0), 0.5 / mpp)
    background = local_median(hs, mpp, cfg.background_um)
    contrast = hs - background
    if membranes is not None:
        thin = membranes.relief[0]
        leak = dab_crosstalk(contrast, thin, membranes.mask & tissue, mpp, cfg)
        if leak > 0:
            contrast = contrast - leak * thin
    threshold = max(cfg.min_contrast_od, cfg.noise_factor * noise)
    mask = (contrast > threshold) & tissue
    # Nuclei are at least min_width_um across; fibres of stroma and muscle, and their texture, are not.
    w = max(3, 2 * int(round(cfg.min_width_um / 2 / mpp)) + 1)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (w, w)))
    mask = fill_holes(mask)     # vesicular nuclei: a dark rim around a paler inside
    labels = split_touching(mask, mpp, cfg.split_distance_um)
    n = int(labels.max())
    # Each nucleus cut at a share of its peak: a dark nucleus's blurred halo stays above the detection
    # threshold and would inflate it (a lymphocyte would look as large as a tumour nucleus). A pale
    # vesicular nucleus, whose peak is a nucleolus, keeps its body.
    peak = np.zeros(n + 1, np.float32)
    np.maximum.at(peak, labels.ravel(), contrast.ravel())
    labels = np.where(contrast >= cfg.peak_share * peak[labels], labels, 0).astype(np.int32)
    area, xy, ratio, mean_h, mean_c, mean_d = label_moments(labels, n, h, contrast, dab)
    area_um2 = area * mpp * mpp
    nu = Nuclei(labels, xy, area_um2, ratio, mean_c, mean_h, mean_d)
    return nu.subset((area_um2 >= cfg.min_area_um2) & (area_um2 <= cfg.max_area_um2))
