"""Shared fixtures: small synthetic slides and the real fixture files in tests/data."""
from __future__ import annotations

from pathlib import Path

import pytest

REAL = Path(__file__).parent / "data" / "real"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    return REAL


@pytest.fixture(scope="session")
def sample_slide(tmp_path_factory):
    """A 0.5 um/px Aperio-style slide with three tissue islands and per-cell truth."""
    from her2path.synthetic.wsi import make_sample_slide

    path = tmp_path_factory.mktemp("slides") / "sample.svs"
    return make_sample_slide(path, mpp=0.5, width_um=1536, height_um=1024, n_islands=2, seed=3)


@pytest.fixture(scope="session")
def fine_slide(tmp_path_factory):
    """The same tissue as ``sample_slide`` scanned at 0.25 um/px."""
    from her2path.synthetic.wsi import make_sample_slide

    path = tmp_path_factory.mktemp("slides") / "fine.svs"
    return make_sample_slide(path, mpp=0.25, width_um=1536, height_um=1024, n_islands=2, seed=3)


def review_client(out):
    """A test client of the review app over ``out`` on loopback, carrying the page's CSRF token."""
    from fastapi.testclient import TestClient

    from her2path.review.app import create_app

    app = create_app(out)
    c = TestClient(app, base_url="http://127.0.0.1")
    c.csrf = app.state.review.csrf
    return c
