"""judge_checkup: health-checkup values → 判定区分 (A–E) per item and overall, with 受診勧奨 wording.

Thresholds, units, conversions and plausibility limits live in ``knowledge/data/checkup_criteria.json``
(edition named there). A bad item (unknown name, missing/unknown unit, impossible value) gets its own
error while every other item is still judged.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from dokuei.knowledge import load_json
from dokuei.tools.base import Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

Grade = Literal["A", "B", "C", "D", "E"]


def load_criteria() -> dict[str, Any]:
    return load_json("checkup_criteria.json")  # cached by load_json


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().lower().replace(" ", "")


def _unit_key(unit: str) -> str:
    """Compare units ignoring case, width, spaces and the ² / 2 spelling."""
    return _norm(unit).replace("²", "2").replace("μ", "µ").replace("umol", "µmol").replace("分", "min")


class CheckupItemInput(BaseModel):
    item: str = Field(description="item key (e.g. 'hba1c') or its Japanese name (e.g. '空腹時血糖')")
    value: float | str = Field(description="measured value; qualitative items (尿蛋白) take '-', '±', '+', '2+' …")
    unit: str | None = Field(default=None, description="unit of value: mg/dL, mmol/L, %, mmHg, g/dL, U/L, …")
    on_treatment: bool = Field(default=False, description="true when the examinee is treated for this item (→ E)")
    unit_assumed: bool = Field(default=False, description="true when the unit was not stated but assumed from a "
                               "Japanese checkup report's conventional unit (shown to the user)")


class JudgeCheckupInput(BaseModel):
    items: list[CheckupItemInput] = Field(min_length=1, description="checkup results to judge")
    sex: Literal["M", "F"] | None = Field(default=None, description="needed for 腹囲 and 血色素量")


class ItemJudgement(BaseModel):
    item: str = Field(description="item key in the criteria file, or the name as given when unknown")
    name_ja: str
    value_given: float | str
    unit_given: str | None
    value_canonical: float | str | None = Field(description="value rounded to the table's digits in unit_canonical")
    unit_canonical: str | None
    unit_assumed: bool = False
    grade: Grade | None = Field(description="判定区分; None when the item could not be judged")
    grade_label_ja: str | None = None
    criterion_ja: str | None = Field(default=None, description="the band of the table that applied")
    error_ja: str | None = Field(default=None, description="why this item could not be judged")


class JudgeCheckupOutput(BaseModel):
    edition: str = Field(description="edition of the 判定区分 table used")
    items: list[ItemJudgement]
    overall_grade: Grade | None = Field(description="most severe of the judged items (E only if all are E)")
    overall_label_ja: str | None
    recommendation_ja: str = Field(description="受診勧奨 wording for the overall grade")
    n_judged: int = Field(description="number of items judged")
    n_errors: int = Field(description="number of items with an error")


class JudgeCheckup(Tool[JudgeCheckupInput]):
    name = "judge_checkup"
    version = "1.0.0"
    description_ja = (
        "健診・人間ドックの検査値（BMI、腹囲、血圧、空腹時血糖、HbA1c、脂質、肝機能、eGFR、尿酸、血色素量、尿蛋白）を"
        "日本人間ドック・予防医療学会の判定区分（A〜E）で項目別・総合判定し、受診勧奨の要否を示す。"
        "画像・心電図・レポートの質問には使わない。"
    )
    description_en = (
        "Judge health-checkup lab values against the Japan Society of Ningen Dock and Preventive Medical Care "
        "判定区分 table (A–E) per item and overall, with referral wording. Not for images, ECGs or reports."
    )
    Input = JudgeCheckupInput
    Output = JudgeCheckupOutput
    requires = Requirements(device="cpu", licence="Apache-2.0 (code); criteria table © 日本人間ドック・予防医療学会")
    keywords_ja = ("健診", "人間ドック", "要受診", "受診勧奨", "判定区分", "検査値", "コレステロール", "血圧",
                   *dict.fromkeys(a for spec in load_criteria()["items"].values() for a in spec["aliases"]
                                  if len(a) >= 3 or not a.isascii()))

    def run(self, inp: JudgeCheckupInput) -> Outcome:
        criteria = load_criteria()
        judged = [judge_item(item, inp.sex, criteria) for item in inp.items]
        grades = [j.grade for j in judged if j.grade is not None]
        order = criteria["severity_order"]
        active = [g for g in grades if g != "E"]
        overall: Grade | None
        if active:
            overall = max(active, key=order.index)
        elif grades:
            overall = "E"
        else:
            overall = None
        if overall is None:
            raise ToolInputError("判定できる検査項目がありませんでした。" + " ".join(
                f"{j.name_ja}: {j.error_ja}" for j in judged if j.error_ja))
        info = criteria["grades"][overall]
        output = JudgeCheckupOutput(
            edition=criteria["edition"], items=judged, overall_grade=overall, overall_label_ja=info["label_ja"],
            recommendation_ja=info["advice_ja"], n_judged=len(grades), n_errors=sum(1 for j in judged if j.error_ja),
        )
        return Outcome(output=output, summary_ja=_summary_ja(output))

    def input_from_context(self, ctx: ToolContext) -> JudgeCheckupInput | None:
        items = parse_checkup_text(ctx.question)
        if not items:
            return None
        sex = ctx.patient.sex or _sex_from_text(ctx.question)
        return JudgeCheckupInput(items=items, sex=sex)


def _resolve_item(name: str, criteria: dict[str, Any]) -> str | None:
    key = _norm(name)
    for item_key, spec in criteria["items"].items():
        if key == _norm(item_key) or key in (_norm(a) for a in spec["aliases"]) or key == _norm(spec["name_ja"]):
            return str(item_key)
    return None


def _convert(value: float, unit: str, spec: dict[str, Any]) -> float | None:
    """Value in the item's canonical unit, or None if the unit is not one the item accepts."""
    if _unit_key(unit) == _unit_key(spec["unit"]):
        return value
    for other, factor in spec.get("conversions", {}).items():
        if _unit_key(unit) == _unit_key(other):
            if isinstance(factor, dict):
                return value * float(factor["scale"]) + float(factor["offset"])
            return value * float(factor)
    return None


def _round_half_up(value: float, decimals: int) -> float:
    """Round as a report reads (5.55 → 5.6, 140.5 → 141), not to even on binary floats."""
    quantum = Decimal(1).scaleb(-decimals)
    return float(Decimal(str(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def _band_text(band: dict[str, Any], unit: str) -> str:
    lo, hi = band["min"], band["max"]
    if lo is None:
        return f"{hi} {unit} 以下"
    if hi is None:
        return f"{lo} {unit} 以上"
    return f"{lo}〜{hi} {unit}"


def judge_item(item: CheckupItemInput, sex: str | None, criteria: dict[str, Any]) -> ItemJudgement:
    key = _resolve_item(item.item, criteria)
    base = {"value_given": item.value, "unit_given": item.unit, "unit_assumed": item.unit_assumed}
    if key is None:
        return ItemJudgement(item=item.item, name_ja=item.item, value_canonical=None, unit_canonical=None, grade=None,
                             error_ja=f"「{item.item}」は判定区分表にない項目です。", **base)
    spec = criteria["items"][key]
    name_ja = spec["name_ja"]

    def error(message: str) -> ItemJudgement:
        return ItemJudgement(item=key, name_ja=name_ja, value_canonical=None, unit_canonical=spec["unit"],
                             grade=None, error_ja=message, **base)

    if "categorical" in spec:
        raw = unicodedata.normalize("NFKC", str(item.value)).strip()
        raw = spec["categorical_aliases"].get(raw, spec["categorical_aliases"].get(str(item.value).strip(), raw))
        grade = spec["categorical"].get(raw)
        if grade is None:
            return error(f"{name_ja} の値「{item.value}」を解釈できません（-、±、+、2+、3+ のいずれかで入力）。")
        if item.on_treatment:
            grade = "E"
        return ItemJudgement(item=key, name_ja=name_ja, value_canonical=raw, unit_canonical=spec["unit"],
                             grade=grade, grade_label_ja=criteria["grades"][grade]["label_ja"],
                             criterion_ja=f"{name_ja} {raw}", **base)
    try:
        number = float(unicodedata.normalize("NFKC", str(item.value)))
    except ValueError:
        return error(f"{name_ja} の値「{item.value}」は数値ではありません。")
    if item.unit is None or not item.unit.strip():
        return error(f"{name_ja} の単位が指定されていません（{spec['unit']} などで指定してください）。")
    canonical = _convert(number, item.unit, spec)
    if canonical is None:
        accepted = ", ".join([spec["unit"], *spec.get("conversions", {})])
        return error(f"{name_ja} の単位「{item.unit}」には対応していません（対応: {accepted}）。")
    lo, hi = spec["plausible"]
    if not lo <= canonical <= hi:
        hint = "入力誤りの可能性"
        if item.unit_assumed:
            hint = f"単位の記載がないため {spec['unit']} とみなしました。別の単位なら単位を付けてください"
        return error(f"{name_ja} {number} {item.unit} は生理的にありえない値です（{hint}）。")
    rounded = _round_half_up(canonical, spec["decimals"])
    bands = spec.get("bands")
    if "by_sex" in spec:
        if sex not in ("M", "F"):
            return error(f"{name_ja} の判定には性別が必要です。")
        bands = spec["by_sex"][sex]
    assert bands is not None
    for band in bands:
        if (band["min"] is None or rounded >= band["min"]) and (band["max"] is None or rounded <= band["max"]):
            grade = "E" if item.on_treatment else band["grade"]
            return ItemJudgement(item=key, name_ja=name_ja, value_canonical=rounded, unit_canonical=spec["unit"],
                                 grade=grade, grade_label_ja=criteria["grades"][grade]["label_ja"],
                                 criterion_ja=f"{band['grade']}: {_band_text(band, spec['unit'])}", **base)
    return error(f"{name_ja} {rounded} {spec['unit']} は判定区分表のどの範囲にも該当しません。")


def _format_value(j: ItemJudgement) -> str:
    value = j.value_canonical
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    unit = "" if j.unit_canonical == "qualitative" else f" {j.unit_canonical}"
    return f"{value}{unit}"


def _summary_ja(out: JudgeCheckupOutput) -> str:
    sentences = []
    for j in out.items:
        if j.grade is None:
            sentences.append(f"{j.name_ja}: 判定不能（{j.error_ja}）")
            continue
        assumed = f"（単位の記載がないため {j.unit_canonical} とみなしました）" if j.unit_assumed else ""
        sentences.append(f"{j.name_ja} {_format_value(j)}{assumed}: {j.grade} 判定（{j.grade_label_ja}）")
    sentences.append(f"総合判定 {out.overall_grade}（{out.overall_label_ja}）: {out.recommendation_ja.rstrip('。')}")
    sentences.append(f"基準: {out.edition}")
    return "。".join(s.rstrip("。") for s in sentences) + "。"


# --- reading values out of a Japanese question ------------------------------------------------------

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_UNITS = r"(mg/dl|mmol/l|mmol/mol|%|mmhg|g/dl|g/l|u/l|iu/l|ml/min/1\.73m2|ml/分/1\.73m2|kg/m2|cm|µmol/l|μmol/l)?"
_QUAL = r"(2\+|3\+|4\+|\+\+\+|\+\+|±|\+-|-|\+|陰性|陽性)"


def parse_checkup_text(text: str) -> list[CheckupItemInput]:
    """Find 'item value [unit]' pairs (and '血圧 140/90') in free Japanese text.

    A value without a unit takes the item's conventional unit in Japanese checkup reports, and the
    item is marked ``unit_assumed`` so the answer says so.
    """
    criteria = load_criteria()
    norm = unicodedata.normalize("NFKC", text)
    found: dict[str, CheckupItemInput] = {}
    taken: list[tuple[int, int]] = []

    bp = re.search(r"血圧\s*(?:は|:)?\s*([0-9]{2,3})\s*/\s*([0-9]{2,3})\s*(mmHg)?", norm, flags=re.IGNORECASE)
    if bp:
        unit = "mmHg"
        assumed = bp.group(3) is None
        found["sbp"] = CheckupItemInput(item="sbp", value=float(bp.group(1)), unit=unit, unit_assumed=assumed)
        found["dbp"] = CheckupItemInput(item="dbp", value=float(bp.group(2)), unit=unit, unit_assumed=assumed)
        taken.append(bp.span())

    aliases = sorted(((a, k) for k, s in criteria["items"].items() for a in [*s["aliases"], s["name_ja"]]),
                     key=lambda pair: -len(pair[0]))
    for alias, key in aliases:
        if key in found:
            continue
        spec = criteria["items"][key]
        value_pattern = _QUAL if "categorical" in spec else _NUMBER + r"\s*" + _UNITS
        pattern = re.escape(unicodedata.normalize("NFKC", alias)) + r"\s*(?:は|が|:|=)?\s*" + value_pattern
        for match in re.finditer(pattern, norm, flags=re.IGNORECASE):
            if any(s <= match.start() < e for s, e in taken):
                continue
            taken.append(match.span())
            if "categorical" in spec:
                found[key] = CheckupItemInput(item=key, value=match.group(1))
            else:
                unit = match.group(2)
                assumed = unit is None and bool(spec.get("assume_unit_in_text"))
                found[key] = CheckupItemInput(item=key, value=float(match.group(1)),
                                              unit=spec["unit"] if assumed else unit, unit_assumed=assumed)
            break
    return list(found.values())


def _sex_from_text(text: str) -> Literal["M", "F"] | None:
    if "女性" in text or "女" in text.replace("女性", ""):
        return "F"
    if "男性" in text or "男" in text:
        return "M"
    return None
