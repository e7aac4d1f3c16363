"""One tile end to end: unmixing, focus, cells and membrane measurements.

Two steps: ``segment_tile`` (stains, nuclei, cells, tumour) and
``measure_tile`` (membranes, nuclear DAB, focus), so that the membrane tests
can be chosen over many tiles segmented once (``benchmarks.tune_membrane``);
``analyze_tile`` runs both. Arrays and physical sizes in, measurements out: no
files and no decisions here (the pipeline hands the measurements to
``rules.ihc``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import IhcConfig
from .cells import Cells, membrane_map, segment_cells
from .focus import defocus_mask
from .membrane import measure_membranes
from .nuclei import detect_nuclei
from .stain import Stains, unmix
from .tumour import TumourFeatures, classify_tumour

OUTLINE_RAYS = 12   # vertices of the cell outline kept for QuPath export and overlays
TISSUE_OD = 0.02    # hematoxylin + DAB OD (smoothed over 1 um) above which a pixel is tissue


@dataclass
class TileCells:
    """Cells of one tile, coordinates in px of the tile image that was analysed."""

    xy: np.ndarray             # (n, 2) all detected nuclei
    tumour: np.ndarray         # (n,) bool
    excluded: np.ndarray       # (n,) bool: in out-of-focus tissue
    completeness: np.ndarray   # (n,) 0-1 fraction of the membrane stained
    intensity: np.ndarray      # (n,) membrane DAB OD above the cytoplasm
    cytoplasm: np.ndarray      # (n,) cytoplasm DAB OD
    nuclear_dab: np.ndarray    # (n,) DAB OD of the nucleus above the cytoplasm (0 for hidden nuclei)
    outline: np.ndarray        # (n, OUTLINE_RAYS, 2) cell boundary vertices relative to ``xy``, px
    nucleus_radius: np.ndarray  # (n,) px (0: the nucleus is hidden, the cell was found by its membrane)
    features: TumourFeatures   # what the tumour decision read, per cell
    defocus_fraction: float
    noise_od: float

    def subset(self, keep: np.ndarray) -> "TileCells":
        """The cells where ``keep`` holds (tile-wide figures unchanged)."""
        return TileCells(self.xy[keep], self.tumour[keep], self.excluded[keep], self.completeness[keep],
                         self.intensity[keep], self.cytoplasm[keep], self.nuclear_dab[keep], self.outline[keep],
                         self.nucleus_radius[keep], self.features.subset(keep), self.defocus_fraction, self.noise_od)


@dataclass
class TileSegmentation:
    """A tile's cells before their membranes are measured: what ``measure_tile`` reads."""

    dab: np.ndarray            # (H, W) DAB optical density
    dab_noise: float           # pixel noise of ``dab`` (``stain.Unmixed.dab_noise``)
    h: np.ndarray              # (H, W) hematoxylin optical density
    tissue: np.ndarray         # (H, W) bool
    cells: Cells
    tumour: np.ndarray         # (n,) bool
    features: TumourFeatures   # what the tumour decision read, per cell


def segment_tile(rgb: np.ndarray, mpp: float, stains: Stains, cfg: IhcConfig = IhcConfig(),
                 white: float = 255.0) -> TileSegmentation:
    """Unmix an RGB tile at ``mpp`` um/px, find its nuclei and cells and decide which are tumour.

    Parameters
    ----------
    rgb : (H, W, 3) uint8
        The tile with its margin (context for cells near the edge).
    mpp : float
        Pixel size, um/px.
    stains : Stains
        Hematoxylin and DAB vectors of the slide.
    cfg : IhcConfig
    white : float
        Intensity of empty glass (the I0 of Beer-Lambert).
    """
    u = unmix(rgb, stains, white)
    h, dab = u.h, u.dab
    tissue = cv2.GaussianBlur(h + np.maximum(dab, 0), (0, 0), 1.0 / mpp) > TISSUE_OD
    mem = membrane_map(dab, mpp, cfg.cells, tissue, u.noise, h)
    nuclei = detect_nuclei(h, dab, mpp, cfg.nuclei, tissue, u.noise, mem)
    cells = segment_cells(h, dab, mpp, nuclei, mem, tissue, cfg.cells)
    tumour, features = classify_tumour(cells, mem, mpp, cfg.tumour, h)
    return TileSegmentation(dab, u.dab_noise, h, tissue, cells, tumour, features)


def measure_tile(seg: TileSegmentation, mpp: float, cfg: IhcConfig = IhcConfig()) -> TileCells:
    """Membranes, nuclear DAB, focus and outlines of every cell of a segmented tile."""
    cells, h = seg.cells, seg.h
    m = measure_membranes(seg.dab, cells, mpp, cfg.membrane, pixel_noise=seg.dab_noise)
    n = len(cells)
    defocus = defocus_mask(h, mpp, cfg.focus) if cfg.focus.enabled else np.zeros(h.shape, bool)
    if n:
        xi = np.clip(cells.xy[:, 0].round().astype(int), 0, h.shape[1] - 1)
        yi = np.clip(cells.xy[:, 1].round().astype(int), 0, h.shape[0] - 1)
        excluded = defocus[yi, xi]
    else:
        excluded = np.zeros(0, bool)
    frac = float(defocus[seg.tissue].mean()) if seg.tissue.any() else 0.0
    step = max(1, cfg.membrane.rays // OUTLINE_RAYS)
    outline = (m.edge_xy[:, ::step][:, :OUTLINE_RAYS] - cells.xy[:, None, :]) if n else np.zeros((0, OUTLINE_RAYS, 2))
    nuclear = np.where(cells.nucleus >= 0, cells.nuclei.mean_dab[np.maximum(cells.nucleus, 0)] - m.cytoplasm, 0.0) \
        if n else np.zeros(0)
    return TileCells(cells.xy, seg.tumour, excluded, m.completeness, m.intensity, m.cytoplasm, nuclear, outline,
                     cells.radius_px, seg.features, frac, m.noise_od)


def analyze_tile(rgb: np.ndarray, mpp: float, stains: Stains, cfg: IhcConfig = IhcConfig(),
                 white: float = 255.0) -> TileCells:
    """Segment and measure every cell of an RGB tile at ``mpp`` um/px (``segment_tile``, then
    ``measure_tile``; the parameters are ``segment_tile``'s)."""
    return measure_tile(segment_tile(rgb, mpp, stains, cfg, white), mpp, cfg)


def core_cells(tc: TileCells, margin_px: float, size_px: float) -> TileCells:
    """Cells whose centre lies in the tile core (the margin is context for the neighbours)."""
    x, y = tc.xy[:, 0], tc.xy[:, 1]
    keep = (x >= margin_px) & (x < margin_px + size_px) & (y >= margin_px) & (y < margin_px + size_px)
    return tc.subset(keep)
