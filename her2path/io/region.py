"""A scoring region drawn by the pathologist: QuPath annotations (GeoJSON) or a binary mask image.

GeoJSON (a QuPath "Export objects as GeoJSON" of annotations, level-0 px):
a FeatureCollection, a list of Features, one Feature or a bare geometry;
Polygon and MultiPolygon geometries, holes included, count; other geometries
(points, lines) are ignored. An annotation whose class (``classification``
``name`` or ``names``) is one of ``exclude_classes`` (compared without case
and without QuPath's trailing ``*``: ``Ignore*``, ``Region*``, ``Exclude``)
is cut out of the region. With only such annotations the region is the whole
slide without them.

Mask image (PNG, TIFF ...): non-zero pixels are the region; the mask covers
the whole slide at any scale, with the slide's aspect ratio (within 2%).

Examples
--------
>>> import numpy as np
>>> r = region_from_geojson({"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]]},
...                         "roi.geojson", "0" * 64, (400, 400))
>>> r.contains(np.array([[50.0, 50.0], [200.0, 50.0]])).tolist()
[True, False]
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from skimage.measure import points_in_poly

from ..errors import InputError

DEFAULT_EXCLUDE = ("ignore", "exclude", "region")
ASPECT_TOLERANCE = 0.02
FIX = "give a QuPath GeoJSON export of polygon annotations in level-0 pixels, or a binary mask image of the slide"

Polygon = list[np.ndarray]       # exterior ring, then holes: (k, 2) level-0 px each


@dataclass(frozen=True)
class Region:
    """Where cells count, in level-0 px of the slide (``dimensions`` = its width, height)."""

    source: str
    sha256: str
    dimensions: tuple[int, int]
    include: list[Polygon] = field(default_factory=list)     # empty with a mask, or when only exclusions
    exclude: list[Polygon] = field(default_factory=list)
    mask: np.ndarray | None = None                           # bool, covering the whole slide
    excluded_annotations: int = 0

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """(n,) bool: which level-0 points (n, 2) x, y lie in the region."""
        xy = np.asarray(xy, float).reshape(-1, 2)
        if self.mask is not None:
            h, w = self.mask.shape
            W, H = self.dimensions
            mx = np.clip((xy[:, 0] * w / W).astype(int), 0, w - 1)
            my = np.clip((xy[:, 1] * h / H).astype(int), 0, h - 1)
            return self.mask[my, mx]
        inside = _in_polygons(xy, self.include) if self.include else np.ones(len(xy), bool)
        return inside & ~_in_polygons(xy, self.exclude)

    def raster(self, scale: float) -> np.ndarray:
        """The region as a bool image at ``scale`` pixels per level-0 px (whole slide)."""
        W, H = self.dimensions
        w, h = max(1, int(np.ceil(W * scale))), max(1, int(np.ceil(H * scale)))
        if self.mask is not None:
            return cv2.resize(self.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        out = _fill(self.include, (h, w), scale) if self.include else np.ones((h, w), bool)
        return out & ~_fill(self.exclude, (h, w), scale)

    def area_um2(self, mpp: float, max_px: int = 4096) -> float:
        """Area of the region in um^2 (rasterised with the slide's longest side at ``max_px``)."""
        scale = min(1.0, max_px / max(self.dimensions))
        return float(self.raster(scale).sum()) * (mpp / scale) ** 2


def _in_polygons(xy: np.ndarray, polygons: list[Polygon]) -> np.ndarray:
    out = np.zeros(len(xy), bool)
    for rings in polygons:
        inside = points_in_poly(xy, rings[0])
        for hole in rings[1:]:
            inside &= ~points_in_poly(xy, hole)
        out |= inside
    return out


def _fill(polygons: list[Polygon], shape: tuple[int, int], scale: float) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for rings in polygons:
        one = np.zeros(shape, np.uint8)
        cv2.fillPoly(one, [np.round(rings[0] * scale).astype(np.int32)], 1)
        for hole in rings[1:]:
            cv2.fillPoly(one, [np.round(hole * scale).astype(np.int32)], 0)
        out |= one
    return out.astype(bool)


def _class_names(props: dict) -> list[str]:
    cl = props.get("classification") or {}
    names = cl.get("names") or ([cl["name"]] if cl.get("name") else [])
    return [str(n) for n in names]


def _polygons(geometry: dict, path: str) -> list[Polygon]:
    kind = geometry.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        return []
    coords = geometry.get("coordinates")
    polys = [coords] if kind == "Polygon" else coords
    out = []
    try:
        for rings in polys:
            arr = [np.asarray(r, float).reshape(-1, 2) for r in rings]
            if not arr or any(len(a) < 3 or not np.isfinite(a).all() for a in arr):
                raise ValueError
            out.append(arr)
    except (TypeError, ValueError):
        raise InputError(f"a {kind} has malformed coordinates", path, FIX) from None
    return out


def region_from_geojson(doc, path: str, sha256: str, dimensions: tuple[int, int],
                        exclude_classes=DEFAULT_EXCLUDE) -> Region:
    """A region from a parsed GeoJSON document (see the module docstring)."""
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features") or []
    elif isinstance(doc, list):
        features = doc
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, dict) and "coordinates" in doc:
        features = [{"type": "Feature", "geometry": doc, "properties": {}}]
    else:
        raise InputError("not GeoJSON (no FeatureCollection, Feature or geometry)", path, FIX)
    skip = {c.lower().rstrip("*") for c in exclude_classes}
    include, exclude, n_excluded = [], [], 0
    for f in features:
        if not isinstance(f, dict) or not isinstance(f.get("geometry"), dict):
            continue
        polys = _polygons(f["geometry"], path)
        if not polys:
            continue
        names = _class_names(f.get("properties") or {})
        if any(n.lower().rstrip("*") in skip for n in names):
            exclude += polys
            n_excluded += 1
        else:
            include += polys
    if not include and not exclude:
        raise InputError("holds no Polygon or MultiPolygon annotation", path, FIX)
    W, H = dimensions
    inside = [p for p in include if (p[0][:, 0].max() > 0 and p[0][:, 1].max() > 0
                                     and p[0][:, 0].min() < W and p[0][:, 1].min() < H)]
    if include and not inside:
        raise InputError(f"every annotation lies outside the {W} x {H} px slide", path,
                         "export the annotations of this slide, in level-0 pixels")
    return Region(path, sha256, dimensions, inside, exclude, None, n_excluded)


def load_region(path: str | Path, dimensions: tuple[int, int], exclude_classes=DEFAULT_EXCLUDE) -> Region:
    """Read a scoring region for a slide of ``dimensions`` (level-0 width, height px).

    Raises
    ------
    InputError
        When the file is missing, unreadable, not a region, empty, or not registered to the slide.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read the region file ({e.strerror or e})", p, FIX) from None
    sha = hashlib.sha256(data).hexdigest()
    if data.lstrip()[:1] in (b"{", b"["):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(f"invalid GeoJSON ({e})", p, FIX) from None
        return region_from_geojson(doc, str(p), sha, dimensions, exclude_classes)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise InputError("neither GeoJSON nor a readable mask image", p, FIX)
    W, H = dimensions
    h, w = img.shape
    if abs((w / h) / (W / H) - 1) > ASPECT_TOLERANCE:
        raise InputError(f"the mask is {w} x {h} px but the slide is {W} x {H}: not the same shape", p,
                         "give a mask of the whole slide (any scale, same aspect ratio)")
    mask = img > 0
    if not mask.any():
        raise InputError("the mask is empty (no non-zero pixel)", p, "mark the region to score with non-zero pixels")
    return Region(str(p), sha, dimensions, mask=mask)
