"""Playwright support for the web UI's tests: Debian's Chromium (never a downloaded browser), a fresh browser
context per test (its own localStorage and IndexedDB), the page's own errors turned into test failures, and
the small vocabulary of actions the tests share (pick a model, set a parameter, send, wait for the answer)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("INFERNO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).is_file()
SKIP_REASON = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set INFERNO_CHROMIUM): browser tests skipped"
# screenshots of each page, for a reviewer to look at
SHOTS = Path(os.environ.get("INFERNO_UI_SCREENSHOTS", ROOT / "build" / "webui-screenshots"))
TIMEOUT_MS = 120_000  # a backstop against a hang on a loaded machine, not a measure of speed


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 820}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("dialog", lambda d: d.accept())  # confirm() of a delete
    yield p
    context.close()
    assert not errors, f"the page threw: {errors}"


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def open_chat(page: Any, url: str, model: str) -> None:
    """The UI reached as a person would (the server's root redirects a browser), with model picked."""
    page.goto(url + "/")
    assert page.url == url + "/ui/"
    page.wait_for_selector(f'select[aria-label=Model] option[value="{model}"]', state="attached")
    page.select_option("select[aria-label=Model]", model)


def settings(page: Any, extra: dict[str, Any] | None = None, **fields: str) -> None:
    """Set the conversation's parameters by their labels (max_tokens= → "Max tokens"), extra as raw JSON."""
    panel = page.locator("details.settings")
    if panel.get_attribute("open") is None:
        panel.locator("summary").click()
    for key, value in fields.items():
        page.get_by_label(key.replace("_", " ").capitalize()).fill(value)
    if extra is not None:
        page.get_by_label("Extra request JSON").fill(json.dumps(extra))


def send(page: Any, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def wait_answers(page: Any, count: int) -> Any:
    """Wait until count answers are finished (none streaming); the last one's element."""
    page.wait_for_function(
        "n => document.querySelectorAll('.msg.assistant').length === n && !document.querySelector('.msg.streaming')",
        arg=count)
    return page.locator(".msg.assistant").nth(count - 1)


def words(text: str) -> str:
    return " ".join(text.split())


def api_answer(url: str, model: str, messages: list[dict[str, Any]], **options: Any) -> str:
    r = httpx.post(url + "/api/chat", json={"model": model, "messages": messages, "stream": False,
                                            "options": options}, timeout=300)
    r.raise_for_status()
    return r.json()["message"]["content"]


def literal_grammar(text: str) -> str:
    """A GBNF grammar whose only sentence is text: the model must write exactly it."""
    return 'root ::= "' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
