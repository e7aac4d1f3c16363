"""``her2path demo``: build the embedded sample case and run every stage on it."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..io import open_image
from ..io.fluorescence import read_fluorescence
from ..io.tiling import iter_tiles, tile_grid
from ..synthetic.sample import build_sample_case
from .outputs import tile_overview


def run_demo(out: Path) -> int:
    console = Console()
    console.print("[bold]her2path demo[/bold] - research use only, not for diagnosis")
    case = build_sample_case(out / "sample-case")
    truth = json.loads(case.truth.read_text())
    console.print(f"sample case in {case.folder}: IHC slide {case.slide.name}, {len(case.fish)} FISH fields")

    with open_image(case.slide) as slide:
        info = slide.info()
        grid = tile_grid(slide)
        n_px = 0
        for _, rgb in iter_tiles(slide, grid):
            n_px += rgb.shape[0] * rgb.shape[1]
        overview = tile_overview(slide, grid, out / "tiles.png")
    table = Table("stage", "result")
    table.add_row("slide", f"{info.format} {info.width}x{info.height} px, {len(info.levels)} levels, "
                           f"{info.mpp} um/px")
    table.add_row("tissue", f"{grid.tissue.fraction:.0%} of the slide; {len(grid)} tiles of "
                            f"{grid.tile_um:g} um at {grid.mpp} um/px ({n_px / 1e6:.1f} Mpx read)")
    for p in case.fish:
        f = read_fluorescence(p)
        table.add_row(f"FISH {p.name}", f"{f.shape[1]}x{f.shape[0]} px, {f.bit_depth}-bit, {f.mpp} um/px, "
                                        f"channels {', '.join(f.channels)}")
    table.add_row("truth", f"IHC {truth['ihc']['score']} ({truth['ihc']['tumour_cells']} tumour cells); "
                           f"ISH ratio {truth['ish']['ratio']:.2f}, HER2/cell {truth['ish']['her2_per_cell']:.2f}")
    table.add_row("overview", str(overview))
    console.print(table)
    return 0
