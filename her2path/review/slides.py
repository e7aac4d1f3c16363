"""The slide behind a case, as Deep Zoom tiles for the review viewer (OpenSeadragon), from OpenSlide.

The slide is the IHC input named in ``ihc/result.json``. It lies outside the
output folder, so a tampered result could name any file: a slide is served
only when its sha256 is the ``input_sha256`` the result recorded (checked once
per file version), so the viewer shows the very slide that was scored, or
nothing. Tiles come from ``openslide.deepzoom`` (OpenSlide formats, and plain
PNG/JPEG/TIFF through OpenSlide's ImageSlide) without bound cropping, so that
image coordinates are the result's level-0 pixels.
"""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from ..provenance import file_sha256

TILE_PX = 254
OVERLAP = 1


@lru_cache(maxsize=8)
def _generator(path: str, mtime_ns: int, size: int, sha256: str):
    """The Deep Zoom generator of a slide file, or None when the file is not the one scored."""
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    if file_sha256(path) != sha256:
        return None
    try:
        return DeepZoomGenerator(openslide.open_slide(path), TILE_PX, OVERLAP, limit_bounds=False)
    except (openslide.OpenSlideError, OSError, ValueError):
        return None


def deep_zoom(path: str | Path, sha256: str):
    """The Deep Zoom generator of the scored slide at ``path`` (None: missing, changed or unreadable)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    if not p.is_file():
        return None
    return _generator(str(p.resolve()), st.st_mtime_ns, st.st_size, sha256)


def tile_jpeg(dz, level: int, col: int, row: int, quality: int = 82) -> bytes | None:
    """One Deep Zoom tile as JPEG bytes (None: outside the pyramid)."""
    if not 0 <= level < dz.level_count:
        return None
    cols, rows = dz.level_tiles[level]
    if not (0 <= col < cols and 0 <= row < rows):
        return None
    buf = io.BytesIO()
    dz.get_tile(level, (col, row)).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()
