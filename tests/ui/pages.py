"""What a clinician does on the page, as the browser tests do it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TURN_TIMEOUT_MS = 120_000
PENDING_RE = "ツールを選んで実行しています|順番待ち"


def start_ask(page: Any, question: str) -> None:
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()
    page.wait_for_function(
        f"() => /{PENDING_RE}/.test(document.querySelector('#chat')?.innerText || '')", timeout=30_000)


def wait_answer(page: Any, timeout_ms: int = TURN_TIMEOUT_MS) -> str:
    # the turn is over when the pending line is gone and 送信 works again
    page.wait_for_function(
        "() => { const t = document.querySelector('#chat')?.innerText || '';"
        " const send = document.querySelector('#send');"
        f" return !/{PENDING_RE}/.test(t) && send && !send.disabled; }}",
        timeout=timeout_ms)
    return str(page.locator("#chat").inner_text())


def ask(page: Any, question: str) -> str:
    start_ask(page, question)
    return wait_answer(page)


def upload(page: Any, *paths: Path) -> str:
    before = page.locator("#upload-note").inner_text()
    page.locator("#upload-files input[type=file]").set_input_files([str(p) for p in paths])
    # Gradio shows its own "processing | 0.4s" in the element meanwhile: wait for our (new) Japanese text
    page.wait_for_function(
        "before => { const t = document.querySelector('#upload-note')?.innerText || '';"
        " return t !== before && /取り込|読み込|⚠/.test(t); }", arg=before, timeout=60_000)
    return str(page.locator("#upload-note").inner_text())


def fill(page: Any, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(value)
    box.press("Tab")


def choose(page: Any, elem_id: str, option: str) -> None:
    """Pick an option of a Gradio dropdown by (part of) its text."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option").filter(has_text=option).first.click()
