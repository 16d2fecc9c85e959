"""The web page in headless Chromium (Debian's, driven by Playwright; nothing is downloaded):
open a character, send a message, see the streamed reply arrive, browse the episodes and the
interaction graph. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from environment.serve.app import BackgroundServer, create_app
from tests.test_serve_api import make_run, make_state

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory, chat_model, embedder):
    state = make_state(make_run(tmp_path_factory.mktemp("web") / "run"), chat_model, embedder)
    with BackgroundServer(create_app(state)) as server:
        yield server.url, state


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def test_chat_with_a_character_in_the_browser(page_url, browser, tmp_path: Path) -> None:
    url, state = page_url
    character = state.directory.personas[1]
    page = browser.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.goto(url)
    page.click(f'[data-character-id="{character.id}"]')
    assert page.inner_text("#chat-title") == f"Chat with {character.name}"
    page.fill("#message", "Hello! What do you like to do on weekends?")
    page.click("#send")
    page.wait_for_function(  # text on the page before the reply is complete: a stream
        "() => { const b = document.querySelector('.msg.character');"
        " return b && b.classList.contains('streaming') && b.textContent.trim().length > 0 }",
        timeout=180_000)
    page.wait_for_selector('.msg.character[data-done="1"]', timeout=180_000)
    reply = page.inner_text(".msg.character").strip()
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
    assert reply, "no reply text on the page"
    chunks = int(page.get_attribute(".msg.character", "data-chunks") or 0)
    assert chunks > 1, "the reply did not arrive as a stream of chunks"
    stored = [m["text"] for m in state.directory.memory.memories(character.id) if m["kind"] == "chat"]
    assert any(reply in m for m in stored), (reply, stored)
    assert (tmp_path / "chat.png").stat().st_size > 10_000
    assert not failures, failures


def test_episodes_and_graph_in_the_browser(page_url, browser, tmp_path: Path) -> None:
    url, _ = page_url
    page = browser.new_page()
    page.goto(url)
    page.click('button[data-tab="episodes"]')
    page.click('#episode-list tbody tr[data-episode-id="r000-e000"]')
    page.wait_for_selector("#episode .turn")
    text = page.inner_text("#episode")
    assert "Hello, I love long walks." in text and "naturalness" in text
    assert "goal: ask about their pets" in text
    page.click('button[data-tab="graph"]')
    page.wait_for_function("document.querySelector('#graph').naturalWidth > 0", timeout=20_000)
    page.screenshot(path=str(tmp_path / "graph.png"))
