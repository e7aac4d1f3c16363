"""Tile model and calibration: accuracy on held-out generator tiles, lab adaptation, epoch speed.

    python -m benchmarks.tile_model [--model models/tile_model.pt] [--device cpu|cuda]

Datasets (seeds used nowhere else; cached in benchmarks/.cache/tiles): test (400
tiles of the randomised generator the default model was trained on, seed 1); a
second lab "lab-b" drawn by the other, classic generator (redder DAB, bluer
hematoxylin, 30% weaker antibody, round cells in cobblestone nests): lab-b train
(400, seed 2) and lab-b test (400, seed 3); and speed (2,500 classic tiles, seed
4: one epoch = 2,000 training tiles).

Rows: the default model on test and on lab-b test; retrained from the default on
lab-b train (``her2path train --init``) on both; the rule-based tile score on
lab-b test with the default config and with ``her2path calibrate`` fitted on
lab-b train; seconds for one training epoch on 2,000 tiles of 256 px.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from her2path.classify.calibrate import calibrate, measure, tile_scores
from her2path.classify.datasets import load_tile_set
from her2path.classify.metrics import qwk
from her2path.config import DEFAULT_TILE_MODEL
from her2path.classify.train import evaluate, train
from her2path.config import load_settings
from her2path.rules.tables import load_guideline
from her2path.synthetic.tiles import write_tile_dataset

from .common import CACHE, Timer, print_table, write_results

SETS = {"test": (400, 1, "random", "default"), "labb_train": (400, 2, "classic", "lab-b"),
        "labb_test": (400, 3, "classic", "lab-b"), "speed": (2500, 4, "classic", "default")}


def dataset(name: str, sets: dict = SETS) -> Path:
    """The tile set ``name`` of ``sets`` (n, seed, generator, variant), written once into the cache."""
    n, seed, generator, variant = sets[name]
    root = CACHE / "tiles" / f"{name}-{generator}"
    if not (root / ".done").exists():
        write_tile_dataset(root, n, seed, variant, generator)
        (root / ".done").write_text("ok")
    return root


def rule_agreement(tiles: Path, config: Path | None) -> dict:
    ts = load_tile_set(tiles)
    g = load_guideline("breast")
    s = load_settings(config)
    pred = tile_scores(measure(ts.paths, s), s.ihc.cell_class, g)
    return {"accuracy": float(np.mean(pred == ts.labels)), "qwk": qwk(ts.labels, pred)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_TILE_MODEL))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)
    paths = {k: dataset(k) for k in SETS}
    rows, res = [], {}
    for k in ("test", "labb_test"):
        res[f"default on {k}"] = evaluate(paths[k], args.model, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Timer() as t_re:
            train(paths["labb_train"], tmp / "labb.pt", epochs=8, lr=1e-3, init=args.model, device=args.device,
                  progress=False, patience=4)
        for k in ("test", "labb_test"):
            res[f"retrained on lab-b on {k}"] = evaluate(paths[k], tmp / "labb.pt", args.device)
        cal = calibrate(paths["labb_train"], tmp / "labb.yaml")
        rule_before = rule_agreement(paths["labb_test"], None)
        rule_after = rule_agreement(paths["labb_test"], tmp / "labb.yaml")
        with Timer() as t_ep:
            m = train(paths["speed"], tmp / "speed.pt", epochs=1, device=args.device, progress=False)
    for name, r in res.items():
        rows.append([f"model: {name}", r["n"], r["accuracy"], r["qwk"]])
    rows.append(["rules: default config on labb_test", 400, rule_before["accuracy"], rule_before["qwk"]])
    rows.append(["rules: calibrated on lab-b train, on labb_test", 400, rule_after["accuracy"], rule_after["qwk"]])
    print_table("Tile model and calibration vs generator truth (tile score 0/1+/2+/3+)",
                ["row", "tiles", "accuracy", "QWK"], rows)
    epoch_s = m["history"][0]["train_seconds"]
    print(f"one epoch on {m['train_tiles']} tiles of 256 px ({args.device}): {epoch_s:.1f} s "
          f"(+ validation; whole call {t_ep.seconds:.1f} s); retraining on lab-b took {t_re.seconds:.0f} s")
    path = write_results("tile_model", {
        "device": args.device, "model": args.model, "evaluations": res, "calibration": cal,
        "rules_labb_test": {"default": rule_before, "calibrated": rule_after},
        "epoch": {"train_tiles": m["train_tiles"], "seconds": epoch_s, "call_seconds": t_ep.seconds},
        "retrain_seconds": t_re.seconds})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
