"""IHC rules: what makes a cell 0 / 1+ / 2+ / 3+, and a slide (or tile) score from its cells.

"What makes a 3+?" is answered here, in two steps, both from data:

1. a cell's class from its membrane measurements (``cell_classes``), with the
   cut-offs of ``configs/default.yaml: ihc.cell_class``;
2. the score from the percentages of tumour cells per class (``ihc_decision``),
   with the rows of ``configs/guidelines/NAME.yaml: ihc.rules``.

Examples
--------
>>> from her2path.config import CellClassConfig
>>> calls = cell_classes([0.95, 0.9, 0.4, 0.0], [0.2, 0.05, 0.03, 0.0], CellClassConfig())
>>> calls.cls.tolist()
['3+', '2+', '1+', '0']
>>> d = ihc_decision(["3+"] * 15 + ["0"] * 85, guideline="breast")
>>> d.score, d.sub_label, d.percent["3+"]
('3+', 'positive', 15.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..config import CellClassConfig, SpecificityConfig
from ..errors import ConfigError
from ..schema import CLASSES, Score, SubLabel
from .tables import Guideline, load_guideline

CLASS_NAMES = np.array(CLASSES, dtype=object)


@dataclass
class CellCalls:
    """Per-cell classes and the U-shaped flag, one entry per cell."""

    cls: np.ndarray            # (n,) object array of "0", "1+", "2+", "3+"
    basolateral: np.ndarray    # (n,) bool: intense but incomplete (U-shaped, basolateral or lateral) membrane


def cell_classes(completeness, intensity, cfg: CellClassConfig = CellClassConfig(),
                 u_shaped_complete: bool = False, dab_absent: bool = False) -> CellCalls:
    """Per-cell class from membrane completeness and intensity.

    Parameters
    ----------
    completeness : (n,) array_like
        Fraction (0-1) of the membrane's perimeter that is stained.
    intensity : (n,) array_like
        DAB optical density of the stained membrane above the cell's cytoplasm.
    cfg : CellClassConfig
        The cut-offs (``ihc.cell_class`` of the settings).
    u_shaped_complete : bool
        Whether intense basolateral / lateral (U-shaped) staining counts as
        complete, as in the gastric guidelines (``ihc.u_shaped_complete`` of the
        guideline table); in breast it is an unusual pattern scored 2+.
    dab_absent : bool
        The slide carries no brown chromogen (e.g. an H&E slide): no membrane
        can be stained, and every cell is 0 whatever was measured.

    Returns
    -------
    CellCalls
        Intense and complete: 3+. Weak-to-moderate and complete: 2+. Intense
        but incomplete over at least ``basolateral_fraction``: U-shaped (3+ in
        gastric, 2+ in breast). Any other membrane staining over at least
        ``min_stained_fraction``: 1+. Otherwise 0.

    Examples
    --------
    >>> c = cell_classes([0.2], [0.2], u_shaped_complete=True)     # intense over a fifth of the membrane
    >>> c.cls.tolist(), c.basolateral.tolist()
    (['3+'], [True])
    >>> cell_classes([0.2], [0.2]).cls.tolist()
    ['2+']
    """
    completeness = np.asarray(completeness, float)
    intensity = np.asarray(intensity, float)
    if dab_absent:
        return CellCalls(CLASS_NAMES[np.zeros(len(completeness), int)], np.zeros(len(completeness), bool))
    complete = completeness >= cfg.complete_fraction
    stained = (completeness >= cfg.min_stained_fraction) & (intensity > 0)
    intense, weak = intensity >= cfg.intense_od, intensity >= cfg.weak_od
    baso = intense & ~complete & (completeness >= cfg.basolateral_fraction)
    level = np.where(stained, 1, 0)
    level = np.where(complete & weak, 2, level)
    level = np.where(complete & intense, 3, level)
    level = np.where(baso, 3 if u_shaped_complete else 2, level)
    return CellCalls(CLASS_NAMES[level], baso)


class IhcDecision(BaseModel):
    """The IHC score a guideline table gives (None: no call), with the rule and figures behind it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    score: Score | None
    sub_label: SubLabel | None
    reason: str
    percent: dict[str, float]     # percent of tumour cells per class
    counts: dict[str, int]        # tumour cells per class
    near_cutoff: bool             # the deciding figure lies within near_cutoff_points of a cut-off
    cutoffs: list[str] = []       # each cut-off it lies near: which, the figure, and how far


def _largest_cluster(xy_um: np.ndarray, member: np.ndarray, neighbour_um: float) -> int:
    """Size of the largest group of member cells linked by centre distances <= neighbour_um."""
    pts = xy_um[member]
    if len(pts) == 0:
        return 0
    pairs = cKDTree(pts).query_pairs(neighbour_um, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pts),) * 2)
    _, labels = connected_components(graph, directed=False)
    return int(np.bincount(labels).max())


@dataclass(frozen=True)
class StainPattern:
    """What the DAB on the tumour cells is, when it is not (only) membrane staining."""

    refusal: str | None = None      # why no HER2 score can be given at all (no DAB; a nuclear stain)
    cytoplasm: str | None = None    # the finding of widespread cytoplasmic DAB without membrane staining

    @property
    def warnings(self) -> list[str]:
        """The result's warning lines for these findings."""
        return [f"{self.cytoplasm}: not membrane staining, not scored"] if self.cytoplasm else []


def stain_pattern(classes, nuclear_dab, cytoplasm, cfg: SpecificityConfig = SpecificityConfig(),
                  dab_absent: str | None = None) -> StainPattern:
    """Whether the DAB on these tumour cells is membrane staining at all.

    Parameters
    ----------
    classes : (n,) array_like of str
        Per-cell classes (from the membranes).
    nuclear_dab, cytoplasm : (n,) array_like
        DAB OD of each nucleus above its cytoplasm, and of each cytoplasm.
    cfg : SpecificityConfig
    dab_absent : str, optional
        Why the stain estimate found no brown chromogen on the slide (an H&E
        slide): then there is no HER2 stain to score at all.

    Returns
    -------
    StainPattern
        ``refusal``: no DAB on the slide, or more than ``max_nuclear_share`` of
        the cells have stained nuclei and fewer have stained membranes (a
        nuclear stain such as Ki67, ER or PR); else None. ``cytoplasm``:
        cytoplasmic DAB without membrane staining in at least
        ``cytoplasm_share`` of the cells (those cells are not membrane
        staining; ``ihc_decision`` then doubts a score resting on a rare population).

    Examples
    --------
    >>> stain_pattern(["0"] * 10, [0.3] * 5 + [0.0] * 5, [0.0] * 10).refusal[:33]
    'DAB lies in the nuclei of 50% of '
    >>> stain_pattern(["2+"] * 10, [0.0] * 10, [0.0] * 10)
    StainPattern(refusal=None, cytoplasm=None)
    >>> stain_pattern(["0"] * 10, [0.0] * 10, [0.0] * 10, dab_absent="eosin").refusal[:28]
    'no brown DAB on the slide (e'
    >>> stain_pattern(["0"] * 6 + ["2+"] * 4, [0.0] * 10, [0.3] * 10).warnings
    ['cytoplasmic DAB without membrane staining in 60% of tumour cells: not membrane staining, not scored']
    """
    if dab_absent:
        return StainPattern(refusal=f"no brown DAB on the slide ({dab_absent}): an H&E or other stain, not HER2 "
                                    "IHC; check the slide")
    classes = np.asarray(classes, object)
    if len(classes) == 0:
        return StainPattern()
    nuclear = float(np.mean(np.asarray(nuclear_dab) >= cfg.nuclear_dab_od))
    membrane = float(np.mean(classes != "0"))
    if nuclear > cfg.max_nuclear_share and nuclear > membrane:
        return StainPattern(refusal=f"DAB lies in the nuclei of {nuclear:.0%} of tumour cells and on the membranes "
                                    f"of {membrane:.0%}: the pattern of a nuclear stain (Ki67, ER, PR), not of "
                                    "HER2; check the stain")
    cyto = float(np.mean((np.asarray(cytoplasm) >= cfg.cytoplasm_dab_od) & (classes == "0")))
    if cyto >= cfg.cytoplasm_share:
        return StainPattern(cytoplasm=f"cytoplasmic DAB without membrane staining in {cyto:.0%} of tumour cells")
    return StainPattern()


def ihc_decision(classes, xy_um=None, guideline: str | Guideline = "breast",
                 min_cells: int | None = None, pattern: StainPattern = StainPattern()) -> IhcDecision:
    """Score tumour cells by a guideline table.

    Parameters
    ----------
    classes : sequence of {"0", "1+", "2+", "3+"}
        Class of every invasive tumour cell that counts.
    xy_um : (n, 2) array_like, optional
        Cell centres in um; needed by cluster rules (``gastric-biopsy``).
    guideline : str or Guideline
        Table name in ``configs/guidelines`` or a loaded table.
    min_cells : int, optional
        Fewer tumour cells than this give no call (score None); default the
        table's ``ihc.min_tumour_cells`` (a slide). Tiles pass 1.
    pattern : StainPattern
        What ``stain_pattern`` found. A refusal gives no call. Widespread
        cytoplasmic DAB makes a score resting on a rare population doubtful: a
        row marked ``rare_population`` (breast's unusual pattern) then gives no
        call, with the reason, instead of its score, since a few cells read as
        intense and complete may be brown cytoplasm meeting a cell border.

    Returns
    -------
    IhcDecision
        The first row of ``ihc.rules`` whose condition holds gives the score;
        the sub-label is HER2-null for a 0 without any stained cell and
        HER2-ultralow for a 0 with some.

    Examples
    --------
    >>> d = ihc_decision(["1+"] * 5 + ["0"] * 95)
    >>> d.score, d.sub_label
    ('0', 'ultralow')
    >>> ihc_decision(["2+"] * 11 + ["0"] * 89).score
    '2+'
    >>> ihc_decision(["3+"] * 4).score is None
    True
    >>> ihc_decision(["3+"] * 2 + ["0"] * 98, pattern=StainPattern(cytoplasm="cytoplasmic DAB in 46%")).reason[:40]
    'IHC no call (breast): unusual pattern: i'
    """
    table = guideline if isinstance(guideline, Guideline) else load_guideline(guideline)
    classes = np.asarray(list(classes), dtype=object)
    n = len(classes)
    counts = {c: int(np.sum(classes == c)) for c in CLASSES}
    percent = {c: (100.0 * counts[c] / n if n else 0.0) for c in CLASSES}
    least = table.ihc.min_tumour_cells if min_cells is None else min_cells
    if n < least or pattern.refusal:
        what = "no invasive tumour cells were found" if n == 0 else f"only {n} invasive tumour cells were found"
        why = pattern.refusal or f"{what} (at least {least} needed to score); check that the slide holds invasive tumour"
        return IhcDecision(score=None, sub_label=None, percent={c: round(v, 3) for c, v in percent.items()},
                           counts=counts, near_cutoff=False, reason=f"IHC no call ({table.name}): {why}")
    near, cutoffs = False, []
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
                gap = value - rule.percent
                cutoffs.append(f"{'/'.join(rule.classes)} cells {value:.1f}% against the {rule.op} {rule.percent:g}% "
                               f"cut-off of IHC {rule.score}: {abs(gap):.1f} points {'above' if gap >= 0 else 'below'}")
        if fired:
            break
    figures = ", ".join(f"{c}: {percent[c]:.1f}%" for c in CLASSES)
    if rule.rare_population and pattern.cytoplasm:
        return IhcDecision(score=None, sub_label=None, percent={c: round(v, 3) for c, v in percent.items()},
                           counts=counts, near_cutoff=False,
                           reason=f"IHC no call ({table.name}): {rule.text}, but {pattern.cytoplasm}: so few cells "
                                  f"read as intense and complete may be brown cytoplasm meeting a cell border; "
                                  f"review by eye [{n} tumour cells; {figures}]")
    score = rule.score
    key = score if score != "0" else ("0-unstained" if counts["0"] == n else "0-stained")
    return IhcDecision(
        score=score,
        sub_label=table.ihc.sub_labels[key],
        reason=f"IHC {score} ({table.name}): {rule.text} [{n} tumour cells; {figures}]",
        percent={c: round(v, 3) for c, v in percent.items()},
        counts=counts,
        near_cutoff=near,
        cutoffs=cutoffs,
    )


def tile_score(classes, xy_um, guideline: Guideline, pattern: StainPattern = StainPattern()
               ) -> tuple[str | None, bool]:
    """(guideline score, near a cut-off) of one tile's tumour cells; (None, False) without any.

    ``pattern`` is the slide's (``stain_pattern``): a tile takes the slide's
    refusal and doubt, so that no tile shows a score its slide refuses.

    Examples
    --------
    >>> tile_score([], None, load_guideline("breast"))
    (None, False)
    """
    if len(classes) == 0:
        return None, False
    d = ihc_decision(classes, xy_um, guideline, min_cells=1, pattern=pattern)
    return d.score, d.near_cutoff
