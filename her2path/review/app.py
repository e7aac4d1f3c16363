"""``her2path review``: a local web app over a batch (or case) output folder.

Pages: the case list, and a case view with the heatmap, a grid of the review
tiles (flagged by the tile model and near cut-off first) with a cell-overlay
toggle, keyboard scoring, and slide sign-off. Decisions go to
``review.sqlite`` in the output folder (append-only); result files are never
written.

Security: it serves 127.0.0.1 by default; any other address needs a token
(``Authorization: Bearer``, or ``?token=`` once, which sets a cookie). Every
state change needs the page's CSRF header and a JSON body of at most
``MAX_BODY`` bytes, and is refused from another origin. Files are served only
from known case folders, by validated names.
"""
from __future__ import annotations

import html
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ..pipeline.outputs import review_tiles
from ..schema import CaseResult, IhcResult
from .store import ReviewStore, latest

MAX_BODY = 4096
STATIC = Path(__file__).parent / "static"
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
Score = Literal["0", "1+", "2+", "3+"]


class TileDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Literal["0", "1+", "2+", "3+", "accept"]
    reviewer: str = Field(min_length=1, max_length=64)


class SignOff(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Literal["0", "1+", "2+", "3+", "accept"]     # accept, or the overriding IHC score
    reviewer: str = Field(min_length=1, max_length=64)
    comment: str | None = Field(None, max_length=2000)


def find_case_dirs(out: Path) -> dict[str, Path]:
    """case id -> folder holding result.json (a batch's cases/*, or a single case folder)."""
    if (out / "result.json").is_file():
        return {out.name: out}
    found = {}
    for d in sorted((out / "cases").glob("*")):
        if d.is_dir() and not d.name.startswith(".") and (d / "result.json").is_file() and _CASE_ID.match(d.name):
            found[d.name] = d
    return found


class Review:
    """What the routes share: the output folder, its cases, the store and the secrets."""

    def __init__(self, out: Path, token: str | None):
        self.out = out.resolve()
        self.token = token
        self.csrf = secrets.token_urlsafe(24)
        self.store = ReviewStore(self.out / "review.sqlite")

    def case_dir(self, case_id: str) -> Path:
        dirs = find_case_dirs(self.out)
        if not _CASE_ID.match(case_id) or case_id not in dirs:
            raise HTTPException(404, f"no case '{case_id}' in this output folder")
        d = dirs[case_id].resolve()
        if not d.is_relative_to(self.out):
            raise HTTPException(404, "outside the output folder")
        return d

    def case(self, case_id: str) -> tuple[CaseResult, IhcResult | None, Path]:
        d = self.case_dir(case_id)
        ihc_path = d / "ihc" / "result.json"
        return (_load(CaseResult, d / "result.json"), _load(IhcResult, ihc_path) if ihc_path.is_file() else None, d)

    @staticmethod
    def review_tiles(ihc: IhcResult | None) -> list:
        """The tiles written for review with the IHC outputs, in review order."""
        return [ihc.tiles[i] for i in review_tiles(ihc)] if ihc else []


def _load(model, path: Path):
    """A result model from its JSON, parsed once per file version (the app never writes results)."""
    return _parse(model, str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _parse(model, path: str, mtime_ns: int):
    return model.from_json(Path(path).read_text())


def create_app(out: str | Path, token: str | None = None) -> FastAPI:
    """The review app over ``out``; with ``token`` every request must carry it."""
    rv = Review(Path(out), token)
    app = FastAPI(title="her2path review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = rv
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if rv.token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() \
                or request.cookies.get("her2path_token") or request.query_params.get("token")
            if not given or not secrets.compare_digest(given, rv.token):
                return JSONResponse({"detail": "a valid token is needed (printed when the server started)"}, 401)
            if request.query_params.get("token"):
                resp = RedirectResponse(request.url.path, 303)
                resp.set_cookie("her2path_token", rv.token, httponly=True, samesite="strict")
                return resp
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
                return JSONResponse({"detail": "cross-site request refused"}, 403)
            if request.headers.get("x-csrf-token") != rv.csrf:
                return JSONResponse({"detail": "missing or wrong X-CSRF-Token header (reload the page)"}, 403)
            if not request.headers.get("content-type", "").startswith("application/json"):
                return JSONResponse({"detail": "send JSON (Content-Type: application/json)"}, 415)
            size = request.headers.get("content-length")
            if size is None or not size.isdigit() or int(size) > MAX_BODY:
                return JSONResponse({"detail": f"body missing or larger than {MAX_BODY} bytes"}, 413)
        return await call_next(request)

    def page(title: str, body: str, script: str = "") -> HTMLResponse:
        return HTMLResponse(f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="csrf" content="{rv.csrf}"><title>{html.escape(title)} - her2path review</title>
<link rel="stylesheet" href="/static/review.css"></head><body>
<header><a class="brand" href="/">her2path review</a><span class="ruo">Research use only, not for diagnosis</span>
<label class="who">reviewer <input id="reviewer" autocomplete="off" spellcheck="false"></label></header>
{body}<script src="/static/review.js"></script>{script}</body></html>""")

    @app.get("/", response_class=HTMLResponse)
    def case_list():
        return page("cases", '<main id="cases" class="list"><h1>Cases</h1><table id="case-table"></table></main>',
                    "<script>her2path.caseList()</script>")

    @app.get("/case/{case_id}", response_class=HTMLResponse)
    def case_view(case_id: str):
        rv.case_dir(case_id)
        return page(case_id, f'<main id="case" data-case="{html.escape(case_id)}"></main>',
                    "<script>her2path.caseView()</script>")

    @app.get("/api/cases")
    def api_cases():
        cur = rv.store.current()
        out = []
        for cid in find_case_dirs(rv.out):
            r, ihc, _ = rv.case(cid)
            sign = cur.get((cid, "signoff", None))
            tiles_done = sum(1 for k in cur if k[0] == cid and k[1] == "tile")
            out.append({"case_id": cid, "status": r.status, "sub_label": r.sub_label, "ihc_score": r.ihc_score,
                        "ish_group": r.ish_group, "ratio": r.ratio, "flags": r.flags,
                        "flagged_tiles": len(ihc.flagged_tiles) if ihc else 0,
                        "near_cutoff": bool(ihc and ihc.near_cutoff), "tiles_reviewed": tiles_done,
                        "signoff": sign.__dict__ if sign else None})
        out.sort(key=lambda c: (c["signoff"] is not None, -c["flagged_tiles"], not c["near_cutoff"], c["case_id"]))
        return out

    @app.get("/api/cases/{case_id}")
    def api_case(case_id: str):
        r, ihc, d = rv.case(case_id)
        history = rv.store.history(case_id)
        cur = latest(history)
        tiles = [{**t.model_dump(include={"index", "score", "model_score", "flagged", "near_cutoff", "counts",
                                          "tumour_cells"}),
                  "decision": (cur[(case_id, "tile", t.index)].__dict__ if (case_id, "tile", t.index) in cur
                               else None)} for t in rv.review_tiles(ihc)]
        sign = cur.get((case_id, "signoff", None))
        return {"case": r.summary(),
                "ihc": ihc.model_dump(include={"score", "sub_label", "percent_cells", "tumour_cells", "warnings",
                                               "reasons"}) if ihc else None,
                "heatmap": (d / "ihc" / "heatmap.png").is_file(), "tiles": tiles,
                "signoff": sign.__dict__ if sign else None,
                "history": [h.__dict__ for h in history[-50:]]}

    @app.get("/files/{case_id}/heatmap.png")
    def heatmap(case_id: str):
        p = rv.case_dir(case_id) / "ihc" / "heatmap.png"
        if not p.is_file():
            raise HTTPException(404, "this case has no IHC heatmap")
        return FileResponse(p, media_type="image/png")

    @app.get("/files/{case_id}/tiles/{tile}.jpg")
    def tile_image(case_id: str, tile: int, cells: bool = False):
        p = (rv.case_dir(case_id) / "ihc" / "tiles" / f"tile_{tile:04d}{'_cells' if cells else ''}.jpg").resolve()
        if not p.is_relative_to(rv.out) or not p.is_file():
            raise HTTPException(404, f"tile {tile} has no image in case '{case_id}'")
        return FileResponse(p, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/cases/{case_id}/tiles/{tile}", status_code=201)
    def decide_tile(case_id: str, tile: int, body: TileDecision):
        _, ihc, _ = rv.case(case_id)
        if tile not in {t.index for t in rv.review_tiles(ihc)}:
            raise HTTPException(404, f"tile {tile} is not a review tile of case '{case_id}'")
        return rv.store.add(case_id, tile, "tile", body.value, body.reviewer).__dict__

    @app.post("/api/cases/{case_id}/signoff", status_code=201)
    def sign_off(case_id: str, body: SignOff):
        rv.case_dir(case_id)
        if body.value != "accept" and not (body.comment or "").strip():
            raise HTTPException(422, "overriding the score needs a comment")
        return rv.store.add(case_id, None, "signoff", body.value, body.reviewer, body.comment).__dict__

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"detail": exc.detail}, exc.status_code)

    return app
