"""Compose the Japanese answer: every clinical statement carries [n], and the sources follow.

Sources are numbered from the tool results in order: a result's own citation first, then the documents
it returned (reports). The deterministic composer needs no model; the LLM path builds a prompt from
the same numbered sources and appends the same source list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dokuei.agent import prompts
from dokuei.tools.base import Citation, ToolResult, ToolStatus
from dokuei.tools.registry import tool_title_ja

NOTE_PREFIX = "※"
SOURCES_HEADER = "出典:"
_REPORT_SNIPPET_CHARS = 160
DEVICE_DATA_JA = "未検証の機器データ"
_DEVICE_NOTE = re.compile(r"（参考: 記録装置がファイルに保存した値 — (.*?)。本ツールの計測値ではありません）")


def split_device_note(summary: str) -> tuple[str, str]:
    """(summary without the device's own stored values, those values): they are not what the tool measured."""
    match = _DEVICE_NOTE.search(summary)
    if not match:
        return summary, ""
    return (summary[:match.start()] + summary[match.end():]).strip(), match.group(1)


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
                                                  label_ja=tool_title_ja(result.tool), text=result.summary_ja)]
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
    if not results:  # a missing or unreadable file is asked for, not answered with a refusal
        lines = [] if unmet_ja else [prompts.CANNOT_ANSWER_JA]
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
        summary, device = split_device_note(result.summary_ja)
        if result.status is ToolStatus.OK:
            lines.append(f"・{cite_each_sentence(summary, marker)}")
            if device:
                lines.append(f"{NOTE_PREFIX} {DEVICE_DATA_JA}（記録装置がファイルに保存した値で、"
                             f"本ツールの計測値ではありません）: {neutralise_quote(device)}")
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
#: a quote longer than this is no quote: it cannot hide sentences under one citation
_MAX_QUOTE_CHARS = _REPORT_SNIPPET_CHARS + 40


def split_sentences(text: str) -> list[str]:
    """Split at 。！？ and newlines, but not inside quotes or brackets: a quoted report passage,
    however many sentences it has, is one statement with the citation that follows it.

    A quote never spans lines, and a quote left open at the end of its line, or longer than
    ``_MAX_QUOTE_CHARS``, does not count: that line is split at every 。！？."""
    sentences: list[str] = []
    for line in text.splitlines(keepends=True):
        sentences += _split_line(line)
    return sentences


def _split_line(line: str) -> list[str]:
    sentences, current, depth, opened_at = [], [], 0, 0
    for i, ch in enumerate(line):
        current.append(ch)
        if ch in _OPEN:
            opened_at = opened_at if depth else i
            depth += 1
        elif ch in _CLOSE and depth:
            depth -= 1
        elif ch in "。！？" and (depth == 0 or i - opened_at > _MAX_QUOTE_CHARS):
            sentences.append("".join(current))
            current, depth = [], 0
    if depth:  # unclosed: the brackets shielded nothing
        return [s for s in re.split(r"(?<=[。！？])", line) if s]
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


_QUOTE_SAFE = str.maketrans({"「": "〈", "」": "〉", "『": "〈", "』": "〉", "[": "［", "]": "］"})


def neutralise_quote(text: str) -> str:
    """Quoted report text cannot pose as a citation ([3] → ［3］) nor open or close our own quotes."""
    return text.translate(_QUOTE_SAFE)


def _snippet(text: str) -> str:
    flat = neutralise_quote(" ".join(text.split()))
    flat = flat if len(flat) <= _REPORT_SNIPPET_CHARS else flat[:_REPORT_SNIPPET_CHARS] + "…"
    return _balanced(flat)


def _balanced(text: str) -> str:
    """Round brackets left open by a cut (or by the report itself) are closed, so the quote stays one line."""
    depth = 0
    for ch in text:
        depth += 1 if ch in "（(" else -1 if ch in "）)" and depth else 0
    return text + "）" * depth


def llm_messages(question: str, sources: list[Source], patient_ja: str) -> list[dict[str, str]]:
    """The messages for an LLM composer: system rules, then the question and the numbered sources."""
    blocks = []
    for s in sources:
        if s.citation.kind != "tool_result":
            kind = "レポート" if s.citation.kind == "report" else "基準・文献"
            blocks.append(f"[{s.number}] {kind} {s.citation.label_ja}: {neutralise_quote(s.citation.text)}")
        else:
            block = f"[{s.number}] {s.result.compact_json()}"
            output = s.result.output or {}
            if output.get("device_reported") or output.get("device_statements"):
                block += f"\n（device_reported・device_statements は{DEVICE_DATA_JA}: 本ツールの計測値ではありません）"
            blocks.append(block)
    user = prompts.COMPOSE_USER_JA.format(question=question, patient=patient_ja or "（なし）",
                                          sources="\n".join(blocks) or "（なし）")
    return [{"role": "system", "content": prompts.COMPOSE_SYSTEM_JA}, {"role": "user", "content": user}]


_CITATION_MARK = re.compile(r"\[\d+\]")
_SENTENCE_END = "。！？."
_LATE_CITATION = re.compile(r"\s*([。！？])\s*((?:\[\d+\])+)")


def cite_the_only_source(text: str, sources: list[Source]) -> str:
    """With exactly one source, a sentence without [n] can only rest on that source: it gets [1], and the
    verifier then checks its claims against it as for any cited sentence. With several sources nothing
    is added: an uncited sentence stays uncited and fails. (The 1.5B model writes correct but uncited
    sentences such as 「HbA1c 6.8% は D 判定です。」; live runs 12-04.)"""
    if len(sources) != 1:
        return text
    text = _LATE_CITATION.sub(r" \2\1", text)  # 「です。[1]」: the [1] belongs to the sentence before it
    marked = []
    for sentence in split_sentences(text):
        core = sentence.rstrip()
        if core and not _CITATION_MARK.search(core) and not core.startswith(NOTE_PREFIX) \
                and re.search(r"\w", core) and core != SOURCES_HEADER:
            end = core[-1] if core[-1] in _SENTENCE_END else ""
            sentence = f"{core[:-1] if end else core} [{sources[0].number}]{end}{sentence[len(core):]}"
        marked.append(sentence)
    return "".join(marked)


def with_sources(answer_body: str, sources: list[Source]) -> str:
    """The body and the system's source list. Lines of the body that are exact copies of that list's own
    lines (a model that writes 「出典:」「[1] 健診判定（v1.1.0）（実行済み）」 despite the prompt) are dropped:
    they carry nothing the system did not write, and their version numbers are not claims. Any other
    line, a look-alike source line included, stays and is verified."""
    if not sources:
        return answer_body.strip()
    system_lines = set(source_list(sources).splitlines())
    body = "\n".join(line for line in answer_body.strip().splitlines() if line.strip() not in system_lines)
    return body.strip() + "\n\n" + source_list(sources)
