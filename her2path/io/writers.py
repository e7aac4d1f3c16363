"""Writing images with their pixel size, and Aperio-style pyramidal slides.

Pixel size is stored where each format keeps it, so that ``open_image`` reads
it back: PNG pHYs (px per metre), JPEG JFIF density in dots per cm (the 16-bit
field overflows in dots per inch below 0.39 um/px) plus a comment segment
with the exact value, TIFF resolution tags in cm.
"""
from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

APERIO_TILE = 256
MPP_COMMENT = "her2path mpp="   # JPEG comment holding the pixel size in um/px


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def encode_jpeg(rgb: np.ndarray, quality: int, mpp: float | None = None) -> bytes:
    """JPEG bytes of an RGB image; with ``mpp`` the JFIF density is set in dots per cm."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    data = bytearray(buf.tobytes())
    if mpp is None:
        return bytes(data)
    if data[2:4] != b"\xff\xe0" or data[6:11] != b"JFIF\x00":
        raise RuntimeError("encoder did not write a JFIF header")
    density = int(round(1e4 / mpp))  # dots per cm
    if density <= 0xFFFF:
        data[13:18] = struct.pack(">BHH", 2, density, density)
    # Finer than 0.153 um/px the JFIF field overflows: a comment segment always carries the exact value.
    comment = f"{MPP_COMMENT}{mpp!r}".encode()
    end_app0 = 4 + struct.unpack(">H", data[4:6])[0]
    return bytes(data[:end_app0] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
                 + data[end_app0:])


def write_image(path: str | Path, rgb: np.ndarray, mpp: float | None = None,
                quality: int = 90) -> Path:
    """Write a PNG, JPEG or TIFF (by suffix) with the pixel size in its metadata.

    Parameters
    ----------
    rgb : (H, W, 3) uint8, or (H, W) / (C, H, W) uint8/uint16 for TIFF
    mpp : float, optional
        Pixel size in um/px.
    quality : int
        JPEG quality, 1-100.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        atomic_write_bytes(path, encode_jpeg(rgb, quality, mpp))
    elif suffix in (".tif", ".tiff"):
        import tifffile

        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        res = {} if mpp is None else {"resolution": (1e4 / mpp, 1e4 / mpp),
                                      "resolutionunit": "CENTIMETER"}
        if rgb.ndim == 3 and rgb.shape[-1] == 3:
            layout = {"photometric": "rgb"}
        elif rgb.ndim == 3:   # channel stack (C, Y, X): one page, one plane per channel
            layout = {"photometric": "minisblack", "planarconfig": "separate"}
        else:
            layout = {"photometric": "minisblack"}
        tifffile.imwrite(tmp, rgb, metadata=None, **layout, **res)
        os.replace(tmp, path)
    elif suffix == ".png":
        from PIL import Image

        buf = io.BytesIO()
        kwargs = {} if mpp is None else {"dpi": (25400.0 / mpp, 25400.0 / mpp)}
        Image.fromarray(rgb).save(buf, format="PNG", **kwargs)
        atomic_write_bytes(path, buf.getvalue())
    else:
        raise ValueError(f"unsupported image suffix {suffix!r} (use .png, .jpg or .tif)")
    return path


def aperio_description(width: int, height: int, mpp: float, quality: int) -> str:
    """An Aperio ImageDescription: OpenSlide takes the format and the mpp from it."""
    mag = round(10.0 / mpp)
    return (f"Aperio Image Library v12.0.0 \n{width}x{height} [0,0 {width}x{height}] "
            f"({APERIO_TILE}x{APERIO_TILE}) JPEG/RGB Q={quality}|AppMag = {mag}|MPP = {mpp}")


RegionRenderer = Callable[[int, int, int, int, int], np.ndarray]
"""render(level_downsample, x, y, width, height) -> (height, width, 3) uint8 at that level."""


def write_aperio_pyramid(path: str | Path, width: int, height: int, mpp: float,
                         render: RegionRenderer, levels: int = 3, quality: int = 90,
                         band_px: int = 2048) -> Path:
    """Write an Aperio-style pyramidal JPEG-tiled TIFF, one band of tiles at a time.

    Parameters
    ----------
    width, height : int
        Level-0 size in px.
    mpp : float
        Level-0 pixel size, um/px.
    render : callable
        Gives the pixels of any region of any level (see ``RegionRenderer``);
        called band by band so memory stays bounded by ``band_px`` rows.
    levels : int
        Pyramid levels, each a 4x downsample of the one before (as Aperio scanners write).
    """
    import tifffile

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    t = APERIO_TILE
    with tifffile.TiffWriter(tmp, bigtiff=width * height * 3 > 2**31) as tif:
        for level in range(levels):
            ds = 4 ** level
            lw, lh = max(1, width // ds), max(1, height // ds)
            if level > 0 and max(lw, lh) < t:
                break
            tif.write(
                _tiles(render, ds, lw, lh, band_px),
                shape=(lh, lw, 3), dtype=np.uint8, tile=(t, t),
                compression="jpeg", compressionargs={"level": quality},
                photometric="rgb", subsampling=(1, 1), metadata=None,
                description=aperio_description(width, height, mpp, quality) if level == 0 else "",
            )
    os.replace(tmp, path)
    return path


def _tiles(render: RegionRenderer, ds: int, lw: int, lh: int, band_px: int) -> Iterator[np.ndarray]:
    """Yield 256x256 tiles row-major, rendering ``band_px``-tall bands (edges padded white)."""
    t = APERIO_TILE
    band_px = max(t, band_px - band_px % t)
    for by in range(0, lh, band_px):
        bh = min(band_px, lh - by)
        band = render(ds, 0, by, lw, bh)
        padded = np.full((-(-bh // t) * t, -(-lw // t) * t, 3), 255, np.uint8)
        padded[:bh, :lw] = band
        for ty in range(0, padded.shape[0], t):
            for tx in range(0, padded.shape[1], t):
                yield padded[ty:ty + t, tx:tx + t]
