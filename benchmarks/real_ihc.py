"""Real HER2 IHC cores with pathologists' scores: what the method says, and overlays to look at.

    python -m benchmarks.real_ihc [DIR] [--workers 2] [--baseline REV] [--overlays OUT]

DIR holds ``labels.csv`` (file, ihc_score, guideline, mpp_estimate, core_shows)
and the images; default ``../shared/data/real-labelled``. Each core is scored
through ``score_ihc`` as a user's JPEG would be (with the mpp of labels.csv).
Printed per core: label, what the core shows, score, percent of cells per
class, tumour cells, seconds and peak memory (the worker's, measured in a
fresh process per core). ``--baseline REV`` scores every core with the code of
commit REV too (a git worktree in benchmarks/.cache), in the same run, for
the time and score comparison. Overlays (``--overlays``, default
benchmarks/.cache/real_ihc): the core with every tumour cell marked in its
class colour and non-tumour cells in grey, plus the most-cells tiles at full
resolution.

The labels are the case's score; ``core_shows`` says what the core itself
shows. These cores are for finding what breaks on real tissue, not for
fitting cut-offs: other real images are kept apart to check that what works
here carries over.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from her2path.schema import CLASSES

from .common import CACHE, baseline_tree, print_table, write_results

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-labelled"
SHOWS_LABEL = ("show", "glands with", "strong complete", "diffuse", "tumour glands without")

# Runs in a fresh interpreter per core (for its own peak memory), with the code on sys.path[0].
WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
t0 = time.perf_counter()
from her2path.pipeline.ihc_slide import score_ihc
path, mpp, guideline, workers, overlays = sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
out = {}
try:
    r = score_ihc(path, mpp=mpp, guideline=guideline, workers=workers)
    out = {"score": r.score, "percent": r.percent_cells, "tumour_cells": r.tumour_cells,
           "non_tumour_cells": r.non_tumour_cells, "reasons": r.reasons, "warnings": r.warnings,
           "flagged_tiles": len(r.flagged_tiles),
           "model_votes": [t.model_score for t in r.tiles if t.model_score is not None]}
    if overlays:
        try:
            from benchmarks.real_ihc import draw_overlays
            draw_overlays(r, path, overlays)
        except ImportError:
            pass
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
out["seconds"] = round(time.perf_counter() - t0, 2)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
out["peak_mib"] = round(int(status) / 1024, 1)
print("RESULT " + json.dumps(out))
"""


def draw_overlays(result, path: str, folder: str, max_px: int = 1400, tiles: int = 2) -> None:
    """The core with its tumour cells in class colours (grey: non-tumour), and full-resolution tiles."""
    import cv2
    import numpy as np

    from her2path.io import open_image
    from her2path.pipeline.outputs import CLASS_RGB, NON_TUMOUR_RGB, tile_views

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem[:10]
    with open_image(path, mpp=result.scan_mpp) as slide:
        w, h = slide.dimensions
        mpp = result.scan_mpp * max(w, h) / max_px
        thumb = slide.thumbnail(mpp).copy()
        k = result.scan_mpp / mpp
        for x, y in result.non_tumour_xy:
            cv2.circle(thumb, (int(x * k), int(y * k)), 1, NON_TUMOUR_RGB, -1)
        c = result.cells
        for x, y, cl in zip(c.x, c.y, c.cls):
            cv2.circle(thumb, (int(x * k), int(y * k)), 2, CLASS_RGB[cl], -1)
        cv2.imwrite(str(out / f"{stem}_core.png"), cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR))
        best = sorted(result.tiles, key=lambda t: -t.tumour_cells)[:tiles]
        by_tile = {}
        for i, t in enumerate(c.tile):
            by_tile.setdefault(t, []).append(i)
        nt = np.asarray(result.non_tumour_xy, float).reshape(-1, 2)
        for t in best:
            plain, over = tile_views(result, slide, t.index, by_tile.get(t.index, []), nt)
            cv2.imwrite(str(out / f"{stem}_tile{t.index:03d}.png"),
                        cv2.cvtColor(np.hstack([plain, over]), cv2.COLOR_RGB2BGR))


def score_core(code: Path, path: Path, mpp: float, guideline: str, workers: int, overlays: str) -> dict:
    r = subprocess.run([sys.executable, "-c", WORKER, str(code), str(path), str(mpp), guideline, str(workers),
                        overlays], capture_output=True, text=True, cwd=str(code))
    for line in r.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (r.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def model_vote(votes: list[str]) -> str | None:
    """The tile model's slide-level vote: the class most of its voting tiles give (it votes only on
    tiles ``rules.flags.model_compared`` admits), the higher class on a tie; None
    (abstains) without votes."""
    if not votes:
        return None
    return max(CLASSES, key=lambda c: (votes.count(c), CLASSES.index(c)))


def expected(row: dict) -> str:
    """What a right answer is for this core: its label, 'no tumour', or 'unstained tumour' (0)."""
    shows = row["core_shows"].lower()
    if "without tumour" in shows or "no tumour" in shows:
        return "no tumour"
    if "look unstained" in shows or "does not show" in shows:
        return "0 (core unstained)"
    return row["ihc_score"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline", help="also score with the code of this git commit, in the same run")
    ap.add_argument("--overlays", default=str(CACHE / "real_ihc"))
    args = ap.parse_args(argv)
    folder = Path(args.folder).resolve()        # the baseline runs in its own worktree
    if not (folder / "labels.csv").is_file():
        print(f"no labels.csv in {folder}; give the folder of the real labelled cores", file=sys.stderr)
        return 2
    rows = list(csv.DictReader((folder / "labels.csv").open()))
    code = Path(__file__).resolve().parents[1]
    base = baseline_tree(args.baseline) if args.baseline else None
    results, table = [], []
    t_all = time.perf_counter()
    for row in rows:
        path = folder / row["file"]
        ours = score_core(code, path, float(row["mpp_estimate"]), row["guideline"], args.workers, args.overlays)
        old = score_core(base, path, float(row["mpp_estimate"]), row["guideline"], args.workers, "") if base else None
        exp = expected(row)
        got = ours.get("score") if "error" not in ours else "error"
        if got is None:
            got = "no call"
        ok = (got == exp) or (exp == "no tumour" and got == "no call") or (exp.startswith("0 (") and got == "0")
        vote = model_vote(ours.get("model_votes") or [])
        results.append({"file": row["file"], "label": row["ihc_score"], "expected": exp, "core_shows": row["core_shows"],
                        "ours": ours, "baseline": old, "agrees": ok, "model_vote": vote,
                        "model_agrees": None if vote is None else (vote == exp or (exp.startswith("0 (") and vote == "0"))})
        pct = ours.get("percent") or {}
        table.append([Path(row["file"]).name[:10], row["ihc_score"], exp, got, "yes" if ok else "NO",
                      " ".join(f"{k}:{v:.0f}" for k, v in pct.items()), ours.get("tumour_cells", "-"),
                      ours.get("seconds", "-"), ours.get("peak_mib", "-"),
                      f"{vote or 'abstains'} ({len(ours.get('model_votes') or [])} tiles, {ours.get('flagged_tiles', 0)} flagged)",
                      (old.get("score", old.get("error", "?")[:20]) if old else "-"),
                      (old.get("seconds", "-") if old else "-")])
    shows = [r for r in results if r["expected"] == r["label"]]
    summary = {"cores": len(results), "agree_all": sum(r["agrees"] for r in results),
               "model_agrees": sum(bool(r["model_agrees"]) for r in results),
               "model_abstains": sum(r["model_vote"] is None for r in results),
               "cores_showing_label": len(shows), "agree_showing_label": sum(r["agrees"] for r in shows),
               "seconds": round(time.perf_counter() - t_all, 1)}
    print_table(f"Real HER2 IHC cores ({folder}): agree on {summary['agree_showing_label']} of "
                f"{summary['cores_showing_label']} showing their label, {summary['agree_all']} of {len(results)} in all",
                ["core", "label", "right answer", "ours", "agrees", "% cells 0/1+/2+/3+", "tumour cells", "s",
                 "peak MiB", "tile model vote", f"baseline {args.baseline or ''}", "baseline s"], table)
    path = write_results("real_ihc", {"folder": str(folder), "baseline": args.baseline, "summary": summary,
                                      "cores": results, "overlays": args.overlays})
    print(f"wrote {path}; overlays in {args.overlays}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
