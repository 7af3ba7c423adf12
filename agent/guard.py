"""Check a tool call that a language model proposed before it runs.

A model's tool input is a proposal, not a fact. It is refused (a failed step with a Japanese reason,
never a crashed turn) when:

- the tool is not registered, the input is not an object, or it does not fit the tool's schema;
- it names a file that is not one of this turn's attachments;
- it repeats a ``<tool_call>`` written inside a tool's output or a report (injected text is data);
- a measured value in it (``value``, ``*_ms`` …) appears neither in the question, the patient context
  nor an earlier result of this turn: the planner must not invent the numbers a tool judges.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from dokuei.tools.base import Tool
from dokuei.tools.context import ToolContext

log = logging.getLogger(__name__)

#: a call written as data, in any wrapper (<tool_call>, <TOOL_CALL>, <function_call>, a code fence, bare JSON,
#: single quotes, full-width letters after NFKC): its "name" pair is what matters
_ECHOED_CALL = re.compile(r"[\"']name[\"']\s*:\s*[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']")
_PATH_KEY = re.compile(r"path|file|dir", re.IGNORECASE)
_MEASURED_KEY = re.compile(r"^(?:value|values)$|_(?:ms|mm|cm|cm2|pct|hu|bpm|kg|mg_dl|mmhg)$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def check_llm_call(name: Any, args: Any, tools: dict[str, Tool], ctx: ToolContext) -> str | None:
    """The Japanese reason to refuse this call, or None when it may run."""
    if not isinstance(name, str) or name not in tools:
        return f"ツール {name!s:.40} は登録されていません。"
    if name in echoed_tool_names(ctx):
        return f"ツール出力やレポートの中に書かれていた {name} の呼び出しは実行しません。"
    if not isinstance(args, dict):
        return f"{name} への入力がオブジェクト形式ではないため実行しません。"
    tool = tools[name]
    if tool.depends_on:  # its input is built from this turn's results; what the model wrote is ignored
        return None
    try:
        validated = tool.Input.model_validate(args)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "(入力全体)" for e in exc.errors()})
        return f"{name} への入力が仕様に合いません（{'、'.join(fields[:5])}）。"
    allowed = {_resolved(a.path) for a in ctx.attachments}
    for path in _paths(validated, args):
        if _resolved(path) not in allowed:
            return f"添付されていないファイル（{Path(path).name}）は読みません。"
    known = _known_numbers(ctx)
    invented = sorted({v for v in _measured_values(args) if v not in known})
    if invented:
        shown = "、".join(f"{v:g}" for v in invented[:5])
        return f"質問・添付・これまでの結果にない数値（{shown}）をツール入力に使わないため実行しません。"
    return None


def echoed_tool_names(ctx: ToolContext) -> set[str]:
    """Tool names of calls (``"name": "<tool>"`` in any wrapper) written inside this turn's tool outputs and reports."""
    names: set[str] = set()
    for result in ctx.results.values():
        texts = [result.summary_ja, *(c.text for c in result.citations), *_strings(result.output)]
        for text in texts:
            flat = unicodedata.normalize("NFKC", text).replace('\\"', '"')
            names.update(_ECHOED_CALL.findall(flat))
    return names


def _resolved(path: str | Path) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):
        return str(path)


def _paths(validated: BaseModel, raw: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, BaseModel):
            for k in type(node).model_fields:
                walk(getattr(node, k), k)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v, key)
        elif isinstance(node, Path) or (isinstance(node, str) and node and _PATH_KEY.search(key)):
            found.append(str(node))

    walk(validated, "")
    walk(raw, "")
    return found


def _measured_values(node: Any, key: str = "") -> list[float]:
    if isinstance(node, dict):
        return [v for k, val in node.items() for v in _measured_values(val, str(k))]
    if isinstance(node, list):
        return [v for val in node for v in _measured_values(val, key)]
    if not _MEASURED_KEY.search(key) or isinstance(node, bool):
        return []
    if isinstance(node, int | float):
        return [round(abs(float(node)), 6)]
    if isinstance(node, str):
        return [round(float(m), 6) for m in _NUMBER.findall(unicodedata.normalize("NFKC", node))]
    return []


def _known_numbers(ctx: ToolContext) -> set[float]:
    texts = [ctx.question, ctx.patient.model_dump_json() if isinstance(ctx.patient, BaseModel) else str(ctx.patient)]
    texts += [r.compact_json() for r in ctx.results.values()]
    flat = unicodedata.normalize("NFKC", " ".join(texts)).replace(",", "")
    return {round(float(m), 6) for m in _NUMBER.findall(flat)}


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []
