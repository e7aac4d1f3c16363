"""One case end to end: IHC slide and/or ISH fields -> CaseResult, with every output written."""
from __future__ import annotations

from pathlib import Path

from ..classify import classify
from ..config import load_settings
from ..io import open_image
from ..io.fluorescence import DEFAULT_CHANNELS
from ..io.writers import atomic_write_bytes
from ..progress import reporting
from ..schema import CaseResult
from .ihc_slide import score_ihc
from .ish_case import count_ish
from .layout import CaseLayout
from .outputs import write_ihc_outputs
from .report import write_report
from .results_store import write_checksums


def run_case(ihc=None, ish=None, out: str | Path | None = None, guideline: str = "breast",
             channels=DEFAULT_CHANNELS, brightfield: bool = False, mpp: float | None = None,
             ish_mpp: float | None = None, case_id: str | None = None, workers: int | None = None,
             progress=False, config: str | Path | None = None, force_mpp: bool = False,
             roi: str | Path | None = None) -> CaseResult:
    """Score the IHC slide, count the ISH fields, classify.

    With ``out``: ihc/, ish/, result.json, report.html and checksums.sha256
    (``layout``). ``result.json`` is written after the IHC and ISH outputs
    (atomically), and the checksums last of all. ``roi``: the IHC scoring region (``score_ihc``).
    """
    lay = CaseLayout(out) if out else None
    settings = load_settings(config)
    with reporting(progress) as progress:
        ihc_result = ish_result = None
        if ihc:
            progress.stage("open")
            with open_image(ihc, mpp=mpp, force_mpp=force_mpp) as slide:
                ihc_result = score_ihc(slide, guideline=guideline, workers=workers, progress=progress,
                                       settings=settings, roi=roi)
                if lay:
                    write_ihc_outputs(ihc_result, slide, lay.ihc.root, progress)
        if ish:
            progress.stage("ish")
            ish_result = count_ish(ish, channels, ish_mpp, brightfield, guideline, lay.ish.root if lay else None,
                                   settings=settings, force_mpp=force_mpp)
        result = classify(ihc_result, ish_result, guideline, case_id=case_id)
        if lay:
            progress.stage("report")
            atomic_write_bytes(lay.result, (result.to_json() + "\n").encode())
            write_report(lay.root)
            write_checksums(lay.root)
        return result


def signed_off_status(case_dir: str | Path, ihc_score: str, guideline: str, case_id: str | None = None
                      ) -> CaseResult:
    """The case's status recomputed by the guideline engine with a reviewer's overriding IHC score
    and the case's own ISH result (when it has one and it can be read)."""
    from pydantic import ValidationError

    from ..schema import IshResult

    path = CaseLayout(case_dir).ish.result
    ish = None
    if path.is_file():
        try:
            ish = IshResult.from_json(path.read_text())
        except (OSError, ValueError, ValidationError):
            ish = None
    return classify(ihc_score, ish, guideline, case_id=case_id)
