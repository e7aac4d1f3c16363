"""Where every output file lives: one module that knows the folder layout.

A case folder (``her2path case --out``, or ``OUT/cases/<folder>`` in a batch)::

    result.json            the CaseResult (written last: its presence marks a finished case)
    checksums.sha256       sha256 of every other file, ``sha256sum -c`` format (written last of all)
    report.html, report.pdf
    ihc/result.json, cells.csv, cells.geojson, heatmap.png, overlays/tile_NNNN.png,
        tiles/tile_NNNN.jpg and tile_NNNN_cells.jpg (the review tiles)
    ish/result.json, nuclei.csv, overlay_N.png

A batch output folder::

    cases/<folder>/        one case folder per case
    cases/.<folder>.<run>.partial, .<folder>.<run>.old   in-flight folders of a commit
    results.sqlite, summary.csv, review.sqlite

Case ids
--------
A case id is any text of 1 to 200 printable characters (no control
characters, no leading or trailing space). Its folder name is the id itself
when the id is *plain* (letters A-Z a-z, digits, ``.``, ``_``, ``-``; starting
with a letter or digit; at most 80 characters), else a plain slug of it plus
the first 10 hex digits of the id's sha256, so that ``../x``, ``/etc`` or
``<b>`` can never name a folder outside ``cases/``. The id itself is kept in
``result.json`` and in the results database.

Examples
--------
>>> case_folder("case01")
'case01'
>>> case_folder("../../victim")
'victim-e2c35920a2'
>>> CaseLayout("out/cases/case01").ihc.heatmap.as_posix()
'out/cases/case01/ihc/heatmap.png'
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from ..errors import InputError

PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
MAX_ID = 200


def check_case_id(case_id: str, where: str | Path | None = None) -> str:
    """Return ``case_id`` when it is a valid case id (see the module docstring), else raise InputError."""
    if not isinstance(case_id, str) or not case_id or case_id != case_id.strip():
        raise InputError(f"case id {case_id!r} is empty or has leading or trailing spaces", where,
                         "give every case a non-empty id without surrounding spaces")
    if len(case_id) > MAX_ID:
        raise InputError(f"case id of {len(case_id)} characters (at most {MAX_ID})", where, "shorten the case id")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for ch in case_id):
        raise InputError(f"case id {case_id!r} holds control or unassigned characters", where,
                         "use printable characters only")
    return case_id


def case_folder(case_id: str) -> str:
    """The folder name of a case id: the id when plain, else ``slug-<10 hex of its sha256>``."""
    check_case_id(case_id)
    if PLAIN_ID.match(case_id):
        return case_id
    ascii_ish = "".join(c for c in unicodedata.normalize("NFKD", case_id) if not unicodedata.combining(c))
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_ish).strip("._-")[:60]
    digest = hashlib.sha256(case_id.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}" if slug else f"case-{digest}"


class IhcLayout:
    """The files of an IHC output folder (``her2path ihc --out``, or a case's ``ihc/``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    result = property(lambda self: self.root / "result.json")
    cells_csv = property(lambda self: self.root / "cells.csv")
    cells_geojson = property(lambda self: self.root / "cells.geojson")
    heatmap = property(lambda self: self.root / "heatmap.png")
    overlays = property(lambda self: self.root / "overlays")
    tiles = property(lambda self: self.root / "tiles")

    def overlay(self, tile: int) -> Path:
        """Representative tile with cell marks (PNG)."""
        return self.overlays / f"tile_{tile:04d}.png"

    def tile_image(self, tile: int, cells: bool = False) -> Path:
        """Review tile, plain or with cell marks (JPEG)."""
        return self.tiles / f"tile_{tile:04d}{'_cells' if cells else ''}.jpg"


class IshLayout:
    """The files of an ISH output folder (``her2path ish --out``, or a case's ``ish/``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    result = property(lambda self: self.root / "result.json")
    nuclei_csv = property(lambda self: self.root / "nuclei.csv")

    def overlay(self, field: int) -> Path:
        """A field with nucleus outlines, signals and counts drawn (PNG)."""
        return self.root / f"overlay_{field}.png"


class CaseLayout:
    """The files of one case folder (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    result = property(lambda self: self.root / "result.json")
    checksums = property(lambda self: self.root / "checksums.sha256")
    report_html = property(lambda self: self.root / "report.html")
    report_pdf = property(lambda self: self.root / "report.pdf")
    ihc = property(lambda self: IhcLayout(self.root / "ihc"))
    ish = property(lambda self: IshLayout(self.root / "ish"))


class BatchLayout:
    """The files of a batch output folder (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    cases = property(lambda self: self.root / "cases")
    results_db = property(lambda self: self.root / "results.sqlite")
    summary_csv = property(lambda self: self.root / "summary.csv")
    review_db = property(lambda self: self.root / "review.sqlite")

    def case(self, folder: str) -> CaseLayout:
        return CaseLayout(self.cases / folder)

    def partial(self, folder: str, run_id: str) -> Path:
        return self.cases / f".{folder}.{run_id}.partial"

    def old(self, folder: str, run_id: str) -> Path:
        return self.cases / f".{folder}.{run_id}.old"

    def inside(self, path: Path) -> bool:
        """Whether ``path`` (symlinks followed) lies inside this output folder."""
        return Path(path).resolve().is_relative_to(self.root.resolve())


def find_case_dirs(out: str | Path) -> dict[str, Path]:
    """Folder name -> case folder for an output folder: a batch's ``cases/*`` that hold a
    result.json (broken or not), or the folder itself when it is one case."""
    out = Path(out)
    if CaseLayout(out).result.exists() or CaseLayout(out).result.is_symlink():
        return {out.name: out}
    found = {}
    cases = BatchLayout(out).cases
    for d in sorted(cases.iterdir()) if cases.is_dir() else []:
        if not d.name.startswith(".") and (d.is_dir() or d.is_symlink()):
            found[d.name] = d
    return found
