"""Tool: detect critical / actionable findings (重大所見・重要所見) in one report's text.

Rule-based (see :mod:`dokuei.reports.critical`): per category present / suspected / negated /
unchanged_known with a score and the sentence quoted as evidence. 既往歴 / 依頼 / 臨床診断 text is read as
context only. Categories and their sources: ``knowledge/data/critical_findings.json``.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from dokuei.reports.critical import Detection, detect
from dokuei.reports.llm_judge import LlmJudge
from dokuei.reports.text import ReportTextError
from dokuei.tools.base import Citation, Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

_STATUS_JA = {"present": "あり", "suspected": "疑い", "unchanged_known": "既知・著変なし", "negated": "否定"}
_JUDGE_JA = {"present": "、LLM 判定もあり", "suspected": "、LLM 判定は疑い",
             "absent": "、LLM 判定はなし（規則の判定を残す）"}
_SECTION_JA = {"findings": "所見", "impression": "診断", "history": "既往歴", "indication": "依頼・臨床情報",
               "clinical_diagnosis": "臨床診断", "department": "依頼科", "comparison": "比較"}
#: a report pasted into the question starts at its first heading (所見: / 【所見】 / FINDINGS:)
_REPORT_START = re.compile(r"【\s*(所見|画像所見|診断|既往歴|依頼|臨床情報)\s*】|(所見|画像所見|findings)\s*[:：]",
                           re.IGNORECASE)


class DetectCriticalFindingsInput(BaseModel):
    findings: str = Field(min_length=1, max_length=20000,
                          description="所見（レポート本文）。【所見】【診断】【既往歴】などの見出し付きでもよい")
    impression: str = Field(default="", max_length=8000, description="診断欄（任意）")
    department: str = Field(default="", max_length=100, description="依頼科（任意、分類器・LLM 判定の入力）")
    clinical_diagnosis: str = Field(default="", max_length=2000,
                                    description="臨床診断・依頼内容（任意）。所見としては扱わない")
    history: str = Field(default="", max_length=4000, description="既往歴（任意）。所見としては扱わない")


class CategoryFinding(BaseModel):
    category: str = Field(description="カテゴリ ID（critical_findings.json）")
    name_ja: str = Field(description="カテゴリ名")
    status: Literal["present", "suspected", "unchanged_known", "negated"] = Field(
        description="present: あり / suspected: 疑い / unchanged_known: 既知・著変なし / negated: 否定")
    status_ja: str = Field(description="判定（日本語）")
    flagged: bool = Field(description="要確認（present または suspected）なら true")
    score: float = Field(description="rule score 0–1 for this status (from the data file)")
    evidence: str = Field(description="根拠の文（原文のまま引用）")
    term: str = Field(description="一致した用語")
    cue: str = Field(description="判定の手がかりとなった語（否定・疑い・経時変化）")
    section: str = Field(description="根拠の文がある欄（findings / impression）")
    source: str = Field(description="カテゴリの出典 ID")
    judge_status: str | None = Field(default=None, description="LLM 判定（present / suspected / absent）。"
                                     "LLM が設定されているときのみ。規則の要確認は取り消さない")


class ContextMention(BaseModel):
    category: str = Field(description="カテゴリ ID")
    section: str = Field(description="既往歴・依頼など、所見として扱わなかった欄")
    sentence: str = Field(description="原文")


class DetectCriticalFindingsOutput(BaseModel):
    categories_version: str = Field(description="カテゴリ定義の版")
    method: str = Field(description="rules, or rules+<judge> when a classifier / LLM judge is configured")
    n_flagged: int = Field(description="要確認カテゴリ数")
    report_score: float = Field(description="highest category score in the report (0–1)")
    findings: list[CategoryFinding] = Field(description="言及されたカテゴリ（スコア順）")
    context_mentions: list[ContextMention] = Field(description="所見以外の欄での言及（判定対象外）")
    sections_read: list[str] = Field(description="読んだ欄")
    n_sentences: int = Field(description="読んだ文の数")


def output_from(det: Detection) -> DetectCriticalFindingsOutput:
    return DetectCriticalFindingsOutput(
        categories_version=det.version, method=det.method, n_flagged=len(det.flagged),
        report_score=det.score, sections_read=det.sections_read, n_sentences=det.n_sentences,
        findings=[CategoryFinding(
            category=c.category.id, name_ja=c.category.name_ja, status=c.status, status_ja=_STATUS_JA[c.status],
            flagged=c.flagged, score=c.score, evidence=c.evidence.sentence, term=c.evidence.term,
            cue=c.evidence.cue, section=c.evidence.section, source=c.category.source,
            judge_status=c.judge_status) for c in det.categories],
        context_mentions=[ContextMention(category=m.category, section=m.section, sentence=m.sentence)
                          for m in det.context_mentions],
    )


class DetectCriticalFindings(Tool[DetectCriticalFindingsInput]):
    name: ClassVar[str] = "detect_critical_findings"
    title_ja: ClassVar[str] = "重大所見の検出"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "読影レポート本文（所見・診断、日本語・英語）から重大所見・重要所見（気胸、遊離ガス、大動脈解離、肺塞栓、"
        "頭蓋内出血、腸閉塞・虚血、悪性腫瘍疑い、チューブ位置異常、膿瘍、骨折）をカテゴリ別に検出し、あり・疑い・否定・"
        "既知を根拠の文の引用付きで返します。既往歴・依頼欄の記載は所見として扱いません。過去レポートの検索には使いません。"
    )
    description_en: ClassVar[str] = (
        "Detect critical / actionable findings (pneumothorax, free air, aortic dissection, pulmonary embolism, "
        "intracranial haemorrhage, bowel obstruction, suspected malignancy, misplaced tubes, abscess, fracture) "
        "in one report's text, per category present / suspected / negated / unchanged, with the sentence quoted. "
        "History and request text are not findings. Not for searching the archive."
    )
    Input: ClassVar[type[BaseModel]] = DetectCriticalFindingsInput
    Output: ClassVar[type[BaseModel]] = DetectCriticalFindingsOutput
    requires: ClassVar[Requirements] = Requirements(device="cpu", licence="Apache-2.0 (rules and category data)")
    keywords_ja: ClassVar[tuple[str, ...]] = (
        "重大所見", "重要所見", "重大な所見", "重要な所見", "緊急所見", "危険な所見", "重大イベント", "見落とし",
        "critical finding", "actionable finding", "要連絡", "緊急連絡",
    )
    attachment_kinds: ClassVar[tuple[str, ...]] = ("report_text",)
    #: a report pasted or attached is what 「見落としがないか」 is about; without one the archive scan answers
    supersedes: ClassVar[tuple[str, ...]] = ("check_missed_findings",)

    def run(self, inp: DetectCriticalFindingsInput) -> Outcome:
        try:
            det = detect(inp.findings, inp.impression, inp.history, clinical_diagnosis=inp.clinical_diagnosis,
                         department=inp.department, judge=_configured_judge())
        except ReportTextError as exc:
            raise ToolInputError(exc.message_ja, str(exc)) from exc
        out = output_from(det)
        refs = {s["id"]: s["name"] for s in _sources()}
        citations = [Citation(id=f"reference:critical_findings:{sid}", kind="reference",
                              label_ja=f"カテゴリ出典: {refs.get(sid, sid)}")
                     for sid in dict.fromkeys(f.source for f in out.findings)]
        return Outcome(output=out, summary_ja=_summary(out), citations=citations, model_version=det.version)

    def input_from_context(self, ctx: ToolContext) -> DetectCriticalFindingsInput | None:
        text = ctx.attached_report_text()
        if text is not None:
            return DetectCriticalFindingsInput(findings=text) if text.strip() else None
        m = _REPORT_START.search(ctx.question)
        if m is None:
            return None
        text = ctx.question[m.start():].strip()
        return DetectCriticalFindingsInput(findings=text[:20000])


def _configured_judge() -> LlmJudge | None:
    """The LLM judge when the agent registered a real LLM (``dokuei.llm_hook``), else rules alone."""
    from dokuei import llm_hook

    registered = llm_hook.current()
    return LlmJudge(registered.name, registered.generate) if registered is not None else None


def _sources() -> list[dict[str, str]]:
    from dokuei.knowledge import load_json

    return list(load_json("critical_findings.json")["sources"])


def _summary(out: DetectCriticalFindingsOutput) -> str:
    flagged = [f for f in out.findings if f.flagged]
    parts = []
    if flagged:
        parts.append("重大所見の可能性: " + "、".join(
            f"{f.name_ja}（{f.status_ja}、根拠「{f.evidence}」{_JUDGE_JA.get(f.judge_status or '', '')}）"
            for f in flagged) + "。")
    else:
        parts.append("重大所見カテゴリに該当する所見は検出されませんでした（規則による判定）。")
    if out.method != "rules":
        parts.append(f"判定方法: {out.method}（LLM は規則の要確認を取り消しません）。")
    rest = [f for f in out.findings if not f.flagged]
    if rest:
        parts.append("判定対象外: " + "、".join(f"{f.name_ja}（{f.status_ja}、「{f.evidence}」）" for f in rest) + "。")
    if out.context_mentions:
        parts.append("既往歴・依頼欄の記載は所見として扱っていません: " + "、".join(
            f"「{m.sentence}」（{_SECTION_JA.get(m.section, m.section)}）" for m in out.context_mentions) + "。")
    parts.append("最終判断は読影医が行ってください。")
    return "".join(parts)
