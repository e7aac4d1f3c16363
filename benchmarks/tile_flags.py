"""Which disagreements of the tile model with the measured tile score are worth a reviewer's look.

    python -m benchmarks.tile_flags

A tile is flagged for review when the tile model's vote differs from the
measured score (``rules.flags.tile_flagged``). Here, on generator tiles with
exact truth, every disagreement is sorted by who was right: the model, the
measurement, or neither; by class distance and by the model's probability.
The cut-off ``tile_model.flag_probability`` is chosen on the "choose" tiles
(400, seed 5, used nowhere else) and reported on the held-out "test" tiles
(400, seed 1: ``benchmarks.tile_model``'s test set). Precision: the share of
flags where the model was right (the measurement was wrong there); caught:
the measurement's errors that a flag points to. Writes
benchmarks/results/tile_flags.json.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from her2path.classify.calibrate import measure, tile_scores
from her2path.classify.datasets import load_tile_set
from her2path.classify.model import embeddings, load_model, novelty_ratio, probabilities
from her2path.classify.train import load_pixels
from her2path.config import load_settings
from her2path.rules.flags import tile_flagged
from her2path.rules.tables import load_guideline
from her2path.schema import CLASSES

from .common import print_table, write_results
from .tile_model import dataset

SETS = {"choose": (400, 5, "random", "default"), "test": (400, 1, "random", "default")}
PROBABILITIES = (0.0, 0.6, 0.8, 0.9, 0.95)     # 0.0: every disagreement flagged (the rule before)


def tile_votes(name: str, model, settings) -> dict[str, np.ndarray]:
    """Truth, measured score, the model's vote, its probability and abstention for every tile of a set."""
    ts = load_tile_set(dataset(name, SETS))
    features = embeddings(model, load_pixels(ts))
    prob = probabilities(model, features)
    abstain = novelty_ratio(model, features) > 1
    measured = tile_scores(measure(ts.paths, settings), settings.ihc.cell_class, load_guideline("breast"))
    return {"truth": np.asarray(ts.labels), "measured": measured, "vote": prob.argmax(1), "p": prob.max(1),
            "abstain": abstain}


def flag_figures(v: dict[str, np.ndarray], min_probability: float) -> dict:
    """Flags, their precision and the measurement errors caught under one cut-off."""
    flags = np.array([tile_flagged(CLASSES[m], None if a else CLASSES[o], p, True, min_probability)
                      for m, o, p, a in zip(v["measured"], v["vote"], v["p"], v["abstain"])])
    right = flags & (v["vote"] == v["truth"])
    errors = int(np.sum((v["measured"] != v["truth"]) & ~v["abstain"]))
    return {"flags": int(flags.sum()), "model_right": int(right.sum()),
            "precision": float(right.sum() / flags.sum()) if flags.any() else float("nan"),
            "measurement_errors": errors}


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    out, rows = {}, []
    model, _ = load_model(None)
    settings = load_settings()
    for name in SETS:
        v = tile_votes(name, model, settings)
        out[name] = {"tiles": len(v["truth"]), "measured_accuracy": float(np.mean(v["measured"] == v["truth"])),
                     "model_accuracy": float(np.mean(v["vote"] == v["truth"])),
                     "by_probability": {str(p): flag_figures(v, p) for p in PROBABILITIES}}
        for p, f in out[name]["by_probability"].items():
            rows.append([name, p, f["flags"], f["model_right"], round(f["precision"], 2),
                         f"{f['model_right']} of {f['measurement_errors']}"])
    print_table("Tile-model flags on generator tiles (flag_probability 0.0: every disagreement)",
                ["set", "flag_probability", "flags", "model right", "precision", "measurement errors caught"], rows)
    path = write_results("tile_flags", {"sets": {k: list(s) for k, s in SETS.items()}, "results": out,
                                        "shipped": settings.tile_model.flag_probability})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
