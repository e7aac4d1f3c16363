"""Picture outputs derived from results: overviews, heatmaps and overlays (PNG)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..io.slide import SlideImage
from ..io.tiling import TileGrid
from ..io.writers import write_image


def tile_overview(slide: SlideImage, grid: TileGrid, path: str | Path, max_px: int = 1600) -> Path:
    """Thumbnail with the tissue outline (green) and the analysed tiles (blue boxes)."""
    W, H = slide.dimensions
    mpp = max(slide.mpp * max(W, H) / max_px, slide.mpp)
    thumb = slide.thumbnail(mpp).copy()
    k = slide.mpp / mpp   # thumbnail px per level-0 px
    mask = cv2.resize(grid.tissue.mask.astype(np.uint8), (thumb.shape[1], thumb.shape[0]),
                      interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(thumb, contours, -1, (0, 160, 0), 2)
    for t in grid.tiles:
        p0 = (int(t.x * k), int(t.y * k))
        p1 = (int((t.x + t.width0) * k) - 1, int((t.y + t.height0) * k) - 1)
        cv2.rectangle(thumb, p0, p1, (40, 90, 220), 1)
    return write_image(path, thumb)
