"""Reading every format the generators write, the real fixtures, and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from her2path.errors import InputError, MppError
from her2path.io import open_image
from her2path.io.writers import write_image
from her2path.synthetic.ihc import preset, render_ihc_field


def test_synthetic_svs_reports_written_levels_and_mpp(sample_slide):
    with open_image(sample_slide.path) as img:
        info = img.info()
    assert info.format == "aperio"
    assert (info.width, info.height) == (sample_slide.width, sample_slide.height)
    assert info.mpp == pytest.approx(0.5)
    assert info.mpp_source == "metadata"
    assert [lv.downsample for lv in info.levels] == [1.0, 4.0, 16.0][: len(info.levels)]
    assert len(info.levels) >= 2
    assert info.levels[1].mpp == pytest.approx(2.0)


def test_region_at_coarser_mpp_has_expected_size_and_content(fine_slide):
    with open_image(fine_slide.path) as img:
        assert img.mpp == pytest.approx(0.25)
        region = img.read_at_mpp(400, 600, 300, 200, mpp=0.5)   # 300x200 px at 0.5 = 600x400 at 0.25
        assert region.shape == (200, 300, 3)
        full = img.read_region(400, 600, 0, 600, 400)
        halved = full.reshape(200, 2, 300, 2, 3).mean(axis=(1, 3))
        assert np.abs(halved - region).mean() < 3.0
        coarse = img.read_at_mpp(0, 0, 100, 100, mpp=4.0)       # served from level 1 (1 um/px)
        assert coarse.shape == (100, 100, 3)
        assert [img.best_level(d) for d in (1, 3.9, 4, 8, 16, 64)] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
@pytest.mark.parametrize("mpp", [0.25, 0.5, 0.1])
def test_plain_images_keep_their_mpp(tmp_path, suffix, mpp):
    rgb = render_ihc_field(preset("2+", seed=1, width_um=40, height_um=30, mpp=0.5)).rgb
    path = write_image(tmp_path / f"field{suffix}", rgb, mpp=mpp)
    with open_image(path) as img:
        assert img.mpp == pytest.approx(mpp, rel=1e-4)
        assert img.dimensions == (rgb.shape[1], rgb.shape[0])
        back = img.read_region(0, 0, 0, rgb.shape[1], rgb.shape[0])
        tol = 4.0 if suffix == ".jpg" else 0.0
        assert np.abs(back.astype(int) - rgb).mean() <= tol


def test_image_without_mpp_needs_user_mpp(tmp_path):
    path = write_image(tmp_path / "nompp.png", np.full((20, 20, 3), 200, np.uint8))
    img = open_image(path)
    assert img.info().mpp is None and img.info().mpp_source == "unknown"
    with pytest.raises(MppError, match="--mpp"):
        _ = img.mpp
    assert open_image(path, mpp=0.5).mpp == 0.5


def test_screen_dpi_is_not_taken_as_a_pixel_size(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(tmp_path / "screen.png", dpi=(72, 72))
    assert open_image(tmp_path / "screen.png").info().mpp is None


def test_real_aperio_svs(real_dir):
    with open_image(real_dir / "CMU-1-Small-Region.svs") as img:
        assert img.format == "aperio"
        assert img.dimensions == (2220, 2967)
        assert img.mpp == pytest.approx(0.499)
        tile = img.read_at_mpp(1000, 1000, 256, 256, 0.5)
        assert tile.shape == (256, 256, 3) and tile.std() > 5   # real tissue, not blank


@pytest.mark.parametrize("name,fmt,levels", [("boxes.tiff", "generic-tiff", 4), ("boxes_0.dcm", "dicom", 1),
                                             ("small.svs", "aperio", 1)])
def test_real_openslide_fixtures(real_dir, name, fmt, levels):
    with open_image(real_dir / name) as img:
        assert img.format == fmt
        assert len(img.levels) == levels
        assert img.read_region(0, 0, 0, 8, 8).shape == (8, 8, 3)


def _truncated(tmp_path, sample_slide):
    data = sample_slide.path.read_bytes()
    p = tmp_path / "truncated.svs"
    p.write_bytes(data[: len(data) // 3])
    return p


@pytest.mark.parametrize("case,match", [
    ("empty", "empty"), ("random", "not a recognised"), ("text.svs", "not a recognised"),
    ("folder", "folder"), ("missing", "not found"), ("unopenable", "cannot be opened"),
])
def test_bad_inputs_raise_one_line_errors(tmp_path, real_dir, case, match):
    paths = {
        "empty": tmp_path / "zero.svs",
        "random": tmp_path / "random.ndpi",
        "text.svs": tmp_path / "notes.svs",
        "folder": tmp_path,
        "missing": tmp_path / "nope.svs",
        "unopenable": real_dir / "unopenable.tiff",
    }
    (tmp_path / "zero.svs").write_bytes(b"")
    (tmp_path / "random.ndpi").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "notes.svs").write_text("patient notes, not a slide\n")
    with pytest.raises(InputError, match=match) as exc:
        open_image(paths[case])
    assert "\n" not in str(exc.value) and str(paths[case]) in str(exc.value) and "Fix:" in str(exc.value)


def test_truncated_and_unreadable_slides_fail_on_read(tmp_path, sample_slide, real_dir):
    for path in (_truncated(tmp_path, sample_slide), real_dir / "unreadable.svs"):
        with pytest.raises(InputError, match="corrupt|truncated|cannot"):
            with open_image(path) as img:
                w, h = img.dimensions
                img.read_region(0, 0, 0, w, h)


def test_wrong_extension_is_read_by_content(tmp_path):
    rgb = np.full((10, 12, 3), 128, np.uint8)
    p = write_image(tmp_path / "x.png", rgb, mpp=0.5)
    renamed = p.rename(tmp_path / "x.svs")
    with open_image(renamed) as img:
        assert img.format == "png" and img.dimensions == (12, 10)
