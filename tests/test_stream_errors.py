"""An error after a stream began, through a real server: the status line (200) is sent, so the error must
arrive as the stream's last item — an `{"error": ...}` line in NDJSON, an OpenAI error event in SSE, Anthropic's
`event: error` — and the server must go on serving.

The failure is injected by a plugin installed the way third-party plugins are (an entry point on the server's
sys.path): its startup hook wraps the engine's public submit() so that a request whose prompt holds a magic
word fails after its first token. Everything else is the real engine and the real dialects.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inferno.config import load_settings
from inferno.host import Inferno

from .conftest import Server, start_server, stop_server

MAGIC = "fail-after-the-first-token"
MESSAGE = "injected failure after the first token"

PLUGIN = f'''
from typing import Any

from inferno.engine.types import TextDelta
from inferno.errors import InfernoError
from inferno.hookspecs import hookimpl


def _asks_for_failure(request: Any) -> bool:
    texts = [request.prompt or ""] + [m.content or "" for m in request.messages or []]
    return any({MAGIC!r} in t for t in texts)


class FailingHandle:
    """The engine's handle, except that its events stop with an error right after the first text."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _fail_after_first_text(self, events: Any) -> Any:
        async for event in events:
            yield event
            if isinstance(event, TextDelta) and event.text:
                self._inner.cancel()
                raise InfernoError({MESSAGE!r})

    async def primed(self) -> Any:
        return self._fail_after_first_text(await self._inner.primed())

    def __aiter__(self) -> Any:
        return self._fail_after_first_text(self._inner.__aiter__())


@hookimpl
def startup(inferno: Any) -> None:
    engine = inferno.engine
    submit = engine.submit

    def failing_submit(request: Any) -> Any:
        handle = submit(request)
        return FailingHandle(handle) if _asks_for_failure(request) else handle

    engine.submit = failing_submit
'''


@pytest.fixture(scope="module")
def failing_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("stream-errors")
    site = root / "site"
    (site / "inferno_test_failing-0.1.dist-info").mkdir(parents=True)
    (site / "inferno_test_failing.py").write_text(textwrap.dedent(PLUGIN))
    (site / "inferno_test_failing-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: inferno-test-failing\nVersion: 0.1\n")
    (site / "inferno_test_failing-0.1.dist-info" / "entry_points.txt").write_text(
        "[inferno]\ntest_failing = inferno_test_failing\n")
    home = root / "home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source="t")
    server = start_server(home, {"PYTHONPATH": str(site), "INFERNO_STRICT_PLUGINS": "1"})
    yield server
    stop_server(server)


def test_ndjson_error_is_the_last_line(failing_server: Server) -> None:
    for path, body in (("/api/generate", {"prompt": MAGIC}),
                       ("/api/chat", {"messages": [{"role": "user", "content": MAGIC}]})):
        with httpx.stream("POST", failing_server.url + path, timeout=60, json={
                "model": "tiny", **body, "options": {"num_predict": 50, "ignore_eos": True}}) as r:
            assert r.status_code == 200
            lines = [json.loads(x) for x in r.iter_lines() if x]
        assert len(lines) >= 2, lines
        assert all(x.get("done") is False for x in lines[:-1])  # text came first …
        assert lines[-1] == {"error": MESSAGE}  # … then the error, and no done line pretending success


def test_sse_error_is_the_last_event(failing_server: Server) -> None:
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": MAGIC}]}),
                       ("/v1/completions", {"prompt": MAGIC})):
        with httpx.stream("POST", failing_server.url + path, timeout=60, json={
                "model": "tiny", **body, "stream": True, "max_tokens": 50, "ignore_eos": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [e for e in "".join(r.iter_text()).split("\n\n") if e]
        assert all(e.startswith("data: ") for e in events)
        assert "data: [DONE]" not in events  # a failed stream does not claim to have finished
        payloads = [json.loads(e[6:]) for e in events]
        assert any("choices" in p for p in payloads[:-1]), payloads  # text came first …
        error = payloads[-1]["error"]
        assert error["message"] == MESSAGE and error["type"] == "api_error"


def test_anthropic_error_is_an_error_event(failing_server: Server) -> None:
    with httpx.stream("POST", failing_server.url + "/v1/messages", timeout=60, json={
            "model": "tiny", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": MAGIC}]}) as r:
        assert r.status_code == 200
        frames = [f.split("\n") for f in "".join(r.iter_text()).split("\n\n") if f]
    names = [head.removeprefix("event: ") for head, _ in frames]
    assert names[0] == "message_start" and "content_block_delta" in names  # text came first …
    assert names[-1] == "error" and "message_stop" not in names  # … then the error, and no pretended end
    assert json.loads(frames[-1][1].removeprefix("data: ")) == {
        "type": "error", "error": {"type": "api_error", "message": MESSAGE}}


def test_the_server_goes_on_after_a_failed_stream(failing_server: Server) -> None:
    r = httpx.post(failing_server.url + "/api/generate", timeout=60, json={
        "model": "tiny", "prompt": "fine", "stream": False, "options": {"num_predict": 3, "ignore_eos": True}})
    assert r.status_code == 200 and r.json()["eval_count"] == 3
