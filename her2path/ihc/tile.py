"""One tile end to end: unmixing, focus, cells and membrane measurements.

Arrays and physical sizes in, measurements out: no files and no decisions
here (the pipeline hands the measurements to ``rules.ihc``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import IhcConfig
from .cells import segment_cells
from .focus import defocus_mask
from .membrane import measure_membranes
from .stain import Stains, unmix

OUTLINE_RAYS = 12   # vertices of the cell outline kept for QuPath export and overlays


@dataclass
class TileCells:
    """Cells of one tile, coordinates in px of the tile image that was analysed."""

    xy: np.ndarray             # (n, 2) all detected nuclei
    tumour: np.ndarray         # (n,) bool
    excluded: np.ndarray       # (n,) bool: in out-of-focus tissue
    completeness: np.ndarray   # (n,) 0-1 fraction of the membrane stained
    intensity: np.ndarray      # (n,) membrane DAB OD above the cytoplasm
    cytoplasm: np.ndarray      # (n,) cytoplasm DAB OD
    outline: np.ndarray        # (n, OUTLINE_RAYS) cell boundary radius per direction, px
    nucleus_radius: np.ndarray  # (n,) px
    defocus_fraction: float
    noise_od: float

    def subset(self, keep: np.ndarray) -> "TileCells":
        """The cells where ``keep`` holds (tile-wide figures unchanged)."""
        return TileCells(self.xy[keep], self.tumour[keep], self.excluded[keep], self.completeness[keep],
                         self.intensity[keep], self.cytoplasm[keep], self.outline[keep], self.nucleus_radius[keep],
                         self.defocus_fraction, self.noise_od)


def analyze_tile(rgb: np.ndarray, mpp: float, stains: Stains, cfg: IhcConfig = IhcConfig(),
                 white: float = 255.0) -> TileCells:
    """Segment and measure every cell of an RGB tile at ``mpp`` um/px.

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

    Returns
    -------
    TileCells
    """
    h, dab = unmix(rgb, stains, white)
    tissue = h + np.maximum(dab, 0) > 0.02
    cells = segment_cells(h, mpp, cfg.nuclei, cfg.cells, cfg.tumour, tissue)
    m = measure_membranes(dab, cells, mpp, cfg.membrane)
    n = len(cells)
    defocus = defocus_mask(h, mpp, cfg.focus) if cfg.focus.enabled else np.zeros(h.shape, bool)
    if n:
        xi = np.clip(cells.xy[:, 0].round().astype(int), 0, h.shape[1] - 1)
        yi = np.clip(cells.xy[:, 1].round().astype(int), 0, h.shape[0] - 1)
        excluded = defocus[yi, xi]
    else:
        excluded = np.zeros(0, bool)
    frac = float(defocus[tissue].mean()) if tissue.any() else 0.0
    step = max(1, cfg.membrane.rays // OUTLINE_RAYS)
    outline = m.edge_px[:, ::step][:, :OUTLINE_RAYS] if n else np.zeros((0, OUTLINE_RAYS))
    return TileCells(cells.xy, cells.tumour, excluded, m.completeness, m.intensity, m.cytoplasm, outline,
                     cells.radius_px, frac, m.noise_od)


def core_cells(tc: TileCells, margin_px: float, size_px: float) -> TileCells:
    """Cells whose centre lies in the tile core (the margin is context for the neighbours)."""
    x, y = tc.xy[:, 0], tc.xy[:, 1]
    keep = (x >= margin_px) & (x < margin_px + size_px) & (y >= margin_px) & (y < margin_px + size_px)
    return tc.subset(keep)
