"""Constrained-decoding planning and the llama.cpp backend, offline.

The llama.cpp server is replaced by a scripted stand-in with the same ``handle_chat_completions``
interface (a dict in, a dict back, or chunks handed to a callback when streaming), so request
bodies, streaming and plan validation are checked without the 1.1 GB model. The plan schema is
built from the real registry and converted to a llama.cpp grammar by xllamacpp itself.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from dokuei.agent.graph import _tool_schema
from dokuei.agent.llm import (
    ChatReply,
    LlamaCppBackend,
    ScriptedBackend,
    busy_cores,
    default_threads,
    parse_plan,
    plan_schema,
    plan_with_llm,
)
from dokuei.settings import Settings
from dokuei.tools.registry import ToolRegistry


class ScriptedLlamaServer:
    """Stands in for ``xllamacpp.Server``: records each request body and answers from a script."""

    def __init__(self, texts: list[str], chunks: list[Any] | None = None) -> None:
        self.texts = list(texts)
        self.chunks = chunks or []
        self.bodies: list[dict[str, Any]] = []

    def handle_chat_completions(self, body: dict[str, Any], callback: Any = None) -> dict[str, Any] | None:
        self.bodies.append(body)
        if body.get("stream"):
            for chunk in self.chunks:
                callback(chunk)
            return None
        return {"choices": [{"message": {"role": "assistant", "content": self.texts.pop(0)}}],
                "usage": {"completion_tokens": 3}, "timings": {"predicted_per_second": 30.0}}


def _tools(settings: Settings) -> list[dict[str, Any]]:
    return [_tool_schema(t) for t in ToolRegistry(settings).tools()]


CHECKUP_INPUT = {"items": [{"item": "HbA1c", "value": 6.8, "unit": "%"},
                           {"item": "空腹時血糖", "value": 130, "unit": "mg/dL"}]}
CHECKUP_CALL = {"t": "judge_checkup", "a": CHECKUP_INPUT}


def test_plan_schema_names_exactly_the_registry_tools_and_converts_to_a_grammar(settings: Settings) -> None:
    xllamacpp = pytest.importorskip("xllamacpp")
    tools = _tools(settings)
    schema = plan_schema(tools)
    branches = schema["properties"]["c"]["items"]["anyOf"]
    assert sorted(b["properties"]["t"]["const"] for b in branches) == sorted(t["function"]["name"] for t in tools)
    assert "$ref" not in json.dumps(schema)  # inlined: a $ref inside a branch would point at nothing
    assert schema["x-guidance"]["whitespace_flexible"] is False  # compact JSON: no whitespace tokens
    assert plan_schema(tools, n_candidates=1, min_calls=1)["properties"]["c"]["minItems"] == 1
    grammar = xllamacpp.json_schema_to_grammar(json.dumps(schema))
    assert "judge_checkup" in grammar


def test_plan_schema_offers_candidate_numbers_only_when_the_router_has_candidates(settings: Settings) -> None:
    tools = _tools(settings)
    first = plan_schema(tools, n_candidates=2)["properties"]["c"]["items"]["anyOf"][0]
    assert first["properties"]["k"] == {"type": "integer", "minimum": 1, "maximum": 2}
    assert all("k" not in b["properties"] for b in plan_schema(tools)["properties"]["c"]["items"]["anyOf"])


def test_parse_plan_takes_a_numbered_router_candidate_and_rejects_a_missing_number(settings: Settings) -> None:
    validators = {t.name: t.Input.model_validate for t in ToolRegistry(settings).tools()}
    candidates = [("judge_checkup", CHECKUP_INPUT, "kw")]
    plan = parse_plan('{"c":[{"k":1}]}', _tools(settings), validators, candidates)
    assert plan.error is None and [(c.name, c.args["items"][1]["value"]) for c in plan.calls] == [
        ("judge_checkup", 130)]
    bad = parse_plan('{"c":[{"k":2}]}', _tools(settings), validators, candidates)
    assert bad.calls == [] and bad.error is not None and "does not exist" in bad.error


def test_parse_plan_still_reads_the_long_form_of_other_servers(settings: Settings) -> None:
    plan = parse_plan(json.dumps({"calls": [{"name": "judge_checkup", "arguments": CHECKUP_INPUT}]}),
                      _tools(settings))
    assert [c.name for c in plan.calls] == ["judge_checkup"]


def test_plan_with_llm_does_not_ask_again_once_every_candidate_ran(settings: Settings) -> None:
    backend = ScriptedBackend([], supports_json_schema=True)
    plan = plan_with_llm(backend, [{"role": "user", "content": "q"}], _tools(settings),
                         candidates=[("judge_checkup", CHECKUP_INPUT, "kw")],
                         done=[("judge_checkup", {**CHECKUP_INPUT, "sex": "M"})])
    assert plan.error is None and plan.calls == [] and backend.seen == []  # no model call at all


def test_parse_plan_accepts_a_registry_call_with_valid_arguments(settings: Settings) -> None:
    registry = ToolRegistry(settings)
    validators = {t.name: t.Input.model_validate for t in registry.tools()}
    plan = parse_plan(json.dumps({"c": [CHECKUP_CALL]}), _tools(settings), validators)
    assert plan.error is None
    assert [(c.name, c.args["items"][0]["value"]) for c in plan.calls] == [("judge_checkup", 6.8)]


@pytest.mark.parametrize(("reply", "why"), [
    ('{"c":[{"t":"prescribe_drug","a":{}}]}', "not in the registry"),
    ('{"c":[{"t":"judge_checkup"', "not JSON"),
    ('{"steps":[]}', "no list of calls"),
    ('{"c":[{"t":"judge_checkup","a":{"items":[]}}]}', "do not validate"),
    ('{"c":["judge_checkup"]}', "malformed call"),
    ('{"c":[{"k":1}]}', "does not exist"),  # no router candidates were offered
])
def test_parse_plan_rejects_malformed_or_unknown_calls(settings: Settings, reply: str, why: str) -> None:
    validators = {t.name: t.Input.model_validate for t in ToolRegistry(settings).tools()}
    plan = parse_plan(reply, _tools(settings), validators)
    assert plan.calls == [] and plan.error is not None and why in plan.error


def test_plan_with_llm_sends_schema_candidates_and_kinds_and_drops_repeats(settings: Settings) -> None:
    tools = _tools(settings)
    backend = ScriptedBackend([ChatReply(text=json.dumps({"c": [CHECKUP_CALL]}))], supports_json_schema=True)
    messages = [{"role": "system", "content": "old system"}, {"role": "user", "content": "質問: HbA1c 6.8%"},
                {"role": "tool", "name": "judge_checkup", "content": "{}"}]
    plan = plan_with_llm(backend, messages, tools, candidates=[("judge_checkup", CHECKUP_INPUT, "kw"),
                                                               ("analyze_ecg", {}, "kw")],
                         attachment_kinds=["ecg_wfdb"], done=[("judge_checkup", CHECKUP_INPUT)])
    assert plan.error is None and plan.calls == []  # the same call already ran this turn: dropped
    sent = backend.seen[0]
    assert sent[0]["role"] == "system" and "JSON" in sent[0]["content"]  # the JSON planner prompt replaces it
    assert all(m["role"] != "tool" for m in sent)  # results go in as user text for the chat template
    assert "ecg_wfdb" in sent[-1]["content"] and '{"k":1} = judge_checkup: {"items": [{"item": "HbA1c", "value": 6.8' \
        in sent[-1]["content"]
    assert backend.schemas[0] == plan_schema(tools, n_candidates=2)  # done: an empty plan is allowed


def test_plan_with_llm_fails_when_the_model_picks_nothing_but_the_router_has_candidates(settings: Settings) -> None:
    backend = ScriptedBackend([ChatReply(text='{"c":[]}')], supports_json_schema=True)
    plan = plan_with_llm(backend, [{"role": "user", "content": "q"}], _tools(settings),
                         candidates=[("judge_checkup", CHECKUP_INPUT, "kw")])
    assert plan.error is not None and "candidates" in plan.error


def test_plan_with_llm_turns_a_backend_exception_into_a_failed_plan(settings: Settings) -> None:
    class Broken(ScriptedBackend):
        def chat(self, *args: Any, **kwargs: Any) -> ChatReply:
            raise ConnectionError("server gone")

    plan = plan_with_llm(Broken([]), [{"role": "user", "content": "q"}], _tools(settings))
    assert plan.error is not None and "server gone" in plan.error


def test_llamacpp_backend_sends_schema_and_parses_plan_from_tools(settings: Settings) -> None:
    server = ScriptedLlamaServer([json.dumps({"c": [CHECKUP_CALL]})])
    backend = LlamaCppBackend(server=server)
    reply = backend.chat([{"role": "user", "content": "HbA1c 6.8%"}], tools=_tools(settings))
    assert [c.name for c in reply.tool_calls] == ["judge_checkup"]
    body = server.bodies[0]
    assert body["response_format"]["type"] == "json_schema" and "tools" not in body
    assert body["stream"] is False and body["temperature"] == 0.0  # plans decode greedily
    assert backend.last_usage["timings"]["predicted_per_second"] == pytest.approx(30.0)


def test_llamacpp_backend_text_reply_and_error_reply() -> None:
    server = ScriptedLlamaServer(["HbA1c は 6.8% です [1]。"])
    backend = LlamaCppBackend(server=server)
    assert backend.chat([{"role": "user", "content": "q"}]).text == "HbA1c は 6.8% です [1]。"
    assert server.bodies[0]["temperature"] == pytest.approx(0.2)  # answers: the card's temperature
    assert "response_format" not in server.bodies[0]

    class ErrorServer(ScriptedLlamaServer):
        def handle_chat_completions(self, body: dict[str, Any], callback: Any = None) -> dict[str, Any]:
            return {"code": 500, "message": "context overflow"}

    with pytest.raises(RuntimeError, match="context overflow"):
        LlamaCppBackend(server=ErrorServer([])).chat([{"role": "user", "content": "q"}])


def test_llamacpp_stream_yields_pieces_in_order_from_single_and_listed_chunks() -> None:
    chunks: list[Any] = [{"choices": [{"delta": {"role": "assistant"}}]},
                         {"choices": [{"delta": {"content": "HbA1c "}}]},
                         [{"choices": [{"delta": {"content": "6.8%"}}]}, {"choices": [{"delta": {"content": " [1]"}}]}],
                         {"choices": [{"delta": {}, "finish_reason": "stop"}]}]
    server = ScriptedLlamaServer([], chunks=chunks)
    pieces = list(LlamaCppBackend(server=server).stream([{"role": "user", "content": "q"}]))
    assert pieces == ["HbA1c ", "6.8% [1]"]
    assert server.bodies[0]["stream"] is True


def test_stop_ends_llamacpp_decoding_between_tokens() -> None:
    """停止 during a completion: the callback returns True at the next token (llama.cpp then stops, as
    xllamacpp's own test shows), and the turn ends as TurnCancelled instead of waiting for the reply."""
    import threading

    from dokuei import cancel

    class Decoding(ScriptedLlamaServer):
        """Streams 100 tokens; the user presses 停止 after the 3rd."""

        def handle_chat_completions(self, body: dict[str, Any], callback: Any = None) -> None:
            self.bodies.append(body)
            for i in range(100):
                if i == 3:
                    stop.set()
                if callback({"choices": [{"delta": {"content": f"t{i} "}}]}):
                    self.sent = i + 1
                    return

    stop = threading.Event()
    server = Decoding([])
    with cancel.cancellable(stop), pytest.raises(cancel.TurnCancelled):
        LlamaCppBackend(server=server).chat([{"role": "user", "content": "q"}])
    assert server.bodies[0]["stream"] is True and server.sent == 4  # stopped at the token after 停止
    stop.clear()
    server = Decoding([])
    with cancel.cancellable(stop), pytest.raises(cancel.TurnCancelled):
        list(LlamaCppBackend(server=server).stream([{"role": "user", "content": "q"}]))
    assert server.sent == 4
    # outside a stoppable turn the reply is one plain completion, as before
    plain = ScriptedLlamaServer(["HbA1c 6.8% [1]"])
    assert LlamaCppBackend(server=plain).chat([{"role": "user", "content": "q"}]).text == "HbA1c 6.8% [1]"
    assert plain.bodies[0]["stream"] is False


def test_llamacpp_stream_raises_what_the_server_raised() -> None:
    class Failing(ScriptedLlamaServer):
        def handle_chat_completions(self, body: dict[str, Any], callback: Any = None) -> None:
            raise ValueError("bad request")

    with pytest.raises(RuntimeError, match="streaming failed"):
        list(LlamaCppBackend(server=Failing([])).stream([{"role": "user", "content": "q"}]))


def test_llamacpp_backend_refuses_an_unverified_model_file(tmp_path: Any) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF not the pinned model")
    from dokuei.llm_install import ModelVerificationError

    with pytest.raises(ModelVerificationError):
        LlamaCppBackend(fake)


def test_default_threads_follow_the_override_and_stay_at_least_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOKUEI_LLM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("DOKUEI_LLM_THREADS")
    monkeypatch.setattr("dokuei.agent.llm.busy_cores", lambda: 64.0)  # far more load than cores
    assert default_threads() == 1
    monkeypatch.setattr("dokuei.agent.llm.busy_cores", lambda: 0.0)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert default_threads() == 4
    monkeypatch.setattr("dokuei.agent.llm.busy_cores", lambda: 1.4)  # one core and a bit in use: 3 left
    assert default_threads() == 3


def test_busy_cores_reads_the_cpu_time_not_the_load_average() -> None:
    """Two samples of /proc/stat: a value between 0 and the core count (the idle test machine reads < 1)."""
    busy = busy_cores(0.05)
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 1e-9


def _planning_agent(settings: Settings, replies: list[ChatReply]) -> Any:
    from tests.test_llm_live import PlanningAgent

    return PlanningAgent(settings, backend=ScriptedBackend(replies, supports_json_schema=True))


QUESTION = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"


def test_a_malformed_llm_plan_hands_the_turn_to_the_router(settings: Settings) -> None:
    """A broken plan on step 1 → the router's judge_checkup call runs instead; with every candidate run,
    step 2 finishes without asking the model, so the next two replies are the two answers."""
    agent = _planning_agent(settings, [ChatReply(text='{"c":[{"t":"prescribe'),  # plan 1: malformed
                                       ChatReply(text=""), ChatReply(text="")])  # answers that fail verification
    turn = agent.ask(QUESTION, patient={"age_years": 55, "sex": "M"})
    assert agent.plan_sources[0].startswith("router: plan is not JSON")
    assert [(r.tool, r.status.value) for r in turn.results] == [("judge_checkup", "ok")]
    assert turn.composer == "deterministic"  # two empty LLM answers: the deterministic composer answers


def test_an_accepted_llm_plan_runs_its_own_call(settings: Settings) -> None:
    agent = _planning_agent(settings, [ChatReply(text=json.dumps({"c": [CHECKUP_CALL]})),
                                       ChatReply(text=""), ChatReply(text="")])
    turn = agent.ask(QUESTION, patient={"age_years": 55, "sex": "M"})
    assert agent.plan_sources == ["llm", "llm"]
    assert [r.tool for r in turn.results] == ["judge_checkup"]  # once: the repeated call did not run again
    assert turn.results[0].input["items"][0] == {"item": "HbA1c", "value": 6.8, "unit": "%",
                                                 "on_treatment": False, "unit_assumed": False}
