"""Result models. Every output file is derived from these; JSON comes from ``to_json``."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

SCHEMA_VERSION = "3"   # 2: cell outlines as vertices; IHC no call (score None). 3: outlines as flat integers
CLASSES = ("0", "1+", "2+", "3+")
Score = Literal["0", "1+", "2+", "3+"]
SubLabel = Literal["null", "ultralow", "low", "equivocal", "positive"]
Status = Literal["positive", "negative", "equivocal", "needs-ish", "needs-ihc", "no-call"]
IshCall = Literal["positive", "negative", "needs-ihc", "no-call"]


class Model(BaseModel):
    """Base of all result models: frozen, strict keys, deterministic JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self, indent: int | None = 2) -> str:
        """Serialise to JSON (key order follows field order, so output is stable)."""
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str):
        """Rebuild the model from ``to_json`` output."""
        return cls.model_validate_json(text)


class LevelInfo(Model):
    level: int
    width: int
    height: int
    downsample: float
    mpp: float | None  # um/px at this level, None when the slide's mpp is unknown


class SlideInfo(Model):
    """What ``her2path info`` reports about an input."""

    path: str
    format: str                # e.g. "aperio", "generic-tiff", "dicom", "png", "jpeg", "tiff"
    width: int                 # level 0, px
    height: int
    mpp: float | None          # level 0, um/px
    mpp_source: str            # "metadata", "user" or "unknown"
    objective_power: float | None
    levels: list[LevelInfo]
    file_bytes: int


class Provenance(Model):
    """Where a result came from: enough to reproduce it."""

    software: str                  # "her2path X.Y.Z"
    config_sha256: str
    guideline_sha256: str
    model_sha256: str | None = None
    input_path: str
    input_sha256: str
    mpp_used: float                # um/px of the analysis


class StainInfo(Model):
    hematoxylin: tuple[float, float, float]
    dab: tuple[float, float, float]
    source: str                    # "default", "config", "estimated", "fallback: <why>" or "no DAB: <why>"


class ScanInfo(Model):
    """What the slide file says of its scan (for the report; nothing is decided from it)."""

    format: str                        # "aperio", "hamamatsu", "png", "jpeg", "tiff", ...
    objective_power: float | None      # the scanner's objective, when the file records it
    mpp_source: str                    # where the pixel size came from ("metadata", "user", ...)


class CellTable(Model):
    """Tumour cells, one entry per cell in every list (columnar to keep files small).

    x, y are level-0 pixels of the input; completeness 0-1; intensity and
    cytoplasm are DAB optical densities above / of the cell's cytoplasm.
    """

    x: list[float]
    y: list[float]
    cls: list[str]
    completeness: list[float]
    intensity: list[float]
    cytoplasm: list[float]
    nuclear_dab: list[float]       # DAB OD of the nucleus above the cytoplasm (0: nucleus hidden)
    basolateral: list[bool]
    tile: list[int]
    outline: list[list[int]]       # cell boundary: 12 vertices as dx0, dy0, dx1, dy1, ... from the centre, level-0 px
    nucleus_radius: list[float]    # level-0 px

    def __len__(self) -> int:
        return len(self.x)

    @field_validator("outline", mode="before")
    @classmethod
    def _flat_outlines(cls, value):
        """Results of schema 2 (outlines as [[dx, dy], ...] floats) still load, rounded to the pixel."""
        if value and value[0] and isinstance(value[0][0], list):
            return [[int(round(v)) for xy in cell for v in xy] for cell in value]
        return value

    def polygon(self, i: int) -> np.ndarray:
        """Cell ``i``'s boundary vertices, (12, 2) level-0 px.

        Examples
        --------
        >>> t = CellTable(x=[10.0], y=[20.0], cls=["0"], completeness=[0.0], intensity=[0.0], cytoplasm=[0.0],
        ...               nuclear_dab=[0.0], basolateral=[False], tile=[0], outline=[[1, 0, 0, 1, -1, 0]],
        ...               nucleus_radius=[3.0])
        >>> t.polygon(0).tolist()
        [[11.0, 20.0], [10.0, 21.0], [9.0, 20.0]]
        """
        return np.asarray(self.outline[i], float).reshape(-1, 2) + (self.x[i], self.y[i])


class TileResult(Model):
    index: int
    col: int
    row: int
    x: int                         # level-0 px
    y: int
    width: int                     # level-0 px
    height: int
    tumour_cells: int
    non_tumour_cells: int
    counts: dict[str, int]         # tumour cells per class
    score: str | None              # tile score by the guideline (None without tumour cells)
    defocus_fraction: float        # fraction of the tile judged out of focus
    noise_od: float                # DAB noise of the tile
    model_score: str | None = None         # the tile model's score (None: not run, as on tiles with fewer than
                                           # tile_model.min_tumour_cells tumour cells or mostly glass; abstained)
    model_abstained: bool = False          # the tile lies outside what the model was trained on (or no patch
                                           # holds tissue enough to read): no vote
    model_probability: list[float] | None = None   # its probabilities for 0, 1+, 2+, 3+
    flagged: bool = False          # model and measurement disagree: review this tile
    near_cutoff: bool = False      # the tile's deciding percentage lies near a cut-off


class RegionInfo(Model):
    """The scoring region a pathologist drew (``--roi``): only cells whose centre lies in it count."""

    source: str                    # the GeoJSON or mask file
    sha256: str                    # of that file
    area_mm2: float                # of the region (exclusions cut out)
    excluded_annotations: int      # annotations classed Ignore*/Exclude/Region* that were cut out
    tiles_outside: int             # tissue tiles outside the region: never read


class IhcSummary(Model):
    """The IHC score of one slide or image with its figures (no per-cell or per-tile lists)."""

    schema_version: str = SCHEMA_VERSION
    kind: Literal["ihc"] = "ihc"
    score: Score | None            # None: no call (too few tumour cells; ``reasons`` says why)
    sub_label: SubLabel | None
    percent_cells: dict[str, float]
    counts: dict[str, int]
    tumour_cells: int
    non_tumour_cells: int
    excluded_cells: int            # in out-of-focus tissue, left out of the score
    guideline: str
    mpp: float                     # analysis um/px
    scan_mpp: float                # level-0 um/px of the input
    reasons: list[str]
    near_cutoff: bool
    warnings: list[str]
    flagged_tiles: list[int]       # tiles where the tile model disagrees with the measurement
    stains: StainInfo
    width: int                     # level-0 px of the input
    height: int
    provenance: Provenance
    region: RegionInfo | None = None   # None: the whole slide was scored
    scan: ScanInfo | None = None       # the scan as its file describes it


class IhcResult(IhcSummary):
    """The IHC score of one slide or image, with the cells and tiles behind it."""

    tiles: list[TileResult]
    cells: CellTable
    non_tumour_xy: list[tuple[float, float]]

    def summary(self) -> IhcSummary:
        """The fields ``her2path ihc --json`` prints (no per-cell or per-tile lists)."""
        return IhcSummary.model_validate(self.model_dump(exclude={"cells", "tiles", "non_tumour_xy"}))


class NucleusTable(Model):
    """Every nucleus found, columnar. x, y in px of its field; evaluable ones are counted."""

    field: list[int]
    x: list[float]
    y: list[float]
    her2: list[int]
    cep17: list[int]
    evaluable: list[bool]
    why_not: list[str]


class IshSummary(Model):
    """Dual-probe ISH of one case (all fields pooled), without the per-nucleus table."""

    schema_version: str = SCHEMA_VERSION
    kind: Literal["ish"] = "ish"
    nuclei: int                    # evaluable nuclei counted
    her2_per_cell: float | None
    cep17_per_cell: float | None
    ratio: float | None            # sum HER2 / sum CEP17 over evaluable nuclei
    group: int | None              # ASCO/CAP breast group 1-5; None for ratio-only guidelines or < min nuclei
    call: IshCall
    reasons: list[str]
    next_step: str | None
    warnings: list[str]
    amplified_percent: float | None  # nuclei with their own ratio >= the cut-off (heterogeneity)
    heterogeneous: bool
    guideline: str
    mpp: float
    brightfield: bool
    fields: list[str]
    single_signal: dict[str, float]  # reference integrated intensity of one signal, per probe
    provenance: Provenance
    found: int = 0                   # nuclei found in the fields, evaluable or not
    excluded: dict[str, int] = {}    # nuclei not counted, per reason (cut by the edge, overlapping ...)
    saturated_clusters: dict[str, int] = {}   # clusters at the camera's limit (full scale; black): copies are lower bounds
    near_cutoff: bool = False        # the call rests on the count: a cut-off lies within the figures' interval


class IshResult(IshSummary):
    """Dual-probe ISH of one case with every nucleus found."""

    table: NucleusTable

    def summary(self) -> IshSummary:
        """The fields ``her2path ish --json`` prints (no per-nucleus table)."""
        return IshSummary.model_validate(self.model_dump(exclude={"table"}))


class IshFigures(Model):
    """ISH case figures given by hand (``her2path classify``) instead of counted fields."""

    her2_per_cell: float | None = None
    cep17_per_cell: float | None = None
    ratio: float | None = None
    nuclei: int | None = None          # evaluable nuclei counted, when known


class CaseResult(Model):
    """The HER2 status of one case from its IHC and/or ISH, with the rule that fired."""

    schema_version: str = SCHEMA_VERSION
    kind: Literal["case"] = "case"
    case_id: str | None = None
    status: Status
    sub_label: SubLabel | None         # null, ultralow, low (negative cases, breast) or None
    reasons: list[str]
    next_step: str | None
    flags: list[str]                   # what a reviewer should look at
    guideline: str
    ihc_score: Score | None
    ish_group: int | None
    ish_call: str | None
    ratio: float | None
    her2_per_cell: float | None
    cep17_per_cell: float | None
    ihc: IhcSummary | None = None      # when IHC was scored
    ish: IshSummary | None = None      # when ISH was counted
    software: str

    def summary(self) -> dict:
        """The fields ``her2path case --json`` prints (the IHC and ISH summaries left out)."""
        return self.model_dump(mode="json", exclude={"ihc", "ish"})
