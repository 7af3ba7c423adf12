"""Tool: free-text report → structured findings by organ (size_mm, location, laterality, certainty, …).

Domain logic in :mod:`dokuei.reports.structure`; this is what later export (FHIR Observation) and the
critical-finding worklist read.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import ClassVar

from pydantic import BaseModel, Field

from dokuei.reports.structure import structure
from dokuei.reports.text import ReportTextError
from dokuei.tools.base import Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

_CERTAINTY_JA = {"present": "あり", "suspected": "疑い", "unchanged_known": "既知・著変なし", "negated": "否定"}


class StructureReportInput(BaseModel):
    text: str = Field(min_length=1, max_length=20000, description="レポート本文（所見・診断、見出し付きでもよい）")
    impression: str = Field(default="", max_length=8000, description="診断欄（任意）")


class StructuredFindingOut(BaseModel):
    organ: str = Field(description="臓器（radiology_terms.json の臓器名、なければ unspecified）")
    finding: str = Field(description="所見 ID")
    term: str = Field(description="一致した用語")
    size_mm: float | None = Field(description="大きさ（mm、記載がなければ null）")
    location: str = Field(description="部位（例: 右肺上葉、肝S8）")
    laterality: str = Field(description="right / left / bilateral / not_stated")
    certainty: str = Field(description="present / suspected / unchanged_known / negated")
    negated: bool = Field(description="否定された所見なら true")
    change_vs_prior: str = Field(description="new / increased / decreased / unchanged / resolved / not_stated")
    recommendation: str = Field(description="推奨の文（あれば）")
    sentence: str = Field(description="原文")
    section: str = Field(description="findings / impression")


class StructureReportOutput(BaseModel):
    organs: dict[str, list[StructuredFindingOut]] = Field(description="臓器ごとの所見")
    n_findings: int = Field(description="所見の数")
    n_negated: int = Field(description="否定所見の数")


class StructureReport(Tool[StructureReportInput]):
    name: ClassVar[str] = "structure_report"
    title_ja: ClassVar[str] = "レポートの構造化"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "読影レポートの自由文を臓器ごとの構造化所見（大きさ mm、部位、左右、確からしさ、否定、前回比較、推奨）の"
        "JSON に変換します。重大所見の判定、診断欄の下書き、過去レポートの検索には使いません。"
    )
    description_en: ClassVar[str] = (
        "Turn a free-text radiology report into structured findings by organ (size in mm, location, "
        "laterality, certainty, negation, change vs prior, recommendation). Not for critical-finding "
        "screening, drafting impressions or archive search."
    )
    Input: ClassVar[type[BaseModel]] = StructureReportInput
    Output: ClassVar[type[BaseModel]] = StructureReportOutput
    requires: ClassVar[Requirements] = Requirements(device="cpu", licence="Apache-2.0")
    keywords_ja: ClassVar[tuple[str, ...]] = ("構造化", "構造化レポート", "臓器ごと", "structured report", "JSON に")
    attachment_kinds: ClassVar[tuple[str, ...]] = ("report_text",)

    def run(self, inp: StructureReportInput) -> Outcome:
        try:
            found = structure(inp.text, inp.impression)
        except ReportTextError as exc:
            raise ToolInputError(exc.message_ja, str(exc)) from exc
        organs: dict[str, list[StructuredFindingOut]] = {}
        for f in found:
            organs.setdefault(f.organ, []).append(StructuredFindingOut(**asdict(f)))
        out = StructureReportOutput(organs=organs, n_findings=len(found),
                                    n_negated=sum(1 for f in found if f.negated))
        return Outcome(output=out, summary_ja=_summary(out))

    def input_from_context(self, ctx: ToolContext) -> StructureReportInput | None:
        text = ctx.attached_report_text()
        if text is not None:
            return StructureReportInput(text=text) if text.strip() else None
        for sep in ("所見:", "所見：", ":", "："):
            if sep in ctx.question:
                body = ctx.question.split(sep, 1)[1].strip()
                return StructureReportInput(text=body[:20000]) if body else None
        return None


def _summary(out: StructureReportOutput) -> str:
    if not out.n_findings:
        return "構造化できる所見の用語は見つかりませんでした。"
    parts = []
    for organ, items in out.organs.items():
        desc = "、".join(
            f"{i.term}（{_CERTAINTY_JA[i.certainty]}" + (f"、{i.size_mm:g}mm" if i.size_mm is not None else "") + "）"
            for i in items)
        parts.append(f"{organ}: {desc}")
    return f"構造化: {out.n_findings} 所見（否定 {out.n_negated}）。" + "／".join(parts) + "。"
