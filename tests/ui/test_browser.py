"""The workstation driven in Debian's Chromium as a clinician would: the patient-safety defects of issue #10
(default sex, stale studies, a new session that kept the old patient) must be gone in the real page.

The app runs in this process on a free loopback port with a temporary DOKUEI_HOME; the agent is the real
one, wrapped only to record what each turn was given, so "the removed study was not used" is checked on
the call itself rather than on text. Screenshots of failures go to the test's tmp folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dokuei import testdata
from dokuei.tools.context import ToolContext
from tests.test_worker import SleepInput, SlowTool, _gone
from tests.ui.conftest import CHROMIUM, RecordingAgent, serve
from tests.ui.pages import ask, upload

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/setup.sh as root "
                       "(apt-get install chromium fonts-noto-cjk)"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RecordingAgent, Path]]:
    yield from serve(tmp_path_factory.mktemp("home"))


_ask = ask
_upload = upload


def test_checkup_with_empty_patient_fields_uses_the_woman_in_the_question(
        page: Any, served: tuple[str, RecordingAgent, Path]) -> None:
    from dokuei.export.turns import load_turn, turns_dir
    from dokuei.settings import Settings

    settings = Settings.load(home=served[2])
    before = set(turns_dir(settings).glob("*.json"))
    # Hb 12.5 g/dL: A for a woman (≥ 12.1), C for a man; the old default 男性 gave C
    answer = _ask(page, "60歳女性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？")
    assert "血色素量 12.5 g/dL: A 判定" in answer
    banner = page.locator("#patient-banner").inner_text()
    assert "女性（質問文）" in banner and "60 歳（質問文）" in banner
    # the UI turn is kept for `dokuei export TURN_ID` like a CLI turn, with the grade the page showed
    (new,) = set(turns_dir(settings).glob("*.json")) - before
    assert f"記録 ID: {new.stem}" in page.locator("#sources").inner_text()  # what IT asks the clinician for
    (call,) = [c for c in load_turn(settings, new.stem)["tool_calls"] if c["name"] == "judge_checkup"]
    assert {i["name_ja"]: i["grade"] for i in call["output"]["items"]}["血色素量"] == "A"


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
    image.scroll_into_view_if_needed()
    page.wait_for_function("() => { const i = document.querySelector('#gallery img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
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


class SlowUiTool(SlowTool):
    """A heavy tool that sleeps 60 s in a worker when the question says 「ゆっくり検査」. Test only."""

    name = "slow_ui_test_tool"
    keywords_ja = ("ゆっくり検査",)

    def input_from_context(self, ctx: ToolContext) -> SleepInput | None:
        return SleepInput(sleep_s=60)


def test_stop_ends_the_running_turn_and_kills_its_worker(page: Any, served: tuple[str, RecordingAgent, Path]) -> None:
    import time

    from dokuei.settings import Settings
    from tests.ui.pages import start_ask

    agent = served[1]
    agent.tools["slow_ui_test_tool"] = SlowUiTool(Settings.load(home=served[2]))
    before = agent.workers.last_pid
    try:
        start_ask(page, "ゆっくり検査をしてください")
        end = time.monotonic() + 180  # a worker's spawn start takes seconds, more on a loaded machine
        while agent.workers.last_pid in (None, before) and time.monotonic() < end:  # the worker has the call
            time.sleep(0.1)
        pid = agent.workers.last_pid
        assert pid not in (None, before)
        t0 = time.monotonic()
        page.locator("#stop").click()
        page.locator("#chat").get_by_text("停止しました").wait_for(timeout=30_000)
        page.wait_for_function("() => !document.querySelector('#send').disabled", timeout=30_000)
        end = time.monotonic() + 30
        while not _gone(pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert _gone(pid), "the stopped tool's worker process is still alive"
        assert time.monotonic() - t0 < 40  # well before the 60 s the tool would have slept (slack for load)
    finally:
        agent.tools.pop("slow_ui_test_tool", None)
    # the session goes on: the next question is answered as usual
    answer = _ask(page, "50歳男性、血色素量 12.5 g/dL の判定は？")
    assert "血色素量 12.5 g/dL: C 判定" in answer
