"""``her2path verify``: are the files of an output folder still the ones her2path wrote?

For a batch folder every case is checked against the sha256s ``results.sqlite``
recorded when it was committed; for a single case folder, against its
``checksums.sha256``. Missing, damaged, edited or added files are named, and
a ``result.json`` that no longer parses is a problem even when its checksum
was edited to match.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from ..errors import InputError
from ..schema import CaseResult
from .layout import BatchLayout, CaseLayout
from .results_store import ResultsDB, check_files, read_checksums


def _parses(folder: Path) -> list[str]:
    try:
        CaseResult.from_json(CaseLayout(folder).result.read_text())
    except (OSError, ValueError, ValidationError) as exc:
        return [f"result.json cannot be read ({type(exc).__name__})"]
    return []


def verify_case_folder(folder: Path, expected: dict[str, str] | None = None) -> list[str]:
    """Problems of one case folder against ``expected`` sha256s (default: its checksums.sha256)."""
    if expected is None:
        expected = read_checksums(folder)
        if expected is None:
            return ["checksums.sha256 is missing: the folder cannot be verified"]
    problems = check_files(folder, expected)
    return problems or _parses(folder)


def verify_output(folder: str | Path) -> dict:
    """Check a batch or case output folder; returns the cases with their problems and counts."""
    folder = Path(folder)
    lay = BatchLayout(folder)
    cases = []
    if lay.results_db.is_file():
        db = ResultsDB(lay.results_db)
        rows = db.all()
        db.close()
        recorded = set()
        for r in rows:
            recorded.add(r["folder"])
            files = json.loads(r["files"] or "{}")
            if r["state"] == "failed" and not files:
                cases.append({"case_id": r["case_id"], "folder": r["folder"], "state": "failed", "problems": []})
                continue
            problems = verify_case_folder(lay.cases / r["folder"], files)
            cases.append({"case_id": r["case_id"], "folder": r["folder"], "state": r["state"], "problems": problems})
        for d in sorted(lay.cases.iterdir()) if lay.cases.is_dir() else []:
            if not d.name.startswith(".") and d.name not in recorded:
                cases.append({"case_id": d.name, "folder": d.name, "state": "unknown",
                              "problems": ["not recorded in results.sqlite"]})
    elif CaseLayout(folder).result.exists():
        cases.append({"case_id": folder.name, "folder": str(folder), "state": "done",
                      "problems": verify_case_folder(folder)})
    else:
        raise InputError("no batch results (results.sqlite) or case result (result.json) here", folder,
                         "give the --out folder of `her2path batch` or `her2path case`")
    damaged = sum(bool(c["problems"]) for c in cases)
    failed = sum(c["state"] == "failed" for c in cases)
    return {"folder": str(folder), "cases": cases, "intact": len(cases) - damaged - failed, "damaged": damaged,
            "failed": failed}
