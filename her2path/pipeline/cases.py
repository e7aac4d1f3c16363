"""Finding the cases of a batch: a manifest CSV, or a folder of case folders and slide files.

A manifest has the columns ``case_id,ihc,ish`` (``;`` separates several ISH
paths; rows with the same case_id add up; relative paths are relative to the
manifest's folder; an optional ``roi`` column names a scoring region). Without
one, each sub-folder of the batch folder is a case (ISH fields in a sub-folder
named ``ish``/``fish``/``cish``/``sish``, or told apart by content:
fluorescence fields are dark), and each image or slide file directly in the
folder is an IHC case of its own. Files are recognised by content; a file
named like a slide that is not one becomes a failed case, so nothing is
silently skipped. Case ids follow the rule of ``layout.check_case_id``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..io.fluorescence import is_fluorescence_field
from ..io.slide import sniff_format
from .layout import case_folder, check_case_id

IMAGE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".tif", ".tiff", ".png", ".jpg",
                  ".jpeg", ".dcm", ".svslide"}
ISH_FOLDERS = {"ish", "fish", "cish", "sish"}


@dataclass(frozen=True)
class CaseSpec:
    """One case of a batch: its id, input files, and why it cannot run (``error``) if so."""

    case_id: str
    ihc: str | None = None
    ish: tuple[str, ...] = ()
    roi: str | None = None           # scoring region (QuPath GeoJSON or mask) for the IHC slide
    error: str | None = None         # the case cannot run (e.g. an ambiguous folder): why, in one line
    input_sha256: str = ""           # digest of the inputs, once the run has taken it ("" before)

    @property
    def folder(self) -> str:
        """The case's folder name under ``cases/`` (``layout.case_folder``)."""
        return case_folder(self.case_id)

    @property
    def paths(self) -> list[str]:
        return ([self.ihc] if self.ihc else []) + list(self.ish) + ([self.roi] if self.roi else [])


def _format(path: Path) -> str | None:
    """The image format by content (None: not an image or slide, or unreadable)."""
    try:
        return sniff_format(path)
    except OSError:
        return None


def _sidecar_roi(slide: Path) -> str | None:
    """A scoring region saved beside a slide as ``SLIDE.geojson`` (QuPath annotation export)."""
    for cand in (slide.with_suffix(".geojson"), slide.with_name(slide.name + ".geojson")):
        if cand.is_file():
            return str(cand)
    return None


def _case_from_folder(folder: Path) -> CaseSpec:
    ihc, ish = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.suffix.lower() == ".geojson":
            continue
        in_ish = bool(ISH_FOLDERS & {q.name.lower() for q in p.relative_to(folder).parents})
        fmt = _format(p)
        if fmt is None:
            if p.suffix.lower() in IMAGE_SUFFIXES:
                ihc.append(p)                          # named like a slide: let it fail with its reason
            continue
        (ish if in_ish or is_fluorescence_field(p, fmt) else ihc).append(p)
    if len(ihc) > 1:
        raise InputError(f"case folder holds {len(ihc)} IHC images ({', '.join(p.name for p in ihc[:3])})",
                         folder, "keep one IHC slide per case folder, or list cases in a --manifest CSV")
    return CaseSpec(folder.name, str(ihc[0]) if ihc else None, tuple(map(str, ish)),
                    roi=_sidecar_roi(ihc[0]) if ihc else None)


def find_cases(folder: str | Path, manifest: str | Path | None = None) -> tuple[list[CaseSpec], list[str]]:
    """(cases, notes on what was skipped) for a batch folder or a manifest CSV."""
    folder = Path(folder)
    if manifest:
        cases, notes = _read_manifest(Path(manifest)), []
    else:
        if not folder.is_dir():
            raise InputError("batch input is not a folder", folder, "give the folder of slides or case folders")
        cases, notes = [], []
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or p.suffix.lower() == ".geojson":
                continue
            if p.is_dir():
                try:
                    spec = _case_from_folder(p)
                except InputError as exc:
                    cases.append(CaseSpec(p.name, error=exc.one_line()))
                    continue
                if spec.ihc or spec.ish:
                    cases.append(spec)
                else:
                    notes.append(f"{p}: no slide or image inside, skipped")
            elif p.suffix.lower() in IMAGE_SUFFIXES or _format(p):
                cases.append(CaseSpec(p.stem or p.name, ihc=str(p), roi=_sidecar_roi(p)))
            else:
                notes.append(f"{p}: not a slide or image, skipped")
        for c in cases:
            check_case_id(c.case_id, folder)
    _check_unique(cases, manifest or folder)
    return cases, notes


def _check_unique(cases: list[CaseSpec], where) -> None:
    """Two ids may not share a folder (compared case-insensitively, as on macOS and Windows disks)."""
    seen: dict[str, str] = {}
    for c in cases:
        key = c.folder.lower()
        if key in seen:
            raise InputError(f"case ids {seen[key]!r} and {c.case_id!r} would share the folder cases/{c.folder}",
                             where, "rename one of them")
        seen[key] = c.case_id


def _read_manifest(path: Path) -> list[CaseSpec]:
    if not path.is_file():
        raise InputError("manifest not found", path, "give a CSV with columns case_id,ihc,ish")
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"manifest is not a UTF-8 CSV ({exc})", path, "save it as UTF-8 CSV") from None
    if not rows or "case_id" not in rows[0]:
        raise InputError("manifest needs a header line case_id,ihc,ish", path, "add the header")
    merged: dict[str, dict] = {}
    for line, r in enumerate(rows, start=2):
        cid = r.get("case_id") or ""
        check_case_id(cid, f"{path} line {line}")
        m = merged.setdefault(cid, {"ihc": None, "ish": [], "roi": None})

        def resolve(v: str) -> str:
            return str((path.parent / v.strip()).resolve())

        if (r.get("ihc") or "").strip():
            m["ihc"] = resolve(r["ihc"])
        if (r.get("roi") or "").strip():
            m["roi"] = resolve(r["roi"])
        m["ish"] += [resolve(v) for v in (r.get("ish") or "").split(";") if v.strip()]
    return [CaseSpec(cid, m["ihc"], tuple(m["ish"]), roi=m["roi"] or (_sidecar_roi(Path(m["ihc"])) if m["ihc"] else None))
            for cid, m in merged.items()]
