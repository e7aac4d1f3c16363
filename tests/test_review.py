"""The review server: API, security, concurrency, audit trail, export -> train, and a real browser."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import review_client
from her2path.cli import main
from her2path.pipeline.case import run_case
from her2path.review.app import create_app
from her2path.review.store import ReviewStore
from her2path.synthetic.wsi import make_sample_slide

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-output"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A batch-style output folder with two scored cases."""
    root = tmp_path_factory.mktemp("review")
    for i, mix in enumerate(({"0": 40, "1+": 25, "2+": 27, "3+": 8}, {"0": 20, "1+": 20, "2+": 20, "3+": 40})):
        slide = make_sample_slide(root / f"in{i}.svs", mpp=0.5, width_um=1024, height_um=1024, n_islands=1,
                                  seed=300 + i, percent=mix)
        run_case(slide.path, out=root / "out" / "cases" / f"case{i}", case_id=f"case{i}", workers=1)
    return root / "out"


@pytest.fixture()
def client(out):
    return review_client(out)


def _post(c, path, body, **headers):
    h = {"X-CSRF-Token": c.csrf, "Content-Type": "application/json", **headers}
    return c.post(path, content=json.dumps(body) if not isinstance(body, (bytes, str)) else body, headers=h)


def _tiles(c, case="case0"):
    return [t["index"] for t in c.get(f"/api/cases/{case}").json()["tiles"]]


def test_pages_and_api(client):
    assert "her2path review" in client.get("/").text and "Research use only" in client.get("/").text
    cases = client.get("/api/cases").json()
    assert {c["case_id"] for c in cases} == {"case0", "case1"}
    data = client.get("/api/cases/case0").json()
    tiles = data["tiles"]
    assert len(tiles) >= 4
    order = [(not t["flagged"], not t["near_cutoff"]) for t in tiles]
    assert order == sorted(order)                         # flagged and near cut-off tiles first
    r = client.get(f"/files/case0/tiles/{tiles[0]['index']}.jpg?cells=true")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert client.get("/files/case0/heatmap.png").status_code == 200


def test_an_ish_count_near_a_cut_off_is_listed_first_and_named(tmp_path):
    """A case whose ISH count rests on it (HER2 about 6/cell: groups 3 or 4) comes before a clear
    group-1 case in the review list, named as such; its other ISH warnings are counted apart."""
    from her2path.io.writers import write_image
    from her2path.synthetic.ish import IshFieldSpec, render_fish

    specs = {"a-clear": IshFieldSpec(group=1, seed=60), "b-near": IshFieldSpec(group=None, her2_mean=6.0,
                                                                             cep17_mean=3.2, clustered=False, seed=70)}
    for name, spec in specs.items():
        fields = [write_image(tmp_path / f"{name}{k}.tif", render_fish(replace(spec, seed=spec.seed + k)).cyx(16), 0.1)
                  for k in range(2)]
        run_case(ish=fields, out=tmp_path / "out" / "cases" / name, case_id=name)
    listed = review_client(tmp_path / "out").get("/api/cases").json()
    assert [c["case_id"] for c in listed] == ["b-near", "a-clear"]
    near, clear = listed
    assert near["ish_near_cutoff"] and not clear["ish_near_cutoff"]
    assert not any("near a cut-off" in w for w in near["ish_warnings"])


def test_decisions_are_an_append_only_audit_trail(client, out):
    t = _tiles(client)[0]
    a = _post(client, f"/api/cases/case1/tiles/{_tiles(client, 'case1')[0]}", {"value": "2+", "reviewer": "ann"})
    assert a.status_code == 201 and a.json()["previous"] is None
    t = _tiles(client, "case1")[0]
    b = _post(client, f"/api/cases/case1/tiles/{t}", {"value": "accept", "reviewer": "bob"})
    assert b.json()["previous"] == "2+"
    hist = [h for h in ReviewStore(out / "review.sqlite").history("case1") if h.tile == t]
    assert [h.value for h in hist][-2:] == ["2+", "accept"]
    import sqlite3
    con = sqlite3.connect(out / "review.sqlite", isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE decisions SET value='0'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM decisions")
    con.close()
    s = _post(client, "/api/cases/case1/signoff", {"value": "3+", "reviewer": "ann"})
    assert s.status_code == 422 and "comment" in s.json()["detail"]
    measured = client.get("/api/cases/case1").json()
    assert measured["reviewed"] is None
    s = _post(client, "/api/cases/case1/signoff", {"value": "1+", "reviewer": "ann", "comment": "weak, incomplete"})
    assert s.status_code == 201
    rv = client.get("/api/cases/case1").json()["reviewed"]        # recomputed by the guideline engine
    assert rv["ihc_score"] == "1+" and rv["status"] == "negative" and rv["sub_label"] == "low"
    assert rv["measured_status"] == measured["case"]["status"] and rv["by"] == "ann"
    listed = {c["key"]: c for c in client.get("/api/cases").json()}
    assert listed["case1"]["reviewed"]["status"] == "negative" and listed["case0"]["reviewed"] is None
    results = sorted(p.stat().st_mtime_ns for p in out.rglob("result.json"))
    assert results == sorted(p.stat().st_mtime_ns for p in out.rglob("result.json"))  # result files untouched


@pytest.mark.parametrize("path,body,headers,code", [
    ("/api/cases/case0/tiles/{t}", {"value": "4+", "reviewer": "x"}, {}, 422),       # score outside 0-3+
    ("/api/cases/case0/tiles/99999", {"value": "1+", "reviewer": "x"}, {}, 404),      # unknown tile
    ("/api/cases/nope/tiles/{t}", {"value": "1+", "reviewer": "x"}, {}, 404),         # unknown case
    ("/api/cases/case0/tiles/{t}", b"{not json", {}, 422),                             # malformed
    ("/api/cases/case0/tiles/{t}", {"value": "1+", "reviewer": "x", "extra": 1}, {}, 422),
    ("/api/cases/case0/tiles/{t}", {"value": "1+", "reviewer": "x" * 5000}, {}, 413),   # oversized
    ("/api/cases/case0/tiles/{t}", {"value": "1+", "reviewer": "x"}, {"X-CSRF-Token": "wrong"}, 403),
    ("/api/cases/case0/tiles/{t}", {"value": "1+", "reviewer": "x"}, {"Origin": "http://evil.example"}, 403),
    ("/api/cases/case0/tiles/{t}", {"value": "1+", "reviewer": "x"}, {"Content-Type": "text/plain"}, 415),
])
def test_bad_requests_are_refused_with_a_message(client, path, body, headers, code):
    r = _post(client, path.format(t=_tiles(client)[0]), body, **headers)
    assert r.status_code == code and r.json()["detail"]


@pytest.mark.parametrize("path", ["/files/..%2F..%2Fetc/heatmap.png", "/files/case0/tiles/..%2F..%2Fresult.jpg",
                                  "/api/cases/..%2Fcase0", "/case/..%2F..%2Fetc%2Fpasswd", "/files/case0/tiles/-1.jpg"])
def test_path_traversal_is_refused(client, path):
    assert client.get(path).status_code in (404, 422)


def test_token_required_off_loopback(out):
    c = TestClient(create_app(out, token="s3cret"), base_url="http://127.0.0.1")
    assert c.get("/api/cases").status_code == 401
    assert c.get("/api/cases", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/cases", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    r = c.get("/?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and "her2path_token" in r.headers["set-cookie"]


def _serve(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def test_eight_concurrent_reviewers_lose_nothing(out, tmp_path):
    work = tmp_path / "out"
    shutil.copytree(out, work, ignore=shutil.ignore_patterns("review.sqlite*"))
    app = create_app(work)
    server, thread, url = _serve(app)
    tiles = _tiles(TestClient(app, base_url="http://127.0.0.1"))
    errors = []

    def reviewer(k):
        with httpx.Client(base_url=url, headers={"X-CSRF-Token": app.state.review.csrf}) as c:
            for i in range(200):
                r = c.post(f"/api/cases/case0/tiles/{tiles[(k + i) % len(tiles)]}",
                           json={"value": ["0", "1+", "2+", "3+", "accept"][i % 5], "reviewer": f"r{k}"})
                if r.status_code != 201:
                    errors.append(r.text)

    workers = [threading.Thread(target=reviewer, args=(k,)) for k in range(8)]
    [w.start() for w in workers]
    [w.join() for w in workers]
    server.should_exit = True
    thread.join(10)
    hist = ReviewStore(work / "review.sqlite").history()
    assert not errors and len(hist) == 1600
    assert {h.reviewer for h in hist} == {f"r{k}" for k in range(8)}
    for t in tiles:                                       # every decision names the one it replaced
        seq = [h for h in hist if h.tile == t]
        assert all(b.previous == a.value for a, b in zip(seq, seq[1:])) and seq[0].previous is None


def test_export_then_train(client, out, tmp_path):
    tiles = _tiles(client)
    for t, v in zip(tiles, ["0", "1+", "2+", "3+", "accept", "1+"]):
        assert _post(client, f"/api/cases/case0/tiles/{t}", {"value": v, "reviewer": "ann"}).status_code == 201
    ds = tmp_path / "dataset"
    assert main(["review-export", str(out), "--dataset", str(ds)]) == 0
    rows = (ds / "labels.csv").read_text().splitlines()
    assert rows[0].startswith("path,label,case_id,tile,reviewer")
    assert main(["train", str(ds), "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--batch", "4"]) == 0
    assert (tmp_path / "m.pt").exists()


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium (installed with apt-get when missing, as CI does)."""
    path = shutil.which("chromium")
    if not path and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True)
        path = shutil.which("chromium")
    if not path:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    return path


def test_browser_review_with_the_keyboard(out, tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    work = tmp_path / "out"
    shutil.copytree(out, work, ignore=shutil.ignore_patterns("review.sqlite*"))
    server, thread, url = _serve(create_app(work))
    args = ["--headless=new", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=args)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/")
            page.wait_for_selector("tr[data-case='case0']")
            assert "not reviewed" in page.inner_text("#case-table")
            page.click("tr[data-case='case0']")
            page.wait_for_selector(".tile.sel")
            first = [page.get_attribute(".tile >> nth=%d" % i, "data-tile") for i in range(3)]
            page.keyboard.press("2")                      # no reviewer named yet: refused, nothing stored
            page.wait_for_selector("#toast.err >> text=enter your name")
            assert not ReviewStore(work / "review.sqlite").history("case0")
            page.fill("#reviewer", "Dr Ann")
            page.click(".tile.sel")                       # back from the name field to the grid
            page.keyboard.press("2")                      # tile 1: 2+, selection moves on
            page.wait_for_selector(f".tile[data-tile='{first[0]}'].reviewed")
            page.keyboard.press("a")                      # tile 2: accept the measured score
            page.wait_for_selector(f".tile[data-tile='{first[1]}'].reviewed")
            page.keyboard.press("ArrowLeft")
            page.keyboard.press("ArrowRight")
            page.keyboard.press("3")                      # tile 3: 3+
            page.wait_for_selector(f".tile[data-tile='{first[2]}'].reviewed")
            page.click("#accept-slide")
            page.wait_for_selector("#signoff-state >> text=accepted")
            page.reload()
            page.wait_for_selector(f".tile[data-tile='{first[2]}'].reviewed")
            text = page.inner_text("#case")
            assert "set 2+" in text and "accepted" in text and "set 3+" in text and "Signed off" in text
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "review_case_view.png"), full_page=False)
            shutil.copy(ARTIFACTS / "review_case_view.png", tmp_path / "review_case_view.png")
            page.goto(url + "/")
            page.wait_for_selector("tr[data-case='case0']")
            assert "signed off: accept" in page.inner_text("tr[data-case='case0']")
            page.click("tr[data-case='case0']")                    # override the IHC 2+ to 3+
            page.wait_for_selector(".tile.sel")
            assert "needs-ish" in page.inner_text("#status")
            page.select_option("#override-score", "3+")
            page.fill("#override-comment", "complete intense rings in the invasive front")
            page.click("#override-slide")
            page.wait_for_selector("#status >> text=positive")      # recomputed by the guideline engine
            assert "override: IHC 3+ by Dr Ann" in page.inner_text("#override-mark")
            page.screenshot(path=str(ARTIFACTS / "review_override.png"), full_page=False)
            page.goto(url + "/")
            page.wait_for_selector("tr[data-case='case0'] >> text=override")
            assert "positive" in page.inner_text("tr[data-case='case0']")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    hist = ReviewStore(work / "review.sqlite").history("case0")
    assert [h.value for h in hist] == ["2+", "accept", "3+", "accept", "3+"] and hist[-1].kind == "signoff"
    assert {h.reviewer for h in hist} == {"Dr Ann"}


def test_the_report_prints_to_pdf_and_its_first_page_renders(out, tmp_path, chromium):
    import pypdfium2

    case = out / "cases" / "case0"
    before = {p: p.read_bytes() for p in case.rglob("*") if p.is_file()}
    assert main(["report", str(case), "--pdf", str(tmp_path / "case0.pdf")]) == 0
    assert {p: p.read_bytes() for p in case.rglob("*") if p.is_file()} == before     # the case is left as it is
    pdf = pypdfium2.PdfDocument(str(tmp_path / "case0.pdf"))
    assert len(pdf) >= 2
    page = pdf[0].render(scale=1.5).to_pil()
    ARTIFACTS.mkdir(exist_ok=True)
    page.save(ARTIFACTS / "report_pdf_page1.png")
    pixels = np.asarray(page.convert("RGB"))
    badge = (pixels.max(axis=2).astype(int) - pixels.min(axis=2)) > 120                   # the coloured status badge
    assert pixels.shape[0] > 1000 and badge.sum() > 500 and (pixels < 100).all(axis=2).sum() > 2000  # text printed
    assert main(["report", str(tmp_path), "--pdf", str(tmp_path / "x.pdf")]) == 2           # not a case folder
    text = pdf[0].get_textpage().get_text_range()
    assert "Signed off" not in text and "needs-ish" in text
    work = tmp_path / "out"                                  # after a sign-off that overrides IHC 2+ to 3+
    shutil.copytree(out, work, ignore=shutil.ignore_patterns("review.sqlite*"))
    ReviewStore(work / "review.sqlite").add("case0", None, "signoff", "3+", "Dr B", "complete intense rings")
    assert main(["report", str(work / "cases" / "case0"), "--pdf", str(tmp_path / "signed.pdf")]) == 0
    signed = " ".join(pypdfium2.PdfDocument(str(tmp_path / "signed.pdf"))[0].get_textpage().get_text_range().split())
    assert "Signed off by Dr B" in signed and "overridden to 3+" in signed and "HER2 positive" in signed


def test_the_slide_is_served_as_deep_zoom_only_when_it_is_the_one_scored(client, out, tmp_path):
    r = client.get("/slide/case0.dzi")
    assert r.status_code == 200 and "<Image" in r.text and 'Format="jpeg"' in r.text
    assert client.get("/api/cases/case0").json()["slide"] is True
    import math
    import re

    top = math.ceil(math.log2(max(map(int, re.findall(r'(?:Width|Height)="(\d+)"', r.text)))))   # full resolution
    tile = client.get(f"/slide/case0_files/{top}/0_0.jpeg")
    assert tile.status_code == 200 and tile.content[:2] == b"\xff\xd8"
    assert client.get(f"/slide/case0_files/{top + 1}/0_0.jpeg").status_code == 404
    layers = client.get("/api/cases/case0/overlay").json()
    assert len(layers["cells"]["x"]) == len(layers["cells"]["cls"]) > 100 and layers["tiles"]
    work = tmp_path / "out"
    shutil.copytree(out, work, ignore=shutil.ignore_patterns("review.sqlite*"))
    res = work / "cases" / "case0" / "ihc" / "result.json"
    data = json.loads(res.read_text())
    data["provenance"]["input_path"] = str(work / "cases" / "case0" / "ihc" / "heatmap.png")   # any other file
    res.write_text(json.dumps(data))
    c = TestClient(create_app(work), base_url="http://127.0.0.1")
    assert c.get("/slide/case0.dzi").status_code == 404 and c.get("/api/cases/case0").json()["slide"] is False


def test_browser_slide_viewer_zooms_to_cells_with_the_overlay(out, tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    server, thread, url = _serve(create_app(out))
    args = ["--headless=new", "--disable-gpu", "--no-sandbox"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=args)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            tiles = []
            page.on("response", lambda r: tiles.append(r.status) if "/slide/case0_files/" in r.url else None)
            page.goto(url + "/case/case0")
            page.wait_for_selector("#viewer .openseadragon-canvas")
            for _ in range(100):                        # (no wait_for_function: the page's CSP forbids eval)
                if page.evaluate("() => !!(window.her2pathViewer && her2pathViewer.osd.world.getItemCount())"):
                    break
                page.wait_for_timeout(100)
            cells = httpx.get(url + "/api/cases/case0/overlay").json()["cells"]
            x, y = float(np.median(cells["x"])), float(np.median(cells["y"]))
            page.evaluate(f"her2pathViewer.flyTo({x - 120}, {y - 80}, 240, 160)")   # 120 x 80 um: cell level
            page.wait_for_timeout(2500)
            rings = page.evaluate("""() => { const c = document.getElementById('layer');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                for (let i = 3; i < d.length; i += 4) if (d[i] > 100) n++; return n; }""")
            assert rings > 500 and tiles and all(s == 200 for s in tiles)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "review_viewer_cells.png"), full_page=False)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
