"""Tissue detection and the tile grid."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from her2path.config import Settings
from her2path.errors import NoTissueError
from her2path.io import open_image
from her2path.io.slide import ArrayImage
from her2path.io.tiling import iter_tiles, tile_grid, tissue_mask


def test_tissue_mask_matches_generator_islands(sample_slide):
    with open_image(sample_slide.path) as img:
        tm = tissue_mask(img)
    truth = cv2.resize(sample_slide.tissue_mask.astype(np.uint8), tm.mask.shape[::-1],
                       interpolation=cv2.INTER_NEAREST).astype(bool)
    iou = (truth & tm.mask).sum() / (truth | tm.mask).sum()
    assert iou > 0.85


def test_tiles_cover_every_tumour_cell_and_skip_glass(sample_slide):
    with open_image(sample_slide.path) as img:
        grid = tile_grid(img)
    assert 0 < len(grid) < grid.cols * grid.rows      # glass-only tiles are skipped
    covered = np.zeros(len(sample_slide.cells.xy_px), bool)
    for t in grid.tiles:
        x, y = sample_slide.cells.xy_px.T
        covered |= (x >= t.x) & (x < t.x + t.width0) & (y >= t.y) & (y < t.y + t.height0)
    assert covered.all()


def test_tiles_are_read_at_the_analysis_mpp(sample_slide, fine_slide):
    sizes = {}
    for st in (sample_slide, fine_slide):
        with open_image(st.path) as img:
            grid = tile_grid(img)
            tile, rgb = next(iter_tiles(img, grid))
            assert rgb.shape == (512, 512, 3) and tile.size == 512
            assert tile.width0 == round(256 / st.mpp)
            sizes[st.mpp] = len(grid)
    assert abs(sizes[0.5] - sizes[0.25]) <= 2               # same tissue, same grid


def test_blank_glass_has_no_tissue():
    glass = ArrayImage(np.full((2000, 2000, 3), 244, np.uint8), mpp=0.5)
    with pytest.raises(NoTissueError, match="no tissue"):
        tile_grid(glass)


def test_tile_size_follows_config():
    s = Settings.model_validate({"tiling": {"tile_um": 128, "analysis_mpp": 1.0}})
    img = ArrayImage(np.random.default_rng(0).integers(60, 200, (800, 800, 3)).astype(np.uint8), mpp=0.5)
    grid = tile_grid(img, s)
    assert grid.tiles[0].size == 128 and grid.tiles[0].width0 == 256
    assert len(grid) == 16


def test_tumour_cells_lie_inside_the_tissue_mask(sample_slide):
    with open_image(sample_slide.path) as img:
        tm = tissue_mask(img)
    k = sample_slide.mpp / tm.mpp
    x, y = (sample_slide.cells.xy_px * k).astype(int).T
    inside = tm.mask[np.clip(y, 0, tm.mask.shape[0] - 1), np.clip(x, 0, tm.mask.shape[1] - 1)]
    assert inside.mean() > 0.995


def test_a_pale_plain_field_is_tissue_not_glass(tmp_path):
    from her2path.io.slide import open_image
    from her2path.io.tiling import tissue_mask
    from her2path.io.writers import write_image
    from her2path.synthetic.tissue import random_spec, render_tissue

    spec = random_spec(100021, width_um=512.0, height_um=512.0)   # pale signet-ring field: flat at 8 um/px
    f = render_tissue(spec)
    mask = tissue_mask(open_image(write_image(tmp_path / "pale.png", f.rgb, spec.mpp)))
    assert not mask.blank and mask.fraction > 0.3 and mask.mask.shape[0] >= 512
