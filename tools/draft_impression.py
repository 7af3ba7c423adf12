"""Tool: draft the 診断 (impression) from the 所見 (findings), each sentence cited.

Deterministic path (:mod:`dokuei.reports.impression`): the most similar archived reports (BM25 over the
archive, no embedding needed) are exemplars whose impression wording is adopted when it fits; otherwise
the findings sentence itself is condensed. The report being drafted is never its own exemplar. Without an
archive index the draft is extractive, and the result says so.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar

from pydantic import BaseModel, Field

from dokuei.reports.impression import Complete, Draft, Exemplar, draft_impression, draft_with_llm
from dokuei.reports.text import ReportTextError
from dokuei.settings import Settings
from dokuei.tools.base import Citation, Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

log = logging.getLogger(__name__)

_AFTER_COLON = re.compile(r"[:：]\s*(.+)$", re.S)


def _configured_llm() -> Complete | None:
    """The LLM the agent registered (a real backend is configured), else None: the retrieval path."""
    from dokuei import llm_hook

    registered = llm_hook.current()
    return registered.generate if registered is not None else None


class DraftImpressionInput(BaseModel):
    findings: str = Field(min_length=1, max_length=20000, description="所見（下書きの元になる本文）")
    report_id: str | None = Field(default=None, description="このレポートの ID（用例から除外するため、任意）")
    k: int = Field(default=5, ge=0, le=20, description="用例にする類似レポート数（件、0 なら用例なし）")


class DraftLine(BaseModel):
    text: str = Field(description="下書きの文")
    findings_sentence: str = Field(description="根拠の所見の文（原文）")
    findings_index: int = Field(description="所見の何文目か（0 始まり）")
    exemplar_id: str | None = Field(description="言い回しを採用した過去レポート ID（なければ null）")
    exemplar_phrase: str | None = Field(description="採用した過去レポートの診断の句")


class DraftImpressionOutput(BaseModel):
    draft: str = Field(description="診断欄の下書き（読影医の確認が必要）")
    lines: list[DraftLine] = Field(description="文ごとの根拠")
    mode: str = Field(description="consensus: 類似レポートの診断欄が一致し、その代表例を所見と照合して採用 / "
                                  "retrieval: 類似レポートを用例に使用 / extractive: 所見の文だけから / "
                                  "llm: 類似レポートを文脈に LLM が下書き（所見と照合済み）")
    exemplars_used: list[str] = Field(description="言い回しを採用したレポート ID")
    exemplars_considered: list[str] = Field(description="用例候補にしたレポート ID（除外したものを除く）")
    excluded_exemplars: list[str] = Field(description="同一レポート（同 ID・ほぼ同文）のため除外した ID")
    notes_ja: list[str] = Field(description="注意")


class DraftImpression(Tool[DraftImpressionInput]):
    name: ClassVar[str] = "draft_impression"
    title_ja: ClassVar[str] = "診断欄の下書き"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "読影レポートの所見から診断欄（インプレッション）の下書きを作ります。各文に根拠の所見の文、または言い回しを"
        "借りた類似の過去レポートを付けます（LLM なしでは類似レポートの言い回しを流用、索引がなければ所見の抽出）。"
        "重大所見の判定や過去レポートの検索には使いません。"
    )
    description_en: ClassVar[str] = (
        "Draft the impression of a radiology report from its findings; every sentence cites the findings "
        "sentence or the similar archived report whose wording it adapts (retrieval-based without an LLM, "
        "extractive without an archive). Not for critical-finding screening or archive search."
    )
    Input: ClassVar[type[BaseModel]] = DraftImpressionInput
    Output: ClassVar[type[BaseModel]] = DraftImpressionOutput
    requires: ClassVar[Requirements] = Requirements(
        device="cpu", licence="Apache-2.0 (code); exemplar reports keep their source licence")
    keywords_ja: ClassVar[tuple[str, ...]] = (
        "下書き", "診断欄", "インプレッション", "診断を書いて", "所見から診断", "impression", "まとめて",
    )
    attachment_kinds: ClassVar[tuple[str, ...]] = ("report_text",)

    def __init__(self, settings: Settings | None = None, llm: Complete | None = None) -> None:
        super().__init__(settings)
        #: the LLM slot: a messages → text function, set when an LLM backend is configured; the retrieved
        #: exemplars become few-shot context and the draft is checked against the findings
        self.llm = llm

    def run(self, inp: DraftImpressionInput) -> Outcome:
        exemplars, notes = self._exemplars(inp) if inp.k else ([], ["用例数 k=0 のため類似レポートを使っていません。"])
        llm = self.llm or _configured_llm()
        try:
            if llm is not None:
                draft = draft_with_llm(inp.findings, exemplars, inp.report_id, llm)
            else:
                draft = draft_impression(inp.findings, exemplars, inp.report_id)
        except ReportTextError as exc:
            raise ToolInputError(exc.message_ja, str(exc)) from exc
        out = _output(draft, [e.report_id for e in exemplars], notes)
        by_id = {e.report_id: e for e in exemplars}
        cited = draft.exemplars_used if draft.mode != "llm" else [
            e.report_id for e in exemplars if e.report_id not in draft.excluded_exemplars]
        citations = [Citation(id=f"report:{rid}", kind="report", label_ja=f"用例レポート {rid}",
                              text=by_id[rid].impression) for rid in cited]
        return Outcome(output=out, summary_ja=_summary(out), citations=citations)

    def _exemplars(self, inp: DraftImpressionInput) -> tuple[list[Exemplar], list[str]]:
        from dokuei.knowledge.location import indexed_report_count

        if indexed_report_count(self.settings) == 0:
            return [], ["レポート索引がないため、類似レポートを用例にできませんでした。"]
        try:
            from dokuei.knowledge.archive import ReportArchive

            archive = ReportArchive(self.settings)
            hits = archive.search(inp.findings, k=inp.k + 3, mode="lexical", collapse=False)
            records = archive.store.reports([h.report_id for h in hits])
        except Exception as exc:  # the archive is optional here: draft without it and say so
            log.warning("draft_impression: archive lookup failed: %s", exc)
            return [], ["レポート索引を読めなかったため、類似レポートを用例にできませんでした。"]
        exemplars = [Exemplar(r.report_id, r.findings, r.diagnosis) for h in hits
                     if (r := records.get(h.report_id)) is not None and r.diagnosis.strip()]
        return exemplars[: inp.k + 3], []

    def input_from_context(self, ctx: ToolContext) -> DraftImpressionInput | None:
        text = ctx.attached_report_text()
        if text is not None:
            return DraftImpressionInput(findings=text) if text.strip() else None
        m = _AFTER_COLON.search(ctx.question)
        if m is None or not m.group(1).strip():
            return None
        return DraftImpressionInput(findings=m.group(1).strip()[:20000])


def _output(draft: Draft, considered: list[str], notes: list[str]) -> DraftImpressionOutput:
    return DraftImpressionOutput(
        draft=draft.text, mode=draft.mode, exemplars_used=draft.exemplars_used,
        exemplars_considered=[rid for rid in considered if rid not in draft.excluded_exemplars],
        excluded_exemplars=draft.excluded_exemplars, notes_ja=[*notes, *draft.notes_ja],
        lines=[DraftLine(text=s.text, findings_sentence=s.findings_sentence, findings_index=s.findings_index,
                         exemplar_id=s.exemplar_id, exemplar_phrase=s.exemplar_phrase) for s in draft.sentences],
    )


def _summary(out: DraftImpressionOutput) -> str:
    lines = "".join(
        f"「{line.text}」（所見「{line.findings_sentence}」より"
        + (f"、レポート {line.exemplar_id} の言い回し" if line.exemplar_id else "") + "）"
        for line in out.lines)
    head = {"retrieval": "診断欄の下書き: ", "consensus": "診断欄の下書き（類似レポートの書き方）: ",
            "llm": "診断欄の下書き（LLM、所見と照合済み）: "}.get(
        out.mode, "診断欄の下書き（所見からの抽出）: ")
    return head + lines + "。" + "".join(out.notes_ja) + "読影医が確認・修正してください。"
