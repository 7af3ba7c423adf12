"""The workstation driven in Debian's Chromium as a clinician would: the patient-safety defects of issue #10
(default sex, stale studies, a new session that kept the old patient) must be gone in the real page.

The app runs in this process on a free loopback port with a temporary DOKUEI_HOME; the agent is the real
one, wrapped only to record what each turn was given, so "the removed study was not used" is checked on
the call itself rather than on text. Screenshots of failures go to the test's tmp folder.
"""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dokuei import testdata
from dokuei.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/setup.sh as root "
                       "(apt-get install chromium fonts-noto-cjk)"),
]
TURN_TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingAgent:
    """The real Agent; every ``ask`` is recorded so a test can read the attachments a turn got."""

    def __init__(self, agent: Any) -> None:
        self._agent = agent
        self.calls: list[dict[str, Any]] = []

    def ask(self, question: str, **kwargs: Any) -> Any:
        self.calls.append({"question": question, **kwargs})
        return self._agent.ask(question, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RecordingAgent, Path]]:
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [dev] extra)")
    from dokuei.agent.graph import Agent
    from dokuei.ui.app import build_app, launch_options

    home = tmp_path_factory.mktemp("home")
    settings = Settings.load(home=home)
    agent = RecordingAgent(Agent(settings))
    app = build_app(settings, agent=agent)
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


@pytest.fixture
def page(browser: Any, served: tuple[str, RecordingAgent, Path], tmp_path: Path,
         request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1200}, locale="ja-JP")
    tab = context.new_page()
    tab.goto(served[0])
    tab.locator("#question textarea").wait_for()
    try:
        yield tab
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            shot = tmp_path / f"{request.node.name}.png"
            tab.screenshot(path=str(shot), full_page=True)
            logging.getLogger(__name__).warning("screenshot of the failed page: %s", shot)
        context.close()


def _ask(page: Any, question: str) -> str:
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()
    # the turn runs while the pending line is shown; it is over when that line is gone and 送信 works again
    page.locator("#chat").get_by_text("ツールを選んで実行しています").wait_for(timeout=30_000)
    page.wait_for_function(
        "() => { const t = document.querySelector('#chat')?.innerText || '';"
        " const send = document.querySelector('#send');"
        " return !t.includes('ツールを選んで実行しています') && send && !send.disabled; }",
        timeout=TURN_TIMEOUT_MS)
    return str(page.locator("#chat").inner_text())


def _upload(page: Any, path: Path) -> str:
    page.locator("#upload-files input[type=file]").set_input_files(str(path))
    # Gradio shows its own "processing | 0.4s" in the element meanwhile: wait for our Japanese text
    page.wait_for_function("() => /取り込|読み込|⚠/.test(document.querySelector('#upload-note')?.innerText || '')",
                           timeout=30_000)
    return str(page.locator("#upload-note").inner_text())


def test_checkup_with_empty_patient_fields_uses_the_woman_in_the_question(page: Any) -> None:
    # Hb 12.5 g/dL: A for a woman (≥ 12.1), C for a man; the old default 男性 gave C
    answer = _ask(page, "60歳女性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？")
    assert "血色素量 12.5 g/dL: A 判定" in answer
    banner = page.locator("#patient-banner").inner_text()
    assert "女性（質問文）" in banner and "60 歳（質問文）" in banner


def test_empty_dcm_upload_names_the_file_in_japanese(page: Any, tmp_path: Path) -> None:
    empty = tmp_path / "空の画像.dcm"
    empty.write_bytes(b"")
    note = _upload(page, empty)
    assert "「空の画像.dcm」は空のファイルのため読み込めませんでした" in note
    assert "空の画像" not in page.locator("#studies").inner_text()  # nothing became a study


def test_removed_ecg_is_never_used_and_the_new_plot_is_shown_uncropped(
        page: Any, served: tuple[str, RecordingAgent, Path], tmp_path: Path) -> None:
    _, agent, _home = served
    first = tmp_path / "first_ecg.dcm"
    second = tmp_path / "second_ecg.dcm"
    shutil.copyfile(testdata.pydicom_file("waveform_ecg.dcm"), first)
    shutil.copyfile(testdata.pydicom_file("waveform_ecg.dcm"), second)
    assert "取り込みました" in _upload(page, first)
    page.locator("#remove-pick input").click()
    page.get_by_role("option").first.click()
    page.locator("#remove-study").click()
    page.wait_for_function("() => (document.querySelector('#upload-note')?.innerText || '').includes('削除')")
    assert "取り込みました" in _upload(page, second)
    answer = _ask(page, "この心電図の所見は？")
    assert "エラー" not in answer
    used = agent.calls[-1]["attachments"]
    # only the study still listed (an ECG goes over as its file), and the removed one is gone from disk
    # kept DICOM is de-identified and renamed by position (dokuei.deid): the study folder tells them apart
    assert len(used) == 1 and Path(used[0]).name == "00000.dcm"
    session_dir = Path(used[0]).parents[2]  # uploads/<session>/<study>/series-1/file
    assert [p.name for p in session_dir.iterdir()] == [Path(used[0]).parents[1].name]
    image = page.locator("#gallery img").first
    image.wait_for(timeout=30_000)
    box = image.bounding_box()
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert box is not None and box["width"] >= 600  # readable, not a thumbnail
    # object-fit contain: the shown aspect ratio is the plot's own (a 12-lead plot is wide, never a square crop)
    assert natural[0] > natural[1]


def test_new_session_clears_chat_studies_patient_fields_and_memory(
        page: Any, served: tuple[str, RecordingAgent, Path], tmp_path: Path) -> None:
    _, agent, home = served
    ecg = tmp_path / "ecg.dcm"
    shutil.copyfile(testdata.pydicom_file("waveform_ecg.dcm"), ecg)
    page.locator("#age textarea, #age input").first.fill("72")
    page.locator("#age textarea, #age input").first.press("Tab")
    assert "取り込みました" in _upload(page, ecg)
    _ask(page, "55歳男性、HbA1c 6.8% は？")
    thread_before = agent.calls[-1]["session_id"]
    old_session = thread_before.split("-")[0]
    assert (home / "uploads" / old_session).is_dir()
    page.locator("#new-session").click()
    page.wait_for_function(
        "() => (document.querySelector('#upload-note')?.innerText || '').includes('新しいセッション')")
    assert page.locator("#chat").inner_text().count("HbA1c") == 0
    assert page.locator("#age textarea, #age input").first.input_value() == ""
    assert "ecg" not in page.locator("#studies").inner_text()
    assert "年齢 不明（不明）" in page.locator("#patient-banner").inner_text()
    assert not (home / "uploads" / old_session).exists()  # the old session's files are deleted
    _ask(page, "血色素量 12.5 g/dL の判定は？")
    call = agent.calls[-1]
    assert call["session_id"] != thread_before and call["attachments"] == [] and "age_years" not in call["patient"]
