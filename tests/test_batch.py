"""Batch runs: fault isolation, resume after kill -9, Dask, the summary, the DB and the HTML report."""
from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from her2path.cli import main
from her2path.io.writers import write_image
from her2path.pipeline.batch import run_batch
from her2path.pipeline.cases import find_cases
from her2path.synthetic.ish import IshFieldSpec, render_fish
from her2path.synthetic.wsi import make_sample_slide

N_CASES = 10
REAL = Path(__file__).parent / "data" / "real"


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory):
    """10 case folders (small IHC slides; three with FISH fields) and three bad files beside them."""
    root = tmp_path_factory.mktemp("batch") / "in"
    for i in range(N_CASES):
        case = root / f"case{i:02d}"
        case.mkdir(parents=True)
        mix = [{"0": 90, "1+": 10, "2+": 0, "3+": 0}, {"0": 40, "1+": 30, "2+": 25, "3+": 5},
               {"0": 30, "1+": 20, "2+": 20, "3+": 30}][i % 3]
        make_sample_slide(case / f"slide{i}.svs", mpp=0.5, width_um=512, height_um=512, n_islands=1, seed=100 + i,
                          percent=mix)
        if i % 4 == 1:
            (case / "fish").mkdir()
            for k in range(2):
                f = render_fish(IshFieldSpec(group=1 + i % 5, seed=200 + 10 * i + k, width_px=512, height_px=512))
                write_image(case / "fish" / f"field{k}.tif", f.cyx(16), f.mpp)
    (root / "empty.svs").write_bytes(b"")
    data = (REAL / "CMU-1-Small-Region.svs").read_bytes()
    (root / "truncated.svs").write_bytes(data[: len(data) // 3])
    (root / "notes.svs").write_text("this is not a slide\n")
    (root / "README.txt").write_text("not a case\n")
    return root


@pytest.fixture(scope="module")
def clean_run(batch_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    code = main(["batch", str(batch_dir), "--out", str(out), "--workers", "2"])
    return code, out


def _summary(out: Path, drop=("seconds",)) -> list[dict]:
    with (out / "summary.csv").open() as fh:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(fh)]


def test_cases_are_found_by_content(batch_dir):
    cases, notes = find_cases(batch_dir)
    ids = sorted(c.case_id for c in cases)
    assert ids == sorted([f"case{i:02d}" for i in range(N_CASES)] + ["empty", "truncated", "notes"])
    fish_cases = [c for c in cases if c.ish]
    assert len(fish_cases) == 3 and all(len(c.ish) == 2 and c.ihc for c in fish_cases)
    assert any("README.txt" in n for n in notes)


def test_bad_files_fail_alone_and_exit_1(clean_run, capsys):
    code, out = clean_run
    assert code == 1
    rows = _summary(out)
    done = [r for r in rows if r["state"] == "done"]
    failed = {r["case_id"]: r["error"] for r in rows if r["state"] == "failed"}
    assert len(done) == N_CASES and set(failed) == {"empty", "truncated", "notes"}
    assert all("Fix:" in e and ".svs" in e for e in failed.values())
    for r in done:
        case = out / "cases" / r["case_id"]
        assert (case / "result.json").exists() and (case / "report.html").exists()
        assert r["status"] in ("positive", "negative", "equivocal", "needs-ish")
    con = sqlite3.connect(out / "results.sqlite")
    n, distinct = con.execute("SELECT count(*), count(DISTINCT case_id) FROM cases").fetchone()
    assert n == distinct == N_CASES + 3
    assert con.execute("SELECT count(*) FROM cases WHERE state='done' AND input_sha256 != '' "
                       "AND config_sha256 != '' AND model_sha256 IS NOT NULL AND seconds > 0").fetchone()[0] == N_CASES


def test_rerun_skips_done_cases(clean_run, batch_dir):
    _, out = clean_run
    before = {p: p.stat().st_mtime_ns for p in (out / "cases").glob("*/result.json")}
    res = run_batch(batch_dir, out, workers=2)
    assert sorted(res.skipped) == sorted(f"case{i:02d}" for i in range(N_CASES))
    assert len(res.failed) == 3             # failed cases are retried, and fail again
    assert {p: p.stat().st_mtime_ns for p in (out / "cases").glob("*/result.json")} == before


def test_kill_9_then_resume_loses_and_duplicates_nothing(clean_run, batch_dir, tmp_path):
    _, ref = clean_run
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "her2path.cli", "batch", str(batch_dir), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [p for p in (out / "cases").glob("case*") if (p / "result.json").exists()] if out.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)       # the coordinator and its workers, mid-run
    proc.wait()
    assert len(done) < N_CASES, "the run finished before it could be killed"
    assert main(["batch", str(batch_dir), "--out", str(out), "--workers", "2"]) == 1
    names = sorted(p.name for p in (out / "cases").iterdir())
    assert names == sorted(f"case{i:02d}" for i in range(N_CASES))      # no partial folders, no duplicates
    for name in names:
        assert (out / "cases" / name / "result.json").read_bytes() == \
            (ref / "cases" / name / "result.json").read_bytes()
    assert _summary(out) == _summary(ref)


def test_dask_local_cluster_gives_the_same_summary(clean_run, batch_dir, tmp_path):
    from distributed import LocalCluster

    _, ref = clean_run
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = run_batch(batch_dir, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert len(res.failed) == 3
    assert _summary(tmp_path / "dask") == _summary(ref)


def test_manifest_and_report(tmp_path, batch_dir, clean_run):
    _, ref = clean_run
    m = tmp_path / "manifest.csv"
    c1 = batch_dir / "case01"
    m.write_text("case_id,ihc,ish\n"
                 f"A,{c1 / 'slide1.svs'},{c1 / 'fish' / 'field0.tif'}\n"
                 f"A,,{c1 / 'fish' / 'field1.tif'}\n")
    cases, _ = find_cases(batch_dir, m)
    assert len(cases) == 1 and len(cases[0].ish) == 2
    html = (ref / "cases" / "case01" / "report.html").read_text()
    assert "Research use only, not for diagnosis" in html and "http://" not in html and "https://" not in html
    assert "data:image/jpeg;base64" in html and "Counted nuclei" in html and "Provenance" in html


def test_fluorescence_is_told_from_brightfield_without_reading_slides(tmp_path, monkeypatch):
    import numpy as np

    from her2path.io import fluorescence

    dark = (np.random.default_rng(0).random((3, 256, 256)) * 4000).astype(np.uint16)   # a CYX FISH stack
    write_image(tmp_path / "fish.tif", dark, 0.1)
    bright = np.full((256, 256, 3), 230, np.uint8)
    write_image(tmp_path / "ihc.png", bright, 0.5)
    is_field = fluorescence.is_fluorescence_field
    assert is_field(tmp_path / "fish.tif") and not is_field(tmp_path / "ihc.png")
    monkeypatch.setattr(fluorescence, "MAX_FIELD_VALUES", 1000)        # as if it were a whole-slide TIFF
    assert not is_field(tmp_path / "fish.tif")


def crash_on_bad(spec, ctx, q):
    """Stands in for run_one in a worker: the case 'bad' kills its process, the others finish."""
    from her2path.pipeline.results_store import Record

    if spec.case_id == "bad":
        os._exit(1)
    d = Path(ctx.out) / "cases" / f".{spec.folder}.{ctx.run_id}.partial"
    d.mkdir(parents=True)
    (d / "result.json").write_text("{}")
    return Record(spec.case_id, "done", "", folder=spec.folder, partial=str(d))


def test_a_case_that_kills_its_worker_fails_alone(tmp_path):
    from her2path.pipeline.batch import BatchOptions, RunContext, _run_local
    from her2path.pipeline.cases import CaseSpec
    from her2path.pipeline.results_store import ResultsDB

    specs = [CaseSpec(f"c{i}", ihc="x.svs") for i in range(4)] + [CaseSpec("bad", ihc="x.svs")]
    (tmp_path / "cases").mkdir()
    db = ResultsDB(tmp_path / "results.sqlite")
    _run_local(specs, RunContext(str(tmp_path), BatchOptions(), "r1", "cfg"), 2, db, None, work=crash_on_bad)
    rows = {r["case_id"]: r for r in db.rows([s.case_id for s in specs])}
    assert rows["bad"]["state"] == "failed" and "worker process died" in rows["bad"]["error"]
    assert all(rows[f"c{i}"]["state"] == "done" for i in range(4))
    assert sorted(p.name for p in (tmp_path / "cases").iterdir()) == [f"c{i}" for i in range(4)]
