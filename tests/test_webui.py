"""The web UI plugin over HTTP, against a real `inferno serve`: where a browser lands, the headers that keep model
output inert (CSP), the files it serves and refuses, the API key (the page loads without it, the data does
not), that disabling the plugin leaves the server as it was, and the size budget of the shipped build. What the
page does in a browser is tests/test_webui_browser.py."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from inferno.config import load_settings
from inferno.host import Inferno
from inferno_plugins.webui.routes import STATIC

from .conftest import Server, start_server, stop_server

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def _home(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, name: str) -> Path:
    home = tmp_path_factory.mktemp(name)
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source="t")
    return home


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    s = start_server(_home(tmp_path_factory, tiny_gguf, "webui-home"))
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    s = start_server(_home(tmp_path_factory, tiny_gguf, "webui-key-home"), {"INFERNO_API_KEY": "s3cret"})
    yield s
    stop_server(s)


def test_a_browser_at_the_root_lands_on_the_ui_and_clients_keep_the_probe(web: Server) -> None:
    r = httpx.get(web.url + "/", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 302 and r.headers["location"] == "/ui/" and "Accept" in r.headers["vary"]
    for accept in ("*/*", "application/json", None):  # curl, the SDKs, a bare client
        headers = {"Accept": accept} if accept else {}
        plain = httpx.get(web.url + "/", headers=headers)
        assert plain.status_code == 200 and plain.text == "Ollama is running"
    assert httpx.head(web.url + "/", headers={"Accept": BROWSER_ACCEPT}).status_code == 200  # probes use HEAD
    assert httpx.get(web.url + "/ui").headers["location"] == "/ui/"
    assert ollama.Client(host=web.url).list().models[0].model == "tiny:latest"  # the official client is unaffected


def test_the_page_has_a_strict_policy_and_no_inline_script(web: Server) -> None:
    r = httpx.get(web.url + "/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-cache"
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", r.text, re.S)
    assert scripts and all(not body.strip() for body in scripts), "every script is a file (the CSP allows no other)"
    assert "http://" not in r.text and "https://" not in r.text, "nothing is fetched from elsewhere"


def test_the_built_assets_are_served_and_nothing_else(web: Server) -> None:
    page = httpx.get(web.url + "/ui/").text
    assets = re.findall(r'(?:src|href)="/ui/(assets/[^"]+)"', page)
    assert {Path(a).suffix for a in assets} == {".js", ".css"}
    for asset in assets:
        r = httpx.get(f"{web.url}/ui/{asset}")
        assert r.status_code == 200 and r.content == (STATIC / asset).read_bytes()
        assert "immutable" in r.headers["cache-control"] and "content-security-policy" in r.headers
        assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript", "text/css")
    for missing in ("/ui/nope.js", "/ui/assets/../../routes.py", "/ui/%2e%2e/__init__.py", "/ui/..%2f__init__.py"):
        r = httpx.get(web.url + missing)
        assert r.status_code == 404 and "error" in r.json(), missing


def test_the_page_loads_without_the_key_and_the_data_needs_it(keyed: Server) -> None:
    assert httpx.get(keyed.url + "/ui/").status_code == 200
    asset = re.findall(r'src="(/ui/assets/[^"]+)"', httpx.get(keyed.url + "/ui/").text)[0]
    assert httpx.get(keyed.url + asset).status_code == 200
    assert httpx.get(keyed.url + "/", headers={"Accept": BROWSER_ACCEPT}).status_code == 302
    for closed in ("/api/tags", "/uix", "/metrics"):  # whole path segments only: /uix is not under /ui
        assert httpx.get(keyed.url + closed).status_code == 401, closed
    assert httpx.get(keyed.url + "/api/tags", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_foreign_page_cannot_load_the_ui_under_its_origin(web: Server) -> None:
    r = httpx.get(web.url + "/ui/", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403  # the Origin guard applies to the UI's routes as to every other
    r = httpx.get(web.url + "/ui/", headers={"Host": "evil.example"})
    assert r.status_code == 400


def test_disabled_the_server_answers_as_before(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> None:
    s = start_server(_home(tmp_path_factory, tiny_gguf, "webui-off"), {"INFERNO_DISABLE_PLUGINS": "webui"})
    try:
        r = httpx.get(s.url + "/", headers={"Accept": BROWSER_ACCEPT})
        assert r.status_code == 200 and r.text == "Ollama is running"
        assert httpx.get(s.url + "/ui/").status_code == 404
    finally:
        stop_server(s)


def test_the_build_fits_the_budget() -> None:
    """≤ 300 KB of JS and CSS gzipped (the issue's budget), and one script: first render needs one request."""
    files = [p for p in (STATIC / "assets").iterdir() if p.suffix in (".js", ".css")]
    assert [p.suffix for p in files].count(".js") == 1
    assert sum(len(gzip.compress(p.read_bytes())) for p in files) <= 300_000
