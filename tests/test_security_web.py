"""What a web page can do to a real `inferno serve` on loopback: nothing. Foreign origins are refused with a 403
before a body is read (the `fetch(…, {mode: "no-cors"})` text/plain requests a page sends without a preflight),
preflights get CORS headers only for allowed origins, JSON routes want JSON, and DNS-rebinding Host names are
refused; official clients (no Origin) work as before."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from inferno.config import load_settings
from inferno.host import Inferno

from .conftest import Server, start_server, stop_server

EVIL = "https://evil.example"
TRUSTED = "https://app.example"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("web-home")
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source="t")
    s = start_server(home, {"INFERNO_ORIGINS": TRUSTED})
    yield s
    stop_server(s)


def blob(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def simple_post(url: str, body: bytes, origin: str) -> httpx.Response:
    """What `fetch(url, {method: "POST", mode: "no-cors", body})` sends: text/plain, the page's Origin."""
    return httpx.post(url, content=body, timeout=30,
                      headers={"Origin": origin, "Content-Type": "text/plain;charset=UTF-8"})


def test_a_foreign_page_is_refused_at_the_first_request(web: Server) -> None:
    config = json.dumps({"architectures": ["QWenLMHeadModel"]}).encode()
    digest = blob(config)
    r = simple_post(f"{web.url}/api/blobs/{digest}", config, EVIL)
    assert r.status_code == 403 and "not allowed" in r.json()["error"]
    assert httpx.head(f"{web.url}/api/blobs/{digest}", timeout=10).status_code == 404  # nothing was stored
    create = json.dumps({"model": "evil", "files": {"config.json": digest}}).encode()
    for route, body in (("/api/create", create), ("/api/pull", b'{"model": "smollm2"}'),
                        ("/api/chat", b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}'),
                        ("/v1/chat/completions", b'{"model": "tiny", "messages": []}'),
                        ("/v1/messages", b'{"model": "tiny", "max_tokens": 1, "messages": []}'),
                        ("/api/delete", b'{"model": "tiny"}')):
        r = simple_post(web.url + route, body, EVIL)
        assert r.status_code == 403, route
        assert "access-control-allow-origin" not in r.headers
    assert httpx.post(f"{web.url}/api/show", json={"model": "tiny"}, timeout=10).status_code == 200  # not deleted
    # a page cannot read answers either: a foreign GET is refused too, with no CORS header
    r = httpx.get(f"{web.url}/api/tags", headers={"Origin": EVIL}, timeout=10)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_an_allowed_origin_still_needs_json(web: Server) -> None:
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": false}'
    r = simple_post(f"{web.url}/api/chat", body, TRUSTED)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    r = simple_post(f"{web.url}/v1/chat/completions", body, web.url)  # the server's own origin, same rule
    assert r.status_code == 415 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{web.url}/api/show", content=b'{"model": "tiny"}', timeout=10,
                   headers={"Origin": TRUSTED, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415  # a form post from a page
    r = httpx.post(f"{web.url}/api/show", json={"model": "tiny"}, headers={"Origin": TRUSTED}, timeout=10)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == TRUSTED


def test_clients_without_an_origin_are_unaffected(web: Server) -> None:
    out = ollama.Client(host=web.url).generate(model="tiny", prompt="hi", options={"num_predict": 2})
    assert out.done
    client = openai.OpenAI(base_url=web.url + "/v1", api_key="x", max_retries=0)
    assert client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2).choices[0].message.content is not None
    # curl's -d sends a form content type; without an Origin that is no page, so Ollama's curl recipes work
    r = httpx.post(f"{web.url}/api/show", content=b'{"model": "tiny"}', timeout=10,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    data = b"raw bytes"
    assert httpx.post(f"{web.url}/api/blobs/{blob(data)}", content=data, timeout=10).status_code == 201


def test_preflights(web: Server) -> None:
    asked = "authorization, content-type, x-stainless-os, x-stainless-retry-count"
    for origin in (TRUSTED, web.url, web.url.replace("127.0.0.1", "localhost")):
        r = httpx.options(f"{web.url}/v1/chat/completions", timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": asked})
        assert r.status_code == 204, origin
        assert r.headers["access-control-allow-origin"] == origin
        assert "x-stainless-retry-count" in r.headers["access-control-allow-headers"]
        assert "POST" in r.headers["access-control-allow-methods"]
    # another local port is another site (any local dev server); so is the evil one
    for origin in (EVIL, "http://localhost:3000", "null", TRUSTED + ".evil.example"):
        r = httpx.options(f"{web.url}/v1/chat/completions", timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": asked})
        assert r.status_code == 403, origin
        assert "access-control-allow-origin" not in r.headers


def test_rebinding_host_names_are_refused(web: Server) -> None:
    port = web.url.rsplit(":", 1)[1]
    for host in (f"127.evil.example:{port}", "127.0.0.1.evil.example", f"127.0.0.1.evil.example:{port}",
                 f"evil.example:{port}", f"10.0.0.1:{port}", "localhost.evil.example"):
        r = httpx.get(f"{web.url}/api/tags", headers={"Host": host}, timeout=10)
        assert r.status_code == 400, host
        r = httpx.post(f"{web.url}/api/show", json={"model": "tiny"}, headers={"Host": host}, timeout=10)
        assert r.status_code == 400, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"ui.localhost:{port}", f"[::1]:{port}", "127.0.0.2"):
        assert httpx.get(f"{web.url}/api/tags", headers={"Host": host}, timeout=10).status_code == 200, host
