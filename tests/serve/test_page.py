"""The page in a real browser: Debian's chromium driven by Playwright, against a live server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a browser per test: the full run only

DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the page's tests: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    base, _ = server
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(base + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length == 2")
    page.dialogs = dialogs
    yield page
    page.close()


def test_written_text_streams_in_and_a_script_prime_stays_text(page, server):
    prime = "<script>alert('x')</script><b>bold</b> the "
    page.select_option("#model", "run")
    page.fill("#prime", prime)
    page.fill("#length", "400")
    page.fill("#seed", "3")
    # record the text's length as it changes, from inside the page
    page.evaluate(
        """() => { window.lengths = []; new MutationObserver(() => window.lengths.push(
            document.getElementById('write-out').textContent.length)).observe(
            document.getElementById('write-out'), {childList: true, characterData: true, subtree: true}); }"""
    )
    page.click("#write-go")
    page.wait_for_function(
        f"document.getElementById('write-out').textContent.length >= {len(prime) + 400}"
    )
    lengths = page.evaluate("window.lengths")
    assert len(set(lengths)) > 20  # it grew piece by piece, not all at once
    text = page.text_content("#write-out")
    assert text.startswith(prime) and page.dialogs == []
    assert page.locator("#write-out script, #write-out b").count() == 0  # shown, not run
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "serve-page.png"))


def test_the_poem_tab_keeps_the_form_side_by_side(page):
    page.select_option("#model", "tang")
    page.click("nav button[data-tab=poem]")
    page.select_option("#form", "wujue")
    page.fill("#poems", "3")
    page.fill("#poem-seed", "5")
    page.click("#poem-go")
    page.wait_for_function("!document.getElementById('poem-go').disabled")  # the poems are whole
    for poem in page.locator("#poem-out pre").all_text_contents():
        lines = [line for line in poem.split("\n") if line]
        assert len(lines) == 2 and all(len(line) == 12 for line in lines)


def test_the_chat_tab_carries_the_conversation(page):
    page.select_option("#model", "run")
    page.click("nav button[data-tab=chat]")
    requests = []
    page.on(
        "request",
        lambda r: (
            requests.append(r.post_data_json) if r.url.endswith("/chat/completions") else None
        ),
    )
    for line in ("the cat", "the dog"):
        page.fill("#chat-input", line)
        page.press("#chat-input", "Enter")
        page.wait_for_function(
            f"document.querySelectorAll('#chat-log .bot').length == {1 + (line == 'the dog')}"
        )
        page.wait_for_function("!document.getElementById('chat-input').disabled")
    page.wait_for_timeout(500)
    assert len(requests) == 2
    second = requests[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    first_reply = page.locator("#chat-log .bot").first.text_content().removeprefix("bot> ")
    assert second[1]["content"] == first_reply


def test_each_control_waits_for_its_stream_before_taking_another(page):
    page.select_option("#model", "run")
    page.fill("#seed", "3")
    page.click("nav button[data-tab=chat]")
    # a handler runs up to its first await at once, so the controls are read mid-stream
    closed = page.evaluate(
        """() => { const input = document.getElementById('chat-input'); input.value = 'the cat';
        document.getElementById('chat-form').requestSubmit();
        const write = document.getElementById('write-go'); write.click(); write.click();
        return [input.disabled, write.disabled]; }"""
    )
    assert closed == [True, True]
    page.wait_for_function("!document.getElementById('chat-input').disabled")
    assert page.evaluate("document.activeElement.id") == "chat-input"
    assert page.locator("#chat-log .bot").count() == 1
    page.wait_for_function("!document.getElementById('write-go').disabled")
    written = page.text_content("#write-out")
    page.click("nav button[data-tab=write]")
    page.click("#write-go")
    page.wait_for_function("!document.getElementById('write-go').disabled")
    assert written == page.text_content("#write-out")  # the click mid-stream started no second one


def test_a_refused_request_shows_the_servers_reason_and_frees_the_control(page):
    page.select_option("#model", "run")
    page.fill("#length", "5000")  # the server's cap is 400
    page.click("#write-go")
    page.wait_for_function("!document.getElementById('write-go').disabled")
    assert page.text_content("#error") == "max_tokens 5000 is above this server's cap of 400"
    page.fill("#length", "20")
    page.click("#write-go")
    page.wait_for_function("!document.getElementById('write-go').disabled")
    assert page.text_content("#error") == ""


def test_the_surprisal_view_colours_each_character_with_its_guesses(page):
    page.select_option("#model", "run")
    page.click("nav button[data-tab=surprisal]")
    page.fill("#score-text", "the cat <i>sat</i>")
    page.click("#score-go")
    page.wait_for_function("document.querySelectorAll('#score-out span').length > 0")
    spans = page.locator("#score-out span")
    assert "".join(spans.all_text_contents()) == "the cat <i>sat</i>"
    assert "guesses" in spans.first.get_attribute("title")
    assert page.locator("#score-out i").count() == 0


def test_the_run_tab_draws_the_loss_curve(page):
    page.select_option("#model", "run")
    page.click("nav button[data-tab=run]")
    page.wait_for_function("document.getElementById('run-status').textContent.includes('step')")
    drawn = page.evaluate(
        "() => { const c = document.getElementById('curve'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"
    )
    assert drawn > 500
