"""Labelled IHC tiles for training and evaluating the tile model: class folders 0/ 1+/ 2+/ 3+/.

Each tile is a 128 x 128 um field at 0.5 um/px (256 px); its label is the
(breast) guideline score of its true tumour cells. ``--generator random``
(the default) draws every tile from the randomised generator
(``synthetic.tissue``: architecture, stroma, counterstain, membranes, blur,
colour cast, JPEG over their whole range); ``classic`` from the first one.

    python -m her2path.synthetic.tiles OUT --n 2000 [--seed 0] [--generator random|classic] [--variant lab-b]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..io.writers import write_image
from .ihc import IhcFieldSpec, StainVectors, jitter_stains, preset, render_ihc_field

TILE_UM = 128.0
TILE_MPP = 0.5
# A second lab: a redder DAB, bluer hematoxylin and an antibody 30% weaker than ours.
VARIANTS = {
    "default": {},
    "lab-b": {"stains": StainVectors(hematoxylin=(0.55, 0.72, 0.42), dab=(0.18, 0.50, 0.85)), "dab_scale": 0.7},
}


def tile_spec(k: int, seed: int, variant: str = "default") -> IhcFieldSpec:
    """The k-th tile of a set: a preset class mix with its proportions and stains jittered."""
    rng = np.random.default_rng([seed, k])
    score = ("0", "1+", "2+", "3+")[k % 4]
    spec = preset(score, seed=int(rng.integers(2**31)), width_um=TILE_UM, height_um=TILE_UM, mpp=TILE_MPP)
    mix = np.array([spec.percent[c] for c in ("0", "1+", "2+", "3+")]) * rng.uniform(0.6, 1.4, 4)
    mix = 100 * mix / mix.sum()
    over = dict(VARIANTS[variant])
    stains = jitter_stains(over.pop("stains", StainVectors()), rng, 5.0)
    return replace(spec, percent=dict(zip(("0", "1+", "2+", "3+"), mix.tolist())), stains=stains,
                   jpeg_quality=int(rng.choice([0, 90])) or None, **over)


def random_tile(k: int, seed: int, min_cells: int = 8):
    """The k-th tile from the randomised generator (redrawn until it holds ``min_cells`` tumour cells)."""
    from .tissue import random_spec, render_tissue

    for attempt in range(100):   # the field's seed modulo 4 picks its score: k cycles through 0, 1+, 2+, 3+
        field_seed = 4 * int(np.random.default_rng([seed, k, attempt]).integers(2**28)) + k % 4
        spec = random_spec(field_seed, mpp=TILE_MPP, width_um=TILE_UM, height_um=TILE_UM, guideline="breast")
        f = render_tissue(spec)
        if len(f.truth.cls) >= min_cells and f.decision.score is not None:
            return f
    raise RuntimeError(f"no tile with {min_cells} tumour cells in 100 draws (seed {seed}, tile {k})")


def write_tile_dataset(folder: str | Path, n: int, seed: int = 0, variant: str = "default",
                       generator: str = "random") -> dict[str, int]:
    """Write ``n`` labelled tiles into class folders; returns tiles per class."""
    folder = Path(folder)
    counts = {c: 0 for c in ("0", "1+", "2+", "3+")}
    for k in range(n):
        f = random_tile(k, seed) if generator == "random" else render_ihc_field(tile_spec(k, seed, variant))
        label = f.decision.score
        (folder / label).mkdir(parents=True, exist_ok=True)
        path = folder / label / f"tile_{seed}_{k:05d}.png"
        write_image(path, f.rgb, TILE_MPP)
        counts[label] += 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="write a labelled synthetic IHC tile dataset (class folders)")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default", help="classic generator only")
    ap.add_argument("--generator", choices=["random", "classic"], default="random")
    args = ap.parse_args(argv)
    print(write_tile_dataset(args.out, args.n, args.seed, args.variant, args.generator))
    return 0


if __name__ == "__main__":
    sys.exit(main())
