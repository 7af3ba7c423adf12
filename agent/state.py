"""The graph's state, typed: what a session keeps, what one turn computes, and the one tool-call type.

Tool results travel as ``ToolResult`` objects, never as strings parsed back. A planned call is a
:class:`ToolCallStep` from the planner (router or LLM) through execution; the LLM backend's own
``ToolCall`` is converted at the boundary, and each result carries the id of the call it answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict, get_type_hints

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from dokuei.tools.base import ToolResult


@dataclass(frozen=True)
class ToolCallStep:
    """One tool call of a turn's plan: the only call type between planning and execution."""

    id: str
    name: str
    #: the tool's input as JSON; None when it is built at execution from the results it depends on.
    #: An LLM may propose anything here (a list, a string): the guard refuses it, never the planner.
    input: Any = None
    #: why the call was planned (router: the keywords and attachments that decided; LLM: "LLM")
    reason: str = ""
    origin: Literal["router", "llm"] = "router"

    @classmethod
    def of(cls, entry: ToolCallStep | Mapping[str, Any]) -> ToolCallStep:
        """A step from a step or from the ``{"id", "name", "input", "reason"}`` dicts that plan nodes wrote
        before this type (a subclassed plan node may still); reason "LLM" marks a model's call."""
        if isinstance(entry, ToolCallStep):
            return entry
        reason = str(entry.get("reason", ""))
        return cls(id=str(entry.get("id", "")), name=str(entry.get("name", "")), input=entry.get("input"),
                   reason=reason, origin="llm" if entry.get("origin", "") == "llm" or reason == "LLM" else "router")

    @property
    def from_llm(self) -> bool:
        return self.origin == "llm"

    def message_call(self) -> dict[str, Any]:
        """The entry of an ``AIMessage.tool_calls`` list for this call (non-object input sent as {})."""
        return {"id": self.id, "name": self.name, "args": self.input if isinstance(self.input, dict) else {}}

    def __getitem__(self, key: str) -> Any:
        """Read access by key, for checkpoint readers that index plan entries (the UI's progress table)."""
        if key not in {"id", "name", "input", "reason", "origin"}:
            raise KeyError(key)
        return getattr(self, key)


class SessionState(TypedDict, total=False):
    """Persisted across the turns of one session (until a new patient or a session reset)."""

    messages: Annotated[list[AnyMessage], add_messages]
    attachments: list[dict[str, str]]  # {"path", "kind", "detail"}, accumulated over the session
    patient: dict[str, Any]  # PatientContext fields, merged over the session; patient_id as a keyed hash


class TurnInput(TypedDict, total=False):
    """What ``Agent.ask`` hands the graph for one turn."""

    question: str
    new_attachments: list[str]
    new_patient: dict[str, Any]


class TurnState(TypedDict, total=False):
    """What one turn computes; ``intake`` starts every field from :func:`fresh_turn`."""

    turn_attachments: list[dict[str, str]]  # what this turn's tools may read: new ones + those referred to
    plan: list[ToolCallStep]  # the calls the next execute runs
    unmet: list[str]
    results: list[ToolResult]  # in the order they finished; each carries its ``call_id``
    answer: str
    sources: list[dict[str, Any]]  # {"number", "id", "kind", "label_ja", "text", "tool"}
    composer: str
    compose_attempts: int
    verified: bool
    verify_issues: list[str]
    steps: int
    timings: dict[str, float]


class AgentState(SessionState, TurnInput, TurnState, total=False):
    """The graph's channels: the session part, this turn's input and this turn's work."""


#: per-turn fields that intake computes itself every turn (never carried, never defaulted)
SET_BY_INTAKE = frozenset({"turn_attachments"})
#: the start value of every per-turn field; derived from TurnState so that a field added there is reset
_TURN_DEFAULTS: dict[type, Any] = {str: "", int: 0, bool: False}


def fresh_turn() -> dict[str, Any]:
    """The per-turn fields at the start of a turn: nothing of the previous turn's work carries over.

    Every field of :class:`TurnState` gets its empty value (lists, dicts, "", 0, False), and the
    previous turn's inputs are cleared; ``turn_attachments`` is left to intake, which computes it.
    """
    empty: dict[str, Any] = {}
    for name, hint in get_type_hints(TurnState).items():
        if name in SET_BY_INTAKE:
            continue
        origin = getattr(hint, "__origin__", hint)
        empty[name] = _TURN_DEFAULTS[origin] if origin in _TURN_DEFAULTS else origin()
    return {**empty, "new_attachments": [], "new_patient": {}}


__all__ = ["AgentState", "SessionState", "ToolCallStep", "TurnInput", "TurnState", "fresh_turn"]
