"""``her2path demo``: build the embedded sample case and run it end to end (IHC, ISH, status, report)."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..io import open_image
from ..io.fluorescence import read_fluorescence
from ..io.tiling import tile_grid
from ..synthetic.sample import build_sample_case
from .case import run_case
from .layout import CaseLayout
from .outputs import tile_overview


def run_demo(out: Path) -> int:
    console = Console()
    console.print("[bold]her2path demo[/bold] - research use only, not for diagnosis")
    case = build_sample_case(out / "sample-case")
    truth = json.loads(case.truth.read_text())
    console.print(f"sample case in {case.folder}: IHC slide {case.slide.name}, {len(case.fish)} FISH fields")

    table = Table("stage", "result", "truth")
    with open_image(case.slide) as slide:
        info = slide.info()
        grid = tile_grid(slide)
        overview = tile_overview(slide, grid, out / "tiles.png")
    result = run_case(case.slide, case.fish, out / "case", case_id="sample", progress=True)
    report = CaseLayout(out / "case").report_html
    ihc, ish = result.ihc, result.ish
    table.add_row("slide", f"{info.format} {info.width}x{info.height} px, {len(info.levels)} levels, "
                           f"{info.mpp} um/px", "")
    table.add_row("tissue", f"{grid.tissue.fraction:.0%} of the slide; {len(grid)} tiles of "
                            f"{grid.tile_um:g} um at {grid.mpp} um/px; {overview.name}", "")
    pct = ", ".join(f"{k} {v:.0f}%" for k, v in ihc.percent_cells.items())
    tpct = ", ".join(f"{k} {v:.0f}%" for k, v in truth["ihc"]["percent_cells"].items())
    table.add_row("IHC", f"HER2 {ihc.score} ({ihc.sub_label}); {ihc.tumour_cells} tumour cells: {pct}; "
                         f"{len(ihc.flagged_tiles)} tiles flagged by the tile model",
                  f"{truth['ihc']['score']}; {truth['ihc']['tumour_cells']} cells: {tpct}")
    for p in case.fish:
        f = read_fluorescence(p)
        table.add_row(f"FISH {p.name}", f"{f.shape[1]}x{f.shape[0]} px, {f.bit_depth}-bit, {f.mpp} um/px", "")
    table.add_row("ISH", f"{ish.call} (group {ish.group}): ratio {ish.ratio:.2f}, "
                         f"HER2 {ish.her2_per_cell:.2f}/cell, {ish.nuclei} nuclei",
                  f"ratio {truth['ish']['ratio']:.2f}, HER2 {truth['ish']['her2_per_cell']:.2f}/cell, "
                  f"{truth['ish']['nuclei']} nuclei")
    table.add_row("status", f"HER2 {result.status}" + (f" (HER2-{result.sub_label})" if result.sub_label else "")
                  + f"; next step: {result.next_step or 'none'}", "IHC 2+ with ISH group 1: positive")
    console.print(table)
    for r in result.reasons:
        console.print(f"  - {r}")
    console.print(f"case outputs in {out / 'case'}: result.json, ihc/, ish/, report: {report}")
    console.print(f"review it in the browser: her2path review {out / 'case'}")
    return 0
