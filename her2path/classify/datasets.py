"""Annotated IHC tile datasets: class folders, a CSV, BCI-style names, or a QA-review export.

A dataset resolves to (image path, label) pairs, labels 0..3 for 0/1+/2+/3+.
Every problem is collected first and reported together, naming the files, so
training never starts on a broken dataset.

Layouts
-------
- class folders: ``DIR/0/*.png``, ``DIR/1+/``, ``DIR/2+/``, ``DIR/3+/``
- CSV: ``path,label`` (paths relative to the CSV); also ``DIR/labels.csv`` (the review export)
- BCI-style names: the label in the file name, e.g. ``00012_train_2+.png``
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..schema import CLASSES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_ALIASES = {"0": 0, "1": 1, "1+": 1, "2": 2, "2+": 2, "3": 3, "3+": 3}
_NAME_LABEL = re.compile(r"(?:^|[_\-\s])([0-3]\+|[0-3])(?=\.[a-z]+$)", re.I)


class DatasetError(InputError):
    """A dataset with unknown labels, unreadable images or empty classes."""


@dataclass(frozen=True)
class TileSet:
    paths: list[Path]
    labels: np.ndarray     # (n,) int 0..3

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(CLASSES)}


def _label(text: str) -> int | None:
    return _ALIASES.get(text.strip())


def _from_csv(path: Path, bad: list[str]) -> list[tuple[Path, int]]:
    out = []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows, start=2):
        if "path" not in row or "label" not in row:
            raise DatasetError("the CSV needs the columns path,label", path, "write a header line: path,label")
        lab = _label(row["label"] or "")
        if lab is None:
            bad.append(f"{path}:{i}: unknown label '{row['label']}'")
            continue
        out.append(((path.parent / row["path"]).resolve(), lab))
    return out


def _scan(root: Path, bad: list[str]) -> list[tuple[Path, int]]:
    if root.is_file():
        return _from_csv(root, bad)
    if (root / "labels.csv").is_file():
        return _from_csv(root / "labels.csv", bad)
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir()]
    if subdirs:
        out = []
        for d in subdirs:
            lab = _label(d.name)
            files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if lab is None:
                bad.append(f"{d}: unknown class folder '{d.name}' (use 0, 1+, 2+, 3+)")
                continue
            out += [(p, lab) for p in files]
        return out
    out = []
    for p in sorted(q for q in root.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES):
        m = _NAME_LABEL.search(p.name)
        if m is None:
            bad.append(f"{p}: no label in the file name (expected e.g. 00012_train_2+.png)")
        else:
            out.append((p, _ALIASES[m.group(1)]))
    return out


def load_tile_set(source: str | Path, check_images: bool = True) -> TileSet:
    """Find every tile and its label; raise ``DatasetError`` listing all bad entries."""
    root = Path(source)
    if not root.exists():
        raise DatasetError("dataset not found", root, "give a folder of class folders, a CSV or a review export")
    bad: list[str] = []
    items = _scan(root, bad)
    if check_images:
        for p, _ in items:
            if not p.is_file():
                bad.append(f"{p}: missing")
            elif cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is None:
                bad.append(f"{p}: unreadable image")
    labels = np.array([lab for _, lab in items], int)
    empty = [c for i, c in enumerate(CLASSES) if not (labels == i).any()]
    if empty:
        bad.append(f"{root}: no tiles of class {', '.join(empty)}")
    if bad:
        listing = "; ".join(bad[:8]) + (f"; and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise DatasetError(f"{len(bad)} problem(s) in the dataset: {listing}", root,
                           "fix or remove the listed files; every class 0, 1+, 2+, 3+ needs tiles")
    return TileSet([p for p, _ in items], labels)


def read_tile(path: Path, size: int) -> np.ndarray:
    """RGB uint8 tile, centre-cropped or padded (white) to ``size`` px."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError("unreadable image", path, "replace or remove it")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    out = np.full((size, size, 3), 255, np.uint8)
    y0, x0 = max((h - size) // 2, 0), max((w - size) // 2, 0)
    crop = img[y0:y0 + size, x0:x0 + size]
    out[:crop.shape[0], :crop.shape[1]] = crop
    return out
