"""advise_cardiology: one referral recommendation from an ECG analysis and a chest X-ray classification.

The recommendation comes from the rule table ``knowledge/data/cardiology_advice_rules.json`` (each rule
with its rationale and guideline source), never from free text: the tool only reads the two results.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from dokuei.knowledge import load_json
from dokuei.tools.analyze_ecg import AnalyzeEcgOutput
from dokuei.tools.base import Citation, Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.classify_chest_xray import ClassifyChestXrayOutput
from dokuei.tools.context import ToolContext

log = logging.getLogger(__name__)

Urgency = Literal["urgent", "consider", "routine"]


def load_rules() -> dict[str, Any]:
    return load_json("cardiology_advice_rules.json")  # cached by load_json


class AdviseCardiologyInput(BaseModel):
    ecg: AnalyzeEcgOutput = Field(description="output of analyze_ecg for this patient")
    cxr: ClassifyChestXrayOutput = Field(description="output of classify_chest_xray for this patient")
    ecg_summary_ja: str = Field(default="", description="analyze_ecg's Japanese summary, cited as is")
    cxr_summary_ja: str = Field(default="", description="classify_chest_xray's Japanese summary, cited as is")


class MatchedRule(BaseModel):
    id: str = Field(description="rule id in cardiology_advice_rules.json")
    urgency: Urgency = Field(description="urgent, consider or routine")
    statement_ja: str = Field(description="what the rule observed, in Japanese")
    rationale_ja: str = Field(description="why the rule recommends what it does, with its guideline")
    next_steps_ja: str = Field(description="suggested next examinations")


class AdviseCardiologyOutput(BaseModel):
    recommendation_ja: str = Field(description="the recommendation of the most urgent matching rule")
    urgency: Urgency = Field(description="urgent, consider or routine")
    matched_rules: list[MatchedRule] = Field(description="every rule that matched, most urgent first")
    ecg_findings_ja: list[str] = Field(description="the ECG findings the rules read (analyze_ecg labels)")
    cxr_findings_ja: list[str] = Field(description="chest X-ray labels at/above threshold the rules read")
    rule_table_version: str = Field(description="version of cardiology_advice_rules.json")


class AdviseCardiology(Tool[AdviseCardiologyInput]):
    name: ClassVar[str] = "advise_cardiology"
    title_ja: ClassVar[str] = "循環器所見の統合（心電図＋胸部X線）"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "同じ患者の心電図解析（analyze_ecg）と胸部 X 線分類（classify_chest_xray）の結果を組み合わせ、"
        "根拠付きの規則表から循環器受診の要否（早めの受診・外来受診を検討・経過観察）を提案する。"
        "心電図と胸部 X 線の両方がそろったときだけ使う。片方だけの質問や診断の確定には使わない。"
    )
    description_en: ClassVar[str] = (
        "Combines an analyze_ecg result and a classify_chest_xray result for the same patient and, "
        "from a rule "
        "table with stated rationale, proposes whether a cardiology referral is advised. Use only when both "
        "results are present; not for a single study and not a diagnosis."
    )
    Input: ClassVar[type[BaseModel]] = AdviseCardiologyInput
    Output: ClassVar[type[BaseModel]] = AdviseCardiologyOutput
    requires: ClassVar[Requirements] = Requirements(device="cpu", licence="Apache-2.0 (dokuei rule table)")
    keywords_ja: ClassVar[tuple[str, ...]] = ("循環器", "受診", "心不全", "心電図と胸部", "何が疑われる")
    keywords_en: ClassVar[tuple[str, ...]] = ("cardiology", "referral", "heart failure")
    attachment_kinds: ClassVar[tuple[str, ...]] = ("ecg", "chest_xray")
    needs_ja: ClassVar[str] = "同じ患者の心電図ファイルと胸部 X 線画像を添付してください。"
    depends_on: ClassVar[tuple[str, ...]] = ("analyze_ecg", "classify_chest_xray")

    def input_from_context(self, ctx: ToolContext) -> AdviseCardiologyInput | None:
        ecg, cxr = ctx.results.get("analyze_ecg"), ctx.results.get("classify_chest_xray")
        if ecg is None or cxr is None or not ecg.ok or not cxr.ok or ecg.output is None or cxr.output is None:
            return None
        return AdviseCardiologyInput(
            ecg=AnalyzeEcgOutput.model_validate(ecg.output),
            cxr=ClassifyChestXrayOutput.model_validate(cxr.output),
            ecg_summary_ja=ecg.summary_ja,
            cxr_summary_ja=cxr.summary_ja,
        )

    def run(self, inp: AdviseCardiologyInput) -> Outcome:
        not_assessable = _not_assessable_ja(inp)
        if not_assessable:
            # a rule table read on an unclassified rhythm, a poor record or a lateral film could
            # call an abnormal study normal: say it cannot be judged instead
            raise ToolInputError("心電図・胸部 X 線からの総合判定はできません: " + "、".join(not_assessable) + "。",
                                 f"not assessable: {not_assessable}")
        table = load_rules()
        ecg_codes = {f.code for f in inp.ecg.findings}
        cxr_labels = set(inp.cxr.positive_labels)
        order = table["urgency_order"]
        matched = [
            MatchedRule(**{k: rule[k] for k in MatchedRule.model_fields})
            for rule in table["rules"]
            if _matches(rule, ecg_codes, cxr_labels, table)
        ]
        matched.sort(key=lambda r: order.index(r.urgency))
        urgency: Urgency = matched[0].urgency if matched else "routine"
        label_ja = {s.label: s.label_ja for s in inp.cxr.scores}
        out = AdviseCardiologyOutput(
            recommendation_ja=table["recommendation_ja"][urgency],
            urgency=urgency,
            matched_rules=matched,
            ecg_findings_ja=[f.label_ja for f in inp.ecg.findings],
            cxr_findings_ja=[label_ja.get(x, x) for x in inp.cxr.positive_labels],
            rule_table_version=table["version"],
        )
        citations = [
            Citation(
                id="analyze_ecg",
                kind="tool_result",
                label_ja="ツール analyze_ecg（心電図解析）",
                text=inp.ecg_summary_ja or inp.ecg.rhythm_ja,
            ),
            Citation(
                id="classify_chest_xray",
                kind="tool_result",
                label_ja="ツール classify_chest_xray（胸部 X 線）",
                text=inp.cxr_summary_ja or "、".join(out.cxr_findings_ja),
            ),
        ]
        return Outcome(output=out, summary_ja=summarize(out), citations=citations)


def _matches(rule: dict[str, Any], ecg_codes: set[str], cxr_labels: set[str], table: dict[str, Any]) -> bool:
    for clause in rule["when"]:
        terms = clause.get("any_of", clause.get("none_of"))
        names = set(table[terms]) if isinstance(terms, str) else set(terms)
        present = ecg_codes if clause["source"] == "ecg" else cxr_labels
        hit = bool(names & present)
        if ("any_of" in clause and not hit) or ("none_of" in clause and hit):
            return False
    return True


def summarize(out: AdviseCardiologyOutput) -> str:
    ecg = "、".join(out.ecg_findings_ja) if out.ecg_findings_ja else "明らかな異常所見なし"
    cxr = "、".join(out.cxr_findings_ja) if out.cxr_findings_ja else "動作点を超えた所見なし"
    text = f"心電図: {ecg}。胸部 X 線: {cxr}。"
    if out.matched_rules:
        top = out.matched_rules[0]
        text += f"{top.statement_ja}{out.recommendation_ja}（{top.next_steps_ja}）。根拠: {top.rationale_ja}"
    else:
        text += out.recommendation_ja + "。"
    return text


#: ECG rhythms that carry no finding code, so no rule could notice them
_UNJUDGED_RHYTHMS = ("irregular_unclassified", "undetermined")


def _not_assessable_ja(inp: AdviseCardiologyInput) -> list[str]:
    reasons = []
    if inp.ecg.rhythm.removesuffix("_with_pvcs") in _UNJUDGED_RHYTHMS:
        reasons.append(f"心電図の調律が分類できません（{inp.ecg.rhythm_ja}）")
    if inp.ecg.quality == "poor":
        reasons.append("心電図の信号品質が不良です")
    if inp.cxr.view_position.upper() == "LATERAL":  # UNKNOWN (PNG/JPEG) is read as frontal, as the classifier does
        reasons.append("胸部 X 線が側面像です（分類器は正面像用）")
    return reasons
