"""Warnings and review flags: when a result needs a person to look, and what the words are.

The thresholds are here, in one place: fewer than ``FEW_CELLS`` tumour cells
is thin evidence (a pathologist reads hundreds), and a tile where the tile
model and the measurement disagree is flagged (``tile_flagged``) when it holds
at least ``tile_model.min_tumour_cells`` tumour cells, is at least
``tile_model.min_tile_tissue`` tissue, and the model's vote is worth a look:
two classes away, or given with ``tile_model.flag_probability``.

Examples
--------
>>> ihc_warnings(tumour_cells=120, excluded_cells=0, dab_absent=False, no_membrane_dab=False,
...              stain_fallback=None, flagged=0, compared=0)
['only 120 tumour cells scored: fewer than a pathologist would read']
"""
from __future__ import annotations

from ..schema import CLASSES, IhcSummary, IshSummary

FEW_CELLS = 200


def ihc_warnings(tumour_cells: int, excluded_cells: int, dab_absent: bool, no_membrane_dab: bool,
                 stain_fallback: str | None, flagged: int, compared: int, dab_note: str = "",
                 abstained: int = 0) -> list[str]:
    """Warnings of an IHC result, from its figures.

    Parameters
    ----------
    tumour_cells : int
        Tumour cells scored.
    excluded_cells : int
        Tumour cells left out (out of focus).
    dab_absent : bool
        The stain estimate found no brown chromogen (e.g. an H&E slide); ``dab_note`` says why.
    no_membrane_dab : bool
        No tumour cell has any membrane staining (not said when there are no tumour cells: that
        is a no call, with its own reason).
    stain_fallback : str or None
        Why the stain vectors could not be estimated (None: estimated or configured).
    flagged, compared : int
        Tiles where the tile model disagrees, out of the tiles compared.
    abstained : int
        Tiles the tile model did not vote on: unlike anything it was trained on.
    """
    warnings = []
    if 0 < tumour_cells < FEW_CELLS:
        warnings.append(f"only {tumour_cells} tumour cells scored: fewer than a pathologist would read")
    if dab_absent:
        warnings.append(f"no DAB found on the slide ({dab_note}): no HER2 score; "
                        "is this an H&E slide rather than HER2 IHC?")
    elif no_membrane_dab and tumour_cells:
        warnings.append("no membrane DAB staining found anywhere: scored 0; check that this is a HER2 IHC "
                        "slide (an unstained control scores 0 too)")
    if excluded_cells:
        warnings.append(f"{excluded_cells} tumour cells in out-of-focus tissue were left out of the score; "
                        "consider rescanning")
    if stain_fallback:
        warnings.append(f"stain vectors not estimated ({stain_fallback}); defaults used")
    if flagged:
        warnings.append(f"{flagged} of {compared} tiles where the tile model's score differs from the measured "
                        "one: review them (flagged tiles)")
    if abstained:
        warnings.append(f"the tile model abstained on {abstained} of {compared} tiles: they lie outside what it was "
                        "trained on, so it gives no second opinion there")
    return warnings


def model_compared(tumour_cells: int, tissue_fraction: float, min_tumour_cells: int, min_tissue: float) -> bool:
    """Whether the tile model's vote on a tile is set against its measured score: the model runs only
    there, and only there can it flag the tile or count in the warnings.

    The tile needs enough scored tumour cells (``tile_model.min_tumour_cells``) and must be mostly
    tissue (``tissue_fraction``, the share of the tile inside the slide's tissue mask, at least
    ``tile_model.min_tile_tissue``). The model was trained on tiles cut from tissue throughout; at a
    core's or a section's edge, where most of the tile is glass, it votes on a sliver it has not
    seen the like of (on the real development cores, its only two flags were such tiles, 13% and 19%
    tissue, both without visible membrane staining).

    Examples
    --------
    >>> model_compared(19, 1.0, 20, 0.5), model_compared(20, 1.0, 20, 0.5), model_compared(50, 0.19, 20, 0.5)
    (False, True, False)
    """
    return tumour_cells >= min_tumour_cells and tissue_fraction >= min_tissue


def tile_flagged(measured: str | None, model_score: str | None, probability: float, compared: bool,
                 min_probability: float) -> bool:
    """Whether a tile goes to review because the tile model disagrees with its measured score.

    Only where the model voted (``model_score``; None where it did not run or abstained) on a tile
    with enough tumour cells to compare (``compared``, from ``model_compared``). A vote two or more
    classes away is always worth a look; a vote one class away only when the model gives it at least
    ``min_probability``.
    On held-out generator tiles the model was right in about half of its one-class disagreements
    below that (a coin flip sends a reviewer nowhere), and in most of the rest
    (``benchmarks.tile_flags``).

    Examples
    --------
    >>> tile_flagged("0", "1+", 0.62, True, 0.9), tile_flagged("0", "1+", 0.93, True, 0.9)
    (False, True)
    >>> tile_flagged("0", "2+", 0.5, True, 0.9), tile_flagged("0", "2+", 0.99, False, 0.9)
    (True, False)
    """
    if not (model_score and measured and compared) or model_score == measured:
        return False
    return abs(CLASSES.index(model_score) - CLASSES.index(measured)) >= 2 or probability >= min_probability


def near_cutoff_reason(near_cutoff_points: float, cutoffs: list[str]) -> str:
    """The reason line of a slide whose deciding percentage lies near a cut-off: which, and how far.

    Examples
    --------
    >>> near_cutoff_reason(2, ["3+ cells 8.2% against the > 10% cut-off of IHC 3+: 1.8 points below"])[:60]
    'near a cut-off (within 2 points): 3+ cells 8.2% against the '
    """
    return f"near a cut-off (within {near_cutoff_points:g} points): {'; '.join(cutoffs)}; review the slide"


def ish_warnings(heterogeneous: bool, amplified_percent: float | None, ratio_cutoff: float,
                 heterogeneity_percent: float, saturated: dict[str, int] | None = None,
                 brightfield: bool = False) -> list[str]:
    """Warnings of an ISH count: a second population of amplified (or non-amplified) nuclei, and
    clusters that reach the camera's limit (their copies are lower bounds): full scale in
    fluorescence, black in ``brightfield``, each with its own remedy.

    Examples
    --------
    >>> ish_warnings(False, 0.0, 2.0, 10.0, {"her2": 3, "cep17": 0})[0][:70]
    'saturated: 3 HER2 clusters reach full scale, so their copies (and the '
    >>> ish_warnings(False, 0.0, 2.0, 10.0, {"her2": 3}, brightfield=True)[0].split("; ")[1][:38]
    're-image with brighter light if the ca'
    """
    out = []
    if heterogeneous:
        out.append(f"heterogeneous: {amplified_percent:.0f}% of nuclei have a ratio >= {ratio_cutoff:g}; a second "
                   f"population exceeds {heterogeneity_percent:g}%: count and report it separately")
    for probe, n in (saturated or {}).items():
        if n:
            limit, remedy = ("black", "brighter light") if brightfield else ("full scale", "a shorter exposure")
            out.append(f"saturated: {n} {'HER2' if probe == 'her2' else 'CEP17'} clusters reach {limit}, so their "
                       f"copies (and the per-cell mean) are lower bounds; re-image with {remedy} if the call "
                       "depends on them")
    return out


def ihc_flags(ihc: IhcSummary) -> list[str]:
    """What a reviewer should look at in a case's IHC."""
    flags = ["IHC: the deciding percentage lies near a cut-off; review the slide"] if ihc.near_cutoff else []
    return flags + [f"IHC: {w}" for w in ihc.warnings]


def ish_flags(ish: IshSummary) -> list[str]:
    """What a reviewer should look at in a case's ISH."""
    flags = ["ISH: the ratio or mean HER2 lies near a cut-off; count more nuclei or have a second reader count"] \
        if ish.near_cutoff else []
    return flags + [f"ISH: {w}" for w in ish.warnings]
