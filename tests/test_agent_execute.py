"""The execute node: independent tools run in parallel, a slow tool is cut off by the per-tool timeout,
and a dependent tool runs after the tools it reads."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from dokuei.agent.graph import Agent
from dokuei.agent.llm import ChatReply, ScriptedBackend, ToolCall
from dokuei.settings import Settings
from dokuei.tools.base import Outcome, Requirements, Tool, ToolStatus
from dokuei.tools.context import ToolContext

BARRIER = threading.Barrier(2, timeout=20)


class WaitInput(BaseModel):
    label: str = Field(description="which copy of the tool")
    sleep_s: float = Field(default=0.0, description="how long to sleep")


class WaitOutput(BaseModel):
    label: str = Field(description="echo")


class CheckTogetherTool(Tool[WaitInput]):
    """Passes only if another call reaches the barrier at the same time, i.e. the two run in parallel."""

    name = "check_together"
    version = "1.0.0"
    description_ja = "テスト用: 二つの呼び出しが同時に実行されていることを確かめる。臨床では使わない。"
    description_en = "Test tool: passes only when two calls run at the same time. Never for clinical use."
    Input = WaitInput
    Output = WaitOutput
    requires = Requirements(device="cpu", licence="Apache-2.0")

    def run(self, inp: WaitInput) -> Outcome:
        BARRIER.wait()
        time.sleep(inp.sleep_s)
        return Outcome(output=WaitOutput(label=inp.label), summary_ja=f"{inp.label} 完了")


class CombineTool(Tool[WaitInput]):
    name = "compute_combined"
    version = "1.0.0"
    description_ja = "テスト用: check_together の結果を二つとも読んでまとめる。臨床では使わない。"
    description_en = "Test tool: reads both check_together results of the turn. Never for clinical use."
    Input = WaitInput
    Output = WaitOutput
    requires = Requirements(device="cpu", licence="Apache-2.0")
    depends_on: ClassVar[tuple[str, ...]] = ("check_together",)

    def input_from_context(self, ctx: ToolContext) -> WaitInput | None:
        seen = ctx.results.get("check_together")
        return WaitInput(label=f"after {seen.output['label']}") if seen and seen.output else None

    def run(self, inp: WaitInput) -> Outcome:
        return Outcome(output=WaitOutput(label=inp.label), summary_ja=inp.label)


def _agent(tmp_path: Path, replies: list[ChatReply], timeout_s: float = 600) -> Agent:
    settings = Settings.load(home=tmp_path, tool_timeout_s=timeout_s)
    agent = Agent(settings, backend=ScriptedBackend(replies))
    agent.tools["check_together"] = CheckTogetherTool(settings)
    agent.tools["compute_combined"] = CombineTool(settings)
    return agent


def test_independent_calls_run_in_parallel_and_dependents_after(tmp_path: Path) -> None:
    BARRIER.reset()
    calls = [ToolCall(name="check_together", args={"label": "a"}), ToolCall(name="check_together", args={"label": "b"}),
             ToolCall(name="compute_combined", args={})]
    turn = _agent(tmp_path, [ChatReply(text="", tool_calls=calls), ChatReply(text="")]).ask("?")
    statuses = [(r.tool, r.status) for r in turn.results]
    assert statuses[:2] == [("check_together", ToolStatus.OK)] * 2  # the barrier needed both at once
    assert statuses[2] == ("compute_combined", ToolStatus.OK)
    assert turn.results[2].output == {"label": "after " + turn.results[1].output["label"]}  # type: ignore[index]


def test_a_tool_past_its_timeout_becomes_a_failed_result(tmp_path: Path) -> None:
    BARRIER.reset()
    calls = [ToolCall(name="check_together", args={"label": "a", "sleep_s": 3}),
             ToolCall(name="check_together", args={"label": "b", "sleep_s": 3})]
    turn = _agent(tmp_path, [ChatReply(text="", tool_calls=calls), ChatReply(text="")], timeout_s=0.5).ask("?")
    assert [r.status for r in turn.results] == [ToolStatus.FAILED, ToolStatus.FAILED]
    assert "制限時間" in turn.results[0].summary_ja
    assert turn.verified  # the answer says the tools did not finish, and cites that
