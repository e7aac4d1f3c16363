"""``score_ihc``: an IHC slide or image end to end, tile by tile in worker processes."""
from __future__ import annotations

import math
import multiprocessing as mp
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._version import SOFTWARE
from ..config import Settings, TileModelConfig, load_settings
from ..errors import InputError
from ..ihc.stain import Stains, stains_for
from ..ihc.tile import OUTLINE_RAYS, TileCells, analyze_tile, core_cells
from ..io.region import Region, load_region
from ..io.slide import ArrayImage, SlideImage, open_image
from ..io.tiling import Tile, TileGrid, tile_grid
from ..progress import Progress, reporting
from ..provenance import array_sha256, digest_files, digest_model, file_sha256
from ..rules.flags import ihc_warnings, model_compared, near_cutoff_reason, tile_flagged
from ..rules.ihc import cell_classes, ihc_decision, stain_pattern, tile_score
from ..rules.tables import Guideline, load_guideline
from ..schema import CLASSES, CellTable, IhcResult, Provenance, RegionInfo, ScanInfo, StainInfo, TileResult
from .workers import limit_threads, single_threaded_children


def glass_white(slide: SlideImage, grid: TileGrid) -> np.ndarray:
    """Per-channel intensity of empty glass (the I0 of Beer-Lambert); 255 when no glass is seen."""
    thumb = slide.thumbnail(grid.tissue.mpp)
    mask = grid.tissue.mask
    if mask.shape != thumb.shape[:2]:
        import cv2

        mask = cv2.resize(mask.astype(np.uint8), thumb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    glass = thumb[~mask]
    if len(glass) < 0.05 * mask.size:
        return np.full(3, 255.0, np.float32)
    return np.clip(np.median(glass, axis=0), 200, 255).astype(np.float32)


def tile_margin_px(settings: Settings, mpp: float) -> int:
    """Context read around every tile (``ihc.cells.margin_um``), in px at ``mpp`` um/px."""
    return int(round(settings.ihc.cells.margin_um / mpp))


def read_with_margin(slide: SlideImage, tile: Tile, mpp: float, margin_px: int) -> np.ndarray:
    """The RGB pixels of ``tile`` at ``mpp`` um/px with ``margin_px`` px of context on every side
    (so that cells near the tile's edge see their neighbours)."""
    k = mpp / slide.mpp                       # level-0 px per analysis px
    m0 = int(round(margin_px * k))
    return slide.read_at_mpp(tile.x - m0, tile.y - m0, tile.size + 2 * margin_px,
                             tile.size + 2 * margin_px, mpp)


def choose_stains(slide: SlideImage, grid: TileGrid, settings: Settings, white) -> Stains:
    """Stains of the slide, estimated from up to 12 tiles spread over the tissue (every 3rd pixel)."""
    if not settings.ihc.stains.estimate:
        return stains_for(np.zeros((0, 3)), settings.ihc.stains)
    picks = np.unique(np.linspace(0, len(grid.tiles) - 1, min(12, len(grid.tiles))).round().astype(int))
    pixels = [slide.read_at_mpp(t.x, t.y, t.size, t.size, grid.mpp)[::3, ::3].reshape(-1, 3)
              for t in (grid.tiles[i] for i in picks)]
    return stains_for(np.concatenate(pixels), settings.ihc.stains, float(np.mean(white)))


# -- worker side --------------------------------------------------------------------
_W: dict = {}


def _prepare_worker(settings: Settings, single_thread: bool) -> None:
    """What a worker needs whatever the slide: its thread limit, the analysis imported, the tile model."""
    if single_thread:   # one thread per worker process: no oversubscription of the cores
        limit_threads(torch_too=settings.tile_model.enabled)
    _W.update(settings=settings, model=None)
    if settings.tile_model.enabled:
        from ..classify.model import load_model

        _W["model"] = load_model(settings.tile_model.weights)[0]


def _use_slide(source, mpp, grid, stains, white) -> None:
    """The slide this worker analyses tiles of (a file is reopened by path; an image array comes whole)."""
    slide = source if isinstance(source, SlideImage) else open_image(source, mpp=mpp, force_mpp=True)
    _W.update(slide=slide, grid=grid, stains=stains, white=white)


def _init_worker(settings, slides, single_thread):
    """Pool initializer: prepare at once, then wait for the slide (one ``slides`` entry per worker).

    A failure here (an unreadable model file, a slide that will not open) is
    kept and raised by this worker's first tile, so that it reaches the main
    process as that tile's error instead of a pool that restarts the worker forever.
    """
    try:
        _prepare_worker(settings, single_thread)
    except Exception as e:
        _W["error"] = e
    context = slides.get()
    try:
        _use_slide(*context)
    except Exception as e:
        _W.setdefault("error", e)


class TileWorkers:
    """Worker processes for the tiles of one slide, started before its tissue and stains are known.

    Spawned (not forked): a fork after OpenCV has started its thread pool can
    deadlock, and an OpenSlide handle must not be shared across processes.
    They start, import the analysis and load the tile model (about 1.5 s)
    while the main process finds the tissue and estimates the stains; then
    ``start`` hands each of them the slide. Closed (terminated) on exit.
    """

    def __init__(self, settings: Settings, workers: int):
        ctx = mp.get_context("spawn")
        self.workers = workers
        self.slides = ctx.Queue()
        with single_threaded_children():
            self.pool = ctx.Pool(workers, initializer=_init_worker, initargs=(settings, self.slides, True))

    def start(self, source, mpp, grid, stains, white):
        """Hand every worker the slide and return the iterator of finished tiles (in order)."""
        for _ in range(self.workers):
            self.slides.put((source, mpp, grid, stains, white))
        return self.pool.imap(_tile_job, range(len(grid.tiles)), chunksize=1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.terminate()
        self.pool.join()
        # A worker stopped before it took its slide leaves it in the queue; the queue's feeder thread
        # would wait at exit for a reader that is gone (an image array does not fit the pipe).
        self.slides.cancel_join_thread()
        self.slides.close()


def tile_workers(slide: SlideImage, settings: Settings, workers: int):
    """``TileWorkers`` when the slide can hold more than two tiles and ``workers`` > 1, else a null context
    (the tiles are analysed in this process)."""
    w, h = slide.dimensions
    per_tile = settings.tiling.tile_um / slide.mpp
    at_most = math.ceil(w / per_tile) * math.ceil(h / per_tile)
    return TileWorkers(settings, workers) if workers > 1 and at_most > 2 else nullcontext()


def _tile_job(index: int) -> tuple[int, TileCells, tuple[np.ndarray | None, bool]]:
    """Cells of one tile and, when the tile model is on, its class probabilities for the tile core and
    whether it abstained."""
    if "error" in _W:
        raise _W["error"]
    slide, grid, settings = _W["slide"], _W["grid"], _W["settings"]
    tile = grid.tiles[index]
    margin = tile_margin_px(settings, grid.mpp)
    rgb = read_with_margin(slide, tile, grid.mpp, margin)
    white = float(np.mean(_W["white"]))
    tc = core_cells(analyze_tile(rgb, grid.mpp, _W["stains"], settings.ihc, white), margin, tile.size)
    probs = (None, False)
    # The model's vote is compared only on tiles with enough tumour cells and tissue (``assemble``): it runs
    # there only.
    if _W["model"] is not None and _compared(int((tc.tumour & ~tc.excluded).sum()), tile, settings.tile_model):
        from ..classify.model import tile_probabilities

        core = rgb[margin:margin + tile.size, margin:margin + tile.size]
        probs = tile_probabilities(_W["model"], core, grid.mpp, settings.tile_model.min_tissue_fraction, white)
    return index, tc, probs


def _run_tiles(source, slide: SlideImage, grid: TileGrid, stains, settings, white, pool: TileWorkers | None,
               progress: Progress):
    n = len(grid.tiles)
    progress.stage("tiles", n)
    results: list[tuple[TileCells, np.ndarray | None] | None] = [None] * n
    try:
        if pool is None:
            _prepare_worker(settings, single_thread=False)
            _use_slide(slide, slide.mpp_or_none, grid, stains, white)
            jobs = map(_tile_job, range(n))
        else:
            # files are reopened by path in each worker; a caller's array is sent
            jobs = pool.start(source if source else slide, slide.mpp_or_none, grid, stains, white)
        for done, (index, tc, probs) in enumerate(jobs, 1):
            results[index] = (tc, probs)
            progress.advance(done)
    finally:
        _W.clear()
    return results


MAX_UPSAMPLE = 4.0   # a scan coarser than this times the analysis mpp cannot show membranes


def check_resolution(slide: SlideImage, settings: Settings) -> None:
    """Refuse scans too coarse to show membranes (InputError with the fix)."""
    limit = MAX_UPSAMPLE * settings.tiling.analysis_mpp
    if slide.mpp > limit:
        raise InputError(f"a scan at {slide.mpp:g} um/px is too coarse to see membranes (needs {limit:g} um/px "
                         f"or finer)", slide.path,
                         "rescan at 20x (0.5 um/px) or 40x (0.25 um/px), or check --mpp")


def score_ihc(image, mpp: float | None = None, guideline: str | Guideline = "breast",
              settings: Settings | None = None, workers: int | None = None,
              progress=False, force_mpp: bool = False, roi=None) -> IhcResult:
    """Score an IHC slide or image: ``measure_ihc``, then ``assemble`` under the guideline.

    Parameters
    ----------
    image : str, Path, SlideImage or (H, W, 3) uint8 array
    mpp : float, optional
        Level-0 pixel size in um/px (required for arrays and images without metadata).
    guideline : str
        ``breast``, ``gastric`` or ``gastric-biopsy``.
    workers : int, optional
        Worker processes (default: up to 4, one per CPU).
    force_mpp : bool
        Accept an ``mpp`` outside the plausible 0.05-20 um/px.
    roi : str, Path or Region, optional
        The scoring region (``io.region``: QuPath GeoJSON annotations or a mask image): only
        tiles that overlap it are read and only cells whose centre lies in it count.
    progress : Progress, bool or callable
        Where the stages (tissue, stains, tiles) are reported (``her2path.progress.reporter``).

    Returns
    -------
    IhcResult
    """
    table = guideline if isinstance(guideline, Guideline) else load_guideline(guideline)
    return assemble(measure_ihc(image, mpp, settings, workers, progress, force_mpp, roi), table)


@dataclass
class SlideMeasurements:
    """Every tile's cells as ``measure_ihc`` found them, with what they were measured under."""

    slide: SlideImage
    grid: TileGrid
    stains: Stains
    settings: Settings
    tiles: list            # per tile of ``grid``: (TileCells, (model probabilities or None, abstained))
    digest: str            # SHA-256 of the input
    scan_mpp: float        # level-0 pixel size, um/px
    region: Region | None


def measure_ihc(image, mpp: float | None = None, settings: Settings | None = None, workers: int | None = None,
                progress=False, force_mpp: bool = False, roi=None) -> SlideMeasurements:
    """Tissue, stains and every tile's cells of an IHC slide or image, before any guideline decides
    (the parameters are ``score_ihc``'s)."""
    settings = settings or load_settings()
    if isinstance(image, np.ndarray):
        if mpp is None:
            from ..errors import MppError
            from ..io.slide import MPP_FIX

            raise MppError("an image array needs its pixel size", "<array>", MPP_FIX)
        slide, source, digest = ArrayImage(image, mpp=mpp), None, array_sha256(image)
    elif isinstance(image, SlideImage):
        slide, source = image, (str(image.path) if image.path.is_file() else None)
        digest = file_sha256(image.path) if image.path.is_file() else array_sha256(image.array)
    else:
        slide, source = open_image(image, mpp=mpp, force_mpp=force_mpp), str(image)
        digest = digest_files([image])
    scan_mpp = slide.mpp                               # raises MppError when unknown
    check_resolution(slide, settings)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    with reporting(progress) as progress, tile_workers(slide, settings, workers) as pool:
        progress.stage("tissue")
        region = roi if isinstance(roi, Region) or roi is None else \
            load_region(roi, slide.dimensions, settings.tiling.exclude_classes)
        grid, white, stains = plan_slide(slide, settings, region, progress)
        results = _run_tiles(source, slide, grid, stains, settings, white, pool, progress)
    return SlideMeasurements(slide, grid, stains, settings, results, digest, scan_mpp, region)


def plan_slide(slide: SlideImage, settings: Settings, region: Region | None = None,
               progress: Progress | None = None) -> tuple[TileGrid, np.ndarray, Stains]:
    """The tiles to analyse, the glass's intensity (per channel) and the slide's stains: what every
    tile is analysed with (``measure_ihc``; the profiling and tuning benchmarks)."""
    grid = tile_grid(slide, settings, whole_image=slide.plain, region=region)   # a core: pale tissue may fill it
    if progress is not None:
        progress.stage("stains")
    white = glass_white(slide, grid)
    return grid, white, choose_stains(slide, grid, settings, white)


CELL_COLUMNS = ("x", "y", "cls", "completeness", "intensity", "cytoplasm", "nuclear_dab", "basolateral", "tile",
                "outline", "nucleus_radius")


def _tile_columns(i: int, tc: TileCells, keep: np.ndarray, calls, x0, y0, k: float) -> dict:
    """The cell-table columns of one tile's counted tumour cells (``keep``), as arrays (level-0 px)."""
    n = int(keep.sum())
    return {"x": np.round(x0[keep], 2), "y": np.round(y0[keep], 2), "cls": calls.cls,
            "completeness": np.round(tc.completeness[keep], 4), "intensity": np.round(tc.intensity[keep], 4),
            "cytoplasm": np.round(tc.cytoplasm[keep], 4),
            "nuclear_dab": np.round(tc.nuclear_dab[keep].astype(float), 4), "basolateral": calls.basolateral,
            "tile": np.full(n, i),
            "outline": np.round(tc.outline[keep] * k).astype(np.int32).reshape(n, 2 * OUTLINE_RAYS),
            "nucleus_radius": np.round(tc.nucleus_radius[keep] * k, 1)}


def _cell_table(parts: list[dict]) -> CellTable:
    """One table from the tiles' columns, converted to lists once (outlines as small integers, which
    Python shares: a cell's outline costs a list of pointers, not 24 float objects)."""
    return CellTable(**{name: np.concatenate([p[name] for p in parts]).tolist() if parts else []
                        for name in CELL_COLUMNS})


def assemble(m: SlideMeasurements, table: Guideline) -> IhcResult:
    """Turn per-tile measurements (and tile-model probabilities) into the slide result (level-0 px).

    The rules decide: each cell's class (``rules.ihc.cell_classes``), whether
    the slide's DAB is membrane staining at all (``stain_pattern``), then each
    tile's and the slide's score (``rules.ihc``, both under that finding) and
    the warnings (``rules.flags``). ``m.tiles`` is emptied as it is read.
    """
    slide, grid, stains, settings, results, region = m.slide, m.grid, m.stains, m.settings, m.tiles, m.region
    scan_mpp = m.scan_mpp
    model_sha = file_sha256(settings.tile_model.weights) if settings.tile_model.enabled else None
    k = grid.mpp / scan_mpp
    margin = tile_margin_px(settings, grid.mpp)
    parts, non_tumour, per_tile = [], [], []
    excluded = 0
    for i, tile in enumerate(grid.tiles):
        tc, (probs, abstain) = results[i]
        results[i] = None                      # the tile's arrays go as soon as its cells are in the table
        x0 = tile.x + (tc.xy[:, 0] - margin) * k
        y0 = tile.y + (tc.xy[:, 1] - margin) * k
        counted = region.contains(np.c_[x0, y0]) if region is not None else np.ones(len(x0), bool)
        keep = tc.tumour & ~tc.excluded & counted
        excluded += int((tc.tumour & tc.excluded & counted).sum())
        calls = cell_classes(tc.completeness[keep], tc.intensity[keep], settings.ihc.cell_class,
                             table.ihc.u_shaped_complete, stains.dab_absent)
        parts.append(_tile_columns(i, tc, keep, calls, x0, y0, k))
        other = ~tc.tumour & counted
        non_tumour += [(round(float(a), 2), round(float(b), 2)) for a, b in zip(x0[other], y0[other])]
        per_tile.append(_TileEntry(tile, calls.cls, np.c_[x0[keep], y0[keep]] * scan_mpp, int(other.sum()),
                                   tc.defocus_fraction, tc.noise_od, probs, abstain))
    cells = _cell_table(parts)
    del parts
    n = len(cells.x)
    xy_um = np.c_[cells.x, cells.y] * scan_mpp if n else np.zeros((0, 2))
    pattern = stain_pattern(cells.cls, cells.nuclear_dab, cells.cytoplasm, settings.ihc.specificity,
                            stains.source[8:] if stains.dab_absent else None)
    decision = ihc_decision(cells.cls, xy_um, table, pattern=pattern)
    tiles = [_tile_result(i, entry, table, pattern, settings.tile_model)
             for i, entry in enumerate(per_tile)]
    flagged = [t.index for t in tiles if t.flagged]
    compared = [t for t, e in zip(tiles, per_tile) if _compared(t.tumour_cells, e.tile, settings.tile_model)]
    warnings = ihc_warnings(
        tumour_cells=n, excluded_cells=excluded, dab_absent=stains.dab_absent,
        no_membrane_dab=all(c == "0" for c in cells.cls),
        stain_fallback=stains.source[10:] if stains.source.startswith("fallback: estimate") else None,
        flagged=len(flagged), compared=len(compared), dab_note=stains.source[8:],
        abstained=sum(t.model_abstained for t in compared)) + pattern.warnings
    reasons = [decision.reason] + ([near_cutoff_reason(table.ihc.near_cutoff_points, decision.cutoffs)]
                                   if decision.near_cutoff else [])
    w, h = slide.dimensions
    return IhcResult(
        score=decision.score, sub_label=decision.sub_label, percent_cells=decision.percent,
        counts=decision.counts, tumour_cells=n, non_tumour_cells=len(non_tumour),
        excluded_cells=excluded, guideline=table.name, mpp=grid.mpp, scan_mpp=scan_mpp,
        reasons=reasons, near_cutoff=decision.near_cutoff, warnings=warnings, flagged_tiles=flagged,
        stains=StainInfo(hematoxylin=tuple(round(v, 4) for v in stains.hematoxylin),
                         dab=tuple(round(v, 4) for v in stains.dab), source=stains.source),
        width=w, height=h, tiles=tiles, cells=cells, non_tumour_xy=non_tumour,
        provenance=Provenance(
            software=SOFTWARE, config_sha256=settings.digest("ihc"), guideline_sha256=digest_model(table),
            input_path=str(slide.path), input_sha256=m.digest, mpp_used=grid.mpp, model_sha256=model_sha),
        scan=ScanInfo(format=str(getattr(slide, "format", "array")), objective_power=slide.objective_power,
                      mpp_source=slide.mpp_source),
        region=None if region is None else RegionInfo(
            source=region.source, sha256=region.sha256, area_mm2=round(region.area_um2(scan_mpp) / 1e6, 4),
            excluded_annotations=region.excluded_annotations, tiles_outside=grid.outside_region),
    )


def _compared(tumour_cells: int, tile: Tile, model_cfg: TileModelConfig) -> bool:
    """``rules.flags.model_compared`` for a tile of the grid, with the configured limits."""
    return model_compared(tumour_cells, tile.tissue_fraction, model_cfg.min_tumour_cells, model_cfg.min_tile_tissue)


class _TileEntry(NamedTuple):
    """What ``assemble`` keeps of a tile until the slide's stain finding is known."""

    tile: Tile
    cls: np.ndarray              # class of each counted tumour cell
    xy_um: np.ndarray            # (n, 2) their centres, um
    non_tumour: int              # other cells counted in the tile
    defocus: float               # share of the tile's tissue out of focus
    noise: float                 # the tile's DAB noise, OD
    probs: np.ndarray | None     # the tile model's class probabilities, where it ran
    abstain: bool                # the model abstained (the tile lies outside what it was trained on)


def _tile_result(i: int, e: _TileEntry, table: Guideline, pattern, model_cfg: TileModelConfig) -> TileResult:
    """One tile's result: its guideline score under the slide's stain finding, and the tile model's
    vote where it ran (compared by ``model_compared``; flagged by ``tile_flagged``)."""
    measured, near = tile_score(e.cls, e.xy_um, table, pattern)
    model_score = CLASSES[int(np.argmax(e.probs))] if e.probs is not None and not e.abstain else None
    flagged = tile_flagged(measured, model_score, float(np.max(e.probs)) if e.probs is not None else 0.0,
                           _compared(len(e.cls), e.tile, model_cfg), model_cfg.flag_probability)
    t = e.tile
    return TileResult(
        index=i, col=t.col, row=t.row, x=t.x, y=t.y, width=t.width0, height=t.height0,
        tumour_cells=len(e.cls), non_tumour_cells=e.non_tumour,
        counts={c: int((e.cls == c).sum()) for c in CLASSES}, score=measured,
        defocus_fraction=round(e.defocus, 4), noise_od=round(e.noise, 5), model_score=model_score,
        model_abstained=bool(e.abstain), flagged=flagged,
        near_cutoff=near, model_probability=[round(float(v), 4) for v in e.probs] if e.probs is not None else None)
