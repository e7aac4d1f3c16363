"""The ``her2path`` command. A thin face over the Python API; research use only, not for diagnosis."""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from ._version import __version__
from .errors import Her2PathError
from .progress import for_command


def os_error_line(exc: OSError) -> str:
    """One line naming the file and the fix for an operating-system error."""
    import errno

    where = exc.filename or "(file)"
    fixes = {errno.EACCES: "no permission: choose a folder you can write to (--out) or fix its permissions",
             errno.EPERM: "not permitted: choose a folder you can write to (--out) or fix its permissions",
             errno.EROFS: "the file system is read-only: choose another --out folder",
             errno.ENOSPC: "the disk is full: free some space or choose another --out folder",
             errno.ELOOP: "a symbolic link loop: point the path at the real file",
             errno.ENAMETOOLONG: "the path is too long: use a shorter one"}
    fix = fixes.get(exc.errno, "check the path and the disk")
    return f"{where}: {exc.strerror or exc}. Fix: {fix}"


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def cmd_info(args) -> int:
    from .io import open_image

    with open_image(args.input, mpp=args.mpp, force_mpp=args.force_mpp) as img:
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
    from .config import load_settings
    from .pipeline.ihc_slide import score_ihc
    from .pipeline.outputs import write_ihc_outputs

    progress = for_command("ihc", args.quiet, args.json)
    try:
        progress.stage("open")
        with open_image(args.input, mpp=args.mpp, force_mpp=args.force_mpp) as slide:
            result = score_ihc(slide, guideline=args.guideline, workers=args.workers, roi=args.roi,
                               settings=load_settings(args.config) if args.config else None, progress=progress)
            if args.out:
                write_ihc_outputs(result, slide, args.out, progress)
    finally:
        progress.close()
    if args.json:
        _print_json(result.summary().model_dump(mode="json"))
        return 0
    _print_ihc(result, args.out)
    return 0


def _say(headline: str, items: list[str], marked: list[tuple[str, str]], out_note: str | None = None) -> None:
    """A result for people: headline, bullet reasons, marked lines (warnings...), where the files are."""
    from rich.console import Console

    c = Console()
    c.print(headline)
    for r in items:
        c.print(f"  - {r}")
    for label, text in marked:
        c.print(f"  [yellow]{label}:[/yellow] {text}")
    if out_note:
        c.print(f"  outputs in {out_note}")
    c.print("  research use only, not for diagnosis")


def _print_ihc(result, out) -> None:
    pct = "  ".join(f"{k}: {v:.1f}%" for k, v in result.percent_cells.items())
    score = f"{result.score}[/bold] ({result.sub_label})" if result.score else "no call[/bold]"
    _say(f"[bold]HER2 IHC {score} by {result.guideline}: "
         f"{result.tumour_cells} tumour cells ({pct}); {result.non_tumour_cells} non-tumour cells",
         result.reasons, [("warning", w) for w in result.warnings],
         f"{out}/ (result.json, cells.csv, cells.geojson, heatmap.png, overlays/, tiles/)" if out else None)


def cmd_ish(args) -> int:
    from .config import load_settings
    from .io.fluorescence import parse_channels
    from .pipeline.ish_case import count_ish

    result = count_ish(args.inputs, parse_channels(args.channels), args.mpp, args.brightfield,
                       args.guideline, args.out, settings=load_settings(args.config), force_mpp=args.force_mpp)
    if args.json:
        _print_json(result.summary().model_dump(mode="json"))
        return 0
    figs = (f"ratio {result.ratio}, HER2 {result.her2_per_cell}/cell, CEP17 {result.cep17_per_cell}/cell"
            if result.ratio is not None else "no figures")
    _say(f"[bold]ISH {result.call}[/bold] (group {result.group}) by {result.guideline}: "
         f"{result.nuclei} evaluable nuclei; {figs}",
         result.reasons + ([f"next step: {result.next_step}"] if result.next_step else []),
         [("warning", w) for w in result.warnings],
         f"{args.out}/ (result.json, nuclei.csv, overlay_N.png)" if args.out else None)
    return 0


def _print_case(result, out=None) -> None:
    sub = f" (HER2-{result.sub_label})" if result.sub_label else ""
    _say(f"[bold]HER2 {result.status}{sub}[/bold] by {result.guideline}", result.reasons,
         ([("next step", result.next_step)] if result.next_step else []) + [("review", f) for f in result.flags],
         f"{out}/ (result.json, ihc/, ish/)" if out else None)


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


def cmd_report(args) -> int:
    from .pipeline.layout import BatchLayout
    from .pipeline.report import write_pdf
    from .review.store import latest_signoff

    case = Path(args.case).resolve()
    # The review database of a single case folder is in it; a batch's is two levels up (out/cases/ID).
    sign = next((d for d in (latest_signoff(BatchLayout(root).review_db, case.name)
                             for root in (case, case.parent.parent)) if d), None)
    path = write_pdf(case, args.pdf, sign.__dict__ if sign else None)
    print(f"wrote {path} (the report of {args.case}, printed by Chromium"
          + (f", signed off by {sign.reviewer})" if sign else ")"))
    return 0


def cmd_case(args) -> int:
    from .errors import InputError
    from .io.fluorescence import parse_channels
    from .pipeline.case import run_case

    if not args.ihc and not args.ish:
        raise InputError("a case needs an IHC slide (--ihc) and/or ISH fields (--ish)", fix="give --ihc and/or --ish")
    result = run_case(args.ihc, args.ish, args.out, args.guideline, parse_channels(args.channels),
                      args.brightfield, args.mpp, args.ish_mpp, workers=args.workers, config=args.config,
                      case_id=args.case_id or (Path(args.out).name if args.out else None), force_mpp=args.force_mpp,
                      roi=args.roi, progress=for_command("case", args.quiet, args.json))
    if args.json:
        _print_json(result.summary())
    else:
        _print_case(result, args.out)
    return 0


def cmd_train(args) -> int:
    from .classify.train import train

    m = train(args.dataset, args.out, epochs=args.epochs, device=args.device, seed=args.seed, batch=args.batch,
              lr=args.lr, init=args.init, resume=not args.restart, progress=sys.stderr.isatty())
    print(f"best epoch {m['epoch']}: validation QWK {m['val']['qwk']:.3f}, accuracy {m['val']['accuracy']:.3f} "
          f"on {m['val_tiles']} tiles; model {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from .classify.train import confusion_png, evaluate

    m = evaluate(args.dataset, args.model, args.device)
    if args.out:
        confusion_png(m["confusion"], Path(args.out), f"{args.dataset}: QWK {m['qwk']:.3f}")
    if args.json:
        _print_json(m)
        return 0
    print(f"{m['n']} tiles: accuracy {m['accuracy']:.3f}, QWK {m['qwk']:.3f}")
    print("confusion (rows truth 0/1+/2+/3+, columns model):")
    for row in m["confusion"]:
        print("  " + " ".join(f"{v:5d}" for v in row))
    return 0


def cmd_calibrate(args) -> int:
    from .classify.calibrate import calibrate

    r = calibrate(args.dataset, args.out, args.config, args.guideline)
    if args.json:
        _print_json(r)
        return 0
    b, a = r["before"], r["after"]
    print(f"{r['tiles']} tiles: tile-score agreement {b['accuracy']:.3f} -> {a['accuracy']:.3f} "
          f"(QWK {b['qwk']:.3f} -> {a['qwk']:.3f}); cut-offs {r['cutoffs']}")
    print(f"wrote {args.out}: use it with `her2path ihc SLIDE --config {args.out}`")
    return 0


def cmd_batch(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .io.fluorescence import parse_channels
    from .pipeline.batch import BatchOptions, run_batch

    options = BatchOptions(args.guideline, args.config, parse_channels(args.channels), args.brightfield)
    res = run_batch(args.folder, args.out, workers=args.workers, scheduler=args.scheduler, manifest=args.manifest,
                    options=options, force=args.force,
                    progress=for_command("batch", args.quiet, bar=False) or True)
    c = Console()
    table = Table("case", "state", "status", "IHC", "ISH group", "ratio", "time (s)", "error",
                  title=f"her2path batch: {args.out} ({res.seconds:.0f} s)")
    for r in res.rows:
        skipped = r["case_id"] in res.skipped
        table.add_row(r["case_id"], "skipped (done)" if skipped else r["state"], r["status"] or "", r["score"] or "",
                      str(r["ish_group"] or ""), f"{r['ratio']:.2f}" if r["ratio"] is not None else "",
                      f"{r['seconds']:.1f}", r["error"] or "")
    c.print(table)
    for n in res.notes:
        c.print(f"  note: {n}")
    done = sum(r["state"] == "done" for r in res.rows)
    c.print(f"{done} done ({len(res.skipped)} skipped as already done), {len(res.failed)} failed; "
            f"summary.csv, results.sqlite and cases/ in {args.out}. Research use only, not for diagnosis.")
    if res.failed:
        print(f"her2path: {len(res.failed)} case(s) failed", file=sys.stderr)
        return 1
    return 0


def cmd_review(args) -> int:
    import ipaddress
    import secrets

    import uvicorn

    from .errors import InputError
    from .review.app import create_app, find_case_dirs

    out = Path(args.folder)
    if not find_case_dirs(out):
        raise InputError("no case results here (cases/*/result.json or result.json)", out,
                         "give the --out folder of `her2path batch` or `her2path case`")
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    token = args.token or (None if loopback else secrets.token_urlsafe(18))
    hosts = list(args.allow_host or [])
    if loopback:
        hosts += ["127.0.0.1", "localhost", "::1", "[::1]"]
    elif hosts and args.host not in ("0.0.0.0", "::"):
        hosts.append(args.host)
    url = f"http://{args.host}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"her2path review of {out} at {url}  (research use only, not for diagnosis; Ctrl-C stops)")
    uvicorn.run(create_app(out, token, hosts or None), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_verify(args) -> int:
    from .pipeline.verify import verify_output

    report = verify_output(args.folder)
    if args.json:
        _print_json(report)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("case", "state", "problems", title=f"her2path verify: {args.folder}")
        for c in report["cases"]:
            table.add_row(c["case_id"], c["state"], "; ".join(c["problems"]) or "intact")
        Console().print(table)
        print(f"{report['intact']} intact, {report['damaged']} with problems, {report['failed']} failed cases")
    return 1 if report["damaged"] else 0


def cmd_review_export(args) -> int:
    from .review.export import export_dataset

    counts = export_dataset(args.folder, args.dataset)
    print(f"exported {sum(counts.values())} reviewed tiles to {args.dataset} ({counts}); "
          f"train with `her2path train {args.dataset} --out MODEL`")
    return 0


def cmd_demo(args) -> int:
    from .pipeline.demo import run_demo

    return run_demo(Path(args.out))


OPTIONS = {   # options several commands share: one wording, one default
    "roi": (("--roi",), {"help": "scoring region: a QuPath GeoJSON export of annotations (level-0 px; classes "
                                 "Ignore*, Exclude, Region* are cut out) or a binary mask image of the slide"}),
    "quiet": (("--quiet", "-q"), {"action": "store_true", "help": "no progress (bar or log lines)"}),
    "guideline": (("--guideline",), {"default": "breast", "help": "breast (default), gastric or gastric-biopsy"}),
    "config": (("--config",), {"help": "settings YAML (default: configs/default.yaml; see her2path calibrate)"}),
    "channels": (("--channels",), {"help": "channel order of multichannel ISH TIFFs (default her2,cep17,dapi)"}),
    "brightfield": (("--brightfield",), {"action": "store_true",
                                         "help": "brightfield dual ISH (black HER2, red CEP17 dots)"}),
    "json": (("--json",), {"action": "store_true", "help": "print one JSON object"}),
    "force_mpp": (("--force-mpp",), {"action": "store_true",
                                     "help": "accept an --mpp outside the plausible 0.05-20 um/px"}),
}


def _options(parser, *names) -> None:
    for n in names:
        flags, kwargs = OPTIONS[n]
        parser.add_argument(*flags, **kwargs)


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
    _options(s, "json", "force_mpp")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("ihc", help="score HER2 IHC on a slide or image (0, 1+, 2+, 3+)")
    s.add_argument("input", help="slide or image file")
    s.add_argument("--mpp", type=float, help="level-0 pixel size in um/px (overrides metadata)")
    _options(s, "guideline", "config", "json", "force_mpp", "roi", "quiet")
    s.add_argument("--out", help="folder for result.json, cells.csv, cells.geojson, heatmap and overlays")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: up to 4)")
    s.set_defaults(func=cmd_ihc)

    s = sub.add_parser("ish", help="count ERBB2/CEP17 per nucleus in FISH or dual-ISH fields of one case")
    s.add_argument("inputs", nargs="+", help="field images (or folders of them) of one case")
    _options(s, "guideline", "config", "channels", "brightfield", "json")
    s.add_argument("--mpp", type=float, help="pixel size in um/px (overrides metadata)")
    _options(s, "force_mpp")
    s.add_argument("--out", help="folder for result.json, nuclei.csv and overlay PNGs")
    s.set_defaults(func=cmd_ish)

    s = sub.add_parser("batch", help="every case of a folder, resumable, local workers or a Dask cluster")
    s.add_argument("folder", help="folder of slides / case folders (or the base of --manifest paths)")
    s.add_argument("--out", required=True, help="output folder: cases/, summary.csv, results.sqlite")
    s.add_argument("--workers", type=int, default=1, help="local worker processes, one case each")
    s.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786) to run the cases on")
    s.add_argument("--manifest", help="CSV with columns case_id,ihc,ish (ISH paths separated by ;)")
    s.add_argument("--force", action="store_true", help="redo cases already done")
    _options(s, "guideline", "config", "channels", "brightfield", "quiet")
    s.set_defaults(func=cmd_batch)

    s = sub.add_parser("review", help="review scored tiles in the browser (local web server)")
    s.add_argument("folder", help="output folder of her2path batch (or of one case)")
    s.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token", help="access token (generated and printed when --host is not loopback)")
    s.add_argument("--allow-host", action="append", metavar="NAME",
                   help="a Host header name to accept besides the bound address (e.g. the name a reverse proxy "
                        "forwards); repeatable")
    s.set_defaults(func=cmd_review)

    s = sub.add_parser("verify", help="check that the files of a batch or case output folder are intact")
    s.add_argument("folder", help="output folder of her2path batch (or of one case)")
    _options(s, "json")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("review-export", help="write the reviewed tiles as a training dataset")
    s.add_argument("folder", help="the reviewed output folder")
    s.add_argument("--dataset", required=True, help="folder to write (class folders + labels.csv)")
    s.set_defaults(func=cmd_review_export)

    s = sub.add_parser("classify", help="HER2 status from an IHC score and/or ISH figures, by guideline")
    s.add_argument("--ihc", help="IHC score: 0, 1+, 2+, 3+ (or no-call)")
    s.add_argument("--ratio", type=float, help="ISH HER2/CEP17 ratio")
    s.add_argument("--her2-per-cell", type=float, help="mean HER2 signals per nucleus")
    s.add_argument("--cep17-per-cell", type=float, help="mean CEP17 signals per nucleus")
    s.add_argument("--nuclei", type=int, help="evaluable nuclei counted (below 20: no call)")
    _options(s, "guideline", "json")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("case", help="one case end to end: IHC slide and/or ISH fields -> HER2 status")
    s.add_argument("--ihc", help="IHC slide or image")
    s.add_argument("--ish", nargs="+", help="ISH field images (or folders) of the same case")
    s.add_argument("--mpp", type=float, help="IHC level-0 pixel size in um/px (overrides metadata)")
    s.add_argument("--ish-mpp", type=float, help="ISH field pixel size in um/px (overrides metadata)")
    _options(s, "force_mpp", "roi", "quiet")
    _options(s, "guideline", "config", "channels", "brightfield", "json")
    s.add_argument("--workers", type=int, default=None, help="worker processes for the IHC slide")
    s.add_argument("--out", help="folder for result.json, ihc/ and ish/")
    s.add_argument("--case-id", help="the case's id in result.json and the report (default: the --out folder's name)")
    s.set_defaults(func=cmd_case)

    s = sub.add_parser("report", help="print a case's report to PDF (the case folder is left as it is)")
    s.add_argument("case", help="a case folder written by `her2path case` or `batch` (cases/ID)")
    s.add_argument("--pdf", required=True, help="PDF file to write")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("train", help="train the tile model on an annotated tile dataset")
    s.add_argument("dataset", help="class folders 0/ 1+/ 2+/ 3+/, a path,label CSV, BCI-style names or a review export")
    s.add_argument("--out", required=True, help="model file to write (.pt)")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument("--init", help="start from this model (retraining on a lab's tiles)")
    s.add_argument("--restart", action="store_true", help="ignore an existing checkpoint instead of resuming")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="accuracy, QWK and confusion of a tile model on a dataset")
    s.add_argument("dataset")
    s.add_argument("--model", help="model file (default: models/tile_model.pt)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.add_argument("--out", help="write the confusion matrix PNG here")
    _options(s, "json")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("calibrate", help="fit the per-cell membrane cut-offs to annotated tiles; write a config")
    s.add_argument("dataset", help="annotated tiles (same layouts as train)")
    s.add_argument("--out", required=True, help="config YAML to write")
    s.add_argument("--config", help="config to start from (default: configs/default.yaml)")
    _options(s, "guideline", "json")
    s.set_defaults(func=cmd_calibrate)

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
    except OSError as exc:   # permissions, a full disk, a read-only or vanished folder: the user's to fix
        if args.debug:
            traceback.print_exc()
        print(f"her2path: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(f"her2path: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
