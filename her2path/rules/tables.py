"""The guideline tables of ``configs/guidelines/*.yaml``, validated on load.

Each file holds one guideline: the IHC score rows (``ihc.rules``, read
top-down, the first that holds gives the score), the ISH scheme and cut-offs
(``ish``), and the status table that combines IHC and ISH (``status.rules``).
The code that applies them is ``rules.ihc``, ``rules.ish`` and ``rules.status``.

Examples
--------
>>> g = load_guideline("breast")
>>> g.ihc.rules[0].score, g.ihc.rules[0].op, g.ihc.rules[0].percent
('3+', '>', 10.0)
>>> g.status_rule("2+", "none").status
'needs-ish'
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import CONFIG_DIR, read_yaml, validation_message
from ..errors import ConfigError
from ..schema import CLASSES, Score, Status, SubLabel

GUIDELINE_DIR = CONFIG_DIR / "guidelines"


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
    rare_population: bool = False  # fired by a small share of cells (an unusual pattern): not called where
                                   # widespread cytoplasmic DAB makes such cells doubtful (``ihc_decision``)

    @model_validator(mode="after")
    def _complete(self) -> "IhcRule":
        if self.op in (">", ">=") and self.percent is None:
            raise ValueError(f"rule for {self.score} with op '{self.op}' needs 'percent'")
        if self.op == "cluster" and self.cells is None:
            raise ValueError(f"rule for {self.score} with op 'cluster' needs 'cells'")
        return self


class IhcTable(_Strict):
    rules: list[IhcRule] = Field(min_length=1)
    sub_labels: dict[Literal["0-unstained", "0-stained", "1+", "2+", "3+"], SubLabel]
    near_cutoff_points: float = Field(2.0, ge=0)
    cluster_neighbour_um: float = Field(20.0, gt=0)
    min_tumour_cells: int = Field(50, ge=1)   # fewer invasive tumour cells on a slide: no call
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
    heterogeneity_percent: float = Field(10.0, ge=0, le=50)   # a second population above this share is reported
    near_cutoff_z: float = Field(1.96, gt=0)   # a call whose figures lie within this many standard errors of a
                                               # cut-off is flagged (``rules.ish.near_cutoff_reason``)


IHC_KEYS = (*CLASSES, "none", "no-call")
ISH_KEYS = {"groups": ("1", "2", "3", "4", "5", "none", "no-call"),
            "ratio": ("positive", "negative", "none", "no-call")}


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


def available_guidelines() -> list[str]:
    """Names of the guideline files in ``configs/guidelines``."""
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
