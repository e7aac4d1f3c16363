"""ISH rules: the dual-probe group, the call, the next step and heterogeneity, from per-nucleus counts.

Thresholds and texts are data: ``configs/guidelines/NAME.yaml: ish`` (scheme,
minimum nuclei, ratio and copy-number cut-offs, heterogeneity share) and its
status table, whose rows for ISH without IHC give the ISH call and next step
(so one rule has one text).

Examples
--------
>>> ish_group(9.0, 2.0, "breast"), ish_group(5.0, 3.0, "breast"), ish_group(3.0, 2.0, "breast")
(1, 4, 5)
>>> import numpy as np
>>> d = ish_decision(np.full(20, 8), np.full(20, 2), np.ones(20, bool), "breast")
>>> d.group, d.call, d.ratio
(1, 'positive', 4.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .tables import Guideline, load_guideline


def _table(guideline: str | Guideline) -> Guideline:
    return guideline if isinstance(guideline, Guideline) else load_guideline(guideline)


def ish_group(her2_per_cell: float, cep17_per_cell: float, guideline: str | Guideline = "breast") -> int | None:
    """ASCO/CAP dual-probe ISH group 1-5 from mean signals per cell (None for ratio-only schemes).

    Parameters
    ----------
    her2_per_cell, cep17_per_cell : float
        Mean HER2 and CEP17 signals per evaluable nucleus.
    guideline : str or Guideline

    Returns
    -------
    int or None
        1: ratio >= 2.0 and HER2 >= 4.0; 2: ratio >= 2.0 and HER2 < 4.0;
        3: ratio < 2.0 and HER2 >= 6.0; 4: ratio < 2.0 and HER2 4.0-<6.0;
        5: ratio < 2.0 and HER2 < 4.0 (cut-offs from the table).

    Examples
    --------
    >>> ish_group(6.0, 4.0), ish_group(4.0, 2.0)
    (3, 1)
    """
    t = _table(guideline).ish
    if t.scheme != "groups":
        return None
    ratio = her2_per_cell / cep17_per_cell if cep17_per_cell > 0 else float("inf")
    if ratio >= t.ratio_cutoff:
        return 1 if her2_per_cell >= t.her2_low else 2
    if her2_per_cell >= t.her2_high:
        return 3
    return 4 if her2_per_cell >= t.her2_low else 5


@dataclass
class IshDecision:
    """The case figures of a dual-probe ISH count and what the guideline makes of them."""

    nuclei: int                              # evaluable nuclei counted
    call: str                                # "positive", "negative", "needs-ihc" or "no-call"
    reasons: list[str]
    next_step: str | None
    her2_per_cell: float | None = None
    cep17_per_cell: float | None = None
    ratio: float | None = None               # sum HER2 / sum CEP17 over the evaluable nuclei
    group: int | None = None                 # 1-5 (groups scheme, >= min nuclei), else None
    amplified_percent: float | None = None   # evaluable nuclei with their own ratio >= the cut-off
    heterogeneous: bool = False
    warnings: list[str] = field(default_factory=list)


def ish_decision(her2: np.ndarray, cep17: np.ndarray, evaluable: np.ndarray,
                 guideline: str | Guideline = "breast", fields: int = 1) -> IshDecision:
    """Case figures and the ISH call from per-nucleus counts.

    Parameters
    ----------
    her2, cep17 : (n,) array_like of int
        Signals (copies) per nucleus.
    evaluable : (n,) array_like of bool
        Nuclei that count (whole, not overlapping, signals of both colours).
    guideline : str or Guideline
    fields : int
        Fields the nuclei came from (to say how many more are needed).

    Returns
    -------
    IshDecision
        No call below the table's ``min_nuclei``, with how many more fields
        (at the same yield) would reach it; otherwise the group (breast) or the
        ratio call (gastric), with the call and next step of the status row for
        ISH without IHC.

    Examples
    --------
    >>> d = ish_decision(np.full(12, 3), np.full(12, 2), np.ones(12, bool), fields=2)
    >>> d.call, d.next_step
    ('no-call', 'count at least 20 invasive tumour nuclei: about 2 more fields like these')
    """
    g = _table(guideline)
    t = g.ish
    her2, cep17 = np.asarray(her2), np.asarray(cep17)
    evaluable = np.asarray(evaluable, bool)
    n = int(evaluable.sum())
    if n == 0:
        return IshDecision(0, "no-call", ["no evaluable nuclei (none with signals of both colours that is whole "
                                         "and not overlapping)"], "count other fields or repeat the ISH")
    h, c = her2[evaluable], cep17[evaluable]
    mean_h, mean_c = float(h.mean()), float(c.mean())
    ratio = float(h.sum() / c.sum())
    amp = float(100 * np.mean(h / c >= t.ratio_cutoff))
    hetero = bool(min(amp, 100 - amp) > t.heterogeneity_percent)
    d = IshDecision(n, "no-call", [], None, round(mean_h, 3), round(mean_c, 3), round(ratio, 3), None,
                    round(amp, 1), hetero)
    figures = f"ratio {ratio:.2f}, HER2 {mean_h:.2f}/cell, CEP17 {mean_c:.2f}/cell over {n} nuclei"
    if n < t.min_nuclei:
        more = math.ceil((t.min_nuclei - n) / (n / max(fields, 1)))
        d.reasons = [f"only {n} evaluable nuclei (at least {t.min_nuclei} needed): {figures}"]
        d.next_step = (f"count at least {t.min_nuclei} invasive tumour nuclei: about {more} more "
                       f"field{'s' if more > 1 else ''} like these")
        return d
    if t.scheme == "ratio":
        key = "positive" if ratio >= t.ratio_cutoff else "negative"
        d.reasons = [f"ISH {key} ({g.name}): ratio {'>=' if key == 'positive' else '<'} {t.ratio_cutoff:g}; "
                     f"{figures}"]
    else:
        d.group = ish_group(mean_h, mean_c, g)
        key = str(d.group)
        d.reasons = [f"ISH group {d.group} ({g.name}): {figures}"]
    row = g.status_rule("none", key)
    d.call = row.status
    d.next_step = row.next_step.format(ihc="none", group=d.group) if row.next_step else None
    return d
