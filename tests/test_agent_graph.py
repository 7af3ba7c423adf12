"""The LangGraph agent, offline and deterministic: the router, a scripted chat model, verification,
memory, audit and the step limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dokuei.agent import audit
from dokuei.agent.graph import Agent, sqlite_checkpointer
from dokuei.agent.llm import ChatReply, ScriptedBackend, ToolCall
from dokuei.settings import Settings
from dokuei.tools.base import ToolStatus

CHECKUP_Q = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"


@pytest.fixture(scope="module")
def det_agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    home = tmp_path_factory.mktemp("home")
    return Agent(Settings.load(home=home))


def test_checkup_question_routes_cites_and_verifies(det_agent: Agent) -> None:
    turn = det_agent.ask(CHECKUP_Q)
    assert [r.tool for r in turn.results] == ["judge_checkup"]
    grades = {i["item"]: i["grade"] for i in turn.results[0].output["items"]}  # type: ignore[index]
    assert grades == {"hba1c": "D", "fpg": "D"}
    assert turn.verified, turn.verify_issues
    assert "[1]" in turn.answer_ja and "出典:" in turn.answer_ja
    assert turn.citations[0]["id"] == "judge_checkup"
    body = turn.answer_ja.split("出典:")[0]
    assert "6.8" in body and "130" in body and "D 判定" in body


def test_unanswerable_question_says_so_without_clinical_content(det_agent: Agent) -> None:
    turn = det_agent.ask("明日の天気は？")
    assert turn.results == []
    assert "答えられません" in turn.answer_ja
    assert turn.citations == [] and turn.verified
    assert not any(ch.isdigit() for ch in turn.answer_ja)


def test_keyword_without_values_explains_what_is_missing(det_agent: Agent) -> None:
    turn = det_agent.ask("健診の結果は要受診ですか？")
    assert turn.results == []
    # the tool fits but the values are missing: the answer asks for them instead of refusing
    assert "答えられません" not in turn.answer_ja
    assert "judge_checkup" in turn.answer_ja and "項目名・値・単位" in turn.answer_ja


def test_unreadable_attachment_is_named_not_skipped(det_agent: Agent, tmp_path: Path) -> None:
    empty = tmp_path / "空.dcm"
    empty.write_bytes(b"")
    turn = det_agent.ask("この心電図の所見は？", attachments=[str(empty)])
    assert turn.results == []
    assert "「空.dcm」は使えません: 空のファイルです" in turn.answer_ja
    assert "心電図ファイル" in turn.answer_ja and "添付してください" in turn.answer_ja


def test_scripted_llm_tool_calls_run_and_the_answer_is_verified(settings: Settings) -> None:
    call = ToolCall(name="judge_checkup", args={"items": [{"item": "hba1c", "value": 6.8, "unit": "%"}]})
    backend = ScriptedBackend([
        ChatReply(text="", tool_calls=[call]),          # plan: call the tool
        ChatReply(text=""),                              # plan again: no more tools
        ChatReply(text="HbA1c 6.8 % は D 判定（要医療・要精密検査）です [1]。"),  # compose
    ])
    turn = Agent(settings, backend=backend).ask("HbA1c 6.8% は？")
    assert turn.results[0].status is ToolStatus.OK
    assert turn.verified and turn.composer == "scripted"
    assert turn.answer_ja.startswith("HbA1c 6.8 % は D 判定")
    # the model was shown the tool's schema and then the tool's compact JSON result
    assert any(m.get("role") == "tool" for m in backend.seen[1])


def test_invented_number_is_regenerated_then_falls_back_to_deterministic(settings: Settings) -> None:
    call = ToolCall(name="judge_checkup", args={"items": [{"item": "hba1c", "value": 6.8, "unit": "%"}]})
    backend = ScriptedBackend([
        ChatReply(text="", tool_calls=[call]),
        ChatReply(text=""),
        ChatReply(text="HbA1c は 9.9 % で糖尿病です [1]。"),   # 9.9 and 糖尿病 are not in the result
        ChatReply(text="HbA1c は 7.2 % です [1]。"),            # still invented after the retry
    ])
    turn = Agent(settings, backend=backend).ask("HbA1c 6.8% は？")
    assert turn.composer == "deterministic"
    assert turn.verified
    assert "9.9" not in turn.answer_ja and "7.2" not in turn.answer_ja and "6.8" in turn.answer_ja


def test_llm_calling_an_unknown_tool_gets_a_failed_result(settings: Settings) -> None:
    backend = ScriptedBackend([ChatReply(text="", tool_calls=[ToolCall(name="read_minds", args={})]),
                               ChatReply(text="")])
    turn = Agent(settings, backend=backend).ask("?")
    assert turn.results[0].status is ToolStatus.FAILED
    assert "登録されていません" in turn.results[0].summary_ja


def test_max_steps_stops_a_tool_calling_loop_and_still_answers(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, max_steps=2)
    call = ToolCall(name="judge_checkup", args={"items": [{"item": "hba1c", "value": 6.8, "unit": "%"}]})
    backend = ScriptedBackend([ChatReply(text="", tool_calls=[call]) for _ in range(50)])
    turn = Agent(settings, backend=backend).ask("HbA1c 6.8% は？")
    assert len(turn.results) == 2  # two plan/execute rounds, then compose
    assert turn.verified and turn.composer == "deterministic"  # the model's empty answer was replaced


def test_graph_recursion_limit_gives_a_polite_answer(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, max_steps=50)
    call = ToolCall(name="judge_checkup", args={"items": [{"item": "hba1c", "value": 6.8, "unit": "%"}]})
    agent = Agent(settings, backend=ScriptedBackend([ChatReply(text="", tool_calls=[call]) for _ in range(50)]))
    agent.recursion_limit = 6
    turn = agent.ask("HbA1c 6.8% は？")
    assert turn.step_limit_hit
    assert "上限" in turn.answer_ja


def test_session_memory_persists_patient_context_across_turns(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path)
    checkpointer = sqlite_checkpointer(settings.checkpoint_db)
    agent = Agent(settings, checkpointer=checkpointer)
    agent.ask("HbA1c 6.8% は？", patient={"sex": "F", "age_years": 60}, session_id="s1")
    turn = agent.ask("ヘモグロビン 11.5 g/dL はどうですか？", session_id="s1")
    item = turn.results[0].output["items"][0]  # type: ignore[index]
    # 11.5 g/dL is C for a woman (11.1–12.0) and D for a man (≤ 12.0): the remembered sex decided
    assert item["grade"] == "C"
    # a new Agent on the same SQLite file sees the same conversation
    again = Agent(settings, checkpointer=sqlite_checkpointer(settings.checkpoint_db))
    state = again.graph.get_state({"configurable": {"thread_id": "s1"}})
    assert state.values["patient"]["sex"] == "F"
    assert len([m for m in state.values["messages"] if m.type == "human"]) == 2


def test_every_turn_is_audited_in_a_hash_chain(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path)
    agent = Agent(settings)
    agent.ask(CHECKUP_Q, session_id="audit-test")
    agent.ask("明日の天気は？", session_id="audit-test")
    files = list(settings.audit_dir.glob("audit-*.jsonl"))
    assert len(files) == 1
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    # question_retention "hash" (the default): the audit keeps the question's sha256, not its text
    assert [r["question"]["sha256"] for r in records] == [audit.text_digest(q)["sha256"]
                                                          for q in (CHECKUP_Q, "明日の天気は？")]
    assert CHECKUP_Q not in files[0].read_text()
    assert [r["seq"] for r in records] == [1, 2]
    assert records[0]["tool_calls"][0]["tool"] == "judge_checkup"
    assert len(records[0]["tool_calls"][0]["result_sha256"]) == 64
    assert audit.verify_chain(files[0]) == (True, None)
    tampered = files[0].read_text().replace('"status": "ok"', '"status": "failed"', 1)
    files[0].write_text(tampered)
    assert audit.verify_chain(files[0]) == (False, 1)
