"""Nothing lost, nothing let in: case ids, commits without a gap, verified outputs, the review server's
defences and bounded inputs (one test per finding of the attacker's and the unlucky lab's probe)."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import review_client
from her2path.cli import main
from her2path.io.writers import write_image
from her2path.pipeline import results_store
from her2path.pipeline.batch import run_batch
from her2path.pipeline.layout import case_folder
from her2path.review.app import create_app
from her2path.synthetic.ihc import preset, render_ihc_field

ODD_IDS = ["../../victim", "/tmp/her2path-abs-victim", "Fall 7 (re-cut)", "Ünïcödé-Fall", 'quote"d\'id',
           "<b>markup</b>", "x" * 150]


def field_png(path: Path, score: str = "3+", seed: int = 1) -> Path:
    f = render_ihc_field(preset(score, seed=seed, width_um=200, height_um=200))
    return write_image(path, f.rgb, 0.5)


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    return [field_png(root / f"s{i}.png", ("3+", "1+")[i % 2], seed=10 + i) for i in range(2)]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "her2path.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def _one_line_error(r, *words):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("her2path: error: "), r.stderr
    assert "Traceback" not in r.stderr and all(w in lines[0] for w in words), lines[0]


# 1 and 8: case ids --------------------------------------------------------------------------

def test_manifest_ids_never_reach_outside_the_output_folder(tmp_path, slides):
    out = tmp_path / "out" / "x"
    canary = out.parent / "victim"                      # where out/cases/../../victim points
    canary.mkdir(parents=True)
    (canary / "keep.txt").write_text("lab data")
    absolute = Path("/tmp/her2path-abs-victim")
    absolute.mkdir(exist_ok=True)
    (absolute / "keep.txt").write_text("lab data")
    before = {p: p.stat().st_mtime_ns for p in (canary, canary / "keep.txt", absolute / "keep.txt")}
    rows = ["case_id,ihc"] + [f'"{cid.replace(chr(34), chr(34) * 2)}",{slides[i % 2]}' for i, cid in enumerate(ODD_IDS)]
    rows.append(f"../failing,{tmp_path / 'missing.svs'}")         # a failed case with a traversal id
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    res = run_batch(tmp_path, out, workers=2, manifest=tmp_path / "m.csv")
    assert {r["case_id"] for r in res.rows} == set(ODD_IDS) | {"../failing"}
    assert sum(r["state"] == "done" for r in res.rows) == len(ODD_IDS)
    assert before == {p: p.stat().st_mtime_ns for p in before}            # canaries untouched
    assert (canary / "keep.txt").read_text() == (absolute / "keep.txt").read_text() == "lab data"
    folders = sorted(p.name for p in (out / "cases").iterdir())
    assert folders == sorted(case_folder(c) for c in ODD_IDS)
    assert all(".." not in f and "/" not in f for f in folders)
    for r in res.rows:                                  # the id is kept in the record and in result.json
        if r["state"] == "done":
            assert json.loads((out / "cases" / r["folder"] / "result.json").read_text())["case_id"] == r["case_id"]
    # every case, oddly named or failed, is listed by the review app (finding 8)
    listed = TestClient(create_app(out), base_url="http://127.0.0.1").get("/api/cases").json()
    assert {c["case_id"] for c in listed} == set(ODD_IDS) | {"../failing"}
    assert next(c for c in listed if c["case_id"] == "../failing")["state"] == "failed"


def test_control_characters_in_an_id_are_refused_with_the_line(tmp_path, slides):
    (tmp_path / "m.csv").write_text(f'case_id,ihc\n"bad\nid",{slides[0]}\n')
    r = _cli("batch", tmp_path, "--out", tmp_path / "out", "--manifest", tmp_path / "m.csv")
    _one_line_error(r, "m.csv line 2", "control")


# 2: commit without a gap --------------------------------------------------------------------

@pytest.fixture()
def done_case(tmp_path, slides):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(slides[0], src / "case00.png")
    out = tmp_path / "out"
    assert run_batch(src, out, workers=1).failed == []
    files = {p: p.read_bytes() for p in (out / "cases" / "case00").rglob("*") if p.is_file()}
    return src, out, files


def _row(out, case_id="case00"):
    con = sqlite3.connect(out / "results.sqlite")
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM cases WHERE case_id = ?", (case_id,)).fetchone())
    con.close()
    return row


def _same_files(out, files, but_the_time_written=False):
    """The case's files are byte for byte ``files``; a redone case may differ only in the minute its report
    says it was written (and so in that file's checksum, which `verify` then checks)."""
    now = {p: p.read_bytes() for p in (out / "cases" / "case00").rglob("*") if p.is_file()}
    if not but_the_time_written:
        return now == files

    def masked(found):
        stamp = re.compile(rb"report written \d{4}-\d\d-\d\d \d\d:\d\d UTC")
        return {p: stamp.sub(b"report written <time>", b) for p, b in found.items() if p.name != "checksums.sha256"}
    return now.keys() == files.keys() and masked(now) == masked(files)


def test_failed_rename_keeps_the_previous_result(done_case, monkeypatch):
    src, out, files = done_case
    real = results_store._rename

    def fail_into_place(a, b):
        if Path(a).name.endswith(".partial"):
            raise PermissionError(errno.EACCES, "Permission denied", str(b))
        return real(a, b)

    monkeypatch.setattr(results_store, "_rename", fail_into_place)
    res = run_batch(src, out, workers=1, force=True)
    assert len(res.failed) == 1 and _same_files(out, files)
    row = _row(out)
    assert row["state"] == "failed" and "could not be put in place" in row["error"]
    assert "previous result" in row["note"] and row["status"] == "positive"       # what the files say
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["case00"]         # no partial or old folder
    summary = (out / "summary.csv").read_text()
    assert "failed" in summary and "previous result" in summary


def test_full_disk_at_the_database_row_keeps_the_previous_result(done_case, monkeypatch):
    src, out, files = done_case
    real_put = results_store.ResultsDB.put
    calls = []

    def put(self, rec):
        calls.append(rec.state)
        if len(calls) == 1:                              # the row of the new result: disk full
            raise sqlite3.OperationalError("database or disk is full")
        return real_put(self, rec)

    monkeypatch.setattr(results_store.ResultsDB, "put", put)
    run_batch(src, out, workers=1, force=True)
    assert _same_files(out, files)
    row = _row(out)
    assert row["state"] == "failed" and "previous result" in row["note"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop "
                    "CAP_DAC_OVERRIDE (otherwise root ignores the read-only folder)")
def test_read_only_cases_folder_keeps_the_previous_result(done_case):
    src, out, files = done_case
    (out / "cases").chmod(0o555)
    try:
        r = subprocess.run(["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                            "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "her2path.cli",
                            "batch", str(src), "--out", str(out), "--force"], capture_output=True, text=True,
                           timeout=600)
    finally:
        (out / "cases").chmod(0o755)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _same_files(out, files)
    row = _row(out)
    assert row["state"] == "failed" and "Permission denied" in row["error"] and "previous result" in row["note"]


# 3: verified outputs ------------------------------------------------------------------------

def test_tampered_or_missing_files_are_found_and_redone(done_case):
    src, out, files = done_case
    case = out / "cases" / "case00"
    result = json.loads((case / "result.json").read_text())
    result["status"] = "negative"                                   # a hand edit
    (case / "result.json").write_text(json.dumps(result))
    (case / "ihc" / "heatmap.png").unlink()
    r = _cli("verify", out, "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 1 and report["damaged"] == 1
    problems = report["cases"][0]["problems"]
    assert "result.json was changed or damaged" in problems and "ihc/heatmap.png is missing" in problems
    res = run_batch(src, out, workers=1)
    assert res.skipped == [] and any("redone" in n and "result.json" in n for n in res.notes)
    assert _same_files(out, files, but_the_time_written=True)       # redone, identical to the first run
    assert "redone" in _row(out)["note"]
    assert _cli("verify", out).returncode == 0


def test_a_single_case_folder_verifies_by_its_checksums(tmp_path, slides):
    assert main(["case", "--ihc", str(slides[0]), "--out", str(tmp_path / "c"), "--workers", "1"]) == 0
    assert main(["verify", str(tmp_path / "c")]) == 0
    (tmp_path / "c" / "result.json").write_text("{garbage")
    assert main(["verify", str(tmp_path / "c")]) == 1


# 4-6 and 8-10: the review server ---------------------------------------------------------------

@pytest.fixture(scope="module")
def review_out(tmp_path_factory, slides):
    out = tmp_path_factory.mktemp("review")
    for i, name in enumerate(["good", "broken", "linked", "Fall 7 <b>"]):
        main(["case", "--ihc", str(slides[i % 2]), "--out", str(out / "cases" / case_folder(name)), "--case-id", name,
              "--workers", "1"])
    (out / "cases" / "broken" / "result.json").write_text("{not json")
    outside = out.parent / f"{out.name}-outside"
    shutil.move(out / "cases" / "linked", outside)
    (out / "cases" / "linked").symlink_to(outside, target_is_directory=True)
    heat = out / "cases" / "good" / "ihc" / "heatmap.png"
    heat.unlink()
    secret = out.parent / f"{out.name}-secret.png"
    secret.write_bytes(b"\x89PNG secret outside the output folder")
    heat.symlink_to(secret)
    return out


@pytest.fixture()
def review(review_out):
    return review_client(review_out)


def test_one_broken_case_does_not_hide_the_others(review):
    r = review.get("/api/cases")
    assert r.status_code == 200
    cases = {c["key"]: c for c in r.json()}
    assert cases["broken"]["state"] == "broken" and "result.json cannot be read" in cases["broken"]["reason"]
    assert cases["linked"]["state"] == "broken" and "outside the output folder" in cases["linked"]["reason"]
    assert cases["good"]["state"] == "ok" and cases[case_folder("Fall 7 <b>")]["case_id"] == "Fall 7 <b>"
    assert review.get("/api/cases/broken").status_code == 404
    assert review.get("/api/cases/linked").status_code == 404


def test_a_symlink_out_of_the_folder_is_never_served(review):
    r = review.get("/files/good/heatmap.png")
    assert r.status_code == 404 and b"secret" not in r.content


@pytest.mark.parametrize("host", ["rebind.attacker.example", "evil.example:8765", "127.0.0.1.nip.io"])
def test_a_rebinding_host_is_refused(review_out, host):
    app = create_app(review_out)
    c = TestClient(app, base_url=f"http://{host}")
    assert c.get("/").status_code == 400
    assert c.get("/api/cases").status_code == 400
    r = c.post("/api/cases/good/signoff", content=json.dumps({"value": "accept", "reviewer": "x"}),
               headers={"X-CSRF-Token": app.state.review.csrf, "Content-Type": "application/json",
                        "Origin": f"http://{host}"})
    assert r.status_code == 400 and app.state.review.csrf not in r.text


def test_security_headers_on_every_response(review):
    for path in ("/", "/api/cases", "/static/review.js", "/nope"):
        h = review.get(path).headers
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert "script-src 'self'" in h["content-security-policy"] and "unsafe-inline" not in h["content-security-policy"]
    assert "<script>" not in review.get("/").text.replace('<script src="/static/review.js"></script>', "")


@pytest.mark.parametrize("where", ["query", "cookie", "header"])
def test_malformed_tokens_are_refused_not_crashed(review_out, where):
    c = TestClient(create_app(review_out, token="s3cret"), base_url="http://127.0.0.1")
    bad = "s3crét-ü"
    if where == "query":
        r = c.get(f"/api/cases?token={bad}")
    elif where == "cookie":
        r = c.get("/api/cases", headers={"Cookie": f"her2path_token={bad}".encode()})
    else:
        r = c.get("/api/cases", headers={"Authorization": "Bearer s3crét".encode()})   # raw non-ASCII bytes
    assert r.status_code == 401


@pytest.mark.parametrize("body", ['{"value": "accept", "reviewer": NaN}', '{"value": NaN, "reviewer": "x"}',
                                  '{"value": "1+", "reviewer": "   "}', '{"value": "accept", "reviewer": Infinity}'])
def test_nan_bodies_and_blank_reviewers_are_4xx(review, body):
    r = review.post("/api/cases/good/signoff", content=body,
                    headers={"X-CSRF-Token": review.csrf, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"]


# 9: the report escapes what it prints -------------------------------------------------------------

def test_the_report_escapes_a_tampered_result(tmp_path, slides):
    from her2path.pipeline.report import render_report

    assert main(["case", "--ihc", str(slides[0]), "--out", str(tmp_path / "c"), "--workers", "1"]) == 0
    for name in ("result.json", "ihc/result.json"):
        p = tmp_path / "c" / name
        d = json.loads(p.read_text())
        prov = d["ihc"]["provenance"] if name == "result.json" else d["provenance"]
        prov["input_sha256"] = "<script>alert(1)</script>"
        prov["input_path"] = "<img src=x onerror=alert(2)>"
        d["reasons" if name == "ihc/result.json" else "flags"].append("<script>alert(3)</script>")
        p.write_text(json.dumps(d))
    html = render_report(tmp_path / "c")
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# 7 and 10: bounded inputs, named causes --------------------------------------------------------------

@pytest.mark.parametrize("mpp", ["1e-9", "0.001", "1e308", "1e9"])
def test_implausible_mpp_is_a_one_line_error(slides, mpp):
    _one_line_error(_cli("ihc", slides[0], "--mpp", mpp), "outside the 0.05-20 um/px", "--force-mpp")


def test_forced_extreme_mpp_is_refused_before_reading(slides):
    # at 1e-9 um/px the image would be a few nanometres across: refused before anything is read
    _one_line_error(_cli("ihc", slides[0], "--mpp", "1e-9", "--force-mpp"), "smaller than one cell", "check --mpp")
    _one_line_error(_cli("ihc", slides[0], "--mpp", "0.001", "--force-mpp"), "smaller than one cell", "check --mpp")
    _one_line_error(_cli("ihc", slides[0], "--mpp", "1e9", "--force-mpp"), "too coarse")


def test_symlink_loop_is_named(tmp_path):
    (tmp_path / "a.svs").symlink_to(tmp_path / "b.svs")
    (tmp_path / "b.svs").symlink_to(tmp_path / "a.svs")
    _one_line_error(_cli("info", tmp_path / "a.svs"), "symbolic link loop")


def test_decompression_bomb_is_named(tmp_path):
    import zlib

    # A 30000 x 30000 grey PNG (900 Mpx) of a few kilobytes: its rows compress to almost nothing.
    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    w = h = 30000
    raw = zlib.compress(b"".join(b"\x00" + bytes(w) for _ in range(h)), 9)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", w.to_bytes(4, "big") + h.to_bytes(4, "big") + b"\x08\x00\x00\x00\x00") \
        + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    _one_line_error(_cli("ihc", tmp_path / "bomb.png", "--mpp", "0.5"), "30000 x 30000 px", "tiled pyramidal TIFF")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_read_only_output_folder_is_a_one_line_error(tmp_path, slides):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = subprocess.run(["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", sys.executable, "-m",
                        "her2path.cli", "ihc", str(slides[0]), "--out", str(ro / "out"), "--workers", "1"],
                       capture_output=True, text=True, timeout=600)
    _one_line_error(r, str(ro / "out"), "Permission denied", "choose a folder you can write to")


def test_black_image_is_a_no_call_and_a_flat_one_an_error(tmp_path):
    write_image(tmp_path / "black.png", np.zeros((400, 400, 3), np.uint8), 0.5)
    r = _cli("ihc", tmp_path / "black.png", "--json", "--workers", "1")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["score"] is None and out["sub_label"] is None
    assert "no invasive tumour cells" in out["reasons"][0]
    write_image(tmp_path / "grey.png", np.full((1, 1, 3), 120, np.uint8), 0.5)   # one flat pixel: no tissue
    _one_line_error(_cli("ihc", tmp_path / "grey.png", "--workers", "1"), "grey.png", "no tissue found")


def test_a_region_too_large_for_memory_is_refused_before_reading():
    from her2path.errors import InputError
    from her2path.io.slide import ArrayImage

    img = ArrayImage(np.zeros((400, 400, 3), np.uint8), mpp=0.001)
    with pytest.raises(InputError, match="would need .* GiB"):
        img.read_at_mpp(0, 0, 512, 512, 0.5)          # 512 px at 0.5 um/px = 256,000 px at 0.001 um/px


def test_a_worker_that_cannot_start_ends_as_the_one_line_error(tmp_path):
    """The tile workers load the model while the main process finds the tissue: a broken model file
    reaches the caller as its InputError (and the run ends), not as workers restarted forever."""
    from her2path.config import load_settings
    from her2path.errors import InputError
    from her2path.pipeline.ihc_slide import TileWorkers, score_ihc, tile_workers

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    settings = load_settings()
    settings = settings.model_copy(update={"tile_model": settings.tile_model.model_copy(update={"path": str(bad)})})
    rgb = render_ihc_field(preset("2+", seed=3, width_um=600, height_um=300)).rgb
    from her2path.io.slide import ArrayImage

    with tile_workers(ArrayImage(rgb, mpp=0.5), settings, 2) as pool:
        assert isinstance(pool, TileWorkers)                     # 6 tiles: a pool (terminated on exit)
    with pytest.raises(InputError, match="not a her2path tile model"):
        score_ihc(rgb, mpp=0.5, settings=settings, workers=2)
