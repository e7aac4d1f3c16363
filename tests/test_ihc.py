"""IHC membrane scoring: stain separation, cells, membranes, slide score and outputs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from her2path.config import load_settings
from her2path.errors import MppError, NoTissueError
from her2path.ihc.stain import Stains, estimate_stains, unmix
from her2path.io import open_image
from her2path.io.tiling import tile_grid
from her2path.io.writers import write_image
from her2path.pipeline.ihc_slide import score_ihc
from her2path.pipeline.outputs import write_ihc_outputs
from her2path.rules.ihc import cell_classes
from her2path.synthetic.ihc import IhcFieldSpec, StainVectors, jitter_stains, preset, render_ihc_field

CLASSES = ("0", "1+", "2+", "3+")


def test_unmixing_recovers_rendered_stains():
    f = render_ihc_field(preset("3+", seed=2, noise=0, blur_um=0.01))
    d = unmix(f.rgb, Stains(), white=250.0).dab
    # Laid-down DAB comes back where it was put (before the 8-bit rounding and optics).
    assert np.corrcoef(d.ravel(), f.dab.ravel())[0, 1] > 0.95


def test_stain_estimate_is_guarded():
    rng = np.random.default_rng(3)
    shifted = jitter_stains(StainVectors(), rng, 8.0)
    est = estimate_stains(render_ihc_field(preset("3+", seed=1, stains=shifted)).rgb)
    assert est.source.startswith("estimated")
    none = estimate_stains(render_ihc_field(preset("0", seed=1)).rgb)
    assert "H only" in none.source and np.allclose(none.dab, Stains().dab, atol=1e-3)
    odd = jitter_stains(StainVectors(), np.random.default_rng(45), 45.0)   # far from any real H-DAB
    far = estimate_stains(render_ihc_field(preset("3+", seed=1, stains=odd)).rgb, max_deviation_deg=20)
    assert far.source.startswith("fallback: estimate") and far.dab == Stains().dab


def test_class_rules_breast_and_gastric():
    cfg = load_settings().ihc.cell_class
    comp = np.array([0.0, 0.4, 0.95, 0.95, 0.25, 0.95])
    inten = np.array([0.0, 0.03, 0.06, 0.3, 0.3, 0.03])
    breast = cell_classes(comp, inten, cfg)
    assert breast.cls.tolist() == ["0", "1+", "2+", "3+", "2+", "1+"]
    assert breast.basolateral.tolist() == [False, False, False, False, True, False]
    gastric = cell_classes(comp, inten, cfg, u_shaped_complete=True)
    assert gastric.cls[4] == "3+"          # U-shaped counts as complete in gastric


@pytest.mark.parametrize("score", CLASSES)
def test_field_scores_and_percentages(score):
    f = render_ihc_field(preset(score, seed=70, width_um=384, height_um=384))
    r = score_ihc(f.rgb, mpp=0.5, workers=1)
    assert r.score == f.decision.score
    for c in CLASSES:                      # the method is built for real tissue (benchmarks/real_ihc.py);
        assert abs(r.percent_cells[c] - f.decision.percent[c]) < 10   # this generator is one test of many
    assert abs(r.tumour_cells - len(f.truth.cls)) / len(f.truth.cls) < 0.1


def test_cells_match_truth_and_stroma_is_not_counted():
    f = render_ihc_field(IhcFieldSpec(percent={"0": 25, "1+": 25, "2+": 25, "3+": 25}, seed=71))
    r = score_ihc(f.rgb, mpp=0.5, workers=1)
    pred = np.c_[r.cells.x, r.cells.y]
    d, i = cKDTree(pred).query(f.truth.xy_px)
    assert np.mean(d < 6) > 0.9
    ds, _ = cKDTree(pred).query(f.truth.stroma_xy_px)
    assert np.mean(ds < 3) < 0.1                      # stromal nuclei are not tumour cells
    idx = {c: k for k, c in enumerate(CLASSES)}
    t = np.array([idx[c] for c in f.truth.cls[d < 6]])
    p = np.array([idx[c] for c in np.asarray(r.cells.cls)[i[d < 6]]])
    assert np.mean(t == p) > 0.8 and np.mean(np.abs(t - p) <= 1) > 0.98


def test_same_tissue_at_two_resolutions_gets_the_same_score(sample_slide, fine_slide):
    a = score_ihc(sample_slide.path, workers=1)
    b = score_ihc(fine_slide.path, workers=1)
    assert a.score == b.score == sample_slide.decision.score
    for c in CLASSES:
        assert abs(a.percent_cells[c] - b.percent_cells[c]) < 4
    assert a.mpp == b.mpp == 0.5 and b.scan_mpp == 0.25


def test_slide_in_workers_is_deterministic_and_equal_to_one_process(sample_slide):
    one = score_ihc(sample_slide.path, workers=1)
    two = score_ihc(sample_slide.path, workers=2)
    assert one.to_json() == two.to_json()


def test_h_and_e_is_refused_with_no_dab_warning(real_dir):
    r = score_ihc(real_dir / "CMU-1-Small-Region.svs", workers=2)
    assert r.score is None and r.sub_label is None
    assert "no brown DAB on the slide" in r.reasons[0] and "H&E" in r.reasons[0]
    assert any("no DAB" in w for w in r.warnings)


def test_real_dab_image_runs_end_to_end(tmp_path):
    from skimage import data

    rgb = data.immunohistochemistry()
    r = score_ihc(rgb, mpp=0.5, workers=1)
    assert r.tumour_cells > 50 and r.score in CLASSES
    assert r.percent_cells["0"] < 90                 # its strong DAB is seen


def test_defocused_tissue_is_left_out_with_a_warning():
    f = render_ihc_field(preset("2+", seed=72, artefacts=("defocus",), width_um=384, height_um=384))
    r = score_ihc(f.rgb, mpp=0.5, workers=1)
    assert r.excluded_cells > 10 and any("out-of-focus" in w for w in r.warnings)
    assert r.score == f.decision.score


def test_blank_image_and_missing_mpp_are_errors(tmp_path):
    with pytest.raises(NoTissueError):
        score_ihc(np.full((600, 600, 3), 245, np.uint8), mpp=0.5, workers=1)
    with pytest.raises(MppError, match="--mpp"):
        score_ihc(np.zeros((10, 10, 3), np.uint8))
    p = write_image(tmp_path / "nompp.png", render_ihc_field(preset("1+", seed=1)).rgb)
    with pytest.raises(MppError, match="--mpp"):
        score_ihc(p)


def test_outputs_are_derived_from_the_result(tmp_path, sample_slide):
    with open_image(sample_slide.path) as slide:
        r = score_ihc(slide, workers=1)
        files = write_ihc_outputs(r, slide, tmp_path)
    back = type(r).from_json((tmp_path / "result.json").read_text())
    assert back == r
    # A result written with schema 2 (outlines as [[dx, dy], ...] floats) still loads, to the pixel.
    old = json.loads((tmp_path / "result.json").read_text())
    old["cells"]["outline"] = [np.reshape(o, (-1, 2)).astype(float).tolist() for o in old["cells"]["outline"]]
    assert type(r).from_json(json.dumps(old)).cells.outline == r.cells.outline
    rows = list(csv.DictReader(open(files["cells_csv"])))
    assert list(rows[0])[:5] == ["x", "y", "class", "completeness", "intensity"]
    assert len(rows) == r.tumour_cells
    assert {row["class"] for row in rows} <= set(CLASSES)
    assert files["geojson"].exists()            # its content: tests/test_qupath.py
    assert files["heatmap"].stat().st_size > 10000
    assert any(k.startswith("overlay_") for k in files)


@pytest.mark.parametrize("white", [255.0, 231.0, (250.0, 240.0, 190.0)])
@pytest.mark.parametrize("shape", ["image", "pixel list", "strided"])
def test_optical_density_by_lookup_equals_the_logarithm(white, shape):
    """Per channel for an image, for the (n, 3) pixel lists stain estimation passes, and for a view."""
    from her2path.optics import optical_density

    rgb = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    rgb = {"image": rgb, "pixel list": rgb.reshape(-1, 3), "strided": rgb[::2, 1::3]}[shape]
    exact = -np.log10(np.maximum(rgb.astype(np.float64), 1.0) / np.asarray(white, np.float64))
    od = optical_density(rgb, white)
    assert od.dtype == np.float32 and od.shape == rgb.shape
    assert np.abs(od - exact).max() < 1e-5


def test_touching_nuclei_split_as_a_full_watershed_would():
    """The watershed runs only in mask pieces with several markers: the labels are the full watershed's."""
    import cv2
    from skimage.segmentation import watershed

    from her2path.segmentation import split_touching

    rng = np.random.default_rng(3)
    mask = np.zeros((300, 300), np.uint8)
    for x, y, r in zip(rng.uniform(10, 290, 60), rng.uniform(10, 290, 60), rng.uniform(4, 12, 60)):
        cv2.circle(mask, (int(x), int(y)), int(r), 1, -1)        # lone and touching discs
    got = split_touching(mask, 0.5, 3.0)
    dist = cv2.GaussianBlur(cv2.distanceTransform(mask, cv2.DIST_L2, 5), (0, 0), 1.0)
    k = max(3, int(round(3.0 / 0.5)) | 1)
    peaks = (dist == cv2.dilate(dist, np.ones((k, k), np.uint8))) & (dist > 1.0) & (mask > 0)
    markers = cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)[1]
    full = watershed(-dist, markers, mask=mask.astype(bool))
    assert got.max() > 30 and np.array_equal(got, full)


def test_the_tile_model_runs_only_on_tiles_it_is_compared_on(tmp_path):
    """Tiles with fewer than tile_model.min_tumour_cells tumour cells, or less than min_tile_tissue of
    tissue (here the field's edge: the image ends inside them), carry no model score: it is not run."""
    f = render_ihc_field(preset("2+", seed=5, width_um=600, height_um=300))
    path = write_image(tmp_path / "f.png", f.rgb, 0.5)
    settings = load_settings()
    tissue = [t.tissue_fraction for t in tile_grid(open_image(path), settings).tiles]

    def run(least, min_tissue):
        update = {"min_tumour_cells": least, "min_tile_tissue": min_tissue}
        s = settings.model_copy(update={"tile_model": settings.tile_model.model_copy(update=update)})
        return score_ihc(path, settings=s, workers=1).tiles

    tiles = run(1, 0.0)
    assert all(t.tumour_cells >= 20 for t in tiles[:3]) and tissue[2] < 0.5 <= min(tissue[:2])
    assert all(t.model_probability is not None for t in tiles[:3])
    assert all(t.model_probability is None for t in tiles if t.tumour_cells < 1)
    assert all(t.model_probability is None and t.model_score is None for t in run(10**6, 0.0))
    edge = run(1, 0.5)
    assert [t.model_probability is not None for t in edge] == [x >= 0.5 for x in tissue]


def test_the_thumbnail_is_read_once_per_resolution(sample_slide):
    slide = open_image(sample_slide.path)
    a, b = slide.thumbnail(8.0), slide.thumbnail(8.0)
    assert a is b and not a.flags.writeable
    assert slide.thumbnail(16.0) is not a
