"""The case status: IHC and/or ISH combined by the guideline's status table, with reasons and next step.

The table is ``configs/guidelines/NAME.yaml: status.rules``; the first row whose
``ihc`` and ``ish`` lists hold the case's values gives the status, its text and
the next step. Figures given by hand are checked first: impossible or
contradictory figures, and a call with nothing to classify, are refused.

Examples
--------
>>> classify(ihc="2+").status
'needs-ish'
>>> from her2path.schema import IshFigures
>>> r = classify(ihc="2+", ish=IshFigures(her2_per_cell=3.0, cep17_per_cell=2.0))
>>> r.status, r.sub_label
('negative', 'low')
"""
from __future__ import annotations

import math

from .._version import SOFTWARE
from ..errors import InputError
from ..schema import CLASSES, CaseResult, IhcResult, IshFigures, IshResult
from .flags import ihc_flags, ish_flags
from .ish import ish_group
from .tables import Guideline, load_guideline

ROUNDING = 0.005   # figures given by hand are taken as rounded to two decimals


def check_figures(fig: IshFigures) -> None:
    """Refuse impossible or contradictory ISH figures given by hand (InputError).

    Every figure must be a finite number above 0, and a ratio given with both
    per-cell means must match their quotient within two-decimal rounding.

    Examples
    --------
    >>> check_figures(IshFigures(ratio=1.5, her2_per_cell=3.0, cep17_per_cell=2.0))
    >>> check_figures(IshFigures(ratio=2.5, her2_per_cell=3.0, cep17_per_cell=2.0))
    Traceback (most recent call last):
    ...
    her2path.errors.InputError: ratio 2.50 does not match HER2 3.00 / CEP17 2.00 per cell = 1.50 (1.49-1.51 allowing for rounding). Fix: give the ratio that the per-cell means make, or leave one of them out
    """
    names = {"ratio": "--ratio", "her2_per_cell": "--her2-per-cell", "cep17_per_cell": "--cep17-per-cell",
             "nuclei": "--nuclei"}
    for key, flag in names.items():
        v = getattr(fig, key)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise InputError(f"{flag} must be a number above 0, got {v}",
                             fix=f"give the measured value with {flag}, or leave it out")
    h, c, r = fig.her2_per_cell, fig.cep17_per_cell, fig.ratio
    if None not in (h, c, r):
        lo = (h - ROUNDING) / (c + ROUNDING)
        hi = (h + ROUNDING) / max(c - ROUNDING, 1e-9)
        if not lo - ROUNDING <= r <= hi + ROUNDING:
            raise InputError(f"ratio {r:.2f} does not match HER2 {h:.2f} / CEP17 {c:.2f} per cell = {h / c:.2f} "
                             f"({lo:.2f}-{hi:.2f} allowing for rounding)",
                             fix="give the ratio that the per-cell means make, or leave one of them out")


def _ihc_key(ihc) -> tuple[str, list[str], list[str]]:
    """(IHC key of the status table, reasons, flags)."""
    if ihc is None:
        return "none", [], []
    if isinstance(ihc, str):
        if ihc not in (*CLASSES, "no-call"):
            raise InputError(f"IHC score '{ihc}' is not one of 0, 1+, 2+, 3+, no-call", fix="e.g. --ihc 2+")
        return ihc, [f"IHC {ihc} (given)"], []
    if ihc.score is None:
        return "no-call", list(ihc.reasons), ihc_flags(ihc)
    return ihc.score, list(ihc.reasons), ihc_flags(ihc)


def _ish_figures(fig: IshFigures, g: Guideline) -> tuple[str, list[str], dict]:
    check_figures(fig)
    t = g.ish
    h, c, r = fig.her2_per_cell, fig.cep17_per_cell, fig.ratio
    if r is None and h is not None and c:
        r = h / c
    if c is None and h is not None and r:
        c = h / r
    values = {"ratio": r, "her2_per_cell": h, "cep17_per_cell": c, "group": None}
    if fig.nuclei is not None and fig.nuclei < t.min_nuclei:
        return "no-call", [f"ISH: only {fig.nuclei} evaluable nuclei (at least {t.min_nuclei} needed)"], values
    if t.scheme == "ratio":
        if r is None:
            raise InputError("gastric ISH needs the HER2/CEP17 ratio", fix="give --ratio (or both per-cell means)")
        return ("positive" if r >= t.ratio_cutoff else "negative"), [f"ISH ratio {r:.2f} (given)"], values
    if h is None or c is None:
        raise InputError("breast ISH groups need mean HER2 and CEP17 signals per cell",
                         fix="give --her2-per-cell with --cep17-per-cell or --ratio")
    values["group"] = ish_group(h, c, g)
    return str(values["group"]), [f"ISH group {values['group']}: ratio {r:.2f}, HER2 {h:.2f}/cell, "
                                  f"CEP17 {c:.2f}/cell (given)"], values


def _ish_key(ish, g: Guideline) -> tuple[str, list[str], list[str], dict]:
    """(ISH key of the status table, reasons, flags, figures)."""
    none = {"ratio": None, "her2_per_cell": None, "cep17_per_cell": None, "group": None}
    if ish is None:
        return "none", [], [], none
    if isinstance(ish, IshFigures):
        key, reasons, values = _ish_figures(ish, g)
        return key, reasons, [], values
    values = {"ratio": ish.ratio, "her2_per_cell": ish.her2_per_cell, "cep17_per_cell": ish.cep17_per_cell,
              "group": ish.group}
    if ish.call == "no-call":
        return "no-call", list(ish.reasons), ish_flags(ish), values
    key = str(ish.group) if g.ish.scheme == "groups" else ish.call
    return key, list(ish.reasons), ish_flags(ish), values


def classify(ihc: IhcResult | str | None = None, ish: IshResult | IshFigures | None = None,
             guideline: str | Guideline = "breast", case_id: str | None = None) -> CaseResult:
    """Combine an IHC result (or a score) and/or an ISH result (or figures) into a HER2 status.

    Parameters
    ----------
    ihc : IhcResult, {"0", "1+", "2+", "3+", "no-call"} or None
    ish : IshResult, IshFigures or None
    guideline : str or Guideline
    case_id : str, optional

    Returns
    -------
    CaseResult
        The status, sub-label, next step and flags; the reasons list the
        status row, then the IHC and ISH rules behind it.

    Raises
    ------
    InputError
        Nothing to classify; an IHC scored under another guideline; figures
        that are impossible or contradict each other.
    """
    g = guideline if isinstance(guideline, Guideline) else load_guideline(guideline)
    if ihc is None and ish is None:
        raise InputError("nothing to classify: neither an IHC score nor ISH figures were given",
                         fix="give --ihc SCORE and/or --ratio / --her2-per-cell with --cep17-per-cell")
    if isinstance(ihc, IhcResult) and ihc.guideline != g.name:
        raise InputError(f"the IHC was scored by '{ihc.guideline}' but the case is classified by '{g.name}'",
                         fix="score and classify with the same --guideline")
    ihc_key, ihc_reasons, flags_ihc = _ihc_key(ihc)
    ish_key, ish_reasons, flags_ish, figs = _ish_key(ish, g)
    rule = g.status_rule(ihc_key, ish_key)
    fill = {"ihc": ihc_key, "group": figs["group"]}
    next_step = rule.next_step.format(**fill) if rule.next_step else None
    if ish_key == "no-call" and rule.status in ("needs-ish", "no-call") and ish is not None:
        next_step = "ISH gave no call: count more evaluable nuclei or repeat the ISH" + (
            f"; {next_step}" if next_step and rule.status == "no-call" else "")
    sub = None
    if rule.status == "negative" and g.status.low_sub_labels and ihc_key in CLASSES:
        if ihc_key in ("1+", "2+"):
            sub = "low"
        elif isinstance(ihc, IhcResult):
            sub = ihc.sub_label            # IHC 0: null (no staining) or ultralow (faint in <= 10%)
        else:
            ihc_reasons.append("IHC 0 given as a score: HER2-null and -ultralow need the cell percentages")
    return CaseResult(
        case_id=case_id, status=rule.status, sub_label=sub,
        reasons=[f"{rule.status} ({g.name}): {rule.text.format(**fill)}"] + ihc_reasons + ish_reasons,
        next_step=next_step, flags=flags_ihc + flags_ish, guideline=g.name,
        ihc_score=ihc_key if ihc_key in CLASSES else None, ish_group=figs["group"],
        ish_call=ish.call if isinstance(ish, IshResult) else (ish_key if ish is not None else None),
        ratio=figs["ratio"], her2_per_cell=figs["her2_per_cell"], cep17_per_cell=figs["cep17_per_cell"],
        ihc=ihc.summary() if isinstance(ihc, IhcResult) else None,
        ish=ish.summary() if isinstance(ish, IshResult) else None,
        software=SOFTWARE)
