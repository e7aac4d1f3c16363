"""Result models. Every output file is derived from these; JSON comes from ``to_json``."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = "1"


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
