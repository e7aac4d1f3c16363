"""Fluorescence ISH fields: multichannel TIFF (CYX, 8 or 16 bit) and RGB composites.

Channels are returned by name (``her2``, ``cep17``, ``dapi``) as float32
images scaled 0-1 by the bit depth of the file. RGB composites follow the
default order red = HER2, green = CEP17, blue = DAPI unless told otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .slide import _check_file, check_user_mpp, plausible_mpp, read_plain, sniff_format

DEFAULT_CHANNELS = ("her2", "cep17", "dapi")
KNOWN_CHANNELS = {"her2", "cep17", "dapi", "other"}


@dataclass(frozen=True)
class FluorescenceField:
    path: Path
    channels: dict[str, np.ndarray]   # name -> (H, W) float32, 0-1
    mpp: float | None                 # um/px
    bit_depth: int

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.channels.values())).shape


def parse_channels(text: str | None) -> tuple[str, ...]:
    """'her2,cep17,dapi' -> ('her2', 'cep17', 'dapi'), checking names and completeness."""
    if not text:
        return DEFAULT_CHANNELS
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in KNOWN_CHANNELS]
    if bad or not {"her2", "cep17", "dapi"} <= set(names) or len(set(names) - {"other"}) != len(
            [n for n in names if n != "other"]):
        raise InputError(f"--channels '{text}' must name her2, cep17 and dapi once each "
                         f"(and 'other' for channels to skip)", fix="e.g. --channels her2,cep17,dapi")
    return names


def read_fluorescence(path: str | Path, channels: tuple[str, ...] = DEFAULT_CHANNELS,
                      mpp: float | None = None, force_mpp: bool = False) -> FluorescenceField:
    """Read one FISH field.

    Parameters
    ----------
    path : str or Path
        Multichannel TIFF (C, Y, X) or an RGB composite (PNG, JPEG, TIFF).
    channels : tuple of str
        Name of each channel in file order (``other`` to skip one).
    mpp : float, optional
        Pixel size in um/px, overriding the file's metadata (within 0.05-20 um/px unless ``force_mpp``).
    """
    path = Path(path)
    _check_file(path)
    mpp = check_user_mpp(mpp, path, force_mpp)
    fmt = sniff_format(path)
    if fmt not in ("png", "jpeg", "tiff", "generic-tiff"):
        raise InputError("not a fluorescence image (expected a multichannel TIFF or an RGB PNG/JPEG/TIFF)",
                         path, "export the field as a TIFF stack or an RGB composite")
    data, meta_mpp = read_plain(path, "tiff" if "tiff" in fmt else fmt)
    if data.ndim == 3 and data.shape[-1] in (3, 4) and data.shape[0] > 8:
        data = np.moveaxis(data[..., :3], -1, 0)   # RGB composite (drop alpha) -> CYX
    if data.ndim == 2:
        raise InputError("the image has one channel; FISH needs separate HER2, CEP17 and DAPI channels",
                         path, "give an RGB composite or a multichannel TIFF (--channels her2,cep17,dapi)")
    if data.ndim != 3 or data.shape[0] != len(channels):
        n = data.shape[0] if data.ndim == 3 else "an unknown number of"
        raise InputError(f"the image has {n} channels but --channels names {len(channels)} "
                         f"({','.join(channels)})", path,
                         "name every channel in file order with --channels (use 'other' to skip one)")
    if np.issubdtype(data.dtype, np.integer):
        bits = 8 if data.dtype.itemsize == 1 else 16 if data.dtype.itemsize == 2 else 32
        scaled = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
    else:
        bits, scaled = 32, np.clip(data.astype(np.float32), 0, None)
    named = {name: scaled[i] for i, name in enumerate(channels) if name != "other"}
    for name, img in named.items():
        if float(img.max()) - float(img.min()) < 1e-6:
            raise InputError(f"the {name} channel is empty (constant value)", path,
                             "check the channel order (--channels) and the exposure of this field")
    return FluorescenceField(path, named, mpp or plausible_mpp(meta_mpp), bits)


MAX_FIELD_VALUES = 64 * 2**20   # a FISH field is a camera frame: an image with more values is a slide


def is_fluorescence_field(path: str | Path, fmt: str | None = None) -> bool:
    """Whether an image file is a FISH field: a multichannel stack, or an RGB image on a dark background.

    A TIFF is judged from its shape first, so a tiled whole-slide TIFF is never
    read whole and a CYX stack is not read at all; other images are read and
    their median compared with 30% of full scale. Unreadable files are not fields.
    """
    path = Path(path)
    try:
        fmt = fmt or sniff_format(path)
    except OSError:
        return False
    if fmt not in ("png", "jpeg", "tiff", "generic-tiff"):
        return False
    if "tiff" in fmt:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                if np.prod(tf.pages[0].shape) > MAX_FIELD_VALUES:
                    return False
                shape = tf.series[0].shape
        except Exception:   # tifffile raises many kinds on damaged files: not a readable field
            return False
        if len(shape) == 3 and shape[0] <= 8 < shape[-1]:
            return True
    try:
        data, _ = read_plain(path, "tiff" if "tiff" in fmt else fmt)
    except InputError:
        return False
    top = np.iinfo(data.dtype).max if np.issubdtype(data.dtype, np.integer) else 1.0
    return float(np.median(data)) < 0.3 * top
