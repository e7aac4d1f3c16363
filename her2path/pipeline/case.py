"""One case end to end: IHC slide and/or ISH fields -> CaseResult, with every output written."""
from __future__ import annotations

from pathlib import Path

from ..classify import classify
from ..config import load_settings
from ..io import open_image
from ..io.fluorescence import DEFAULT_CHANNELS
from ..io.writers import atomic_write_bytes
from ..schema import CaseResult
from .ihc_slide import score_ihc
from .ish_case import count_ish
from .outputs import write_ihc_outputs


def run_case(ihc=None, ish=None, out: str | Path | None = None, guideline: str = "breast",
             channels=DEFAULT_CHANNELS, brightfield: bool = False, mpp: float | None = None,
             ish_mpp: float | None = None, case_id: str | None = None, workers: int | None = None,
             progress: bool = False, config: str | Path | None = None) -> CaseResult:
    """Score the IHC slide, count the ISH fields, classify; with ``out``: ihc/, ish/ and result.json.

    ``result.json`` is written last (atomically), so its presence marks a finished case.
    """
    out = Path(out) if out else None
    ihc_result = ish_result = None
    if ihc:
        with open_image(ihc, mpp=mpp) as slide:
            ihc_result = score_ihc(slide, guideline=guideline, workers=workers, progress=progress,
                                   settings=load_settings(config) if config else None)
            if out:
                write_ihc_outputs(ihc_result, slide, out / "ihc")
    if ish:
        ish_result = count_ish(ish, channels, ish_mpp, brightfield, guideline, out / "ish" if out else None)
    result = classify(ihc_result, ish_result, guideline, case_id=case_id)
    if out:
        atomic_write_bytes(out / "result.json", (result.to_json() + "\n").encode())
    return result
