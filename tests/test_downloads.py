"""The UI's download buttons (ui/downloads.py): the files offered exist, are this session's last turn only,
and live under the one folder the UI serves.

Data: two checkup questions in one session and one in another, through the real agent (deterministic
composer). Turn 1, 「55歳男性、HbA1c 6.8%、空腹時血糖 130」, is D/D in the criteria table; turn 2,
「60歳女性、血色素量 12.5 g/dL」, is A (a woman's Hb ≥ 12.1 g/dL is band A), so a bundle holding D grades
after turn 2 would be the previous turn's. The chat history is what ``ui/app.py`` puts on screen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dokuei.settings import Settings
from dokuei.ui.downloads import build_downloads, export_formats
from dokuei.ui.present import escape_markdown

Q1 = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"
Q2 = "60歳女性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？"


def _history(*turns: tuple[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for question, answer in turns:
        out += [{"role": "user", "content": escape_markdown(question)}, {"role": "assistant", "content": answer}]
    return out


def _grades(paths: list[str]) -> list[str]:
    (bundle_path,) = [p for p in paths if p.endswith(".fhir.json")]
    bundle = json.loads(Path(bundle_path).read_text(encoding="utf-8"))
    return [e["resource"]["valueCodeableConcept"]["coding"][0]["code"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation" and "valueCodeableConcept" in e["resource"]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import gradio as gr

    from dokuei.agent.graph import Agent

    settings = Settings.load(home=tmp_path_factory.mktemp("home"))
    agent = Agent(settings)
    with gr.Blocks():
        downloads = build_downloads(settings, agent)
    return {"settings": settings, "agent": agent, "downloads": downloads}


def test_the_files_offered_are_the_current_turn_of_this_session(setup: dict[str, Any]) -> None:
    settings, agent, refresh = setup["settings"], setup["agent"], setup["downloads"].refresh
    a1 = agent.ask(Q1, session_id="session-a")
    first = refresh({"thread": "session-a"}, _history((Q1, a1.answer_ja)))
    assert _grades(first) == ["D", "D"]
    a2 = agent.ask(Q2, session_id="session-a")
    second = refresh({"thread": "session-a"}, _history((Q1, a1.answer_ja), (Q2, a2.answer_ja)))
    suffixes = sorted(Path(p).name.split(".", 1)[1] for p in second)
    assert suffixes == sorted({"fhir": "fhir.json", "pdf": "pdf", "txt": "txt"}[f] for f in ("fhir", "pdf", "txt"))
    assert all(Path(p).is_file() and Path(p).stat().st_size > 0 for p in second)
    served = settings.artifacts_dir / "exports" / "session-a"
    assert all(Path(p).resolve().is_relative_to(served.resolve()) for p in second)  # the UI serves this folder
    assert "A" in _grades(second) and "D" not in _grades(second)  # turn 2's judgement, not turn 1's
    assert "12.5" in Path(next(p for p in second if p.endswith(".txt"))).read_text(encoding="utf-8")
    assert not any(Path(p).exists() for p in first)  # the previous turn's files are gone, not just hidden
    # another session sees its own turn only
    b1 = agent.ask(Q1, session_id="session-b")
    other = refresh({"thread": "session-b"}, _history((Q1, b1.answer_ja)))
    assert _grades(other) == ["D", "D"]
    assert not set(other) & set(second) and all("session-b" in Path(p).parts for p in other)
    assert Path(second[0]).exists()  # session b's turn leaves session a's files alone


def test_nothing_is_offered_while_a_turn_runs_after_a_refusal_or_in_a_new_session(setup: dict[str, Any]) -> None:
    agent, refresh = setup["agent"], setup["downloads"].refresh
    a1 = agent.ask(Q1, session_id="session-c")
    pending = [*_history((Q1, a1.answer_ja)), {"role": "user", "content": escape_markdown(Q2)},
               {"role": "assistant", "content": "ツールを選んで実行しています…"}]
    assert refresh({"thread": "session-c"}, pending) == []  # turn 2 still running: turn 1's files are not offered
    long_q = "あ" * (setup["settings"].max_question_chars + 1)
    refused = agent.ask(long_q, session_id="session-c")  # refused before the graph: the checkpoint is turn 1's
    assert refresh({"thread": "session-c"}, _history((Q1, a1.answer_ja), (long_q, refused.answer_ja))) == []
    assert refresh({"thread": "fresh-session"}, []) == []
    assert refresh({}, _history((Q1, a1.answer_ja))) == []


def test_sr_and_seg_are_offered_only_when_their_writers_exist() -> None:
    import importlib.util

    formats = export_formats()
    assert {"fhir", "txt", "pdf"} <= set(formats)
    for fmt in ("sr", "seg"):
        assert (fmt in formats) == (importlib.util.find_spec(f"dokuei.export.{fmt}") is not None)


def test_the_app_mounts_the_buttons_on_the_chat(tmp_path: Path) -> None:
    from dokuei.ui.app import build_app

    app = build_app(Settings.load(home=tmp_path))
    config = app.get_config_file()
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"]}
    mounted = [d for d in config["dependencies"]
               if [ids["downloads"]] == d["outputs"] and any(t[0] == ids["chat"] and t[1] == "change"
                                                             for t in d["targets"])]
    assert len(mounted) == 1
    app.close()


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no /usr/bin/chromium (apt-get install chromium)")
def test_in_the_browser_the_buttons_download_this_turns_bundle(tmp_path: Path) -> None:
    """The real page: Gradio fires the chat's change event, the buttons appear, a click downloads the file."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [dev] extra)")
    import socket

    from playwright.sync_api import sync_playwright

    from dokuei.ui.app import build_app, launch_options

    settings = Settings.load(home=tmp_path / "home")
    app = build_app(settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    app.queue().launch(server_port=port, prevent_thread_lock=True, quiet=True,
                       **launch_options(settings, "127.0.0.1"))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_context(accept_downloads=True, locale="ja-JP").new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#question textarea").fill(Q1)
            page.locator("#send").click()
            # Gradio lists each file as a row: the name in aria-label, a download link with the name
            page.locator('#downloads a[download$=".fhir.json"]').wait_for(timeout=240_000)
            names = page.locator("#downloads td.filename").evaluate_all("cells => cells.map(c => c.ariaLabel)")
            assert sorted(n.split(".", 1)[1] for n in names) == ["fhir.json", "pdf", "txt"]
            with page.expect_download() as info:
                page.locator('#downloads a[download$=".fhir.json"]').click()
            got = tmp_path / "downloaded.fhir.json"
            info.value.save_as(str(got))
            assert _grades([str(got)]) == ["D", "D"]
            page.locator("#new-session").click()
            page.locator('#downloads a[download$=".fhir.json"]').wait_for(state="detached", timeout=60_000)
            browser.close()
    finally:
        app.close()
