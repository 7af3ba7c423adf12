"""The typed per-turn state: one call type from plan to result, results keyed per call, nothing of a
turn's work carried into the next.

Tools here are the deterministic router's real ones (judge_checkup) and two test tools that echo
their input, so each expected value is the input the test itself sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_type_hints

from pydantic import BaseModel, Field

from dokuei.agent.graph import Agent
from dokuei.agent.llm import ChatReply, ScriptedBackend, ToolCall
from dokuei.agent.router import plan_deterministic
from dokuei.agent.state import ToolCallStep, TurnState, fresh_turn
from dokuei.settings import Settings
from dokuei.tools.base import Outcome, Provenance, Requirements, Tool, ToolResult, ToolStatus
from dokuei.tools.context import CallResults, ToolContext


class EchoInput(BaseModel):
    label: str = Field(description="echoed back")


class EchoOutput(BaseModel):
    label: str = Field(description="the input's label")


class EchoTool(Tool[EchoInput]):
    name = "echo_test_tool"
    version = "1.0.0"
    description_ja = "テスト用: 入力をそのまま返す。臨床では使わない。"
    description_en = "Test tool: echoes its input. Never for clinical use."
    Input = EchoInput
    Output = EchoOutput
    requires = Requirements(device="cpu", licence="Apache-2.0")

    def run(self, inp: EchoInput) -> Outcome:
        return Outcome(output=EchoOutput(label=inp.label), summary_ja=f"{inp.label} を返しました")


def _result(tool: str, call_id: str = "") -> ToolResult:
    return ToolResult(tool=tool, status=ToolStatus.OK, summary_ja=tool, call_id=call_id,
                      provenance=Provenance(tool=tool, tool_version="1"))


def test_fresh_turn_empties_every_per_turn_field() -> None:
    turn = fresh_turn()
    # a field added to TurnState is reset without a hand edit (turn_attachments: intake computes it)
    assert set(get_type_hints(TurnState)) - {"turn_attachments"} <= set(turn)
    assert "turn_attachments" not in turn
    assert turn["plan"] == [] and turn["results"] == [] and turn["answer"] == "" and turn["steps"] == 0
    assert turn["verified"] is False and turn["timings"] == {} and turn["new_patient"] == {}


def test_call_results_keep_two_calls_of_one_tool_apart() -> None:
    results = CallResults.of([_result("echo", "call_1"), _result("echo", "call_2"), _result("other", "call_1")])
    assert [k for k, _ in results.items()] == ["call_1", "call_2", "call_1#2"]  # a repeated id is not lost
    assert len(results.by_tool("echo")) == 2 and results.get("echo") is results.for_call("call_2")
    assert results.get("missing") is None and results.tools() == {"echo", "other"}
    # a plain mapping (tests, third-party callers) is accepted and typed on the way in
    ctx = ToolContext("?", results={"echo": _result("echo")})
    assert isinstance(ctx.results, CallResults) and ctx.results.get("echo") is not None


def test_router_plans_tool_call_steps(tmp_path: Path) -> None:
    from dokuei.agent.router import SemanticRouter
    from dokuei.tools.judge_checkup import JudgeCheckup

    settings = Settings.load(home=tmp_path)
    plan = plan_deterministic(ToolContext("HbA1c 6.8% は？"), [JudgeCheckup(settings)], SemanticRouter(tmp_path))
    assert [type(c) for c in plan.calls] == [ToolCallStep]
    call = plan.calls[0]
    assert (call.id, call.name, call.origin) == ("call_1", "judge_checkup", "router")
    assert call["name"] == "judge_checkup"  # read by key, as the UI's progress table reads the checkpoint


def test_each_result_carries_its_call_id_and_the_next_turn_starts_empty(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path)
    calls = [ToolCall(name="echo_test_tool", args={"label": "a"}, id="call_a"),
             ToolCall(name="echo_test_tool", args={"label": "b"}, id="call_b")]
    backend = ScriptedBackend([ChatReply(text="", tool_calls=calls), ChatReply(text=""), ChatReply(text="")])
    agent = Agent(settings, backend=backend)
    agent.tools["echo_test_tool"] = EchoTool(settings)
    turn = agent.ask("?", session_id="s")
    # both calls of the same tool kept, each with its own call id and its own output
    assert [(r.call_id, r.output) for r in turn.results] == [("call_a", {"label": "a"}), ("call_b", {"label": "b"})]
    history = list(agent.graph.get_state_history({"configurable": {"thread_id": "s"}}))
    planned: list[Any] = next(h.values["plan"] for h in history if h.values.get("plan"))
    assert all(isinstance(c, ToolCallStep) and c.origin == "llm" for c in planned)
    assert [c.id for c in planned] == ["call_a", "call_b"]

    second = agent.ask("明日の天気は？", session_id="s")  # the script has no more tool calls
    assert second.results == []  # nothing of the first turn's work carries over
    state = agent.graph.get_state({"configurable": {"thread_id": "s"}}).values
    assert state["results"] == [] and state["plan"] == [] and state["question"] == "明日の天気は？"
