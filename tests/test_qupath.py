"""cells.geojson as QuPath's GeoJSON reader (qupath-core QuPathTypeAdapters, 0.2-0.7) takes it."""
from __future__ import annotations

import csv
import json
import math
import uuid

import numpy as np
from skimage.measure import points_in_poly

from her2path.io.slide import open_image
from her2path.pipeline.ihc_slide import score_ihc
from her2path.pipeline.outputs import write_ihc_outputs
from her2path.pipeline.qupath import QUPATH_RGB, h_score

OBJECT_TYPES = {"cell", "detection", "tile", "annotation"}
QUPATH_INTENSITY = {"Negative": QUPATH_RGB["0"], "1+": QUPATH_RGB["1+"], "2+": QUPATH_RGB["2+"], "3+": QUPATH_RGB["3+"]}


def _closed_rings(geometry):
    """Every ring of a Polygon / MultiPolygon, checked closed and at least a triangle."""
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    assert geometry["type"] in ("Polygon", "MultiPolygon")
    for rings in polys:
        for ring in rings:
            assert len(ring) >= 4 and ring[0] == ring[-1]
            assert all(len(p) == 2 and all(math.isfinite(v) for v in p) for p in ring)
            yield np.asarray(ring, float)


def read_like_qupath(feature):
    """What QuPath's reader takes from one Feature; fails where QuPath would drop or misread a part."""
    assert feature["type"] == "Feature"
    fid = uuid.UUID(feature["id"])                        # a UUID string, or QuPath makes a random one
    props = feature["properties"]
    kind = props["objectType"]
    assert kind in OBJECT_TYPES
    rings = list(_closed_rings(feature["geometry"]))
    nucleus = None
    if kind == "cell":
        assert "nucleusGeometry" not in props            # QuPath reads it beside geometry only
        nucleus = list(_closed_rings(feature["nucleusGeometry"]))[0]
    names = None
    if "classification" in props:
        cl = props["classification"]
        names = cl["names"]
        assert isinstance(names, list) and all(isinstance(n, str) and n for n in names)
        assert len(cl["color"]) == 3 and all(0 <= v <= 255 for v in cl["color"])
    measurements = props.get("measurements", {})
    assert isinstance(measurements, dict)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in measurements.values())
    return str(fid), kind, rings, nucleus, names, props.get("classification", {}).get("color"), measurements


def test_cells_open_in_qupath_with_nucleus_class_and_id(tmp_path, sample_slide):
    with open_image(sample_slide.path) as slide:
        r = score_ihc(slide, workers=1)
        files = write_ihc_outputs(r, slide, tmp_path)
    objects = [read_like_qupath(f) for f in json.loads(files["geojson"].read_text())["features"]]
    ids = [o[0] for o in objects]
    assert len(set(ids)) == len(ids)
    cells = [o for o in objects if o[1] == "cell"]
    assert len(cells) == r.tumour_cells > 100
    for fid, _, rings, nucleus, names, color, m in cells:
        assert names[0] == "Tumor" and names[1] in QUPATH_INTENSITY and tuple(color) == QUPATH_INTENSITY[names[1]]
        centre = nucleus[:-1].mean(axis=0)
        assert points_in_poly(centre[None], rings[0])[0]               # the nucleus lies in its cell
        assert {"Membrane completeness", "Membrane DAB OD"} <= set(m)
    rows = {row["id"]: row for row in csv.DictReader(open(files["cells_csv"]))}
    qupath_name = {"0": "Negative", "1+": "1+", "2+": "2+", "3+": "3+"}
    assert set(rows) == {c[0] for c in cells}                           # every id found in cells.csv
    assert all(qupath_name[rows[c[0]]["class"]] == c[4][1] for c in cells)
    tiles = [o for o in objects if o[1] == "tile"]
    assert len(tiles) == len(r.tiles) and sum(t[6]["Num Tumor"] for t in tiles) == r.tumour_cells
    (region,) = [o for o in objects if o[1] == "annotation"]
    m = region[6]
    assert m["Num Tumor"] == r.tumour_cells == sum(m[f"Num {k}"] for k in QUPATH_INTENSITY)
    assert m["H-score"] == h_score(r.percent_cells)
    others = [o for o in objects if o[1] == "detection"]
    assert len(others) == r.non_tumour_cells and all(o[4] == ["Non-tumour"] for o in others)


def test_ids_are_stable_across_runs(tmp_path, sample_slide):
    with open_image(sample_slide.path) as slide:
        a = write_ihc_outputs(score_ihc(slide, workers=1), slide, tmp_path / "a")
        b = write_ihc_outputs(score_ihc(slide, workers=1), slide, tmp_path / "b")
    assert a["cells_csv"].read_text() == b["cells_csv"].read_text()
