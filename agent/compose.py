"""Compose the Japanese answer: every clinical statement carries [n], and the sources follow.

Sources are numbered from the tool results in order: a result's own citation first, then the documents
it returned (reports). The deterministic composer needs no model; the LLM path builds a prompt from
the same numbered sources and appends the same source list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dokuei.agent import prompts
from dokuei.tools.base import Citation, ToolResult, ToolStatus

NOTE_PREFIX = "※"
SOURCES_HEADER = "出典:"
_REPORT_SNIPPET_CHARS = 160


@dataclass(frozen=True)
class Source:
    number: int
    citation: Citation
    result: ToolResult

    def text_for_check(self) -> str:
        """Everything a statement citing this source may rest on."""
        if self.citation.kind != "tool_result":
            return self.citation.text + " " + self.citation.label_ja
        output = json.dumps(self.result.output, ensure_ascii=False) if self.result.output else ""
        return " ".join([self.result.summary_ja, output, self.citation.text])


def number_sources(results: list[ToolResult]) -> list[Source]:
    sources: list[Source] = []
    seen: set[str] = set()
    for result in results:
        citations = result.citations or [Citation(id=result.tool, kind="tool_result",
                                                  label_ja=f"ツール {result.tool}", text=result.summary_ja)]
        for citation in citations:
            if citation.id in seen and citation.kind == "tool_result":  # the same tool run twice in a turn
                runs = sum(1 for s in sources if s.result.tool == result.tool) + 1
                citation = citation.model_copy(update={"id": f"{citation.id}#{runs}"})
            if citation.id in seen:
                continue
            seen.add(citation.id)
            sources.append(Source(len(sources) + 1, citation, result))
    return sources


def source_list(sources: list[Source]) -> str:
    lines = [SOURCES_HEADER]
    for s in sources:
        status = f"（{_status_ja(s.result.status)}）" if s.citation.kind == "tool_result" else ""
        lines.append(f"[{s.number}] {s.citation.label_ja}{status}")
    return "\n".join(lines)


def _status_ja(status: ToolStatus) -> str:
    return {"ok": "実行済み", "failed": "失敗", "unavailable": "利用不可"}[status.value]


def compose_deterministic(results: list[ToolResult], unmet_ja: list[str]) -> tuple[str, list[Source]]:
    sources = number_sources(results)
    if not results:
        lines = [prompts.CANNOT_ANSWER_JA]
        lines += [f"{NOTE_PREFIX} {note}" for note in unmet_ja]
        return "\n".join(lines), []
    by_result: dict[int, list[Source]] = {}
    for s in sources:
        by_result.setdefault(id(s.result), []).append(s)
    ok = [r for r in results if r.status is ToolStatus.OK]
    lines = ["ツールの結果に基づく回答です。" if ok else "ツールを実行しましたが、結果が得られませんでした。"]
    for result in results:
        own = by_result.get(id(result), [])
        tool_source = next((s for s in own if s.citation.kind == "tool_result"), None)
        marker = f" [{tool_source.number}]" if tool_source else ""
        if result.status is ToolStatus.OK:
            lines.append(f"・{cite_each_sentence(result.summary_ja, marker)}")
        else:
            verb = "実行できませんでした" if result.status is ToolStatus.FAILED else "利用できません"
            lines.append(f"・{result.tool} は{verb}: {cite_each_sentence(result.summary_ja, marker)}")
        for s in own:
            if s.citation.kind == "report":
                lines.append(f"　・{s.citation.label_ja}:「{_snippet(s.citation.text)}」 [{s.number}]")
        for artifact in result.artifacts:
            lines.append(f"{NOTE_PREFIX} {artifact.caption_ja}: {artifact.path}")
    lines += [f"{NOTE_PREFIX} {note}" for note in unmet_ja]
    lines.append(f"{NOTE_PREFIX} {prompts.DISCLAIMER_JA}")
    return "\n".join(lines) + "\n\n" + source_list(sources), sources


_OPEN, _CLOSE = "「『（(", "」』）)"


def split_sentences(text: str) -> list[str]:
    """Split at 。！？ and newlines, but not inside quotes or brackets: a quoted report passage,
    however many sentences it has, is one statement with the citation that follows it."""
    sentences, current, depth = [], [], 0
    for ch in text:
        current.append(ch)
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE and depth:
            depth -= 1
        elif ch == "\n" or (ch in "。！？" and depth == 0):
            sentences.append("".join(current))
            current, depth = [], 0
    if current:
        sentences.append("".join(current))
    return sentences


def cite_each_sentence(text: str, marker: str) -> str:
    """Put the citation marker after every sentence, so each statement carries its evidence."""
    if not marker:
        return text
    cited = []
    for sentence in split_sentences(text):
        body = sentence.rstrip()
        if not body:
            continue
        cited.append(f"{body[:-1]}{marker}{body[-1]}" if body.endswith("。") else f"{body}{marker}")
    return "".join(cited)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _REPORT_SNIPPET_CHARS else flat[:_REPORT_SNIPPET_CHARS] + "…"


def llm_messages(question: str, sources: list[Source], patient_ja: str) -> list[dict[str, str]]:
    """The messages for an LLM composer: system rules, then the question and the numbered sources."""
    blocks = []
    for s in sources:
        if s.citation.kind != "tool_result":
            kind = "レポート" if s.citation.kind == "report" else "基準・文献"
            blocks.append(f"[{s.number}] {kind} {s.citation.label_ja}: {s.citation.text}")
        else:
            blocks.append(f"[{s.number}] {s.result.compact_json()}")
    user = prompts.COMPOSE_USER_JA.format(question=question, patient=patient_ja or "（なし）",
                                          sources="\n".join(blocks) or "（なし）")
    return [{"role": "system", "content": prompts.COMPOSE_SYSTEM_JA}, {"role": "user", "content": user}]


def with_sources(answer_body: str, sources: list[Source]) -> str:
    return answer_body.strip() + ("\n\n" + source_list(sources) if sources else "")
