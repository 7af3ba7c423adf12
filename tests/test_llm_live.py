"""The embedded LLM end to end (marker ``live_llm``): skipped unless the verified GGUF is installed.

Install it with ``dokuei llm install`` (or point ``DOKUEI_LLM_GGUF`` at a verified copy). These tests
load the real 1.1 GB model on the threads the machine has free (``DOKUEI_LLM_THREADS`` overrides), so
they take a minute or two; they assert what the answer must be, never how fast it came.

``PlanningAgent`` carries the plan node proposed for ``Agent.plan()`` (constrained decoding, router
candidates as context, router takeover on a failed plan) until it is merged into the graph.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dokuei.agent.graph import Agent, _context, _tool_schema
from dokuei.agent.llm import LlamaCppBackend, OpenAICompatBackend, plan_with_llm
from dokuei.agent.router import plan_deterministic
from dokuei.agent.state import AgentState
from dokuei.llm_install import ModelVerificationError, default_model_path, verify_model
from dokuei.settings import Settings

log = logging.getLogger(__name__)
pytestmark = pytest.mark.live_llm

QUESTION = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"
INSTALL_HINT = "embedded LLM not installed: run `dokuei llm install` (or set DOKUEI_LLM_GGUF to a verified copy)"


def _model_path() -> Path:
    override = os.environ.get("DOKUEI_LLM_GGUF")
    path = Path(override) if override else default_model_path(Settings.load())
    try:
        verify_model(path)
    except (FileNotFoundError, ModelVerificationError):
        pytest.skip(INSTALL_HINT)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PlanningAgent(Agent):
    """Agent whose plan node is the one proposed for graph.py (see the module docstring)."""

    plan_sources: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan_sources = []  # per plan step: "llm" or "router: <why the LLM plan failed>"

    def plan(self, state: AgentState) -> dict[str, Any]:
        if not self.backend.supports_json_schema:
            return super().plan(state)
        steps = state.get("steps", 0) + 1
        ctx = _context(state)
        routed = plan_deterministic(ctx, list(self.tools.values()), self.semantic)
        llm_plan = plan_with_llm(
            self.backend, self._plan_messages(state), [_tool_schema(t) for t in self.tools.values()],
            candidates=[(c.name, c.input, c.reason) for c in routed.calls],
            attachment_kinds=[a.kind for a in ctx.attachments],
            validators={name: tool.Input.model_validate for name, tool in self.tools.items()},
            done=[(r.tool, r.input) for r in state.get("results", [])])
        calls: list[dict[str, Any]]
        if llm_plan.error is None:
            calls = [{"id": c.id, "name": c.name, "input": c.args, "reason": "LLM"} for c in llm_plan.calls]
            unmet: list[str] = []
        elif steps == 1:  # a malformed or out-of-registry plan: the deterministic router takes over
            log.warning("LLM plan failed (%s); using the router", llm_plan.error)
            calls = [{"id": c.id, "name": c.name, "input": c.input, "reason": f"router (LLM plan failed: "
                      f"{llm_plan.error[:80]})"} for c in routed.calls]
            unmet = routed.unmet_ja
        else:  # a later step that fails ends planning: compose from what has run
            calls, unmet = [], state.get("unmet", [])
        from langchain_core.messages import AIMessage

        messages = [AIMessage(content="", tool_calls=[{"id": c["id"], "name": c["name"], "args": c["input"] or {}}
                                                      for c in calls])] if calls else []
        self.plan_sources.append("llm" if llm_plan.error is None else f"router: {llm_plan.error}")
        return {"plan": calls, "unmet": unmet, "steps": steps, "timings": state.get("timings", {}),
                "messages": messages}


@pytest.fixture(scope="module")
def llama_backend() -> Iterator[LlamaCppBackend]:
    path = _model_path()
    yield LlamaCppBackend(path, port=_free_port(), max_tokens=384)


_JA = re.compile(r"[\u3040-\u30ff]")  # hiragana or katakana: Japanese, not Chinese
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _numbers_in(text: str) -> set[str]:
    body = re.sub(r"\[\d+\]", "", text.split("出典")[0])  # citation markers and the source list are not claims
    return {n.rstrip("0").rstrip(".") if "." in n else n for n in _NUMBER.findall(body)}


def _check_answer(turn: Any) -> dict[str, Any]:
    data: dict[str, Any] = turn.to_json()
    answer = data["answer_ja"]
    body = answer.split("出典")[0]  # the source list is appended by the system, not written by the model
    assert _JA.search(body), answer  # Japanese script, not only kanji/latin
    assert re.search(r"\[\d+\]", body), answer  # the model itself cites at least one numbered source
    evidence = " ".join(str(c) for c in data["tool_calls"]) + " " + QUESTION
    missing = {n for n in _numbers_in(answer) if n not in _numbers_in(evidence) and n not in {"1", "2", "3"}}
    assert not missing, f"numbers in the answer not found in tool_calls: {missing}\n{answer}"
    assert data["verified"] or data["composer"] == "deterministic", data["verify_issues"]
    return data


def test_checkup_acceptance_question_through_the_llamacpp_backend(settings: Settings,
                                                                  llama_backend: LlamaCppBackend) -> None:
    agent = PlanningAgent(settings, backend=llama_backend)
    data = _check_answer(agent.ask(QUESTION, patient={"age_years": 55, "sex": "M"}))
    assert data["backend"] == "llamacpp"
    assert [c["name"] for c in data["tool_calls"]][:1] == ["judge_checkup"]
    log.info("plan=%s composer=%s verified=%s answer=%s", agent.plan_sources, data["composer"],
             data["verified"], data["answer_ja"])


def test_streamed_answer_is_the_same_kind_of_text(llama_backend: LlamaCppBackend) -> None:
    pieces = list(llama_backend.stream([{"role": "user", "content": "「要受診」を一文で説明してください。"}]))
    assert len(pieces) > 1 and _JA.search("".join(pieces))  # many pieces: it streamed, not one final chunk


def test_checkup_question_through_the_openai_compatible_server(settings: Settings,
                                                               llama_backend: LlamaCppBackend) -> None:
    """The in-process server also listens on loopback: the ``openai`` backend talks HTTP to it."""
    assert llama_backend.base_url.startswith("http://127.0.0.1:")
    backend = OpenAICompatBackend(f"{llama_backend.base_url}/v1", model="qwen2.5-coder-1.5b-instruct")
    agent = PlanningAgent(settings, backend=backend)
    data = _check_answer(agent.ask(QUESTION, patient={"age_years": 55, "sex": "M"}))
    assert data["backend"] == "openai"
    log.info("plan=%s composer=%s verified=%s", agent.plan_sources, data["composer"], data["verified"])


CRITICAL_QUESTION = "このレポートに重大所見は？ 所見: 右気胸を認めます。縦隔の偏位はありません。"


def test_the_critical_finding_judge_runs_on_the_real_model(settings: Settings,
                                                           llama_backend: LlamaCppBackend) -> None:
    """The report-tool hook with the embedded model: the rules flag 右気胸, the LLM judge reads 所見 + the
    evidence and agrees; the flag and its quoted evidence stand whatever it answers (tested offline)."""
    from dokuei import llm_hook

    agent = Agent(settings)  # deterministic planning and composing: only the judge uses the model
    llm_hook.register(llama_backend.name, lambda messages: llama_backend.chat(list(messages)).text)
    try:
        data = agent.ask(CRITICAL_QUESTION).to_json()
    finally:
        llm_hook.register(llama_backend.name, None)
    (call,) = [c for c in data["tool_calls"] if c["name"] == "detect_critical_findings"]
    (pneumothorax,) = [f for f in call["output"]["findings"] if f["category"] == "pneumothorax"]
    assert call["output"]["method"] == "rules+llamacpp"
    assert pneumothorax["status"] == "present" and pneumothorax["flagged"]
    assert pneumothorax["evidence"] == "右気胸を認めます。"
    assert pneumothorax["judge_status"] == "present", pneumothorax
    assert data["verified"] and "[1]" in data["answer_ja"]
