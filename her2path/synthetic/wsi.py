"""Synthetic whole slides: tissue islands on empty glass, written as Aperio-style SVS.

``make_sample_slide`` renders every island as an IHC field with exact
per-cell truth (a few megapixels; tests and the demo). ``make_large_slide``
tiles pre-rendered fields over island masks band by band, so slides of
hundreds of megapixels are written in bounded memory (benchmarks).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

from ..rules.ihc import IhcDecision, ihc_decision
from ..io.writers import write_aperio_pyramid
from .ihc import IhcFieldSpec, IhcTruth, render_ihc_field

GLASS_RGB = 244  # 250 * 10**-0.01: mounting medium over glass, as rendered in fields
MASK_GRID_UM = 16.0


@dataclass
class SlideTruth:
    path: Path
    mpp: float
    width: int                 # level-0 px
    height: int
    tissue_mask: np.ndarray    # bool, one pixel per MASK_GRID_UM
    cells: IhcTruth | None     # tumour cells in level-0 px (None for stamped slides)
    decision: IhcDecision | None


def island_mask(rng: np.random.Generator, width_um: float, height_um: float, n_islands: int,
                fill: float = 0.7) -> np.ndarray:
    """Irregular tissue islands on a grid of MASK_GRID_UM um/px, separated by glass.

    The slide is cut into ``n_islands`` cells of a grid; each holds one blob
    covering about ``fill`` of its cell, so islands never touch.
    """
    gh, gw = int(np.ceil(height_um / MASK_GRID_UM)), int(np.ceil(width_um / MASK_GRID_UM))
    cols = int(np.ceil(np.sqrt(n_islands * width_um / height_um)))
    rows = int(np.ceil(n_islands / cols))
    mask = np.zeros((gh, gw), bool)
    yy, xx = np.mgrid[0:gh, 0:gw]
    noise = ndi.gaussian_filter(rng.normal(size=(gh, gw)), 3.0)
    noise /= noise.std() + 1e-9
    for k in range(n_islands):
        r, c = divmod(k, cols)
        cy, cx = (r + 0.5) * gh / rows, (c + 0.5) * gw / cols
        ry, rx = 0.5 * gh / rows * fill * rng.uniform(0.8, 1.0), 0.5 * gw / cols * fill * rng.uniform(0.8, 1.0)
        d = np.hypot((yy - cy) / ry, (xx - cx) / rx)
        mask |= d + 0.18 * noise < 1.0
    return mask


def _downsampling_renderer(canvas: np.ndarray):
    """Renderer over an in-memory level-0 canvas: area-averaged reads of any level."""
    def render(ds, x, y, w, h):
        region = canvas[y * ds:(y + h) * ds, x * ds:(x + w) * ds]
        if ds == 1:
            return region
        out = cv2.resize(region, (region.shape[1] // ds, region.shape[0] // ds), interpolation=cv2.INTER_AREA)
        pad = np.full((h, w, 3), GLASS_RGB, np.uint8)
        pad[:out.shape[0], :out.shape[1]] = out[:h, :w]
        return pad
    return render


def make_sample_slide(path: str | Path, mpp: float = 0.5, width_um: float = 2048.0,
                      height_um: float = 1536.0, n_islands: int = 3, seed: int = 0,
                      percent: dict | None = None, guideline: str = "breast",
                      **field_overrides) -> SlideTruth:
    """Write a small pyramidal SVS of IHC tissue islands with per-cell truth.

    Parameters
    ----------
    mpp : float
        Level-0 pixel size, um/px.
    width_um, height_um : float
        Slide area, um.
    percent : dict, optional
        Percent of tumour cells per class over the whole slide.
    field_overrides
        Passed to ``IhcFieldSpec`` (stains, jpeg_quality, artefacts...).
    """
    rng = np.random.default_rng(seed)
    mask = island_mask(rng, width_um, height_um, n_islands)
    W, H = int(round(width_um / mpp)), int(round(height_um / mpp))
    canvas = np.full((H, W, 3), GLASS_RGB, np.uint8)
    lab, n = ndi.label(mask)
    parts = []
    spec0 = IhcFieldSpec(mpp=mpp, guideline=guideline, **field_overrides)
    if percent is not None:
        spec0 = replace(spec0, percent=percent)
    for i, sl in enumerate(ndi.find_objects(lab)):
        y0, x0 = sl[0].start * MASK_GRID_UM, sl[1].start * MASK_GRID_UM
        hh = (sl[0].stop - sl[0].start) * MASK_GRID_UM
        ww = (sl[1].stop - sl[1].start) * MASK_GRID_UM
        spec = replace(spec0, width_um=min(ww, width_um - x0), height_um=min(hh, height_um - y0),
                       seed=seed * 1000 + i + 1, tissue_mask=lab[sl] == i + 1)
        f = render_ihc_field(spec)
        px, py = int(round(x0 / mpp)), int(round(y0 / mpp))
        h, w = f.rgb.shape[:2]
        h, w = min(h, H - py), min(w, W - px)
        canvas[py:py + h, px:px + w] = f.rgb[:h, :w]
        t = f.truth
        parts.append((t, np.array([px, py]), np.array([x0, y0])))
    cells = IhcTruth(
        xy_px=np.concatenate([t.xy_px + o for t, o, _ in parts]),
        xy_um=np.concatenate([t.xy_um + o for t, _, o in parts]),
        cls=np.concatenate([t.cls for t, _, _ in parts]),
        completeness=np.concatenate([t.completeness for t, _, _ in parts]),
        intensity=np.concatenate([t.intensity for t, _, _ in parts]),
        pattern=np.concatenate([t.pattern for t, _, _ in parts]),
        stroma_xy_px=np.concatenate([t.stroma_xy_px + o for t, o, _ in parts]),
        stroma_kind=np.concatenate([t.stroma_kind for t, _, _ in parts]),
    )
    path = write_aperio_pyramid(path, W, H, mpp, _downsampling_renderer(canvas), levels=3)
    return SlideTruth(path=Path(path), mpp=mpp, width=W, height=H, tissue_mask=mask, cells=cells,
                      decision=ihc_decision(cells.cls, cells.xy_um, guideline))


def make_large_slide(path: str | Path, width_px: int, height_px: int, mpp: float = 0.25,
                     n_islands: int = 6, seed: int = 0, n_patches: int = 6,
                     patch_px: int = 1024) -> SlideTruth:
    """Write a large pyramidal SVS by stamping pre-rendered IHC fields over island masks.

    Only ``n_patches`` fields and one band of the slide are ever in memory.
    """
    rng = np.random.default_rng(seed)
    width_um, height_um = width_px * mpp, height_px * mpp
    mask = island_mask(rng, width_um, height_um, n_islands, fill=0.8)
    scores = ["0", "1+", "2+", "3+"]
    from .ihc import preset

    patches = [render_ihc_field(preset(scores[k % 4], seed=seed * 100 + k, mpp=mpp,
                                       width_um=patch_px * mpp, height_um=patch_px * mpp,
                                       tumour_area=0.6)).rgb
               for k in range(n_patches)]
    pyramid = {1: patches}
    choice = rng.integers(0, n_patches, size=(height_px // patch_px + 1, width_px // patch_px + 1))
    mask_f = mask.astype(np.float32)

    def render(ds, x, y, w, h):
        if ds not in pyramid:
            pyramid[ds] = [cv2.resize(p, (patch_px // ds, patch_px // ds), interpolation=cv2.INTER_AREA)
                           for p in patches]
        pl = patch_px // ds
        out = np.empty((h, w, 3), np.uint8)
        for j in range(y // pl, (y + h - 1) // pl + 1):
            for i in range(x // pl, (x + w - 1) // pl + 1):
                ys, xs = max(y, j * pl), max(x, i * pl)
                ye, xe = min(y + h, (j + 1) * pl), min(x + w, (i + 1) * pl)
                p = pyramid[ds][choice[j, i]]
                out[ys - y:ye - y, xs - x:xe - x] = p[ys - j * pl:ye - j * pl, xs - i * pl:xe - i * pl]
        # Tissue where the island mask (sampled at this level) says so; glass elsewhere.
        scale = ds * mpp / MASK_GRID_UM
        my = (np.arange(y, y + h) + 0.5) * scale - 0.5
        mx = (np.arange(x, x + w) + 0.5) * scale - 0.5
        tissue = ndi.map_coordinates(mask_f, np.meshgrid(my, mx, indexing="ij"), order=1, mode="constant") > 0.5
        out[~tissue] = GLASS_RGB
        return out

    write_aperio_pyramid(path, width_px, height_px, mpp, render, levels=4, band_px=1024)
    return SlideTruth(path=Path(path), mpp=mpp, width=width_px, height=height_px,
                      tissue_mask=mask, cells=None, decision=None)
