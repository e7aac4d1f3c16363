"""ISH rules: the dual-probe group, the call, the next step, heterogeneity and calls near a cut-off,
from per-nucleus counts.

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

from .tables import Guideline, IshTable, load_guideline


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


def count_intervals(her2: np.ndarray, cep17: np.ndarray, z: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(low, high) of the ratio and of the mean HER2 per cell of counted nuclei: each figure +- ``z``
    standard errors, the spread another count of as many nuclei would show.

    The mean's standard error is the nuclei's standard deviation over sqrt(n); the ratio's (sum
    HER2 / sum CEP17, a ratio estimator) is that of HER2 - ratio x CEP17 per nucleus, over the
    mean CEP17.

    Examples
    --------
    >>> h, c = np.array([5, 6, 7, 6, 6, 5, 7, 6] * 3), np.full(24, 3)     # 24 nuclei, HER2 6.0, ratio 2.0
    >>> [tuple(round(v, 2) for v in iv) for iv in count_intervals(h, c, 1.96)]
    [(1.9, 2.1), (5.71, 6.29)]
    """
    h, c = np.asarray(her2, float), np.asarray(cep17, float)
    n = len(h)
    ratio, mean_h = h.sum() / c.sum(), h.mean()
    if n < 2:
        return (ratio, ratio), (mean_h, mean_h)
    se_ratio = np.sqrt(np.sum((h - ratio * c) ** 2) / (n * (n - 1))) / c.mean()
    se_h = h.std(ddof=1) / np.sqrt(n)
    return ((float(ratio - z * se_ratio), float(ratio + z * se_ratio)),
            (float(mean_h - z * se_h), float(mean_h + z * se_h)))


def near_cutoff_reason(her2: np.ndarray, cep17: np.ndarray, t: IshTable) -> str | None:
    """The reason line of a call that rests on the count, or None: the ratio or the mean HER2 of
    the counted nuclei lies within ``t.near_cutoff_z`` standard errors (``count_intervals``) of a
    cut-off that would change the group (the ratio call where the guideline has no groups). HER2
    6.0 parts groups 3 and 4 only below the ratio cut-off, so it counts only where the ratio can
    lie there. The line says how many more nuclei would settle it if the figures stayed where
    they are (the interval narrows as 1/sqrt(n)), up to twice as many again as were counted;
    closer than that, only a second reader's count decides.

    Examples
    --------
    >>> t = load_guideline("breast").ish
    >>> h, c = np.array([5, 6, 7, 6, 6, 5, 7, 6] * 3) - np.r_[1, np.zeros(23, int)], np.full(24, 3)
    >>> for part in near_cutoff_reason(h, c, t).split("; "):    # HER2 5.96/cell, ratio 1.99
    ...     print(part)
    near a cut-off: ratio 1.99 (95% interval 1.88-2.09) spans the cut-off 2
    HER2/cell 5.96 (5.64-6.28) spans the cut-off 6, over 24 nuclei
    so close that only a much larger count would settle it: have a second reader count
    >>> h = np.array([5, 6, 7, 6, 6, 5, 7, 6] * 3) + np.r_[np.ones(6, int), np.zeros(18, int)]
    >>> print(near_cutoff_reason(h, np.full(24, 4), t))         # HER2 6.25/cell, ratio 1.56: groups 3 or 4
    near a cut-off: HER2/cell 6.25 (95% interval 5.93-6.57) spans the cut-off 6, over 24 nuclei; count about 15 more nuclei to settle it, or have a second reader count
    >>> near_cutoff_reason(np.full(24, 12), np.full(24, 2), t) is None      # group 1 well clear of every cut-off
    True
    """
    h, c = np.asarray(her2), np.asarray(cep17)
    n = len(h)
    (r_lo, r_hi), (h_lo, h_hi) = count_intervals(h, c, t.near_cutoff_z)
    ratio, mean_h = (r_lo + r_hi) / 2, (h_lo + h_hi) / 2          # each interval is centred on its figure
    spans = [("ratio", ratio, r_lo, r_hi, t.ratio_cutoff)] if r_lo < t.ratio_cutoff <= r_hi else []
    if t.scheme == "groups":
        cuts = [t.her2_low] + ([t.her2_high] if r_lo < t.ratio_cutoff else [])
        spans += [("HER2/cell", mean_h, h_lo, h_hi, k) for k in cuts if h_lo < k <= h_hi]
    if not spans:
        return None
    # n' nuclei narrow a half-width w to w sqrt(n / n'): the interval leaves the cut-off once w sqrt(n / n') < |x - k|.
    need = max(n * ((hi - lo) / 2 / max(abs(x - k), 1e-9)) ** 2 for _, x, lo, hi, k in spans)
    pct = round(100 * math.erf(t.near_cutoff_z / math.sqrt(2)))
    figures = "; ".join(f"{name} {x:.2f} ({f'{pct}% interval ' if i == 0 else ''}{lo:.2f}-{hi:.2f}) spans the "
                        f"cut-off {k:g}" for i, (name, x, lo, hi, k) in enumerate(spans))
    more = math.ceil(need) - n
    settle = (f"count about {_round_up(more)} more nuclei to settle it, or have a second reader count" if more <= 2 * n
              else "so close that only a much larger count would settle it: have a second reader count")
    return f"near a cut-off: {figures}, over {n} nuclei; {settle}"


def _round_up(k: int) -> int:
    """``k`` rounded up to two significant figures (an estimate is not exact to the nucleus)."""
    step = 10 ** max(len(str(k)) - 2, 0)
    return -(-k // step) * step


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
    near_cutoff: bool = False                # the call rests on the count (``near_cutoff_reason``)
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
        ISH without IHC, and a second reason where the call rests on the count
        (``near_cutoff_reason``).

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
    near = near_cutoff_reason(h, c, t)
    if near:
        d.near_cutoff = True
        d.reasons.append(near)
    row = g.status_rule("none", key)
    d.call = row.status
    d.next_step = row.next_step.format(ihc="none", group=d.group) if row.next_step else None
    return d
