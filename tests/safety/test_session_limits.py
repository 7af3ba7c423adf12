"""Limits that keep one turn from hanging (issue #9 item 8) and clear Japanese --patient errors (item 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from dokuei.agent import audit
from dokuei.agent.graph import Agent
from dokuei.agent.llm import ChatReply, ScriptedBackend, ToolCall
from dokuei.settings import Settings
from dokuei.tools.base import Outcome, Requirements, Tool, ToolStatus

RELEASE = threading.Event()


class StuckInput(BaseModel):
    label: str = Field(default="x", description="echo")


class StuckTool(Tool[StuckInput]):
    """Blocks until the test releases it: stands for a tool stuck in C code that no timeout can stop."""

    name = "stuck_tool"
    version = "1.0.0"
    description_ja = "テスト用: 解放されるまで止まる。臨床では使わない。"
    description_en = "Test tool: blocks until released. Never for clinical use."
    Input = StuckInput
    Output = StuckInput
    requires = Requirements(device="cpu", licence="Apache-2.0")

    def run(self, inp: StuckInput) -> Outcome:
        RELEASE.wait()
        return Outcome(output=inp, summary_ja="完了")


def test_a_long_question_is_refused_before_any_routing(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import dokuei.agent.graph as graph

    def no_routing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the router ran on a refused question")

    monkeypatch.setattr(graph, "plan_deterministic", no_routing)
    agent = Agent(settings)
    question = "HbA1c 6.8% は？" + "あ" * 40_000
    turn = agent.ask(question, session_id="long")
    assert "長すぎます" in turn.answer_ja and "40,013 文字" in turn.answer_ja and "4,000" in turn.answer_ja
    assert turn.results == [] and not turn.verified
    record = json.loads(next(settings.audit_dir.glob("audit-*.jsonl")).read_text())
    assert record["status"] == "refused" and record["question"]["chars"] == len(question)
    assert audit.verify_dir(settings.audit_dir) == []


def test_question_at_the_limit_still_runs(settings: Settings) -> None:
    agent = Agent(Settings.load(home=settings.home, max_question_chars=30))
    turn = agent.ask("HbA1c 6.8% は？".ljust(30, "。"))
    assert [r.tool for r in turn.results] == ["judge_checkup"]


@pytest.mark.parametrize(("patient", "expected"), [
    ({"age_years": 200}, "年齢は 0〜130 の整数"),
    ({"sex": "X"}, "性別は M（男性）または F（女性）"),
    ({"height_cm": 5}, "身長は 30〜260 の数値（cm）"),
    ({"weight_kg": 0}, "体重は 1〜400 の数値（kg）"),
    ({"bogus": 1}, "「bogus」は指定できません"),
])
def test_bad_patient_context_is_answered_in_japanese(settings: Settings, patient: dict[str, object],
                                                     expected: str) -> None:
    turn = Agent(settings).ask("HbA1c 6.8% は？", patient=patient)
    assert expected in turn.answer_ja
    assert "Input should" not in turn.answer_ja and "validation error" not in turn.answer_ja
    assert turn.results == []


@pytest.mark.parametrize(("patient", "expected"), [
    ("age=200", "年齢は 0〜130 の整数"),
    ("age=abc", "年齢は 0〜130 の整数"),
    ("height_cm=5", "身長は 30〜260 の数値（cm）"),
    ("weight=abc", "体重（kg）は数値"),
])
def test_cli_patient_errors_are_japanese(tmp_path: Path, patient: str, expected: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "dokuei.cli", "ask", "HbA1c 6.8%", "--patient", patient],
                          capture_output=True, text=True, env={**os.environ, "DOKUEI_HOME": str(tmp_path)},
                          check=False, timeout=300)
    assert proc.returncode == 2
    assert expected in proc.stdout, proc.stdout
    assert "Input should" not in proc.stdout and "invalid literal" not in proc.stdout


def test_a_stuck_tool_does_not_hold_the_turn(tmp_path: Path) -> None:
    RELEASE.clear()
    settings = Settings.load(home=tmp_path, tool_timeout_s=0.5)
    agent = Agent(settings, backend=ScriptedBackend([ChatReply(text="", tool_calls=[ToolCall(name="stuck_tool",
                                                                                             args={})]),
                                                     ChatReply(text="")]))
    agent.tools["stuck_tool"] = StuckTool(settings)
    try:
        turn = agent.ask("?")  # returns although the tool never finishes (RELEASE is set only below)
        assert [r.status for r in turn.results] == [ToolStatus.FAILED]
        assert "制限時間 0.5 秒" in turn.results[0].summary_ja
        assert not RELEASE.is_set()
    finally:
        RELEASE.set()


def test_a_stuck_tool_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    """The old ThreadPoolExecutor was joined at interpreter exit: a stuck tool kept `dokuei ask` running."""
    script = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_session_limits import StuckTool
        from dokuei.agent.graph import Agent
        from dokuei.agent.llm import ChatReply, ScriptedBackend, ToolCall
        from dokuei.settings import Settings
        settings = Settings.load(home={str(tmp_path)!r}, tool_timeout_s=0.5)
        call = ToolCall(name="stuck_tool", args={{}})
        agent = Agent(settings, backend=ScriptedBackend([ChatReply(text="", tool_calls=[call]), ChatReply(text="")]))
        agent.tools["stuck_tool"] = StuckTool(settings)
        turn = agent.ask("?")
        print("ANSWERED", turn.results[0].status.value, flush=True)
    """)
    # generous bound: the stuck tool would wait forever, so only "exits at all" is being tested
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=240,
                          env={**os.environ, "DOKUEI_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ANSWERED failed" in proc.stdout
