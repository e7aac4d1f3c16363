"""Tissue detection on a thumbnail and a grid of tissue tiles at the analysis resolution.

The grid is computed from the thumbnail alone; pixels are read one tile at a
time, so memory stays bounded whatever the slide size.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from skimage import morphology

from ..config import Settings, TilingConfig, TissueConfig
from ..errors import InputError, NoTissueError
from ..optics import optical_density
from .region import Region
from .slide import SlideImage


MAX_GRID_TILES = 250_000   # 160 cm^2 of 256-um tiles: far beyond a 25 x 75 mm slide
MIN_SIDE_UM = 10.0         # a smaller image cannot hold one whole cell


@dataclass(frozen=True)
class TissueMask:
    mask: np.ndarray   # bool (h, w), one pixel per ``mpp`` um
    mpp: float         # um/px of the mask
    blank: bool = False  # the image holds no structure at all (its optical density is flat)

    @property
    def fraction(self) -> float:
        return float(self.mask.mean())


@dataclass(frozen=True)
class Tile:
    """One analysis tile: position and size in level-0 px, size in px at the analysis mpp."""

    col: int
    row: int
    x: int
    y: int
    width0: int
    height0: int
    size: int            # px at the analysis mpp (square)
    tissue_fraction: float


@dataclass(frozen=True)
class TileGrid:
    tiles: list[Tile]
    mpp: float           # analysis um/px
    tile_um: float
    cols: int
    rows: int
    tissue: TissueMask
    outside_region: int = 0   # tissue tiles left out (never read) because they lie outside the scoring region

    def __len__(self) -> int:
        return len(self.tiles)


def detect_tissue(thumb: np.ndarray, mpp: float, cfg: TissueConfig = TissueConfig()) -> TissueMask:
    """Tissue mask of a thumbnail at ``mpp`` um/px.

    A pixel is tissue when its largest channel optical density exceeds that
    of the glass by ``cfg.min_od``; the glass level is the 1st percentile of
    the thumbnail (capped, so an all-tissue crop still works). Gaps are closed
    over ``cfg.smooth_um``, pieces smaller than ``cfg.min_island_um2`` (dust)
    are dropped; no opening, so thin tissue edges with tumour cells stay in.
    """
    od = optical_density(cv2.GaussianBlur(thumb, (0, 0), 1.0)).max(axis=2)
    glass = float(min(np.percentile(od, 1), 0.08))
    blank = float(np.percentile(od, 99.5)) - glass < cfg.min_od
    mask = od > glass + cfg.min_od
    r = int(round(cfg.smooth_um / mpp))
    if r >= 1:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, disk).astype(bool)
    min_px = int(cfg.min_island_um2 / mpp**2)
    if min_px > 1:
        mask = morphology.remove_small_objects(mask, max_size=min_px)
    mask = morphology.remove_small_holes(mask, max_size=min_px)
    return TissueMask(mask=mask, mpp=mpp, blank=blank)


PLAIN_THUMBNAIL_PX = 1024   # a plain image's thumbnail keeps about this many px per side


def tissue_mask(slide: SlideImage, settings: Settings = Settings()) -> TissueMask:
    """Detect tissue on a thumbnail of ``slide`` at ``settings.tiling.thumbnail_mpp``.

    A plain image (a snapshot, core or exported region) is small: its thumbnail
    keeps about ``PLAIN_THUMBNAIL_PX`` px per side (never finer than the analysis
    resolution), so that pale tissue is not averaged into glass (a 512-um field
    at 8 um/px is 64 px of flat colour).
    """
    thumb_mpp = max(settings.tiling.thumbnail_mpp, slide.mpp)
    if slide.plain:
        W, H = slide.dimensions
        fine = float(np.sqrt(W * H)) * slide.mpp / PLAIN_THUMBNAIL_PX
        thumb_mpp = max(slide.mpp, settings.tiling.analysis_mpp, min(thumb_mpp, fine))
    return detect_tissue(slide.thumbnail(thumb_mpp), thumb_mpp, settings.tissue)


def tile_grid(slide: SlideImage, settings: Settings = Settings(), tissue: TissueMask | None = None,
              require_tissue: bool = True, whole_image: bool = False, region: Region | None = None) -> TileGrid:
    """Square tiles of ``tile_um`` at ``analysis_mpp`` covering the tissue.

    With ``whole_image`` every tile is kept unless the image is blank (for
    snapshots, cores and regions of interest, where pale tissue may fill the
    frame and the thumbnail has no glass to compare with). With a ``region``
    only tiles that overlap it are kept (judged on the tissue mask's grid,
    grown by one mask pixel so that no tile the region touches is lost).

    Raises
    ------
    NoTissueError
        When no tile holds tissue and ``require_tissue`` is set.
    """
    cfg: TilingConfig = settings.tiling
    W, H = slide.dimensions
    if min(W, H) * slide.mpp < MIN_SIDE_UM:
        raise NoTissueError(f"no tissue found: the image is {W} x {H} px ({W * slide.mpp:.3g} x {H * slide.mpp:.3g} um), "
                            f"smaller than one cell", slide.path,
                            f"give an image of the tissue at least {MIN_SIDE_UM:g} um across (or check --mpp)")
    tissue = tissue or tissue_mask(slide, settings)
    step0 = cfg.tile_um / slide.mpp                 # level-0 px per tile
    size = int(round(cfg.tile_um / cfg.analysis_mpp))
    cols, rows = int(np.ceil(W / step0)), int(np.ceil(H / step0))
    if cols * rows > MAX_GRID_TILES:
        raise InputError(f"at {slide.mpp:g} um/px the image would be {W * slide.mpp / 1000:.3g} x "
                         f"{H * slide.mpp / 1000:.3g} mm ({cols * rows} tiles): larger than any glass slide",
                         slide.path, "the pixel size is probably wrong: check --mpp (or the file's metadata)")
    m = tissue.mask.astype(np.float32)
    k = slide.mpp / tissue.mpp                       # mask px per level-0 px
    inside = None
    if region is not None:
        r = cv2.dilate(region.raster(k).astype(np.uint8), np.ones((3, 3), np.uint8))
        inside = np.zeros(m.shape, np.uint8)
        hh, ww = min(r.shape[0], m.shape[0]), min(r.shape[1], m.shape[1])
        inside[:hh, :ww] = r[:hh, :ww]
    tiles, outside = [], 0
    for row in range(rows):
        for col in range(cols):
            x, y = int(round(col * step0)), int(round(row * step0))
            x1, y1 = int(round((col + 1) * step0)), int(round((row + 1) * step0))
            mx0, my0 = int(x * k), int(y * k)
            mx1, my1 = max(mx0 + 1, int(np.ceil(x1 * k))), max(my0 + 1, int(np.ceil(y1 * k)))
            patch = m[my0:my1, mx0:mx1]
            frac = float(patch.sum() / ((my1 - my0) * (mx1 - mx0))) if patch.size else 0.0
            if frac > cfg.min_tissue_fraction or whole_image:
                if inside is not None and not inside[my0:my1, mx0:mx1].any():
                    outside += 1
                    continue
                tiles.append(Tile(col, row, x, y, x1 - x, y1 - y, size, round(frac, 4)))
    if whole_image and tissue.blank:
        tiles = []
    if require_tissue and not tiles:
        if outside:
            raise NoTissueError(f"the scoring region ({region.source}) holds no tissue of the slide", slide.path,
                                "check that the region was drawn on this slide, in level-0 pixels")
        raise NoTissueError("no tissue found on the slide", slide.path,
                            "check that this is the stained slide; for very pale tissue lower "
                            "tissue.min_od in the config")
    return TileGrid(tiles, cfg.analysis_mpp, cfg.tile_um, cols, rows, tissue, outside)


def iter_tiles(slide: SlideImage, grid: TileGrid) -> Iterator[tuple[Tile, np.ndarray]]:
    """Yield (tile, RGB uint8 of ``tile.size`` px square at the analysis mpp), one at a time."""
    for tile in grid.tiles:
        yield tile, slide.read_at_mpp(tile.x, tile.y, tile.size, tile.size, grid.mpp)
