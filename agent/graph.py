"""The LangGraph agent: intake → plan → execute → compose → verify → audit.

With an LLM backend the plan node asks the model for tool calls (and loops back after execute until
the model stops calling tools or the step limit is reached); without one the deterministic router
plans once. Compose writes a cited Japanese answer; verify checks every number and finding against
the cited results, asks an LLM to rewrite once, then falls back to the deterministic composer.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from pydantic import ValidationError

from dokuei import cancel
from dokuei.agent import audit, prompts
from dokuei.agent.attachments import classify_attachment
from dokuei.agent.compose import (
    Source,
    cite_the_only_source,
    compose_deterministic,
    llm_messages,
    number_sources,
    with_sources,
)
from dokuei.agent.guard import check_llm_call
from dokuei.agent.llm import ChatBackend, ToolCall, make_backend, plan_with_llm
from dokuei.agent.router import PlannedCall, SemanticRouter, plan_deterministic
from dokuei.agent.session import (
    patient_ja_errors,
    select_attachments,
    starts_new_patient,
    unknown_patient_fields_ja,
)
from dokuei.agent.state import AgentState, ToolCallStep, fresh_turn
from dokuei.agent.verified_stream import DRAFT_SINK, stream_verified
from dokuei.agent.verify import verify_answer
from dokuei.knowledge.records import hash_patient_id, patient_salt
from dokuei.settings import Settings
from dokuei.tools.base import Provenance, Tool, ToolResult, ToolStatus
from dokuei.tools.context import Attachment, CallResults, PatientContext, ToolContext
from dokuei.tools.registry import ToolRegistry
from dokuei.tools.worker import WorkerPool

log = logging.getLogger(__name__)

#: seconds past the tool timeout that a worker gets to kill its tool and answer
WORKER_GRACE_S = 10.0
#: how often a turn waiting for its tools looks whether the user stopped it (s)
CANCEL_POLL_S = 0.2
#: how long a stopped turn waits for its tools to acknowledge (a worker's tool is killed within 0.2 s)
STOP_GRACE_S = 2.0

#: types the checkpointer may rebuild from its msgpack store (LangGraph refuses unknown ones)
CHECKPOINT_TYPES = [*(("dokuei.tools.base", name) for name in
                      ("ToolResult", "ToolStatus", "Provenance", "Artifact", "Citation")),
                    ("dokuei.agent.state", "ToolCallStep")]


def _tool_schema(tool: Tool) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": tool.name,
        "description": f"{tool.description_en} / {tool.description_ja}",
        "parameters": tool.Input.model_json_schema(),
    }}


def _failed(name: str, summary_ja: str, detail: str, status: ToolStatus = ToolStatus.FAILED) -> ToolResult:
    return ToolResult(tool=name, status=status, summary_ja=summary_ja, error_detail=detail,
                      provenance=Provenance(tool=name, tool_version="?"))


def _context(state: AgentState) -> ToolContext:
    """What tools and the planner see: this turn's attachments (see ``session.select_attachments``)."""
    attachments = [Attachment(Path(a["path"]), a["kind"], a.get("detail", ""))  # type: ignore[arg-type]
                   for a in state.get("turn_attachments", [])]
    return ToolContext(question=state.get("question", ""), attachments=attachments,
                       patient=PatientContext(**state.get("patient", {})),
                       results=CallResults.of(state.get("results", [])))


def _patient_ja(patient: dict[str, Any]) -> str:
    labels = {"age_years": "年齢 {} 歳", "sex": "性別 {}", "height_cm": "身長 {} cm", "weight_kg": "体重 {} kg"}
    return "、".join(labels[k].format({"M": "男性", "F": "女性"}.get(v, v))
                    for k, v in patient.items() if v is not None and k in labels)


def _in_daemon_thread(fn: Callable[..., ToolResult], *args: Any) -> Future[ToolResult]:
    """Run ``fn`` in a daemon thread: a tool stuck past its timeout neither blocks the turn nor the exit.

    (A ThreadPoolExecutor's threads are joined when the interpreter exits, so one stuck tool kept
    ``dokuei ask`` alive long after its answer was printed.)
    """
    future: Future[ToolResult] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    # the thread runs in a copy of the caller's context: the turn's stop event (dokuei.cancel) goes along
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(target,), name="tool", daemon=True).start()
    return future


def _wait_unless_stopped(futures: Iterable[Future[ToolResult]], timeout_s: float) -> tuple[set[Any], set[Any]]:
    """``wait(futures, timeout_s)`` that ends early, raising TurnCancelled, when the turn is stopped."""
    end = time.monotonic() + timeout_s
    while True:
        remaining = end - time.monotonic()
        done, not_done = wait(futures, timeout=max(0.0, min(CANCEL_POLL_S, remaining)))
        if not not_done or remaining <= 0:
            return done, not_done
        if cancel.requested():  # a worker kills its tool within a poll: let it, then end the turn
            wait(not_done, timeout=STOP_GRACE_S)
            cancel.check()


def _private_home(home: Path) -> None:
    """$DOKUEI_HOME holds patient data: from now on files are created 0600 and folders 0700 (umask), and
    what already holds session, audit or log data is restricted too (weights and indexes are left alone:
    walking them would be slow and they hold no session data)."""
    os.umask(0o077)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = [home, *(p for p in home.iterdir() if p.is_dir())]
    for sub in ("audit", "logs", "artifacts"):
        if (home / sub).is_dir():
            private += list((home / sub).rglob("*"))
    private += list(home.glob("sessions.sqlite*"))
    for path in private:
        try:
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)
        except OSError:
            log.warning("cannot restrict the permissions of %s", path)


class Agent:
    """Builds and runs the graph. One instance serves many sessions (thread ids)."""

    def __init__(self, settings: Settings | None = None, backend: ChatBackend | None = None,
                 registry: ToolRegistry | None = None, checkpointer: BaseCheckpointSaver[Any] | None = None) -> None:
        self.settings = settings or Settings.load()
        self.backend = backend or make_backend(self.settings)
        self.registry = registry or ToolRegistry(self.settings)
        self.tools = {t.name: t for t in self.registry.tools()}
        self.semantic = SemanticRouter(self.settings.cache_dir)
        _private_home(self.settings.home)
        self.checkpointer = checkpointer if checkpointer is not None else InMemorySaver(
            serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))
        #: LangGraph's own bound on node executions per turn: a safety net behind ``max_steps``
        self.recursion_limit = self.settings.max_steps * 3 + 8
        #: worker processes for heavy tools, started on first use and reused by every session
        self.workers = WorkerPool(self.settings.tool_workers)
        self.graph = self._build()

    # --- nodes -----------------------------------------------------------------------------------
    def intake(self, state: AgentState) -> dict[str, Any]:
        t0 = time.perf_counter()
        question = state.get("question", "")
        new_patient = {k: v for k, v in state.get("new_patient", {}).items() if v is not None}
        if "patient_id" in new_patient:  # only a keyed hash is kept (ask() hashed it already; hashing is idempotent)
            new_patient["patient_id"] = hash_patient_id(str(new_patient["patient_id"]),
                                                        patient_salt(self.settings))
        earlier, patient = state.get("attachments", []), state.get("patient", {})
        if starts_new_patient(question, patient, new_patient):  # nothing of the previous patient carries over
            log.info("new patient context: earlier attachments and patient facts dropped")
            earlier, patient = [], {}
        known = {a["path"]: a for a in earlier}
        added: list[dict[str, str]] = []
        for raw in state.get("new_attachments", []):
            att = classify_attachment(Path(raw).expanduser().resolve())
            entry = {"path": str(att.path), "kind": att.kind, "detail": att.detail}
            known[str(att.path)] = entry
            added.append(entry)
        patient = {**patient, **new_patient}
        PatientContext(**patient)  # validate early: a bad value must not reach a tool
        return {**fresh_turn(), "attachments": list(known.values()), "patient": patient,
                "turn_attachments": select_attachments(question, earlier, added),
                "messages": [HumanMessage(content=question)],
                "timings": {"intake_s": round(time.perf_counter() - t0, 4)}}

    def plan(self, state: AgentState) -> dict[str, Any]:
        t0 = time.perf_counter()
        steps = state.get("steps", 0) + 1
        calls: list[ToolCallStep] = []
        unmet: list[str] = []
        reply = None
        if self.backend.is_llm and self.backend.supports_json_schema:  # constrained decoding (llama.cpp, openai)
            return self._plan_constrained(state, steps, t0)
        if self.backend.is_llm:
            try:
                reply = self.backend.chat(self._plan_messages(state),
                                          tools=[_tool_schema(t) for t in self.tools.values()])
            except Exception:  # a broken model reply must not crash the turn: the router plans instead
                log.exception("LLM planning failed; the deterministic router plans this step")
        if reply is None and (not self.backend.is_llm or steps == 1):
            planned = plan_deterministic(_context(state), list(self.tools.values()), self.semantic)
            calls = list(planned.calls)
            unmet = planned.unmet_ja
        elif reply is not None:  # only the model's own reply counts; the guard checks each call in _run_call
            calls = [ToolCallStep(id=str(c.id or f"call_{uuid.uuid4().hex[:8]}"), name=str(c.name), input=c.args,
                                  reason="LLM", origin="llm") for c in reply.tool_calls]
        timings = {**state.get("timings", {}), f"plan_{steps}_s": round(time.perf_counter() - t0, 4)}
        messages = [AIMessage(content="", tool_calls=[c.message_call() for c in calls])] if calls else []
        return {"plan": calls, "unmet": unmet, "steps": steps, "timings": timings, "messages": messages}

    def _plan_constrained(self, state: AgentState, steps: int, t0: float) -> dict[str, Any]:
        """Plan by a JSON schema built from the registry, with the router's candidates as context.

        A malformed, out-of-registry or invalid plan on the first step hands planning to the router;
        later steps simply stop calling tools. Every accepted call still passes the guard in _run_call.
        """
        ctx = _context(state)
        routed = plan_deterministic(ctx, list(self.tools.values()), self.semantic)
        llm_plan = plan_with_llm(self.backend, self._plan_messages(state),
                                 [_tool_schema(t) for t in self.tools.values()],
                                 candidates=[(c.name, c.input, c.reason) for c in routed.calls],
                                 attachment_kinds=[a.kind for a in ctx.attachments],
                                 validators={n: t.Input.model_validate for n, t in self.tools.items()},
                                 done=[(r.tool, r.input) for r in state.get("results", [])])
        unmet: list[str] = []
        calls: list[ToolCallStep]
        if llm_plan.error is None:
            calls = [ToolCallStep(id=c.id, name=c.name, input=c.args, reason="LLM", origin="llm")
                     for c in llm_plan.calls]
        elif steps == 1:
            log.warning("LLM plan failed (%s); the router plans", llm_plan.error)
            calls = [replace(c, reason="router (LLM plan failed)") for c in routed.calls]
            unmet = routed.unmet_ja
        else:
            calls, unmet = [], list(state.get("unmet", []))
        timings = {**state.get("timings", {}), f"plan_{steps}_s": round(time.perf_counter() - t0, 4)}
        messages = [AIMessage(content="", tool_calls=[c.message_call() for c in calls])] if calls else []
        return {"plan": calls, "unmet": unmet, "steps": steps, "timings": timings, "messages": messages}

    def execute(self, state: AgentState) -> dict[str, Any]:
        t0 = time.perf_counter()
        results = list(state.get("results", []))
        pending = [ToolCallStep.of(c) for c in state.get("plan", [])]
        messages: list[ToolMessage] = []
        while pending:  # waves: a call whose tool depends on others waits for their results
            done_names = {r.tool for r in results}
            ready = [c for c in pending if set(self._depends(c.name)) <= done_names]
            if not ready:
                ready = pending  # unsatisfiable dependencies: run anyway, the tool reports what is missing
            ready = ready[:max(1, self.settings.max_parallel_tools)]
            pending = [c for c in pending if all(c is not r for r in ready)]
            ctx = _context({**state, "results": results})
            cancel.check()
            futures = {_in_daemon_thread(self._run_call, c, ctx): c for c in ready}
            finished, unfinished = _wait_unless_stopped(futures, self.settings.tool_timeout_s)
            cancel.check()  # a worker stopped by the user answers at once; the turn ends here
            in_workers = [f for f in unfinished if self._in_worker(futures[f].name)]
            if in_workers:  # a worker kills its tool at the timeout and answers; give it time to say so
                finished |= wait(in_workers, timeout=WORKER_GRACE_S).done
            for future, call in futures.items():  # each result stays with its own call
                if future in finished:
                    result = future.result()
                else:
                    future.cancel()
                    result = _failed(call.name, f"{call.name} が制限時間 {self.settings.tool_timeout_s:g} 秒"
                                     "以内に終わりませんでした。", "timeout")
                result = result.model_copy(update={"call_id": call.id})
                results.append(result)
                messages.append(ToolMessage(content=result.compact_json(), artifact=result,
                                            tool_call_id=call.id, name=call.name))
        timings = {**state.get("timings", {}), "execute_s": round(time.perf_counter() - t0, 4)}
        return {"results": results, "plan": [], "messages": messages, "timings": timings}

    def compose(self, state: AgentState) -> dict[str, Any]:
        cancel.check()
        t0 = time.perf_counter()
        results = state.get("results", [])
        attempts = state.get("compose_attempts", 0) + 1
        use_llm = self.backend.is_llm and results and attempts <= 2
        if use_llm:
            sources = number_sources(results)
            messages = llm_messages(state.get("question", ""), sources, _patient_ja(state.get("patient", {})))
            if state.get("verify_issues"):
                messages.append({"role": "assistant", "content": state.get("answer", "")})
                messages.append({"role": "user", "content": prompts.REGENERATE_JA.format(
                    issues="; ".join(state["verify_issues"][:5]))})
            sink = DRAFT_SINK.get()  # stop 16 (llm): stream verified sentences when a caller listens
            body = self.backend.chat(messages).text if sink is None else stream_verified(
                self.backend.stream(messages), sources, sink)
            answer, composer = with_sources(cite_the_only_source(body, sources), sources), self.backend.name
        else:
            answer, sources = compose_deterministic(results, state.get("unmet", []))
            composer = "deterministic"
        timings = {**state.get("timings", {}), f"compose_{attempts}_s": round(time.perf_counter() - t0, 4)}
        return {"answer": answer, "sources": [self._source_dict(s) for s in sources], "composer": composer,
                "compose_attempts": attempts, "timings": timings}

    def verify(self, state: AgentState) -> dict[str, Any]:
        sources = number_sources(state.get("results", []))
        report = verify_answer(state.get("answer", ""), sources,
                               trust_notes=state.get("composer") == "deterministic")
        if not report.ok:
            log.warning("answer failed verification (%s): %s", state.get("composer"), report.issues)
        return {"verified": report.ok, "verify_issues": report.issues}

    def audit_node(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        session = (config.get("configurable") or {}).get("thread_id", "?")
        self._audit(session, dict(state), status="ok")
        return {"messages": [AIMessage(content=state.get("answer", ""))]}

    def _audit(self, session_id: str, state: dict[str, Any], status: str, error: str = "") -> None:
        """One bounded record per turn, failed turns included. Writing it never fails the turn.

        Patient data is kept out: ids are keyed hashes already, attachments appear as their file hashes
        (from the tool provenance) and, with ``question_retention = "hash"``, the question and answer as
        sha256 and length only — their text stays in the session database alone.
        """
        full_text = self.settings.question_retention == "full"
        question, answer = state.get("question", ""), state.get("answer", "")
        record = {
            "status": status,
            "session_id": session_id,
            "question": question if full_text else audit.text_digest(question),
            "attachments": [{"kind": a.get("kind"), "path_sha256": audit.text_digest(str(a.get("path")))["sha256"]}
                            for a in state.get("turn_attachments", [])],
            "patient": state.get("patient", {}),
            "tool_calls": [{"tool": r.tool, "status": r.status.value, "input_sha256": r.provenance.input_sha256,
                            "file_sha256": sorted(r.provenance.file_sha256.values()), "result_sha256": r.sha256(),
                            "device": r.provenance.device, "runtime_s": r.provenance.runtime_s}
                           for r in state.get("results", [])],
            "answer": answer if full_text else audit.text_digest(answer),
            "verified": state.get("verified", False),
            "verify_issues": state.get("verify_issues", []) if full_text else len(state.get("verify_issues", [])),
            "backend": self.backend.name,
            "composer": state.get("composer", ""),
            "timings": state.get("timings", {}),
            **({"error": error} if error else {}),
        }
        try:
            audit.append(self.settings.audit_dir, record, self.settings.audit_hmac_key)
        except Exception:  # the audit must never take the turn down; the log says why
            log.exception("audit record could not be written")

    # --- edges -----------------------------------------------------------------------------------
    def _after_plan(self, state: AgentState) -> Literal["execute", "compose"]:
        return "execute" if state.get("plan") else "compose"

    def _after_execute(self, state: AgentState) -> Literal["plan", "compose"]:
        if self.backend.is_llm and state.get("steps", 0) < self.settings.max_steps:
            return "plan"
        return "compose"

    def _after_verify(self, state: AgentState) -> Literal["compose", "audit"]:
        # an LLM answer that fails is rewritten once; compose's third attempt is the deterministic composer
        if state.get("verified") or state.get("composer") == "deterministic":
            return "audit"
        return "compose"

    def _build(self) -> Any:
        g = StateGraph(AgentState)
        g.add_node("intake", self.intake)
        g.add_node("plan", self.plan)
        g.add_node("execute", self.execute)
        g.add_node("compose", self.compose)
        g.add_node("verify", self.verify)
        g.add_node("audit", self.audit_node)
        g.add_edge(START, "intake")
        g.add_edge("intake", "plan")
        g.add_conditional_edges("plan", self._after_plan)
        g.add_conditional_edges("execute", self._after_execute)
        g.add_edge("compose", "verify")
        g.add_conditional_edges("verify", self._after_verify)
        g.add_edge("audit", END)
        return g.compile(checkpointer=self.checkpointer)

    # --- helpers ---------------------------------------------------------------------------------
    def _in_worker(self, name: str) -> bool:
        tool = self.tools.get(name)
        return bool(tool is not None and tool.heavy and self.settings.tool_workers > 0)

    def _depends(self, name: str) -> tuple[str, ...]:
        tool = self.tools.get(name)
        return tool.depends_on if tool else ()

    def _run_call(self, call: ToolCallStep, ctx: ToolContext) -> ToolResult:
        name = call.name
        tool = self.tools.get(name)
        if call.from_llm:  # a model's proposal: checked against the question and attachments
            refusal = check_llm_call(name, call.input, self.tools, ctx)
            if refusal:
                log.warning("LLM tool call refused: %s %s", name, refusal)
                return _failed(str(name), refusal, f"guard: {refusal}")
        if tool is None:
            return _failed(str(name), f"ツール {name} は登録されていません。", "unknown tool")
        raw = call.input
        if tool.depends_on:  # built from this turn's real results only: an LLM must not fill in findings
            built = tool.input_from_context(ctx)
            if built is None:
                return _failed(tool.name, f"{tool.name} に必要な結果（{'、'.join(tool.depends_on)}）が揃っていません。",
                               "dependencies missing")
            raw = built.model_dump(mode="json")
        try:
            if self._in_worker(tool.name):
                return self.workers.run(tool, raw if isinstance(raw, dict) else {}, self.settings.tool_timeout_s)
            return tool(raw if isinstance(raw, dict) else {})
        except Exception as exc:  # a tool's own bug is a failed step, never a crashed turn
            log.exception("tool %s raised", tool.name)
            return _failed(tool.name, f"{tool.name} の実行中にエラーが発生しました。", repr(exc))

    def _plan_messages(self, state: AgentState) -> list[dict[str, Any]]:
        attachments = "\n".join(f"- {a['path']}（{a['kind']}: {a.get('detail', '')}）"
                                for a in state.get("turn_attachments", [])) or "（なし）"
        user = (f"質問: {state.get('question', '')}\n添付:\n{attachments}\n"
                f"患者情報: {_patient_ja(state.get('patient', {})) or '（なし）'}")
        messages: list[dict[str, Any]] = [{"role": "system", "content": prompts.PLAN_SYSTEM_JA},
                                          {"role": "user", "content": user}]
        # this turn's calls and results, as OpenAI-compatible servers require: the assistant message
        # with its tool_calls first, then one tool message per call carrying its tool_call_id
        history = list(state.get("messages", []))
        last_human = max((i for i, m in enumerate(history) if isinstance(m, HumanMessage)), default=-1)
        for m in history[last_human + 1:]:
            if isinstance(m, AIMessage) and m.tool_calls:
                messages.append({"role": "assistant", "content": "", "tool_calls": [
                    {"id": c["id"], "type": "function",
                     "function": {"name": c["name"], "arguments": json.dumps(c["args"], ensure_ascii=False)}}
                    for c in m.tool_calls]})
            elif isinstance(m, ToolMessage):
                messages.append({"role": "tool", "tool_call_id": m.tool_call_id, "name": m.name or "",
                                 "content": m.content if isinstance(m.content, str) else json.dumps(m.content)})
        return messages

    @staticmethod
    def _source_dict(s: Source) -> dict[str, Any]:
        return {"number": s.number, "id": s.citation.id, "kind": s.citation.kind, "label_ja": s.citation.label_ja,
                "text": s.citation.text, "tool": s.result.tool}

    # --- public ----------------------------------------------------------------------------------
    def ask(self, question: str, attachments: list[str] | None = None, patient: dict[str, Any] | None = None,
            session_id: str | None = None) -> TurnResult:
        session_id = session_id or uuid.uuid4().hex
        config = {"configurable": {"thread_id": session_id}, "recursion_limit": self.recursion_limit}
        t0 = time.perf_counter()
        refusal = self._refusal(question, patient or {})
        if refusal:
            self._audit(session_id, {"question": question, "answer": refusal}, status="refused")
            return TurnResult(session_id=session_id, answer_ja=refusal, verified=False, backend=self.backend.name)
        patient = dict(patient or {})
        if patient.get("patient_id"):  # hashed before the graph: its input is checkpointed as given
            patient["patient_id"] = hash_patient_id(str(patient["patient_id"]), patient_salt(self.settings))
        try:
            state = self.graph.invoke({"question": question, "new_attachments": [str(a) for a in attachments or []],
                                       "new_patient": patient}, config)
        except cancel.TurnCancelled:
            log.info("turn stopped by the user in session %s", session_id)
            self._audit(session_id, {"question": question, "answer": cancel.STOPPED_JA}, status="stopped")
            return TurnResult(session_id=session_id, answer_ja=cancel.STOPPED_JA, verified=False,
                              backend=self.backend.name, stopped=True)
        except GraphRecursionError:
            log.warning("step limit reached in session %s", session_id)
            self._audit(session_id, {"question": question, "answer": prompts.STEP_LIMIT_JA}, status="step_limit")
            return TurnResult(session_id=session_id, answer_ja=prompts.STEP_LIMIT_JA, verified=False,
                              backend=self.backend.name, step_limit_hit=True)
        except Exception as exc:  # a failed turn is answered and audited, never a stack trace
            log.exception("turn failed in session %s", session_id)
            answer = TURN_FAILED_JA.format(error=type(exc).__name__)
            self._audit(session_id, {"question": question, "answer": answer}, status="error",
                        error=f"{type(exc).__name__}: {exc}"[:500])
            return TurnResult(session_id=session_id, answer_ja=answer, verified=False, backend=self.backend.name)
        return TurnResult(
            session_id=session_id, answer_ja=state.get("answer", ""), citations=state.get("sources", []),
            results=state.get("results", []), verified=bool(state.get("verified")),
            verify_issues=state.get("verify_issues", []), backend=self.backend.name,
            composer=state.get("composer", ""), attachments=state.get("turn_attachments", []),
            timings={**state.get("timings", {}), "total_s": round(time.perf_counter() - t0, 4)},
        )

    def reset_session(self, session_id: str) -> None:
        """Forget a session on the server: its messages, attachments and patient facts (「新しいセッション」)."""
        self.checkpointer.delete_thread(session_id)

    def _refusal(self, question: str, patient: dict[str, Any]) -> str:
        """A Japanese answer for input refused before any work, or "" when the turn may run."""
        limit = self.settings.max_question_chars
        if len(question) > limit:
            return QUESTION_TOO_LONG_JA.format(chars=len(question), limit=limit)
        try:
            PatientContext.model_validate(patient, strict=False)
            unknown = sorted(set(patient) - set(PatientContext.model_fields))
            if unknown:  # PatientContext ignores extra keys; a misspelt field must not vanish silently
                return unknown_patient_fields_ja(unknown)
        except ValidationError as exc:
            return patient_ja_errors(exc)
        return ""


QUESTION_TOO_LONG_JA = ("質問が長すぎます（{chars:,} 文字、上限 {limit:,} 文字）。"
                        "要点を短くまとめるか、長い文書はファイルとして添付してください。")
TURN_FAILED_JA = ("内部エラーのため回答できませんでした（{error}）。"
                  "この質問は監査記録に残しました。詳細はログを確認してください。")


@dataclass
class TurnResult:
    session_id: str
    answer_ja: str
    verified: bool
    backend: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    verify_issues: list[str] = field(default_factory=list)
    #: the user stopped this turn (UI 停止): nothing was answered
    stopped: bool = False
    composer: str = ""
    attachments: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    step_limit_hit: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "answer_ja": self.answer_ja,
            "citations": self.citations,
            "tool_calls": [{"name": r.tool, "input": r.input, "input_sha256": r.provenance.input_sha256,
                            "status": r.status.value,
                            "output": r.output, "summary_ja": r.summary_ja,
                            "artifacts": [a.model_dump() for a in r.artifacts],
                            "provenance": r.provenance.model_dump(mode="json")} for r in self.results],
            "verified": self.verified,
            "verify_issues": self.verify_issues,
            "session_id": self.session_id,
            "backend": self.backend,
            "composer": self.composer,
            "attachments": self.attachments,
            "timings": self.timings,
        }


def sqlite_checkpointer(path: Path) -> BaseCheckpointSaver[Any]:
    """Sessions survive restarts: conversation memory per session id in one SQLite file."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))


__all__ = ["Agent", "PlannedCall", "ToolCall", "TurnResult", "sqlite_checkpointer"]
