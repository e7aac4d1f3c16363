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

import cv2
import numpy as np

from ..config import NucleiConfig
from ..segmentation import fill_holes, label_moments, relabel, split_touching


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


def detect_nuclei(h: np.ndarray, dab: np.ndarray, mpp: float, cfg: NucleiConfig = NucleiConfig(),
                  tissue: np.ndarray | None = None, noise: float = 0.0) -> Nuclei:
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

    Returns
    -------
    Nuclei
        Objects between ``min_area_um2`` and ``max_area_um2``.
    """
    tissue = np.ones(h.shape, bool) if tissue is None else tissue
    hs = cv2.GaussianBlur(h, (0, 0), 0.5 / mpp)
    background = local_median(hs, mpp, cfg.background_um)
    contrast = hs - background
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
