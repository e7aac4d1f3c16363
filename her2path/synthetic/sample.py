"""The embedded sample case: a small IHC slide and FISH fields of one tumour, with truth."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..io.writers import atomic_write_bytes, write_image
from .ish import IshFieldSpec, render_fish
from .wsi import make_sample_slide

SAMPLE_PERCENT = {"0": 40.0, "1+": 25.0, "2+": 27.0, "3+": 8.0}   # an IHC 2+ (equivocal) tumour
SAMPLE_ISH_GROUP = 1                                              # amplified: ISH decides positive


@dataclass(frozen=True)
class SampleCase:
    folder: Path
    slide: Path
    fish: list[Path]
    truth: Path


def build_sample_case(folder: str | Path, seed: int = 7) -> SampleCase:
    """Write the sample case into ``folder`` (reused when already complete)."""
    folder = Path(folder)
    slide = folder / "ihc" / "slide.svs"
    fish = [folder / "fish" / f"field_{i}.tif" for i in (1, 2, 3)]
    truth_path = folder / "truth.json"
    if truth_path.exists() and slide.exists() and all(p.exists() for p in fish):
        return SampleCase(folder, slide, fish, truth_path)
    slide.parent.mkdir(parents=True, exist_ok=True)
    fish[0].parent.mkdir(parents=True, exist_ok=True)
    st = make_sample_slide(slide, mpp=0.5, width_um=2048, height_um=1536, n_islands=3, seed=seed,
                           percent=SAMPLE_PERCENT, jpeg_quality=None)
    fields = []
    for i, p in enumerate(fish):
        f = render_fish(IshFieldSpec(group=SAMPLE_ISH_GROUP, seed=seed * 10 + i))
        write_image(p, f.cyx(16), f.mpp)
        fields.append(f.truth)
    evaluable = sum(int(t.evaluable.sum()) for t in fields)
    her2 = sum(int(t.her2[t.evaluable].sum()) for t in fields)
    cep = sum(int(t.cep17[t.evaluable].sum()) for t in fields)
    truth = {
        "ihc": {"score": st.decision.score, "percent_cells": st.decision.percent,
                "tumour_cells": int(len(st.cells.cls)), "sub_label": st.decision.sub_label},
        "ish": {"nuclei": evaluable, "her2_per_cell": her2 / evaluable, "cep17_per_cell": cep / evaluable,
                "ratio": her2 / cep},
    }
    atomic_write_bytes(truth_path, json.dumps(truth, indent=2).encode())
    return SampleCase(folder, slide, fish, truth_path)
