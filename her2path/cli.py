"""The ``her2path`` command. A thin face over the Python API; research use only, not for diagnosis."""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import Her2PathError


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def cmd_info(args) -> int:
    from .io import open_image

    with open_image(args.input, mpp=args.mpp) as img:
        info = img.info()
    if args.json:
        _print_json(info.model_dump(mode="json"))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    mpp = f"{info.mpp:g} um/px ({info.mpp_source})" if info.mpp else "unknown (pass --mpp)"
    console.print(f"[bold]{info.path}[/bold]  format={info.format}  {info.width}x{info.height} px  "
                  f"mpp={mpp}  objective={info.objective_power or '?'}x")
    table = Table("level", "width", "height", "downsample", "um/px")
    for lv in info.levels:
        table.add_row(str(lv.level), str(lv.width), str(lv.height), f"{lv.downsample:g}",
                      f"{lv.mpp:g}" if lv.mpp else "?")
    console.print(table)
    return 0


def cmd_ihc(args) -> int:
    from .io import open_image
    from .pipeline.ihc_slide import score_ihc
    from .pipeline.outputs import write_ihc_outputs

    with open_image(args.input, mpp=args.mpp) as slide:
        result = score_ihc(slide, guideline=args.guideline, workers=args.workers,
                           progress=not args.json and sys.stderr.isatty())
        if args.out:
            write_ihc_outputs(result, slide, args.out)
    if args.json:
        _print_json(result.summary())
        return 0
    _print_ihc(result, args.out)
    return 0


def _print_ihc(result, out) -> None:
    from rich.console import Console

    c = Console()
    pct = "  ".join(f"{k}: {v:.1f}%" for k, v in result.percent_cells.items())
    c.print(f"[bold]HER2 IHC {result.score}[/bold] ({result.sub_label}) by {result.guideline}: "
            f"{result.tumour_cells} tumour cells ({pct}); {result.non_tumour_cells} non-tumour cells")
    for r in result.reasons:
        c.print(f"  - {r}")
    for w in result.warnings:
        c.print(f"  [yellow]warning:[/yellow] {w}")
    if out:
        c.print(f"  outputs in {out}/ (result.json, cells.csv, cells.geojson, heatmap.png, overlays/)")
    c.print("  research use only, not for diagnosis")


def cmd_ish(args) -> int:
    from .io.fluorescence import parse_channels
    from .pipeline.ish_case import count_ish

    result = count_ish(args.inputs, parse_channels(args.channels), args.mpp, args.brightfield,
                       args.guideline, args.out)
    if args.json:
        _print_json(result.summary())
        return 0
    from rich.console import Console

    c = Console()
    figs = (f"ratio {result.ratio}, HER2 {result.her2_per_cell}/cell, CEP17 {result.cep17_per_cell}/cell"
            if result.ratio is not None else "no figures")
    c.print(f"[bold]ISH {result.call}[/bold] (group {result.group}) by {result.guideline}: "
            f"{result.nuclei} evaluable nuclei; {figs}")
    for r in result.reasons + ([f"next step: {result.next_step}"] if result.next_step else []):
        c.print(f"  - {r}")
    for w in result.warnings:
        c.print(f"  [yellow]warning:[/yellow] {w}")
    c.print("  research use only, not for diagnosis")
    return 0


def _print_case(result, out=None) -> None:
    from rich.console import Console

    c = Console()
    sub = f" (HER2-{result.sub_label})" if result.sub_label else ""
    c.print(f"[bold]HER2 {result.status}{sub}[/bold] by {result.guideline}")
    for r in result.reasons:
        c.print(f"  - {r}")
    if result.next_step:
        c.print(f"  [bold]next step:[/bold] {result.next_step}")
    for f in result.flags:
        c.print(f"  [yellow]review:[/yellow] {f}")
    if out:
        c.print(f"  outputs in {out}/ (result.json, ihc/, ish/)")
    c.print("  research use only, not for diagnosis")


def cmd_classify(args) -> int:
    from .classify import classify
    from .schema import IshFigures

    figs = (args.ratio, args.her2_per_cell, args.cep17_per_cell)
    ish = IshFigures(ratio=args.ratio, her2_per_cell=args.her2_per_cell, cep17_per_cell=args.cep17_per_cell,
                     nuclei=args.nuclei) if any(v is not None for v in figs) else None
    result = classify(args.ihc, ish, args.guideline)
    if args.json:
        _print_json(result.summary())
    else:
        _print_case(result)
    return 0


def cmd_case(args) -> int:
    from .errors import InputError
    from .io.fluorescence import parse_channels
    from .pipeline.case import run_case

    if not args.ihc and not args.ish:
        raise InputError("a case needs an IHC slide (--ihc) and/or ISH fields (--ish)", fix="give --ihc and/or --ish")
    result = run_case(args.ihc, args.ish, args.out, args.guideline, parse_channels(args.channels),
                      args.brightfield, args.mpp, args.ish_mpp, workers=args.workers,
                      progress=not args.json and sys.stderr.isatty())
    if args.json:
        _print_json(result.summary())
    else:
        _print_case(result, args.out)
    return 0


def cmd_demo(args) -> int:
    from .pipeline.demo import run_demo

    return run_demo(Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="her2path",
        description="HER2 scoring from IHC slides and FISH/ISH fields. Research use only, not for diagnosis.",
    )
    p.add_argument("--version", action="version", version=f"her2path {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("info", help="format, size, pyramid levels and mpp of a slide or image")
    s.add_argument("input", help="slide or image file")
    s.add_argument("--mpp", type=float, help="level-0 pixel size in um/px (overrides metadata)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("ihc", help="score HER2 IHC on a slide or image (0, 1+, 2+, 3+)")
    s.add_argument("input", help="slide or image file")
    s.add_argument("--mpp", type=float, help="level-0 pixel size in um/px (overrides metadata)")
    s.add_argument("--guideline", default="breast", help="breast (default), gastric or gastric-biopsy")
    s.add_argument("--out", help="folder for result.json, cells.csv, cells.geojson, heatmap and overlays")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: up to 4)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_ihc)

    s = sub.add_parser("ish", help="count ERBB2/CEP17 per nucleus in FISH or dual-ISH fields of one case")
    s.add_argument("inputs", nargs="+", help="field images (or folders of them) of one case")
    s.add_argument("--channels", help="channel order of multichannel TIFFs (default her2,cep17,dapi)")
    s.add_argument("--brightfield", action="store_true", help="brightfield dual ISH (black HER2, red CEP17)")
    s.add_argument("--mpp", type=float, help="pixel size in um/px (overrides metadata)")
    s.add_argument("--guideline", default="breast", help="breast (default), gastric or gastric-biopsy")
    s.add_argument("--out", help="folder for result.json, nuclei.csv and overlay PNGs")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_ish)

    s = sub.add_parser("classify", help="HER2 status from an IHC score and/or ISH figures, by guideline")
    s.add_argument("--ihc", help="IHC score: 0, 1+, 2+, 3+ (or no-call)")
    s.add_argument("--ratio", type=float, help="ISH HER2/CEP17 ratio")
    s.add_argument("--her2-per-cell", type=float, help="mean HER2 signals per nucleus")
    s.add_argument("--cep17-per-cell", type=float, help="mean CEP17 signals per nucleus")
    s.add_argument("--nuclei", type=int, help="evaluable nuclei counted (below 20: no call)")
    s.add_argument("--guideline", default="breast", help="breast (default), gastric or gastric-biopsy")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("case", help="one case end to end: IHC slide and/or ISH fields -> HER2 status")
    s.add_argument("--ihc", help="IHC slide or image")
    s.add_argument("--ish", nargs="+", help="ISH field images (or folders) of the same case")
    s.add_argument("--mpp", type=float, help="IHC level-0 pixel size in um/px (overrides metadata)")
    s.add_argument("--ish-mpp", type=float, help="ISH field pixel size in um/px (overrides metadata)")
    s.add_argument("--channels", help="channel order of multichannel ISH TIFFs (default her2,cep17,dapi)")
    s.add_argument("--brightfield", action="store_true", help="the ISH is brightfield dual ISH")
    s.add_argument("--guideline", default="breast", help="breast (default), gastric or gastric-biopsy")
    s.add_argument("--workers", type=int, default=None, help="worker processes for the IHC slide")
    s.add_argument("--out", help="folder for result.json, ihc/ and ish/")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_case)

    s = sub.add_parser("demo", help="build the embedded sample case and run every stage on it")
    s.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Her2PathError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"her2path: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("her2path: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(f"her2path: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
