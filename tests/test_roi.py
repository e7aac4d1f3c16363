"""--roi: a drawn scoring region limits the tiles read and the cells counted (her2path.io.region)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from her2path.cli import main
from her2path.errors import InputError
from her2path.io.region import load_region
from her2path.io.writers import write_image
from her2path.pipeline import ihc_slide
from her2path.pipeline.ihc_slide import score_ihc
from her2path.synthetic.ihc import preset, render_ihc_field

# 0.5 um/px, 256-um tiles = 512 px: a 3+ half (x < 1024) beside a 0 half (x >= 1024).
REGION = [[[16, 16], [1000, 16], [1000, 1000], [16, 1000], [16, 16]],           # the 3+ half, inside its tiles
          [[400, 400], [600, 400], [600, 600], [400, 600], [400, 400]]]         # a hole
EXCLUDE = [[[16, 16], [200, 16], [200, 200], [16, 200], [16, 16]]]


@pytest.fixture(scope="module")
def two_halves(tmp_path_factory):
    left = render_ihc_field(preset("3+", seed=5, width_um=512, height_um=512)).rgb
    right = render_ihc_field(preset("0", seed=6, width_um=512, height_um=512)).rgb
    return write_image(tmp_path_factory.mktemp("roi") / "halves.png", np.hstack([left, right]), 0.5)


def _geojson(path, exclude_class="Ignore*"):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "a", "geometry": {"type": "Polygon", "coordinates": REGION},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}},
        {"type": "Feature", "id": "b", "geometry": {"type": "Polygon", "coordinates": EXCLUDE},
         "properties": {"objectType": "annotation", "classification": {"names": [exclude_class]}}}]}
    path.write_text(json.dumps(doc))
    return path


def test_the_region_limits_tiles_cells_and_score(two_halves, tmp_path, monkeypatch):
    whole = score_ihc(two_halves, workers=1)
    read = []
    real_read = ihc_slide.read_with_margin
    monkeypatch.setattr(ihc_slide, "read_with_margin", lambda slide, tile, *a: read.append(tile) or
                        real_read(slide, tile, *a))
    r = score_ihc(two_halves, workers=1, roi=_geojson(tmp_path / "roi.geojson"))
    assert whole.score == "2+" or whole.score == "3+"          # the whole image mixes a 3+ and a 0 half
    assert r.score == "3+" and r.percent_cells["3+"] > whole.percent_cells["3+"]
    x, y = np.array(r.cells.x), np.array(r.cells.y)
    assert len(x) > 50
    assert (x >= 16).all() and (x <= 1000).all() and (y <= 1000).all()             # nothing outside
    assert not ((x > 400) & (x < 600) & (y > 400) & (y < 600)).any()              # nor in the hole
    assert not ((x < 200) & (y < 200)).any()                                       # nor in the exclusion
    assert all(t.x < 1024 for t in read) and len(read) == len(r.tiles) == 4        # the 0 half never read
    assert r.region.tiles_outside == 4 and r.region.excluded_annotations == 1
    assert r.region.area_mm2 == pytest.approx((984**2 - 200**2 - 184**2) * 0.25e-6, rel=0.03)


def test_a_mask_image_is_a_region_and_the_cli_takes_it(two_halves, tmp_path, capsys):
    mask = np.zeros((256, 512), np.uint8)                      # a quarter-scale mask of the 2048 x 1024 image
    mask[:, :250] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    assert main(["ihc", str(two_halves), "--roi", str(tmp_path / "mask.png"), "--workers", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["score"] == "3+" and out["region"]["tiles_outside"] == 4


def test_bad_regions_are_one_line_errors(two_halves, tmp_path, capsys):
    (tmp_path / "bad.geojson").write_text("{not json")
    (tmp_path / "points.geojson").write_text(json.dumps({"type": "Point", "coordinates": [1, 2]}))
    (tmp_path / "far.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[9000, 9000], [9100, 9000], [9100, 9100], [9000, 9000]]]}))
    cv2.imwrite(str(tmp_path / "square.png"), np.full((100, 100), 255, np.uint8))
    for name, words in [("bad.geojson", "invalid GeoJSON"), ("points.geojson", "no Polygon"),
                        ("far.geojson", "outside"), ("square.png", "not the same shape"),
                        ("missing.geojson", "cannot read")]:
        with pytest.raises(InputError, match=words):
            load_region(tmp_path / name, (2048, 1024))
        assert main(["ihc", str(two_halves), "--roi", str(tmp_path / name), "--workers", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err and "Fix:" in err


def test_only_exclusions_score_everything_else(two_halves, tmp_path):
    doc = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
        [[1024, 0], [2048, 0], [2048, 1024], [1024, 1024], [1024, 0]]]},
        "properties": {"classification": {"name": "Exclude"}}}
    (tmp_path / "ex.geojson").write_text(json.dumps(doc))
    region = load_region(tmp_path / "ex.geojson", (2048, 1024))
    assert region.contains(np.array([[100.0, 100.0], [1500.0, 100.0]])).tolist() == [True, False]


def test_batch_takes_a_sidecar_region(two_halves, tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "halves.png").write_bytes(two_halves.read_bytes())
    _geojson(folder / "halves.geojson")
    assert main(["batch", str(folder), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "cases" / "halves" / "ihc" / "result.json").read_text())
    assert result["score"] == "3+" and result["region"]["source"].endswith("halves.geojson")
