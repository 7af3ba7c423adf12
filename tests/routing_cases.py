"""The labelled routing questions (tests/data/routing_questions.json) and how to plan one of them.

Shared by tests/test_routing.py and bench/bench_routing.py, so the test and the benchmark score the
same thing. Attachments are stand-in files of the stated kind: planning only assembles inputs from
paths (and reads an attached report's text), it never opens an image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dokuei.agent.router import Plan, plan_deterministic
from dokuei.tools.base import Tool
from dokuei.tools.context import Attachment, ToolContext

CASES_PATH = Path(__file__).resolve().parent / "data" / "routing_questions.json"

#: a stand-in file (or folder) name per attachment kind
_STAND_INS = {"ct_series": "ct_series_{i}", "nifti": "ct_{i}.nii.gz", "ecg": "ecg_{i}.csv",
              "chest_xray": "cxr_{i}.png", "report_text": "report_{i}.txt"}


@dataclass(frozen=True)
class RoutingCase:
    question: str
    attachments: tuple[str, ...]
    expected: frozenset[str]
    ask_contains: str | None


def load_cases() -> list[RoutingCase]:
    doc = json.loads(CASES_PATH.read_text(encoding="utf-8"))
    return [RoutingCase(c["question"], tuple(c["attachments"]), frozenset(c["expected"]), c.get("ask_contains"))
            for c in doc["cases"]]


class NoSemantic:
    """Keyword routing only: what the planner does when the embedder is missing."""

    def scores(self, question: str, tools: list[Any]) -> dict[str, float]:
        return {}


def context_for(case: RoutingCase, workdir: Path) -> ToolContext:
    workdir.mkdir(parents=True, exist_ok=True)
    attachments = []
    for i, kind in enumerate(case.attachments):
        path = workdir / _STAND_INS[kind].format(i=i)
        if kind == "ct_series":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "report_text":
            path.write_text("所見: 右上葉に空洞を伴う結節影。診断: 肺結核疑い。", encoding="utf-8")
        else:
            path.write_bytes(b"")
        attachments.append(Attachment(path, kind))  # type: ignore[arg-type]
    return ToolContext(case.question, attachments)


def plan_case(case: RoutingCase, tools: list[Tool], semantic: Any, workdir: Path) -> Plan:
    return plan_deterministic(context_for(case, workdir), tools, semantic)


def is_correct(case: RoutingCase, plan: Plan) -> bool:
    planned = frozenset(c.name for c in plan.calls)
    if planned != case.expected:
        return False
    return case.ask_contains is None or any(case.ask_contains in ask for ask in plan.unmet_ja)
