"""One reader for whole-slide images (through OpenSlide) and plain images.

Formats are recognised by content, not by extension. Every reader exposes the
level-0 size, the pyramid levels, the pixel size in um/px (mpp) and region
reads at a requested mpp: the best pyramid level is read, then resized.

Examples
--------
>>> from her2path.io import open_image
>>> with open_image("slide.svs") as img:                       # doctest: +SKIP
...     tile = img.read_at_mpp(1000, 2000, 512, 512, mpp=0.5)   # (512, 512, 3) uint8
"""
from __future__ import annotations

import errno
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, MppError
from ..schema import LevelInfo, SlideInfo
from .writers import MPP_COMMENT

PLAUSIBLE_MPP = (0.05, 20.0)     # um/px of microscope scans and camera fields; outside it a value is implausible
READ_LIMIT_PX = 256 * 2**20      # the largest region read in one piece (768 MiB of RGB): estimated before reading
DECODE_LIMIT_PX = 400 * 10**6    # PNG/JPEG are decoded whole: larger ones must be converted to a tiled TIFF
TILED_TIFF_FIX = ("convert it to a tiled pyramidal TIFF, e.g. `vips tiffsave IN OUT.tif --tile --pyramid "
                  "--compression jpeg`, which is read in parts")
_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
]
MPP_FIX = "pass the pixel size with --mpp (e.g. --mpp 0.5 for a 20x scan, 0.25 for 40x)"
FORCE_FIX = ("check the value (0.25 for a 40x scan, 0.5 for 20x, about 0.1 for a 63x camera field), or add "
             "--force-mpp to use it anyway")


@dataclass(frozen=True)
class Level:
    """One pyramid level: size in px and downsample relative to level 0."""

    width: int
    height: int
    downsample: float


def _check_file(path: Path) -> None:
    """One-line errors for the ways a path can fail to be a readable file."""
    try:
        path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise InputError("broken symbolic link (its target does not exist)", path,
                             "point the link at the file, or give the file itself") from None
        raise InputError("file not found", path, "check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("symbolic link loop (the link points back at itself)", path,
                             "give the real file instead of the link") from None
        raise InputError(f"cannot be read ({exc.strerror})", path, "check the path and its permissions") from None
    if path.is_dir():
        raise InputError("is a folder, not an image", path,
                         "give one slide or image file (use 'her2path batch' for folders)")
    if path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", path, "copy or export the image again")


def sniff_format(path: str | Path) -> str | None:
    """Name the format of ``path`` from its content, or None when unrecognised.

    Returns an OpenSlide vendor (``aperio``, ``hamamatsu``, ``mirax``,
    ``generic-tiff``, ``dicom``...) when OpenSlide recognises the file, else
    ``png``, ``jpeg`` or ``tiff`` from the file's magic bytes.
    """
    import openslide

    path = Path(path)
    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except Exception:  # OpenSlide raises on unreadable headers; fall back to magic bytes
        vendor = None
    if vendor:
        return vendor
    with open(path, "rb") as fh:
        head = fh.read(16)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def check_user_mpp(mpp: float | None, path, force: bool = False) -> float | None:
    """A pixel size given by the user: positive and finite always, and within ``PLAUSIBLE_MPP``
    (the range metadata values must lie in) unless ``force``; otherwise MppError naming the fix.

    Examples
    --------
    >>> check_user_mpp(0.25, "a.jpg")
    0.25
    >>> check_user_mpp(1e-9, "a.jpg")
    Traceback (most recent call last):
    ...
    her2path.errors.MppError: a.jpg: --mpp 1e-09 um/px is outside the 0.05-20 um/px of microscope images. Fix: check the value (0.25 for a 40x scan, 0.5 for 20x, about 0.1 for a 63x camera field), or add --force-mpp to use it anyway
    """
    if mpp is None:
        return None
    if not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and mpp > 0):
        raise MppError(f"--mpp must be a positive number of um/px, got {mpp}", path, MPP_FIX)
    if not force and plausible_mpp(mpp) is None:
        lo, hi = PLAUSIBLE_MPP
        raise MppError(f"--mpp {mpp:g} um/px is outside the {lo:g}-{hi:g} um/px of microscope images", path,
                       FORCE_FIX)
    return float(mpp)


def plausible_mpp(value: float | None, limits: tuple[float, float] = PLAUSIBLE_MPP) -> float | None:
    """Return ``value`` when it is a microscopy pixel size in um/px, else None.

    Screen resolutions (72 or 96 dpi = 353 or 265 um/px) written by ordinary
    image software are not pixel sizes of a scan and are rejected.
    """
    if value is None or not math.isfinite(value) or not limits[0] <= value <= limits[1]:
        return None
    return float(value)


class SlideImage:
    """Base reader. Subclasses implement ``levels``, ``_read_level`` and metadata."""

    format: str = ""
    plain: bool = False    # a plain image (PNG, JPEG, TIFF) rather than a scanner's slide file

    def __init__(self, path: Path, mpp: float | None, mpp_source: str):
        self.path = path
        self._mpp = mpp
        self.mpp_source = mpp_source
        self._thumbnails: dict[float, np.ndarray] = {}

    # -- metadata -----------------------------------------------------------
    levels: list[Level]
    objective_power: float | None = None

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in px."""
        return self.levels[0].width, self.levels[0].height

    @property
    def mpp(self) -> float:
        """Level-0 pixel size in um/px; raises MppError when unknown."""
        if self._mpp is None:
            raise MppError("pixel size (mpp) unknown: the file's metadata does not give it",
                           self.path, MPP_FIX)
        return self._mpp

    @property
    def mpp_or_none(self) -> float | None:
        return self._mpp

    def info(self) -> SlideInfo:
        """Format, size, levels and mpp, as reported by ``her2path info``."""
        return SlideInfo(
            path=str(self.path),
            format=self.format,
            width=self.dimensions[0],
            height=self.dimensions[1],
            mpp=self._mpp,
            mpp_source=self.mpp_source,
            objective_power=self.objective_power,
            levels=[
                LevelInfo(level=i, width=lv.width, height=lv.height,
                          downsample=round(lv.downsample, 6),
                          mpp=None if self._mpp is None else round(self._mpp * lv.downsample, 6))
                for i, lv in enumerate(self.levels)
            ],
            file_bytes=self.path.stat().st_size if self.path.exists() else 0,
        )

    # -- pixels -------------------------------------------------------------
    def _read_level(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3); (x, y) in level-0 px. Outside the image reads white."""
        raise NotImplementedError

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """Read ``width`` x ``height`` px of ``level`` whose top-left is level-0 (x, y)."""
        if not 0 <= level < len(self.levels):
            raise ValueError(f"level {level} out of range 0..{len(self.levels) - 1}")
        return self._read_level(int(x), int(y), level, int(width), int(height))

    def best_level(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed ``downsample`` (1% slack)."""
        best = 0
        for i, lv in enumerate(self.levels):
            if lv.downsample <= downsample * 1.01:
                best = i if lv.downsample >= self.levels[best].downsample else best
        return best

    def read_at_mpp(self, x: int, y: int, width: int, height: int, mpp: float) -> np.ndarray:
        """Read a region at resolution ``mpp`` (um/px).

        Parameters
        ----------
        x, y : int
            Top-left corner in level-0 px.
        width, height : int
            Output size in px at ``mpp``.
        mpp : float
            Requested resolution, um/px.

        Returns
        -------
        (height, width, 3) uint8 RGB. The best pyramid level is read and then
        resized (area interpolation when shrinking).
        """
        downsample = mpp / self.mpp
        level = self.best_level(downsample)
        lv_ds = self.levels[level].downsample
        scale = downsample / lv_ds  # level px per output px
        lw = max(1, int(round(width * scale)))
        lh = max(1, int(round(height * scale)))
        self._check_read(lw, lh)
        region = self._read_level(int(x), int(y), level, lw, lh)
        if (lw, lh) == (width, height):
            return region
        interp = cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR
        return cv2.resize(region, (width, height), interpolation=interp)

    def _check_read(self, width: int, height: int) -> None:
        """Refuse, before reading, a region too large for memory (a wrong pixel size, mostly)."""
        if width * height > READ_LIMIT_PX:
            gib = width * height * 3 / 2**30
            raise InputError(f"reading a {width} x {height}-px region would need {gib:.3g} GiB at "
                             f"{self.mpp:g} um/px", self.path,
                             "the pixel size is probably wrong: check --mpp (or the file's metadata)")

    def thumbnail(self, mpp: float) -> np.ndarray:
        """The whole image at ``mpp`` um/px (at least 1 px each side), read-only.

        Read from the best pyramid level; where that level is too large to read
        in one piece (a plain image without a pyramid), it is read in bands of
        rows, each shrunk on its own, so memory stays bounded. Read once per
        resolution (tissue detection, glass level and the overlays share it).
        """
        if mpp not in self._thumbnails:
            thumb = self._read_thumbnail(mpp)
            thumb.flags.writeable = False
            self._thumbnails[mpp] = thumb
        return self._thumbnails[mpp]

    def _read_thumbnail(self, mpp: float) -> np.ndarray:
        w, h = self.dimensions
        ds = mpp / self.mpp
        tw, th = max(1, round(w / ds)), max(1, round(h / ds))
        level = self.best_level(ds)
        lv = self.levels[level]
        scale = ds / lv.downsample                                  # level px per thumbnail px
        if tw * scale * th * scale <= READ_LIMIT_PX / 4:
            return self.read_at_mpp(0, 0, tw, th, mpp)
        rows = max(1, int(READ_LIMIT_PX / 8 / (tw * scale * scale)))   # thumbnail rows per band
        out = np.empty((th, tw, 3), np.uint8)
        for r0 in range(0, th, rows):
            r1 = min(th, r0 + rows)
            y0 = min(int(round(r0 * scale)), lv.height - 1)
            y1 = min(max(y0 + 1, int(round(r1 * scale))), lv.height)
            self._check_read(lv.width, y1 - y0)
            band = self._read_level(0, int(y0 * lv.downsample), level, lv.width, y1 - y0)
            out[r0:r1] = cv2.resize(band, (tw, r1 - r0), interpolation=cv2.INTER_AREA)
        return out

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OpenSlideImage(SlideImage):
    """Whole-slide formats read by OpenSlide (Aperio, Hamamatsu, MIRAX, DICOM, tiled TIFF...)."""

    def __init__(self, path: Path, vendor: str, mpp: float | None = None):
        import openslide

        try:
            self._slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as exc:
            raise InputError(f"{vendor} slide cannot be opened ({exc})", path,
                             "the file is corrupt, truncated or uses an unsupported compression; "
                             "export or copy it again") from None
        self.format = vendor
        props = self._slide.properties
        meta = _float(props.get(openslide.PROPERTY_NAME_MPP_X))
        meta = plausible_mpp(meta)
        source = "user" if mpp else ("metadata" if meta else "unknown")
        super().__init__(path, mpp or meta, source)
        self.objective_power = _float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
        self.levels = [
            Level(w, h, float(d))
            for (w, h), d in zip(self._slide.level_dimensions, self._slide.level_downsamples)
        ]
        self.properties = dict(props)

    def _read_level(self, x, y, level, width, height):
        import openslide

        try:
            rgba = np.asarray(self._slide.read_region((x, y), level, (width, height)))
        except openslide.OpenSlideError as exc:
            raise InputError(f"slide data cannot be decoded ({exc})", self.path,
                             "the file is corrupt or truncated; copy or rescan it") from None
        return _rgba_over_white(rgba)

    def close(self):
        self._slide.close()


class ArrayImage(SlideImage):
    """An image held in memory: plain PNG/JPEG/TIFF files, or an array passed by a caller.

    Lower levels are not stored; reads at a coarser mpp resize level 0.
    """

    plain = True

    def __init__(self, rgb: np.ndarray, path: Path | str = "<array>", fmt: str = "array",
                 mpp: float | None = None, mpp_source: str = "user"):
        super().__init__(Path(path), mpp, mpp_source if mpp else "unknown")
        self.format = fmt
        self._rgb = np.ascontiguousarray(rgb)
        self.levels = [Level(rgb.shape[1], rgb.shape[0], 1.0)]
        self.properties = {}

    @property
    def array(self) -> np.ndarray:
        return self._rgb

    def _read_level(self, x, y, level, width, height):
        out = np.full((height, width, 3), 255, np.uint8)
        h, w = self._rgb.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + width, w), min(y + height, h)
        if x1 > x0 and y1 > y0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = self._rgb[y0:y1, x0:x1]
        return out


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rgba_over_white(rgba: np.ndarray) -> np.ndarray:
    """OpenSlide returns premultiplied RGBA; transparent (no data) areas become white glass."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    out = rgb.astype(np.uint16) + (255 - alpha.astype(np.uint16))
    return np.minimum(out, 255).astype(np.uint8)


def to_rgb8(img: np.ndarray, path: Path) -> np.ndarray:
    """Turn gray, gray+alpha, RGB, RGBA of any integer/float depth into RGB uint8."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"unsupported image layout {img.shape} for a brightfield image", path,
                         "give an RGB image (fluorescence fields go to 'her2path ish')")
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.integer):
            img = (img.astype(np.float64) / np.iinfo(img.dtype).max * 255).round()
        else:
            img = np.clip(img, 0, 1) * 255
        img = img.astype(np.uint8)
    if img.shape[2] in (2, 4):  # composite alpha over white
        alpha = img[..., -1:].astype(np.float32) / 255
        img = (img[..., :-1] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def _pil_open(path: Path):
    """Pillow image with its header read; too many pixels are refused, with the size, before any decoding.

    Pillow's own bomb guard is off while the header is read (it would refuse
    without saying the size); ``DECODE_LIMIT_PX`` takes its place.
    """
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        im = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    if im.size[0] * im.size[1] > DECODE_LIMIT_PX:
        im.close()
        raise InputError(f"image of {im.size[0]} x {im.size[1]} px is larger than a PNG/JPEG can be decoded whole "
                         f"({DECODE_LIMIT_PX / 1e6:.0f} Mpx limit; a small file this size is a decompression bomb)",
                         path, TILED_TIFF_FIX)
    return im


def read_plain(path: Path, fmt: str) -> tuple[np.ndarray, float | None]:
    """Pixels and metadata mpp (or None) of a PNG, JPEG or TIFF file, decoded whole (FISH fields).

    Slides and large images go through ``open_image``, which reads TIFFs in parts.
    """
    try:
        if fmt == "tiff":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if np.prod(tif.series[0].shape) > 3 * DECODE_LIMIT_PX:
                    raise InputError(f"TIFF of shape {tif.series[0].shape} is too large to read whole", path,
                                     "give a camera field (ISH) here; slides go to `her2path ihc`")
                data = tif.series[0].asarray()   # a stack of pages (e.g. CYX) comes whole
                mpp = _tiff_mpp(tif.pages[0])
        else:
            with _pil_open(path) as im:
                dpi = im.info.get("dpi")
                comment = im.info.get("comment", b"")
                if isinstance(comment, bytes) and comment.startswith(MPP_COMMENT.encode()):
                    dpi = (25400.0 / float(comment[len(MPP_COMMENT):]),)
                if im.mode not in ("RGB", "RGBA", "L", "LA", "I;16"):
                    im = im.convert("RGBA")
                data = np.asarray(im)
            mpp = 25400.0 / float(dpi[0]) if dpi and float(dpi[0]) > 0 else None
    except InputError:
        raise
    except Exception as exc:   # decoders raise many kinds on damaged files
        raise InputError(f"{fmt.upper()} image cannot be decoded ({type(exc).__name__}: {exc})",
                         path, "the file is corrupt or truncated; export it again") from None
    return data, plausible_mpp(mpp)


def _tiff_mpp(page) -> float | None:
    """um/px from TIFF XResolution + ResolutionUnit (inch or centimetre)."""
    tags = page.tags
    if "XResolution" not in tags:
        return None
    num, den = tags["XResolution"].value
    unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    if not num or not den:
        return None
    per_unit = num / den
    um_per_unit = {2: 25400.0, 3: 10000.0}.get(int(unit))
    return um_per_unit / per_unit if um_per_unit else None


class TiffImage(SlideImage):
    """A plain TIFF (striped or tiled, pyramidal or not) read in parts through zarr: memory stays
    bounded whatever its size. Grey, RGBA and 16-bit images are read as RGB uint8."""

    def __init__(self, path: Path, mpp: float | None = None):
        import tifffile
        import zarr

        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            shape = series.shape
            if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))):
                raise InputError(f"unsupported image layout {shape} for a brightfield image", path,
                                 "give an RGB image (fluorescence fields go to 'her2path ish')")
            self._levels = [zarr.open(self._tif.aszarr(level=i), mode="r") for i in range(len(series.levels))]
            meta = plausible_mpp(_tiff_mpp(series.pages[0]))
        except InputError:
            raise
        except Exception as exc:   # tifffile and zarr raise many kinds on damaged files
            raise InputError(f"TIFF image cannot be read ({type(exc).__name__}: {exc})", path,
                             "the file is corrupt or truncated; export it again") from None
        super().__init__(path, mpp or meta, "user" if mpp else ("metadata" if meta else "unknown"))
        self.format = "tiff"
        w0 = self._levels[0].shape[1]
        self.levels = [Level(z.shape[1], z.shape[0], w0 / z.shape[1]) for z in self._levels]
        self.properties = {}

    def _read_level(self, x, y, level, width, height):
        z = self._levels[level]
        ds = self.levels[level].downsample
        lx, ly = int(round(x / ds)), int(round(y / ds))
        out = np.full((height, width, 3), 255, np.uint8)
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + width, z.shape[1]), min(ly + height, z.shape[0])
        if x1 > x0 and y1 > y0:
            try:
                part = np.asarray(z[y0:y1, x0:x1])
            except Exception as exc:   # a damaged strip or tile: the codec's own error kinds
                raise InputError(f"TIFF image cannot be read at level {level}, x {x0}, y {y0} "
                                 f"({type(exc).__name__}: {exc})", self.path,
                                 "the file is corrupt or truncated; export it again") from None
            out[y0 - ly:y1 - ly, x0 - lx:x1 - lx] = to_rgb8(part, self.path)
        return out

    def close(self):
        self._tif.close()


def open_image(path: str | Path, mpp: float | None = None, force_mpp: bool = False) -> SlideImage:
    """Open a whole-slide image or a plain image, recognised by content.

    Parameters
    ----------
    path : str or Path
        Slide (svs, ndpi, mrxs, tiled tiff, dcm...) or plain PNG/JPEG/TIFF.
    mpp : float, optional
        Level-0 pixel size in um/px; overrides the file's metadata. It must lie
        in ``PLAUSIBLE_MPP`` unless ``force_mpp``.
    force_mpp : bool
        Accept an ``mpp`` outside the plausible range.

    Returns
    -------
    SlideImage
        OpenSlide formats through OpenSlide; TIFFs read in parts
        (``TiffImage``); PNG and JPEG decoded whole (up to ``DECODE_LIMIT_PX``).
        Plain images have ``plain`` set (no slide scanner metadata, no glass
        border guaranteed).

    Raises
    ------
    InputError
        Missing, empty, corrupt or unrecognised file, a symbolic link loop, an
        image too large to decode, an implausible ``mpp`` (one-line message with the fix).
    """
    path = Path(path)
    _check_file(path)
    mpp = check_user_mpp(mpp, path, force_mpp)
    fmt = sniff_format(path)
    if fmt is None:
        raise InputError("not a recognised slide or image (content matches no supported format)",
                         path, "give an OpenSlide slide (svs, ndpi, mrxs, tiff, dcm...) "
                         "or a PNG/JPEG/TIFF image")
    if fmt not in ("png", "jpeg", "tiff"):
        return OpenSlideImage(path, fmt, mpp)
    if fmt == "tiff":
        img = TiffImage(path, mpp)
    else:
        data, meta = read_plain(path, fmt)
        img = ArrayImage(to_rgb8(data, path), path, fmt, mpp or meta, "user" if mpp else "metadata")
    img.plain = True
    return img
