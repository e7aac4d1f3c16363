"""Typed settings loaded from ``configs/*.yaml``; all lengths in um, resolutions in um/px."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TilingConfig(_Section):
    analysis_mpp: float = Field(0.5, gt=0, description="analysis resolution, um/px")
    tile_um: float = Field(256.0, gt=0, description="tile edge at analysis resolution, um")
    thumbnail_mpp: float = Field(8.0, gt=0, description="tissue-detection thumbnail resolution, um/px")
    min_tissue_fraction: float = Field(0.0, ge=0, lt=1)


class TissueConfig(_Section):
    min_od: float = Field(0.02, gt=0, description="largest-channel optical density above glass that marks tissue")
    smooth_um: float = Field(24.0, ge=0, description="morphological smoothing radius, um")
    min_island_um2: float = Field(20000.0, ge=0, description="smallest tissue piece kept, um^2")


class IoConfig(_Section):
    plausible_mpp: tuple[float, float] = (0.05, 20.0)

    @model_validator(mode="after")
    def _ordered(self) -> "IoConfig":
        lo, hi = self.plausible_mpp
        if not 0 < lo < hi:
            raise ValueError("plausible_mpp must be [low, high] with 0 < low < high")
        return self


class StainConfig(_Section):
    hematoxylin: tuple[float, float, float] = (0.650, 0.704, 0.286)
    dab: tuple[float, float, float] = (0.268, 0.570, 0.776)
    estimate: bool = True
    max_deviation_deg: float = Field(20.0, gt=0, le=90)
    min_dab_fraction: float = Field(0.01, ge=0, le=1)


class NucleiConfig(_Section):
    min_h_od: float = Field(0.06, gt=0)
    min_area_um2: float = Field(10.0, gt=0)
    max_area_um2: float = Field(150.0, gt=0)
    split_distance_um: float = Field(3.0, gt=0)


class CellsConfig(_Section):
    radius_um: float = Field(8.0, gt=0)
    margin_um: float = Field(16.0, ge=0)


class TumourConfig(_Section):
    min_area_um2: float = Field(20.0, ge=0)
    max_axis_ratio: float = Field(1.6, ge=1)
    max_relative_h: float = Field(1.28, gt=0)
    neighbour_um: float = Field(20.0, gt=0)
    min_neighbours: int = Field(1, ge=0)
    packed_um: float = Field(15.0, gt=0)
    packed_neighbours: int = Field(5, ge=1)
    packed_max_axis_ratio: float = Field(3.5, ge=1)


class MembraneConfig(_Section):
    rays: int = Field(36, ge=8, le=360)
    faint_od: float = Field(0.02, gt=0)
    arc_faint_od: float = Field(0.005, gt=0)
    noise_factor: float = Field(1.8, ge=0)
    weak_od: float = Field(0.035, gt=0)
    intense_od: float = Field(0.100, gt=0)
    complete_fraction: float = Field(0.70, gt=0, le=1)
    basolateral_fraction: float = Field(0.45, gt=0, le=1)
    min_stained_fraction: float = Field(0.10, ge=0, le=1)
    neighbour_overlap: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "MembraneConfig":
        if not self.faint_od < self.weak_od < self.intense_od:
            raise ValueError("need faint_od < weak_od < intense_od")
        return self


class FocusConfig(_Section):
    enabled: bool = True
    window_um: float = Field(4.0, gt=0, description="averaging window of the focus measure")
    min_ratio: float = Field(0.44, gt=0, description="band-pass energy ratio below which tissue is out of focus")
    min_structure_od: float = Field(0.003, ge=0, description="coarse structure needed to judge focus")
    min_area_um2: float = Field(400.0, ge=0, description="smaller out-of-focus patches are ignored")


class IhcConfig(_Section):
    stains: StainConfig = StainConfig()
    focus: FocusConfig = FocusConfig()
    nuclei: NucleiConfig = NucleiConfig()
    cells: CellsConfig = CellsConfig()
    tumour: TumourConfig = TumourConfig()
    membrane: MembraneConfig = MembraneConfig()


class TileModelConfig(_Section):
    enabled: bool = Field(True, description="run the learned tile model as a second opinion")
    path: str | None = Field(None, description="weights file (None: models/tile_model.pt)")
    min_tumour_cells: int = Field(20, ge=1, description="tiles with fewer tumour cells are not compared")
    min_tissue_fraction: float = Field(0.1, ge=0, le=1, description="model patches with less tissue are skipped")


class Settings(_Section):
    tiling: TilingConfig = TilingConfig()
    tissue: TissueConfig = TissueConfig()
    io: IoConfig = IoConfig()
    ihc: IhcConfig = IhcConfig()
    tile_model: TileModelConfig = TileModelConfig()

    def digest(self) -> str:
        """sha256 of the settings as canonical JSON (for provenance)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


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
    """Load settings from a YAML file (default: ``configs/default.yaml``)."""
    path = Path(path) if path else DEFAULT_CONFIG
    data = read_yaml(path)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings ({validation_message(exc)})", path,
                          "correct the named keys; see configs/default.yaml") from None
