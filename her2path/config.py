"""Typed settings loaded from ``configs/*.yaml``; all lengths in um, resolutions in um/px.

The values are written in one place, ``configs/default.yaml``; the classes
here hold their types, limits and meaning. A key that a caller or a user's
YAML leaves out takes its shipped value, so ``NucleiConfig()`` in library
code applies the rules the command line applies.

Examples
--------
>>> NucleiConfig().min_area_um2 == load_settings().ihc.nuclei.min_area_um2
True
>>> NucleiConfig(min_area_um2=20.0).max_area_um2 == NucleiConfig().max_area_um2
True
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
DEFAULT_TILE_MODEL = CONFIG_DIR.parent / "models" / "tile_model.pt"   # trained by `her2path train`


class _Section(BaseModel):
    """A settings section; the keys it is not given are taken from ``configs/default.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shipped_at: ClassVar[tuple[str, ...]] = ()      # where the section lies in default.yaml (``_locate``)

    @model_validator(mode="before")
    @classmethod
    def _shipped_values(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return data
        shipped = _default_yaml()
        for key in cls.shipped_at:
            shipped = shipped.get(key) or {}
        return {**shipped, **data}


class TilingConfig(_Section):
    analysis_mpp: float = Field(gt=0, description="analysis resolution, um/px")
    tile_um: float = Field(gt=0, description="tile edge at analysis resolution, um")
    thumbnail_mpp: float = Field(gt=0, description="tissue-detection thumbnail resolution, um/px")
    min_tissue_fraction: float = Field(ge=0, lt=1)
    exclude_classes: tuple[str, ...] = Field(description="annotation classes "
                                             "cut out of a --roi region (no case, trailing * optional)")


class TissueConfig(_Section):
    min_od: float = Field(gt=0, description="largest-channel optical density above glass that marks tissue")
    smooth_um: float = Field(ge=0, description="morphological smoothing radius, um")
    min_island_um2: float = Field(ge=0, description="smallest tissue piece kept, um^2")


class StainConfig(_Section):
    hematoxylin: tuple[float, float, float]
    dab: tuple[float, float, float]
    estimate: bool
    max_deviation_deg: float = Field(gt=0, le=90)
    min_dab_fraction: float = Field(ge=0, le=1)


class NucleiConfig(_Section):
    """How nuclei are found on the hematoxylin image (``ihc.nuclei``; ``ihc.nuclei.detect_nuclei``)."""

    background_um: float = Field(gt=0, description="width of the window whose median is the background")
    min_contrast_od: float = Field(gt=0, description="hematoxylin OD above the local mean that marks a nucleus")
    noise_factor: float = Field(ge=0, description="... or this many times the image noise, if larger")
    min_width_um: float = Field(gt=0, description="narrower structures (fibres) are not nuclei")
    peak_share: float = Field(ge=0, lt=1, description="a nucleus ends where its contrast falls below this x its peak")
    min_area_um2: float = Field(gt=0)
    max_area_um2: float = Field(gt=0)
    split_distance_um: float = Field(gt=0, description="touching nuclei with centres further apart are split")
    crosstalk_min_dab_od: float = Field(gt=0, description="membranes with this much thin DAB (OD) measure how "
                                        "much of it leaks into the hematoxylin image")
    crosstalk_min_um2: float = Field(ge=0, description="... when they cover at least this area")
    crosstalk_max: float = Field(ge=0, lt=1, description="the leak taken off is at most this share of the thin DAB")


class CellsConfig(_Section):
    """How cells are bounded (``ihc.cells``)."""

    radius_um: float = Field(gt=0, description="no cell reaches further than this from its seed")
    margin_um: float = Field(ge=0, description="context read around every tile")
    membrane_sigma_um: float = Field(gt=0, description="scale of the membrane ridge filter")
    ridge_od: float = Field(gt=0, description="ridge strength (OD) that marks a membrane pixel")
    noise_factor: float = Field(ge=0, description="... or this many times the ridge strength of noise")
    dab_over_h: float = Field(ge=0, description="a membrane's DAB ridge is at least this x its H ridge")
    min_basin_um: float = Field(gt=0, description="half-width of a membrane basin that makes a cell")
    enclosed_fraction: float = Field(gt=0, le=1, description="share of directions a basin is walled in")
    distance_weight: float = Field(ge=0, description="DAB OD per um from the seed in the watershed")
    watershed_um: float = Field(ge=0, description="grid (um) the territories are flooded on (0: the analysis grid)")


class TumourConfig(_Section):
    """Which cells are invasive tumour (``ihc.tumour``; ``ihc.tumour.classify_tumour``)."""

    min_area_um2: float = Field(ge=0, description="smaller nuclei: lymphocytes, fibroblast profiles")
    min_contrast_od: float = Field(ge=0, description="a tumour nucleus stands at least this above its background")
    max_axis_ratio: float = Field(ge=1, description="more elongated nuclei: fibroblasts, smooth muscle")
    max_relative_h: float = Field(gt=0, description="darker than this x the typical nucleus: lymphocytes")
    lymphocyte_max_area_um2: float = Field(ge=0, description="... when not larger than this")
    lymphocyte_max_axis_ratio: float = Field(ge=1, description="a dark population rounder than this "
                                             "(median) is lymphocytes: the typical nucleus is the paler one's")
    infiltrate_cluster_factor: float = Field(ge=1, description="where lymphocytes were found, dark nuclei up "
                                             "to this x lymphocyte_max_area_um2 are touching lymphocytes")
    packed_um: float = Field(gt=0, description="elongated nuclei still count when packed: within this")
    packed_neighbours: int = Field(ge=1, description="... at least this many nuclei (columnar epithelium)")
    packed_max_axis_ratio: float = Field(ge=1)
    enlarged_factor: float = Field(gt=1, description="nuclei this many times the tile's median nucleus (area) "
                                   "may be as elongated as packed ones and need no close group (scattered "
                                   "signet-ring and poorly cohesive cells) ...")
    enlarged_link_um: float = Field(gt=0, description="... when at least enlarged_min_cells of them lie "
                                    "linked within this (a scattered population, not a stray large stromal nucleus)")
    enlarged_min_cells: int = Field(ge=1)
    link_factor: float = Field(gt=0, description="cells within this many nuclear diameters are linked")
    link_um: tuple[float, float] = Field(description="limits of that link distance, um")
    min_group_cells: int = Field(ge=1, description="smaller groups are not tumour (scattered stromal cells)")
    region_um: float = Field(gt=0, description="Gaussian window of the stained-membrane share")
    min_membrane_fraction: float = Field(ge=0, le=1, description="stained membrane share that makes epithelium")
    max_coherence: float = Field(gt=0, le=1, description="aligned-fibre texture above this is not epithelium")


class MembraneConfig(_Section):
    """How membranes are measured (``ihc.membrane``); the cut-offs that turn the measurements
    into classes are ``CellClassConfig``."""

    rays: int = Field(ge=8, le=360)
    faint_od: float = Field(gt=0, description="DAB OD above the cytoplasm that marks a stained ray")
    arc_faint_od: float = Field(gt=0)
    noise_factor: float = Field(ge=0)
    noise_cap: float = Field(gt=0, description="the field's DAB noise is at most this x the pixel noise of the "
                             "stain-free residual channel (more is stain texture)")
    neighbour_overlap: float = Field(ge=0, le=1)
    relative_level: float = Field(ge=0, le=1, description="a stained ray reaches this x the cell's typical level")
    cytoplasm_contrast: float = Field(ge=0, description="a membrane rises this x the surrounding cytoplasm's "
                                      "DAB OD above it (cytoplasmic staining is not membrane)")


class CellClassConfig(_Section):
    """The per-cell class cut-offs (``ihc.cell_class``), applied by ``rules.ihc.cell_classes``;
    ``her2path calibrate`` fits them to a lab's annotated tiles."""

    weak_od: float = Field(gt=0, description="membrane DAB OD above cytoplasm of weak-to-moderate (2+)")
    intense_od: float = Field(gt=0, description="membrane DAB OD above cytoplasm of intense (3+)")
    complete_fraction: float = Field(gt=0, le=1, description="completeness from which a membrane is complete")
    basolateral_fraction: float = Field(gt=0, le=1, description="intense over at least this: U-shaped")
    min_stained_fraction: float = Field(ge=0, le=1, description="below this completeness a cell is 0")

    @model_validator(mode="after")
    def _ordered(self) -> "CellClassConfig":
        if not self.weak_od < self.intense_od:
            raise ValueError("need weak_od < intense_od")
        return self


class FocusConfig(_Section):
    enabled: bool
    window_um: float = Field(gt=0, description="averaging window of the focus measure")
    min_ratio: float = Field(gt=0, description="band-pass energy ratio below which tissue is out of focus")
    min_structure_od: float = Field(ge=0, description="coarse structure needed to judge focus")
    min_area_um2: float = Field(ge=0, description="smaller out-of-focus patches are ignored")


class SpecificityConfig(_Section):
    """DAB that is not membrane staining (``ihc.specificity``; ``rules.ihc.stain_pattern``)."""

    nuclear_dab_od: float = Field(gt=0, description="DAB OD of a nucleus above its cytoplasm that stains it")
    max_nuclear_share: float = Field(gt=0, le=1, description="more tumour cells with stained nuclei: no call")
    cytoplasm_dab_od: float = Field(gt=0, description="cytoplasmic DAB OD that is worth a warning")
    cytoplasm_share: float = Field(gt=0, le=1, description="... in at least this share of tumour cells")


class IhcConfig(_Section):
    stains: StainConfig
    focus: FocusConfig
    nuclei: NucleiConfig
    cells: CellsConfig
    tumour: TumourConfig
    membrane: MembraneConfig
    cell_class: CellClassConfig
    specificity: SpecificityConfig

    @model_validator(mode="after")
    def _faint_below_weak(self) -> "IhcConfig":
        if not self.membrane.faint_od < self.cell_class.weak_od:
            raise ValueError("need membrane.faint_od < cell_class.weak_od")
        return self


class IshNucleiConfig(_Section):
    min_area_um2: float = Field(gt=0, description="smaller objects are not nuclei")
    max_area_um2: float = Field(gt=0, description="larger objects are clumps of overlapping nuclei")
    split_distance_um: float = Field(gt=0, description="touching nuclei with centres further apart are split")
    min_solidity: float = Field(gt=0, le=1, description="a notched outline below this: overlapping nuclei")
    max_edge_um: float = Field(gt=0, description="a nucleus whose edge is wider (um) is out of focus")
    grid_um: float = Field(ge=0, description="nuclei are found on a grid no coarser than this (0: the image's); "
                           "the spots always at full resolution")


class IshSpotsConfig(_Section):
    fish_sigma_um: float = Field(gt=0, description="PSF sigma of one FISH signal")
    brightfield_sigma_um: float = Field(gt=0, description="sigma of one chromogenic dot")
    k_noise: float = Field(gt=0, description="detection threshold in noise units of the band-pass image")
    cluster_min: float = Field(gt=1, description="a blob with this many single-signal units or more is a cluster")
    faint: float = Field(ge=0, lt=1, description="a blob under this many units is not a signal")
    reference_snr: float = Field(ge=1, description="blobs whose band-pass peak reaches this x the detection "
                                 "threshold set the single-signal reference")
    bleed: float = Field(ge=0, lt=1, description="a co-located blob under this share of the other colour "
                         "is bleed-through")
    bleed_jpeg: float = Field(ge=0, lt=1, description="the same for JPEG composites (shared chroma)")
    reference_min_blobs: int = Field(ge=1, description="fewest blobs a single-signal reference is taken from")
    reference_lone_share: float = Field(ge=0, le=1, description="blobs with no echo set the reference while "
                                        "they are at least this share of the clear blobs (else those that outshine "
                                        "their echo join them)")


class BrightfieldConfig(_Section):
    hematoxylin: tuple[float, float, float]
    silver: tuple[float, float, float]     # black silver dots: HER2
    red: tuple[float, float, float]        # Fast Red dots: CEP17
    silver_opaque_od: float = Field(gt=0, description="silver OD above which no colour is left to read")
    dot_od: float = Field(gt=0, description="silver or red OD above which a pixel is a dot: the hematoxylin "
                          "under it is filled in from around it")
    illumination_block_um: float = Field(gt=0, description="blocks over which the glass brightness "
                                         "(white balance, uneven lamp) is estimated")


class IshConfig(_Section):
    nuclei: IshNucleiConfig
    spots: IshSpotsConfig
    brightfield: BrightfieldConfig


class TileModelConfig(_Section):
    enabled: bool = Field(description="run the learned tile model as a second opinion")
    path: str | None = Field(description="weights file (None: models/tile_model.pt)")
    min_tumour_cells: int = Field(ge=1, description="tiles with fewer tumour cells are not compared (the model "
                                  "is not run there)")
    min_tile_tissue: float = Field(ge=0, le=1, description="tiles with less of their area inside the tissue mask "
                                   "are not compared (mostly glass: a core's or a section's edge)")
    min_tissue_fraction: float = Field(ge=0, le=1, description="model patches with less tissue are skipped")
    flag_probability: float = Field(gt=0, le=1, description="a vote one class from the measured score flags its "
                                     "tile only with at least this probability (two classes: always)")

    @property
    def weights(self) -> Path:
        """The weights file: ``path``, or the model shipped in models/."""
        return Path(self.path) if self.path else DEFAULT_TILE_MODEL


class Settings(_Section):
    tiling: TilingConfig
    tissue: TissueConfig
    ihc: IhcConfig
    tile_model: TileModelConfig
    ish: IshConfig

    def digest(self, part: str = "all") -> str:
        """sha256 of the settings as canonical JSON (for provenance).

        ``part="ihc"`` covers what IHC scoring reads (tiling, tissue, ihc,
        tile_model), ``part="ish"`` what ISH counting reads, ``"all"`` everything.
        """
        data = self.model_dump(mode="json")
        keep = {"all": data.keys(), "ihc": ("tiling", "tissue", "ihc", "tile_model"), "ish": ("ish",)}[part]
        text = json.dumps({k: data[k] for k in keep}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _locate(section: type[_Section], at: tuple[str, ...] = ()) -> None:
    """Tell every section class where its values lie in default.yaml (the field names down to it)."""
    section.shipped_at = at
    for name, field in section.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, _Section):
            _locate(field.annotation, at + (name,))


_locate(Settings)


@functools.lru_cache(maxsize=1)
def _default_yaml() -> dict:
    """configs/default.yaml, read once."""
    return read_yaml(DEFAULT_CONFIG)


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping, turning every failure into a ConfigError naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("config file not found", path, "check the path") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({str(exc).splitlines()[0]})", path,
                          "fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of settings at the top level", path,
                          "write 'key: value' entries")
    return data


def validation_message(exc: ValidationError) -> str:
    """One line naming every bad key and what it accepts."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)


def load_settings(path: str | Path | None = None) -> Settings:
    """Load settings from a YAML file (default: ``configs/default.yaml``, read once for every section)."""
    data = read_yaml(Path(path)) if path else {}
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings ({validation_message(exc)})", path,
                          "correct the named keys; see configs/default.yaml") from None
