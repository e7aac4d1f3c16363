"""One tile end to end (stain -> focus -> cells -> membranes) and the slide aggregate.

Arrays and physical sizes in, plain results out: no files here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import IhcConfig
from ..guidelines import Guideline, ihc_decision
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
    cls: np.ndarray            # (n,) per-cell class (meaningful for tumour cells)
    completeness: np.ndarray
    intensity: np.ndarray
    cytoplasm: np.ndarray
    basolateral: np.ndarray
    outline: np.ndarray        # (n, OUTLINE_RAYS) cell boundary radius per direction, px
    nucleus_radius: np.ndarray  # (n,) px
    defocus_fraction: float
    noise_od: float
    no_dab: bool               # no membrane DAB anywhere in the tile

    def subset(self, keep: np.ndarray) -> "TileCells":
        return TileCells(self.xy[keep], self.tumour[keep], self.excluded[keep], self.cls[keep],
                         self.completeness[keep], self.intensity[keep], self.cytoplasm[keep],
                         self.basolateral[keep], self.outline[keep], self.nucleus_radius[keep],
                         self.defocus_fraction, self.noise_od, self.no_dab)


def analyze_tile(rgb: np.ndarray, mpp: float, stains: Stains, cfg: IhcConfig = IhcConfig(),
                 guideline: Guideline | None = None, white: float = 255.0) -> TileCells:
    """Segment and measure every cell of an RGB tile at ``mpp`` um/px."""
    h, dab = unmix(rgb, stains, white)
    tissue = h + np.maximum(dab, 0) > 0.02
    cells = segment_cells(h, mpp, cfg.nuclei, cfg.cells, cfg.tumour, tissue)
    gastric = bool(guideline and guideline.ihc.u_shaped_complete)
    calls = measure_membranes(dab, cells, mpp, cfg.membrane, gastric=gastric)
    n = len(cells)
    if stains.dab_absent:   # no brown chromogen on the slide: no membrane can be stained
        calls.cls[:] = "0"
        calls.completeness[:] = 0.0
        calls.intensity[:] = 0.0
        calls.basolateral[:] = False
    defocus = defocus_mask(h, mpp, cfg.focus) if cfg.focus.enabled else np.zeros(h.shape, bool)
    if n:
        xi = np.clip(cells.xy[:, 0].round().astype(int), 0, h.shape[1] - 1)
        yi = np.clip(cells.xy[:, 1].round().astype(int), 0, h.shape[0] - 1)
        excluded = defocus[yi, xi]
    else:
        excluded = np.zeros(0, bool)
    frac = float(defocus[tissue].mean()) if tissue.any() else 0.0
    step = max(1, cfg.membrane.rays // OUTLINE_RAYS)
    outline = calls.edge_px[:, ::step][:, :OUTLINE_RAYS] if n else np.zeros((0, OUTLINE_RAYS))
    return TileCells(cells.xy, cells.tumour, excluded, calls.cls, calls.completeness, calls.intensity,
                     calls.cytoplasm, calls.basolateral, outline, cells.radius_px, frac, calls.noise_od,
                     no_dab=bool(n == 0 or (calls.cls[cells.tumour] == "0").all()))


def core_cells(tc: TileCells, margin_px: float, size_px: float) -> TileCells:
    """Cells whose centre lies in the tile core (the margin is context for the neighbours)."""
    x, y = tc.xy[:, 0], tc.xy[:, 1]
    keep = (x >= margin_px) & (x < margin_px + size_px) & (y >= margin_px) & (y < margin_px + size_px)
    return tc.subset(keep)


def tile_score(classes, xy_um, guideline: Guideline) -> tuple[str | None, bool]:
    """(guideline score, near a cut-off) of one tile's tumour cells ((None, False) without any)."""
    if len(classes) == 0:
        return None, False
    d = ihc_decision(classes, xy_um, guideline)
    return d.score, d.near_cutoff
