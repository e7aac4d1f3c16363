"""``her2path review-export``: reviewed tiles as an annotated dataset that ``her2path train`` reads.

The label of a tile is the reviewer's latest decision: the score set, or the
measured score when it was accepted. Writes ``DATASET/<label>/CASE_tileN.jpg``
and ``DATASET/labels.csv`` (path, label, case_id, tile, reviewer, at, decision).
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from ..errors import InputError
from ..io.writers import atomic_write_bytes
from ..pipeline.layout import BatchLayout, CaseLayout, find_case_dirs
from .store import ReviewStore


def export_dataset(out: str | Path, dataset: str | Path) -> dict[str, int]:
    """Copy every reviewed tile into ``dataset``; returns tiles per label."""
    out, dataset = Path(out), Path(dataset)
    db = BatchLayout(out).review_db
    if not db.is_file():
        raise InputError("no review decisions here (review.sqlite missing)", out, "review tiles with `her2path review`")
    dirs = find_case_dirs(out)
    rows, counts, scores = [], {}, {}
    for (key, kind, tile), d in sorted(ReviewStore(db).current().items(), key=lambda kv: (kv[0][0], kv[0][2] or 0)):
        if kind != "tile" or key not in dirs:
            continue
        lay = CaseLayout(dirs[key])
        if key not in scores:
            ihc = json.loads(lay.ihc.result.read_text())
            scores[key] = {t["index"]: t["score"] for t in ihc["tiles"]}
        label = scores[key][tile] if d.value == "accept" else d.value
        rel = Path(label) / f"{key}_tile{tile:04d}.jpg"
        (dataset / label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lay.ihc.tile_image(tile), dataset / rel)
        rows.append([rel.as_posix(), label, key, tile, d.reviewer, d.at, d.value])
        counts[label] = counts.get(label, 0) + 1
    if not rows:
        raise InputError("no reviewed tiles to export", out, "score or accept tiles in `her2path review` first")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "case_id", "tile", "reviewer", "at", "decision"])
    w.writerows(rows)
    atomic_write_bytes(dataset / "labels.csv", buf.getvalue().encode())
    return counts
