"""The page and the docs as plain HTTP (the browser tests drive them in Chromium): local assets only."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from pixelseg.serve.app import create_app

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(serve_run, serve_predictor):
    with TestClient(create_app(serve_run, device="cpu", backend="torch", predictor=serve_predictor)) as c:
        yield c


def test_the_page_uses_local_assets_only(client):
    from pixelseg.serve.app import _static_dir
    r = client.get("/")
    assert r.status_code == 200 and "default-src 'self'" in r.headers["content-security-policy"]
    for name in ("index.html", "view.js", "app.js", "style.css"):
        text = (_static_dir() / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
        if name != "index.html":
            assert client.get(f"/static/{name}").status_code == 200


def test_docs_are_swagger_ui_from_this_server_only(client):
    """FastAPI users look for /docs: it is there, with Swagger UI's files served from here, not a CDN."""
    pytest.importorskip("fastapi_offline")
    r = client.get("/docs")
    assert r.status_code == 200 and "SwaggerUIBundle" in r.text
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    urls = re.findall(r'(?:src|href|url)\s*[:=]\s*[\'"]([^\'"]+)', r.text)
    assert urls and all(u.startswith("/") for u in urls), urls    # every asset and the schema: this server
    for u in urls:
        assert client.get(u).status_code == 200, u
