"""The command line: JSON on stdout, one-line errors with a non-zero exit, the demo."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "her2path.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0 and "info" in r.stdout and "demo" in r.stdout and "not for diagnosis" in " ".join(r.stdout.split())


def test_info_json(sample_slide):
    r = run("info", sample_slide.path, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "aperio" and info["mpp"] == 0.5
    assert [lv["downsample"] for lv in info["levels"]][:2] == [1.0, 4.0]


@pytest.mark.parametrize("kind", ["empty", "text", "folder", "missing", "unopenable", "negative-mpp"])
def test_bad_input_is_one_line_without_traceback(tmp_path, real_dir, kind):
    (tmp_path / "zero.svs").write_bytes(b"")
    (tmp_path / "notes.svs").write_text("not a slide")
    args = {
        "empty": [tmp_path / "zero.svs"], "text": [tmp_path / "notes.svs"], "folder": [tmp_path],
        "missing": [tmp_path / "none.svs"], "unopenable": [real_dir / "unopenable.tiff"],
        "negative-mpp": [real_dir / "small.svs", "--mpp", "-1"],
    }[kind]
    r = run("info", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("her2path: error: ") and "Fix:" in lines[0]
    assert str(args[0]) in lines[0] and "Traceback" not in r.stderr and r.stdout == ""


def test_debug_shows_traceback(tmp_path):
    (tmp_path / "zero.svs").write_bytes(b"")
    r = run("--debug", "info", tmp_path / "zero.svs")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_demo_runs_to_the_end(tmp_path):
    r = run("demo", "--out", tmp_path / "demo")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "demo" / "tiles.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "sample-case" / "truth.json").exists()


def test_ihc_json_and_outputs(sample_slide, tmp_path):
    r = run("ihc", sample_slide.path, "--json", "--out", tmp_path / "o", "--workers", "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("score", "percent_cells", "tumour_cells", "sub_label", "mpp", "guideline"):
        assert key in out
    assert out["score"] == sample_slide.decision.score and out["guideline"] == "breast"
    assert set(out["percent_cells"]) == {"0", "1+", "2+", "3+"}
    for name in ("result.json", "cells.csv", "cells.geojson", "heatmap.png"):
        assert (tmp_path / "o" / name).stat().st_size > 0
    assert list((tmp_path / "o" / "overlays").glob("tile_*.png"))


def test_ihc_gastric_and_bad_guideline(sample_slide):
    r = run("ihc", sample_slide.path, "--json", "--guideline", "gastric", "--workers", "1")
    assert r.returncode == 0 and json.loads(r.stdout)["guideline"] == "gastric"
    r = run("ihc", sample_slide.path, "--guideline", "lung")
    assert r.returncode == 2 and "unknown guideline 'lung'" in r.stderr and "breast" in r.stderr


def test_ihc_image_without_mpp_and_blank_slide(tmp_path):
    import numpy as np

    from her2path.io.writers import write_image

    p = write_image(tmp_path / "x.png", np.full((300, 300, 3), 120, np.uint8))
    r = run("ihc", p)
    assert r.returncode == 2 and "--mpp" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    blank = write_image(tmp_path / "blank.png", np.full((600, 600, 3), 245, np.uint8), mpp=0.5)
    r = run("ihc", blank)
    assert r.returncode == 2 and "no tissue" in r.stderr


def test_ish_json_outputs_and_bad_fields(tmp_path):
    from her2path.io.writers import write_image
    from her2path.synthetic.ish import IshFieldSpec, render_fish

    paths = []
    for k in range(2):
        f = render_fish(IshFieldSpec(group=1, seed=60 + k))
        paths.append(write_image(tmp_path / f"f{k}.tif", f.cyx(16), f.mpp))
    r = run("ish", *paths, "--json", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("nuclei", "her2_per_cell", "cep17_per_cell", "ratio", "group", "call"):
        assert key in out
    assert out["group"] == 1 and out["call"] == "positive" and out["nuclei"] >= 20
    header = (tmp_path / "o" / "nuclei.csv").read_text().splitlines()[0]
    assert header.startswith("x,y,her2,cep17")
    assert (tmp_path / "o" / "overlay_1.png").exists()
    one = write_image(tmp_path / "one.tif", render_fish(IshFieldSpec(group=5, seed=1)).cyx(16)[0], 0.1)
    r = run("ish", one)
    assert r.returncode == 2 and "one channel" in r.stderr
    empty = write_image(tmp_path / "empty.tif", __import__("numpy").zeros((3, 64, 64), "uint16"), 0.1)
    r = run("ish", empty)
    assert r.returncode == 2 and "empty" in r.stderr
    r = run("ish", paths[0], "--channels", "her2,dapi")
    assert r.returncode == 2 and "--channels" in r.stderr


def test_ish_few_nuclei_is_a_no_call(tmp_path):
    from her2path.io.writers import write_image
    from her2path.synthetic.ish import IshFieldSpec, render_fish

    f = render_fish(IshFieldSpec(group=5, seed=3, width_px=400, height_px=400))
    p = write_image(tmp_path / "small.tif", f.cyx(16), f.mpp)
    r = run("ish", p, "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["call"] == "no-call" and "evaluable nuclei" in out["reasons"][0]


def test_off_a_terminal_stages_are_logged_with_timestamps(tmp_path):
    import re

    from her2path.io.writers import write_image
    from her2path.synthetic.ihc import preset, render_ihc_field

    img = write_image(tmp_path / "f.png", render_ihc_field(preset("2+", seed=3, width_um=300, height_um=300)).rgb, 0.5)
    cmd = [sys.executable, "-m", "her2path.cli", "ihc", str(img), "--workers", "1", "--out", str(tmp_path / "o")]
    with open(tmp_path / "log.txt", "w") as log:                  # her2path ihc ... > log.txt
        assert subprocess.run(cmd, stdout=log, stderr=subprocess.PIPE, timeout=300).returncode == 0
    lines = (tmp_path / "log.txt").read_text().splitlines()
    staged = [m.group(1) for m in (re.match(r"\d{4}-\d\d-\d\dT[\d:]{8} her2path ihc: (\w+)", ln) for ln in lines) if m]
    for stage in ("open", "tissue", "stains", "tiles", "outputs", "done"):
        assert stage in staged
    assert any(re.search(r"outputs \d+/\d+", ln) for ln in lines)       # the outputs stage is counted too
    assert any("IHC" in ln for ln in lines)                                # and the result follows
    quiet = subprocess.run(cmd + ["--quiet", "--json"], capture_output=True, text=True, timeout=300)
    assert json.loads(quiet.stdout)["score"] and quiet.stderr == ""
    logged = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert json.loads(logged.stdout)["score"] and "her2path ihc: tiles" in logged.stderr
