"""The graph's state. Tool results travel as ``ToolResult`` objects, never as strings parsed back."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from dokuei.tools.base import ToolResult


class AgentState(TypedDict, total=False):
    # persisted across the turns of one session
    messages: Annotated[list[AnyMessage], add_messages]
    attachments: list[dict[str, str]]  # {"path", "kind", "detail"}, accumulated over the session
    patient: dict[str, Any]  # PatientContext fields, merged over the session; patient_id as a keyed hash
    # this turn
    question: str
    new_attachments: list[str]
    new_patient: dict[str, Any]
    turn_attachments: list[dict[str, str]]  # what this turn's tools may read: new ones + those referred to
    plan: list[dict[str, Any]]  # {"id", "name", "input", "reason"}
    unmet: list[str]
    results: list[ToolResult]
    answer: str
    sources: list[dict[str, Any]]  # {"number", "id", "kind", "label_ja", "text", "tool"}
    composer: str
    compose_attempts: int
    verified: bool
    verify_issues: list[str]
    steps: int
    timings: dict[str, float]


def fresh_turn() -> dict[str, Any]:
    """The per-turn fields at the start of a turn: nothing of the previous turn's work carries over.

    Kept beside the TypedDict so that a field added to the turn part above is reset in one place.
    """
    return {"plan": [], "unmet": [], "results": [], "answer": "", "sources": [], "composer": "",
            "compose_attempts": 0, "verified": False, "verify_issues": [], "steps": 0,
            "new_attachments": [], "new_patient": {}, "timings": {}}
