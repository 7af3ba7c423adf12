"""Browser-test plumbing shared by the test modules: the real agent wrapped to record (and, for the queue
test, hold) each turn; the app on a free loopback port; Debian's Chromium; a page fixture that writes a
full-page screenshot of every failed test to the test's tmp folder (the path is logged)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dokuei.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


class RecordingAgent:
    """The real Agent; every ``ask`` is recorded so a test can read the attachments a turn got.
    While ``gate`` is cleared each turn waits at the door, as if another clinician's CT held the worker."""

    def __init__(self, agent: Any) -> None:
        self._agent = agent
        self.calls: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.gate.set()

    def ask(self, question: str, **kwargs: Any) -> Any:
        self.calls.append({"question": question, **kwargs})
        if not self.gate.wait(timeout=120):
            raise TimeoutError("test gate never opened")
        return self._agent.ask(question, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(home: Path, workers: int | None = None) -> Iterator[tuple[str, RecordingAgent, Path]]:
    """The workstation with the real agent on a free loopback port and a fresh DOKUEI_HOME."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [dev] extra)")
    from dokuei.agent.graph import Agent
    from dokuei.ui.app import build_app, launch_options

    settings = Settings.load(home=home)
    agent = RecordingAgent(Agent(settings))
    app = build_app(settings, agent=agent, workers=workers)
    port = _free_port()
    app.queue(default_concurrency_limit=2).launch(server_port=port, prevent_thread_lock=True, quiet=True,
                                                  **launch_options(settings, "127.0.0.1"))
    try:
        yield f"http://127.0.0.1:{port}/", agent, home
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Any, url: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1200}, locale="ja-JP")
    tab = context.new_page()
    tab.goto(url)
    tab.locator("#question textarea").wait_for()
    return context, tab


@pytest.fixture
def page(browser: Any, served: tuple[str, RecordingAgent, Path], tmp_path: Path,
         request: pytest.FixtureRequest) -> Iterator[Any]:
    context, tab = open_page(browser, served[0])
    try:
        yield tab
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            shot = tmp_path / f"{request.node.name}.png"
            tab.screenshot(path=str(shot), full_page=True)
            logging.getLogger(__name__).warning("screenshot of the failed page: %s", shot)
        context.close()
