"""Guideline decision tables from ``configs/guidelines/*.yaml`` and the IHC score they define.

The tables are data; this module validates them and evaluates the IHC rows on
per-cell classes. It sits low in the import order so that the IHC scorer, the
classifier and the synthetic ground truth all read the same tables.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .config import CONFIG_DIR, read_yaml, validation_message
from .errors import ConfigError

CLASSES = ("0", "1+", "2+", "3+")
GUIDELINE_DIR = CONFIG_DIR / "guidelines"
Score = Literal["0", "1+", "2+", "3+"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IhcRule(_Strict):
    score: Score
    classes: list[Score]
    op: Literal[">", ">=", "cluster", "always"]
    percent: float | None = Field(None, ge=0, le=100)
    cells: int | None = Field(None, ge=1)
    text: str
    near_cutoff: bool = True      # flag slides whose figure lies near this row's cut-off

    @model_validator(mode="after")
    def _complete(self) -> "IhcRule":
        if self.op in (">", ">=") and self.percent is None:
            raise ValueError(f"rule for {self.score} with op '{self.op}' needs 'percent'")
        if self.op == "cluster" and self.cells is None:
            raise ValueError(f"rule for {self.score} with op 'cluster' needs 'cells'")
        return self


class IhcTable(_Strict):
    rules: list[IhcRule] = Field(min_length=1)
    sub_labels: dict[Literal["0-unstained", "0-stained", "1+", "2+", "3+"],
                     Literal["null", "ultralow", "low", "equivocal", "positive"]]
    near_cutoff_points: float = Field(2.0, ge=0)
    cluster_neighbour_um: float = Field(20.0, gt=0)
    u_shaped_complete: bool = False   # basolateral / lateral staining counts as complete (gastric)

    @model_validator(mode="after")
    def _ends_with_default(self) -> "IhcTable":
        if self.rules[-1].op != "always":
            raise ValueError("the last IHC rule must have op 'always' (the default score)")
        return self


class IshTable(_Strict):
    scheme: Literal["groups", "ratio"]
    min_nuclei: int = Field(20, ge=1)
    ratio_cutoff: float = Field(2.0, gt=0)
    her2_low: float = Field(4.0, gt=0)
    her2_high: float = Field(6.0, gt=0)


IHC_KEYS = (*CLASSES, "none", "no-call")
ISH_KEYS = {"groups": ("1", "2", "3", "4", "5", "none", "no-call"),
            "ratio": ("positive", "negative", "none", "no-call")}
Status = Literal["positive", "negative", "equivocal", "needs-ish", "needs-ihc", "no-call"]


class StatusRule(_Strict):
    ihc: list[str] | Literal["any"]
    ish: list[str] | Literal["any"]
    status: Status
    text: str
    next_step: str | None = None

    def matches(self, ihc: str, ish: str) -> bool:
        return (self.ihc == "any" or ihc in self.ihc) and (self.ish == "any" or ish in self.ish)


class StatusTable(_Strict):
    low_sub_labels: bool = False
    rules: list[StatusRule] = Field(min_length=1)


class Guideline(_Strict):
    name: str
    title: str
    ihc: IhcTable
    ish: IshTable
    status: StatusTable

    @model_validator(mode="after")
    def _status_complete(self) -> "Guideline":
        ish_keys = ISH_KEYS[self.ish.scheme]
        for rule in self.status.rules:
            for field, allowed in (("ihc", IHC_KEYS), ("ish", ish_keys)):
                bad = [v for v in getattr(rule, field) if v not in allowed] if getattr(rule, field) != "any" else []
                if bad:
                    raise ValueError(f"status rule '{rule.text}': {field} value(s) {bad} not in {list(allowed)}")
        missing = [(i, s) for i in IHC_KEYS for s in ish_keys
                   if not any(r.matches(i, s) for r in self.status.rules)]
        if missing:
            raise ValueError(f"status rules give no status for (ihc, ish) = {missing[:4]}")
        return self

    def status_rule(self, ihc: str, ish: str) -> StatusRule:
        """The first status row that holds for an IHC key and an ISH key."""
        return next(r for r in self.status.rules if r.matches(ihc, ish))


class IhcDecision(_Strict):
    """The IHC score a table gives, with the rule and figures behind it."""

    score: Score
    sub_label: Literal["null", "ultralow", "low", "equivocal", "positive"]
    reason: str
    percent: dict[str, float]     # percent of tumour cells per class
    counts: dict[str, int]        # tumour cells per class
    near_cutoff: bool             # the deciding figure lies within near_cutoff_points of a cut-off


def available_guidelines() -> list[str]:
    return sorted(p.stem for p in GUIDELINE_DIR.glob("*.yaml"))


@lru_cache(maxsize=None)
def load_guideline(name: str = "breast") -> Guideline:
    """Load and validate ``configs/guidelines/NAME.yaml``."""
    path = GUIDELINE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown guideline '{name}'", path,
                          f"use one of: {', '.join(available_guidelines())}")
    try:
        return Guideline.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(f"invalid guideline table ({validation_message(exc)})", path,
                          "correct the named keys") from None


def _largest_cluster(xy_um: np.ndarray, member: np.ndarray, neighbour_um: float) -> int:
    """Size of the largest group of member cells linked by centre distances <= neighbour_um."""
    pts = xy_um[member]
    if len(pts) == 0:
        return 0
    pairs = cKDTree(pts).query_pairs(neighbour_um, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pts),) * 2)
    _, labels = connected_components(graph, directed=False)
    return int(np.bincount(labels).max())


def ihc_decision(classes, xy_um=None, guideline: str | Guideline = "breast") -> IhcDecision:
    """Score tumour cells by a guideline table.

    Parameters
    ----------
    classes : sequence of {"0", "1+", "2+", "3+"}
        Class of every invasive tumour cell.
    xy_um : (n, 2) array, optional
        Cell centres in um; needed by cluster rules (gastric biopsy).
    guideline : str or Guideline
        Table name in configs/guidelines or a loaded table.
    """
    table = guideline if isinstance(guideline, Guideline) else load_guideline(guideline)
    classes = np.asarray(list(classes), dtype=object)
    n = len(classes)
    counts = {c: int(np.sum(classes == c)) for c in CLASSES}
    percent = {c: (100.0 * counts[c] / n if n else 0.0) for c in CLASSES}
    near = False
    for rule in table.ihc.rules:
        member = np.isin(classes, rule.classes) if n else np.zeros(0, bool)
        value = sum(percent[c] for c in rule.classes)
        if rule.op == "always":
            fired = True
        elif rule.op == "cluster":
            if xy_um is None:
                raise ConfigError(f"guideline '{table.name}' needs cell positions for its cluster rule")
            value = _largest_cluster(np.asarray(xy_um, float).reshape(-1, 2), member,
                                     table.ihc.cluster_neighbour_um)
            fired = value >= rule.cells
        else:
            fired = value > rule.percent if rule.op == ">" else value >= rule.percent
            if rule.near_cutoff and rule.percent > 0 and abs(value - rule.percent) <= table.ihc.near_cutoff_points:
                near = True
        if fired:
            break
    score = rule.score
    key = score if score != "0" else ("0-unstained" if counts["0"] == n else "0-stained")
    figures = ", ".join(f"{c}: {percent[c]:.1f}%" for c in CLASSES)
    return IhcDecision(
        score=score,
        sub_label=table.ihc.sub_labels[key],
        reason=f"IHC {score} ({table.name}): {rule.text} [{n} tumour cells; {figures}]",
        percent={c: round(v, 3) for c, v in percent.items()},
        counts=counts,
        near_cutoff=near,
    )


def ish_group(her2_per_cell: float, cep17_per_cell: float, guideline: str | Guideline = "breast") -> int | None:
    """ASCO/CAP dual-probe ISH group 1-5 from mean signals per cell (None for ratio-only schemes)."""
    table = guideline if isinstance(guideline, Guideline) else load_guideline(guideline)
    t = table.ish
    if t.scheme != "groups":
        return None
    ratio = her2_per_cell / cep17_per_cell if cep17_per_cell > 0 else float("inf")
    if ratio >= t.ratio_cutoff:
        return 1 if her2_per_cell >= t.her2_low else 2
    if her2_per_cell >= t.her2_high:
        return 3
    return 4 if her2_per_cell >= t.her2_low else 5
