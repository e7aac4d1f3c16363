"""``her2path review``: a local web app over a batch (or case) output folder.

Pages: the case list (broken and failed cases included, with their reason),
and a case view with the heatmap, a zoomable slide viewer (OpenSeadragon,
vendored, over Deep Zoom tiles of the scored slide, with cell and heatmap
layers), a grid of the review tiles (flagged by the tile model and near
cut-off first) with a cell-overlay toggle, keyboard scoring, and slide
sign-off (an override recomputes the status by the guideline engine). Decisions go to ``review.sqlite`` in the output
folder (append-only); result files are never written.

What it trusts and what it refuses (the threat model, also in the README):

* It serves 127.0.0.1 by default and then needs no token; any other address
  needs one (``Authorization: Bearer``, or ``?token=`` once, which sets an
  HttpOnly SameSite=Strict cookie). Tokens are compared as bytes in constant time.
* The Host header must name the server (loopback names by default, or the
  names given with ``--allow-host``): a DNS-rebinding page cannot talk to it.
* Every state change needs the page's CSRF header, a JSON body of at most
  ``MAX_BODY`` bytes and a same-origin Origin (when sent).
* Every response forbids framing (``X-Frame-Options``, ``frame-ancestors``),
  sniffing and inline script (a strict Content-Security-Policy).
* Case folders are looked up by name in the listing, never joined from the
  URL, and every file served is resolved with symlinks followed and must lie
  inside the output folder. The one file outside it, the scored slide behind
  the viewer, is served only when its sha256 is the one its result recorded.
"""
from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..pipeline.layout import BatchLayout, CaseLayout, find_case_dirs
from ..pipeline.outputs import review_tiles
from ..pipeline.case import signed_off_status
from ..schema import CaseResult, IhcResult
from .slides import deep_zoom, tile_jpeg
from .store import ReviewStore, latest

MAX_BODY = 4096
STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
Reviewer = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class TileDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Literal["0", "1+", "2+", "3+", "accept"]
    reviewer: Reviewer


class SignOff(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Literal["0", "1+", "2+", "3+", "accept"]     # accept, or the overriding IHC score
    reviewer: Reviewer
    comment: str | None = Field(None, max_length=2000)


@dataclass
class CaseEntry:
    """One case of the output folder as the app sees it."""

    key: str                          # the folder name: the case's id in URLs
    case_id: str                      # the id as given (result.json or results.sqlite)
    state: str                        # "ok", "broken" (its files cannot be read) or "failed" (no result)
    reason: str | None = None
    folder: Path | None = None
    result: CaseResult | None = None


class Review:
    """What the routes share: the output folder, its cases, the store and the secrets."""

    def __init__(self, out: Path, token: str | None):
        self.out = out.resolve()
        self.token = token
        self.csrf = secrets.token_urlsafe(24)
        self.store = ReviewStore(BatchLayout(self.out).review_db)

    def inside(self, path: Path) -> bool:
        """Whether ``path``, symlinks followed, lies inside the output folder."""
        try:
            return path.resolve(strict=True).is_relative_to(self.out)
        except (OSError, RuntimeError):        # missing, or a symlink loop
            return False

    def entries(self) -> dict[str, CaseEntry]:
        """Every case: those with a folder (readable or broken) and those that failed without one."""
        out = {}
        for key, d in find_case_dirs(self.out).items():
            out[key] = self._entry(key, d)
        for row in _failed_rows(BatchLayout(self.out).results_db):
            key = row["folder"] or row["case_id"]
            if key not in out:
                out[key] = CaseEntry(key, row["case_id"], "failed", row["error"] or "the case failed")
            elif out[key].state == "ok" and row["error"]:
                out[key].reason = f"the latest run failed ({row['error']}); the previous result is shown"
        return out

    def _entry(self, key: str, d: Path) -> CaseEntry:
        if not self.inside(d):
            return CaseEntry(key, key, "broken", "the case folder lies outside the output folder (a symlink?)")
        path = CaseLayout(d).result
        if not self.inside(path):
            return CaseEntry(key, key, "broken", "result.json is missing or lies outside the output folder")
        try:
            r = _load(CaseResult, path)
        except (OSError, ValueError, ValidationError) as exc:
            return CaseEntry(key, key, "broken", f"result.json cannot be read ({type(exc).__name__})")
        return CaseEntry(key, r.case_id or key, "ok", None, d.resolve(), r)

    def case(self, key: str) -> tuple[CaseEntry, IhcResult | None]:
        """A readable case and its IHC result; 404 for unknown, broken or failed cases."""
        e = self.entries().get(key)
        if e is None:
            raise HTTPException(404, "no such case in this output folder")
        if e.state != "ok":
            raise HTTPException(404, f"case '{e.case_id}' has no readable result: {e.reason}")
        ihc_path = CaseLayout(e.folder).ihc.result
        ihc = None
        if ihc_path.exists():
            if not self.inside(ihc_path):
                raise HTTPException(404, "ihc/result.json lies outside the output folder")
            try:
                ihc = _load(IhcResult, ihc_path)
            except (OSError, ValueError, ValidationError) as exc:
                raise HTTPException(404, f"ihc/result.json cannot be read ({type(exc).__name__})") from None
        return e, ihc

    def file(self, key: str, path_of) -> Path:
        """A case file, resolved and checked to lie inside the output folder (404 otherwise)."""
        e, _ = self.case(key)
        p = path_of(CaseLayout(e.folder))
        if not self.inside(p) or not p.resolve().is_file():
            raise HTTPException(404, "no such file in this case")
        return p.resolve()

    def reviewed(self, e: CaseEntry, sign) -> dict | None:
        """The case as signed off: with an overriding IHC score, the status recomputed by the
        guideline engine from that score and the case's own ISH result (None: no override)."""
        if sign is None or sign.value == "accept":
            return None
        r = signed_off_status(e.folder, sign.value, e.result.guideline, e.case_id)
        return {"status": r.status, "sub_label": r.sub_label, "ihc_score": r.ihc_score, "reasons": r.reasons,
                "next_step": r.next_step, "measured_status": e.result.status,
                "measured_ihc": e.result.ihc_score, "by": sign.reviewer, "at": sign.at}

    def slide(self, key: str):
        """(IHC result, Deep Zoom generator) of a case's scored slide; 404 when it cannot be shown."""
        _, ihc = self.case(key)
        dz = deep_zoom(ihc.provenance.input_path, ihc.provenance.input_sha256) if ihc else None
        if dz is None:
            raise HTTPException(404, "the scored slide is not available (moved, changed since it was scored, "
                                     "or not a file)")
        return ihc, dz

    @staticmethod
    def review_tiles(ihc: IhcResult | None) -> list:
        """The tiles written for review with the IHC outputs, in review order."""
        return [ihc.tiles[i] for i in review_tiles(ihc)] if ihc else []


def _failed_rows(db: Path) -> list[dict]:
    """Failed cases recorded by ``her2path batch`` (read-only; none when there is no database)."""
    if not db.is_file():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            con.row_factory = sqlite3.Row
            cols = {r[1] for r in con.execute("PRAGMA table_info(cases)")}
            folder = "folder" if "folder" in cols else "NULL AS folder"
            return [dict(r) for r in con.execute(f"SELECT case_id, {folder}, error FROM cases WHERE state = 'failed'")]
        finally:
            con.close()
    except sqlite3.Error:
        return []


def _load(model, path: Path):
    """A result model from its JSON, parsed once per file version (the app never writes results)."""
    st = path.stat()
    return _parse(model, str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _parse(model, path: str, mtime_ns: int, size: int):
    return model.from_json(Path(path).read_text())


def _same(given: str, token: str) -> bool:
    """Constant-time comparison of tokens as UTF-8 bytes (any text, never an exception)."""
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))


def create_app(out: str | Path, token: str | None = None, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The review app over ``out``.

    Parameters
    ----------
    out : path
        A ``her2path batch --out`` folder, or one case folder.
    token : str, optional
        Every request must carry it (needed off loopback).
    allowed_hosts : list of str, optional
        Host header values accepted (without port). Default: loopback names
        without a token; any host with one (the token protects it).
    """
    rv = Review(Path(out), token)
    app = FastAPI(title="her2path review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = rv
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    pages = Environment(loader=PackageLoader("her2path.review", "templates"), autoescape=select_autoescape())

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if rv.token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() \
                or request.cookies.get("her2path_token") or request.query_params.get("token")
            if not given or not _same(given, rv.token):
                return JSONResponse({"detail": "a valid token is needed (printed when the server started)"}, 401)
            if request.query_params.get("token"):
                resp = RedirectResponse(request.url.path, 303)
                resp.set_cookie("her2path_token", rv.token, httponly=True, samesite="strict")
                return resp
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
                return JSONResponse({"detail": "cross-site request refused"}, 403)
            if not _same(request.headers.get("x-csrf-token", ""), rv.csrf):
                return JSONResponse({"detail": "missing or wrong X-CSRF-Token header (reload the page)"}, 403)
            if not request.headers.get("content-type", "").startswith("application/json"):
                return JSONResponse({"detail": "send JSON (Content-Type: application/json)"}, 415)
            size = request.headers.get("content-length")
            if size is None or not size.isdigit() or int(size) > MAX_BODY:
                return JSONResponse({"detail": f"body missing or larger than {MAX_BODY} bytes"}, 413)
        return await call_next(request)

    # Added after the guard, so it runs first: a foreign Host never reaches the token or the routes.
    hosts = allowed_hosts or (list(LOOPBACK_HOSTS) if not token else ["*"])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def page(name: str, **data) -> HTMLResponse:
        return HTMLResponse(pages.get_template(name).render(csrf=rv.csrf, **data))

    @app.get("/", response_class=HTMLResponse)
    def case_list():
        return page("cases.html")

    @app.get("/case/{key}", response_class=HTMLResponse)
    def case_view(key: str):
        e, _ = rv.case(key)
        return page("case.html", key=key, case_id=e.case_id)

    @app.get("/api/cases")
    def api_cases():
        cur = rv.store.current()
        out = []
        for key, e in rv.entries().items():
            item = {"key": key, "case_id": e.case_id, "state": e.state, "reason": e.reason}
            if e.state == "ok":
                r = e.result
                try:
                    _, ihc = rv.case(key)
                except HTTPException as exc:
                    item.update(state="broken", reason=exc.detail)
                    out.append(item)
                    continue
                sign = cur.get((key, "signoff", None))
                item.update(reviewed=rv.reviewed(e, sign), status=r.status, sub_label=r.sub_label, ihc_score=r.ihc_score, ish_group=r.ish_group,
                            ratio=r.ratio, flagged_tiles=len(ihc.flagged_tiles) if ihc else 0,
                            near_cutoff=bool(ihc and ihc.near_cutoff),
                            ish_near_cutoff=bool(r.ish and r.ish.near_cutoff),
                            ish_warnings=list(r.ish.warnings) if r.ish else [],
                            tiles_reviewed=sum(1 for k in cur if k[0] == key and k[1] == "tile"),
                            signoff=sign.__dict__ if sign else None)
            out.append(item)
        out.sort(key=lambda c: (c["state"] == "ok", c.get("signoff") is not None, -c.get("flagged_tiles", 0),
                                not (c.get("near_cutoff") or c.get("ish_near_cutoff")), c["case_id"]))
        return out

    @app.get("/api/cases/{key}")
    def api_case(key: str):
        e, ihc = rv.case(key)
        history = rv.store.history(key)
        cur = latest(history)
        tiles = [{**t.model_dump(include={"index", "score", "model_score", "flagged", "near_cutoff", "counts",
                                          "tumour_cells"}),
                  "decision": cur[(key, "tile", t.index)].__dict__ if (key, "tile", t.index) in cur else None}
                 for t in rv.review_tiles(ihc)]
        sign = cur.get((key, "signoff", None))
        heat = CaseLayout(e.folder).ihc.heatmap
        return {"key": key, "case": e.result.summary(), "note": e.reason,
                "ihc": ihc.model_dump(include={"score", "sub_label", "percent_cells", "tumour_cells", "warnings",
                                               "reasons"}) if ihc else None,
                "heatmap": rv.inside(heat), "tiles": tiles,
                "slide": bool(ihc and deep_zoom(ihc.provenance.input_path, ihc.provenance.input_sha256)),
                "size": [ihc.width, ihc.height] if ihc else None,
                "signoff": sign.__dict__ if sign else None, "reviewed": rv.reviewed(e, sign),
                "history": [h.__dict__ for h in history[-50:]]}

    @app.get("/slide/{key}.dzi")
    def slide_dzi(key: str):
        _, dz = rv.slide(key)
        return Response(dz.get_dzi("jpeg"), media_type="application/xml")

    @app.get("/slide/{key}_files/{level}/{col}_{row}.jpeg")
    def slide_tile(key: str, level: int, col: int, row: int):
        _, dz = rv.slide(key)
        data = tile_jpeg(dz, level, col, row)
        if data is None:
            raise HTTPException(404, "no such tile")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/cases/{key}/overlay")
    def overlay(key: str):
        """Cells (level-0 px, class) and tiles (box, score) of the case, for the viewer's layers."""
        _, ihc = rv.case(key)
        if ihc is None:
            raise HTTPException(404, "this case has no IHC")
        c = ihc.cells
        return {"width": ihc.width, "height": ihc.height, "mpp": ihc.scan_mpp,
                "cells": {"x": c.x, "y": c.y, "cls": c.cls},
                "tiles": [{"index": t.index, "x": t.x, "y": t.y, "w": t.width, "h": t.height, "score": t.score}
                          for t in ihc.tiles]}

    @app.get("/files/{key}/heatmap.png")
    def heatmap(key: str):
        return FileResponse(rv.file(key, lambda lay: lay.ihc.heatmap), media_type="image/png")

    @app.get("/files/{key}/tiles/{tile}.jpg")
    def tile_image(key: str, tile: int, cells: bool = False):
        p = rv.file(key, lambda lay: lay.ihc.tile_image(tile, cells))
        return FileResponse(p, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/cases/{key}/tiles/{tile}", status_code=201)
    def decide_tile(key: str, tile: int, body: TileDecision):
        _, ihc = rv.case(key)
        if tile not in {t.index for t in rv.review_tiles(ihc)}:
            raise HTTPException(404, f"tile {tile} is not a review tile of this case")
        return rv.store.add(key, tile, "tile", body.value, body.reviewer).__dict__

    @app.post("/api/cases/{key}/signoff", status_code=201)
    def sign_off(key: str, body: SignOff):
        rv.case(key)
        if body.value != "accept" and not (body.comment or "").strip():
            raise HTTPException(422, "overriding the score needs a comment")
        return rv.store.add(key, None, "signoff", body.value, body.reviewer, body.comment).__dict__

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"detail": exc.detail}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> Response:
        # The offending input is left out: it may be NaN or Infinity, which JSON cannot carry back.
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid"))} for e in exc.errors()]
        return JSONResponse({"detail": detail}, 422)

    return app
