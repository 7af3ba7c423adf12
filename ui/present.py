"""How a ``TurnResult`` is shown to a clinician: short Japanese, escaped markdown, no server paths,
the tool trace as a table. Pure functions, so they are tested without a browser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dokuei.field_labels import field_label_ja, path_label_ja, unit_of
from dokuei.studies import Study
from dokuei.tools.registry import tool_title_ja

STATUS_JA = {"ok": "完了", "failed": "失敗", "skipped": "実行せず", "unavailable": "利用不可", "error": "失敗"}
TRACE_HEADERS = ["ツール", "状態", "時間 (秒)", "主な値"]
STUDY_HEADERS = ["検査日", "役割", "モダリティ", "説明", "シリーズ数", "スライス数", "セグメンテーション", "ID"]

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}#+!|~<>])")
_CITATION = re.compile(r"\\\[(\d+)\\\]")
_ABS_PATH = re.compile(r"(?<![\w.])(?:/[\w.\-+@%]+){2,}/?")


def escape_markdown(text: str) -> str:
    """Tool text shown literally: ``~`` is not strikethrough, ``*`` not emphasis. [n] citations stay."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("[", r"\[").replace("]", r"\]")
    return _CITATION.sub(r"[\1]", escaped)


def scrub_paths(text: str) -> str:
    """Server file paths never reach the chat: each becomes its file name."""
    return _ABS_PATH.sub(lambda m: f"「{Path(m.group(0).rstrip('/')).name}」", text)


def clinician_text(text: str) -> str:
    return escape_markdown(scrub_paths(text))


def _key_values(output: dict[str, Any] | None, limit: int = 4) -> str:
    """The first few scalar outputs, labelled in Japanese with the unit kept: 「骨格筋指数（SMI）=34.63 cm²/m²」."""
    if not output:
        return ""
    pairs = [f"{field_label_ja(k)}={v:g}{_unit(k)}" if isinstance(v, float) else f"{field_label_ja(k)}={v}{_unit(k)}"
             for k, v in output.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
             and len(str(v)) <= 40]
    return scrub_paths("、".join(pairs[:limit]))


def _unit(key: str) -> str:
    unit = unit_of(key)
    return f" {unit[1]}" if unit else ""


def trace_rows(turn: Any) -> list[list[Any]]:
    """One row per tool call: [ツール, 状態, 時間, 主な値]."""
    rows = []
    for result in turn.results:
        status = getattr(result.status, "value", str(result.status))
        rows.append([tool_title_ja(result.tool), STATUS_JA.get(status, status), round(result.provenance.runtime_s, 2),
                     _key_values(result.output)])
    return rows


def planned_rows(tools: list[str], state: str) -> list[list[Any]]:
    return [[tool_title_ja(name), state, "", ""] for name in tools]


def raw_trace_json(turn: Any) -> str:
    return json.dumps(turn.to_json()["tool_calls"], ensure_ascii=False, indent=2, default=str)


def record_line(turn_id: str) -> str:
    """Below the sources: the stored turn's id, which `dokuei export TURN_ID` (hospital IT) takes."""
    return f"\n\n記録 ID: `{turn_id}`（この回答の記録。書き出し・送信に使います）" if turn_id else ""


def sources_markdown(citations: list[dict[str, Any]]) -> str:
    if not citations:
        return "（出典なし）"
    lines = []
    for c in citations:
        text = " ".join(str(c.get("text", "")).split())
        label = str(c["label_ja"])
        shown = "" if text and text in " ".join(label.split()) else f"  \n{clinician_text(text[:400])}"
        lines.append(f"**[{c['number']}]** {clinician_text(label)}{shown}")  # a reference is not printed twice
    return "\n\n".join(lines)


def answer_markdown(turn: Any, conflict_ja: str, problems: list[str]) -> str:
    parts = []
    if conflict_ja:
        parts.append(f"**⚠ {conflict_ja}**")
    parts += [f"⚠ {clinician_text(p)}" for p in problems]
    parts.append(clinician_text(turn.answer_ja))
    if not turn.verified:
        parts.append("（注意: 回答の一部が根拠の検証に通りませんでした）")
    return "\n\n".join(parts)


def gallery_items(turn: Any) -> list[tuple[str, str]]:
    """Images the tools drew (overlays, ECG plots), with their Japanese captions."""
    return [(a.path, a.caption_ja) for r in turn.results for a in r.artifacts
            if a.kind == "image" and Path(a.path).is_file()]


def study_rows(studies: list[Study]) -> list[list[Any]]:
    return [s.summary_row() for s in studies]


SOURCE_TABLE_HEADERS = ["項目", "値"]
_MAX_SOURCE_ROWS = 300


def source_choices(citations: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The [n] list a clinician opens a source from: 「[1] 体組成計測（L3）」."""
    return [(f"[{c['number']}] {scrub_paths(str(c.get('label_ja', '')))}", int(c["number"])) for c in citations]


def _flatten(value: Any, prefix: str, rows: list[list[Any]]) -> None:
    """Nested tool output as (path, value) rows: dicts by key, lists by position (nodes[1].short_axis_mm)."""
    if len(rows) >= _MAX_SOURCE_ROWS:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), rows)
    elif isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{i}]", rows)
    else:
        shown = "、".join(map(str, value)) if isinstance(value, list) else value
        shown = f"{shown:g}" if isinstance(shown, float) else shown
        rows.append([prefix, scrub_paths(str(shown)) if shown is not None else "—"])


def output_rows(output: dict[str, Any] | None) -> list[list[Any]]:
    """A tool output as a readable 項目/値 table: Japanese labels (「肝臓 体積」), the unit beside the value,
    server paths scrubbed."""
    rows: list[list[Any]] = []
    _flatten(output or {}, "", rows)
    return [[path_label_ja(output or {}, path), f"{value}{_unit(path.rpartition('.')[2])}" if value != "—"
             else value] for path, value in rows]


def source_detail(turn: Any, number: int | None,
                  full_report: Any = None) -> tuple[str, list[list[Any]], list[tuple[str, str]]]:
    """What [n] opens: the full passage or report text, the tool's output as a table, its images.
    ``full_report(report_id) -> str | None`` reads the archived report when the source is one."""
    citation = next((c for c in (getattr(turn, "citations", None) or []) if c.get("number") == number), None)
    if citation is None:
        return "出典を選んでください。", [], []
    head = f"**[{citation['number']}] {clinician_text(str(citation.get('label_ja', '')))}**"
    text = str(citation.get("text", ""))
    if citation.get("kind") == "report" and full_report is not None:
        report_id = str(citation.get("id", "")).removeprefix("report:")
        text = full_report(report_id) or text
    result = next((r for r in turn.results if r.tool == citation.get("tool")), None)
    if result is None:
        return f"{head}\n\n{clinician_text(text)}", [], []
    body = clinician_text(text or result.summary_ja)
    images = [(a.path, a.caption_ja) for a in result.artifacts if a.kind == "image" and Path(a.path).is_file()]
    rows = output_rows(result.output) if citation.get("kind") == "tool_result" else []
    return f"{head}\n\n{body}", rows, images
