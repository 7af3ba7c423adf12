"""judge_checkup: health-checkup values → 判定区分 (A–E) per item and overall, with 受診勧奨 wording.

Thresholds, units, conversions and plausibility limits live in ``knowledge/data/checkup_criteria.json``
(edition named there). A bad item (unknown name, missing or wrong unit, negative or impossible value,
sex-dependent item without a sex) gets its own error while every other item is still judged; the overall
判定 is withheld (総合判定は保留) while any item was refused or any labelled number went unread, so a
partial reading is never presented as the whole picture.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from dokuei.knowledge import load_json
from dokuei.tools.base import Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

log = logging.getLogger(__name__)

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
    items: list[CheckupItemInput] = Field(default_factory=list, description="checkup results to judge")
    sex: Literal["M", "F"] | None = Field(default=None, description="needed for 腹囲 and 血色素量; never assumed")
    unread_ja: list[str] = Field(default_factory=list, description="labelled numbers of the question that match no "
                                 "item of the table (e.g. 'フェリチン 30'); any entry withholds the overall grade")

    @model_validator(mode="after")
    def _something_to_report(self) -> JudgeCheckupInput:
        if not self.items and not self.unread_ja:
            raise ValueError("items must list at least one checkup result")
        return self


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
    overall_grade: Grade | None = Field(description="most severe of the judged items (E only if all are E); None "
                                        "when withheld because an item was refused or a value went unread")
    overall_label_ja: str | None
    recommendation_ja: str = Field(description="受診勧奨 wording for the overall grade, or what to fix when withheld")
    n_judged: int = Field(description="number of items judged")
    n_errors: int = Field(description="number of items with an error")
    unread_ja: list[str] = Field(default_factory=list, description="読み取れなかった項目: labelled numbers of the "
                                 "question that match no item of the table")
    n_unread: int = Field(default=0, description="number of entries in unread_ja")
    overall_withheld_reason_ja: str | None = Field(default=None, description="why 総合判定 is 保留; None when given")
    worst_judged_grade: Grade | None = Field(default=None, description="most severe grade among the items that were "
                                             "judged, shown even when the overall grade is withheld")
    sex_used: Literal["M", "F"] | None = Field(default=None, description="sex whose cut-offs judged 腹囲 / 血色素量; "
                                               "None when no sex-dependent item was judged")


class JudgeCheckup(Tool[JudgeCheckupInput]):
    name = "judge_checkup"
    title_ja = "健診判定"
    version = "1.1.0"  # 1.1: overall grade withheld while any item is refused or unread
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
        judged = _refuse_conflicting_values([judge_item(item, inp.sex, criteria) for item in inp.items])
        grades = [j.grade for j in judged if j.grade is not None]
        order = criteria["severity_order"]
        active = [g for g in grades if g != "E"]
        worst: Grade | None
        if active:
            worst = max(active, key=order.index)
        elif grades:
            worst = "E"
        else:
            worst = None
        refused = [j for j in judged if j.error_ja]
        if worst is None:
            raise ToolInputError("判定できる検査項目がありませんでした。" + " ".join(
                [*(f"{j.name_ja}: {j.error_ja}" for j in refused),
                 *(f"読み取れなかった項目: {u}。" for u in inp.unread_ja)]))
        sex_used = inp.sex if any("by_sex" in criteria["items"].get(j.item, {}) for j in judged if j.grade) else None
        withheld = _withheld_reason_ja(refused, inp.unread_ja)
        info = criteria["grades"][worst]
        output = JudgeCheckupOutput(
            edition=criteria["edition"], items=judged,
            overall_grade=None if withheld else worst, overall_label_ja=None if withheld else info["label_ja"],
            recommendation_ja=withheld or info["advice_ja"], n_judged=len(grades), n_errors=len(refused),
            unread_ja=list(inp.unread_ja), n_unread=len(inp.unread_ja), overall_withheld_reason_ja=withheld,
            worst_judged_grade=worst, sex_used=sex_used,
        )
        if withheld:
            log.info("judge_checkup: overall withheld (%d refused, %d unread)", len(refused), len(inp.unread_ja))
        return Outcome(output=output, summary_ja=_summary_ja(output, criteria))

    def input_from_context(self, ctx: ToolContext) -> JudgeCheckupInput | None:
        reading = read_checkup_text(ctx.question)
        if not reading.items and not (reading.unread_ja and self._asked_about_checkup(ctx.question)):
            return None
        unread = list(reading.unread_ja)
        named = sexes_in_text(ctx.question)
        sex: Literal["M", "F"] | None = ctx.patient.sex
        if len(named) > 1 or (sex is not None and named and named != {sex}):
            log.warning("judge_checkup: conflicting sex (patient %s, question %s)", sex, sorted(named))
            needs_sex = any("by_sex" in load_criteria()["items"].get(i.item, {}) for i in reading.items)
            if needs_sex:
                unread.append("性別（患者情報と質問の記載が一致しません）")
            sex = None
        elif sex is None and named:
            sex = next(iter(named))
        return JudgeCheckupInput(items=reading.items, sex=sex, unread_ja=unread)


    def _asked_about_checkup(self, question: str) -> bool:
        """True when the question uses this tool's own words, so labels it cannot read are worth naming."""
        norm = _norm(question)
        return any(_norm(k) in norm for k in self.keywords_ja)


def _refuse_conflicting_values(judged: list[ItemJudgement]) -> list[ItemJudgement]:
    """An item given twice with different values is judged neither time: which one is meant is unknown."""
    values: dict[str, set[tuple[str, str | None]]] = {}
    for j in judged:
        values.setdefault(j.item, set()).add((str(j.value_given), j.unit_given))
    out = []
    for j in judged:
        given = values[j.item]
        if len(given) > 1:
            listed = "、".join(sorted(f"{v} {u or ''}".strip() for v, u in given))
            message = f"{j.name_ja} に異なる値が複数あり（{listed}）、どれを判定するか決められません。"
            j = j.model_copy(update={"grade": None, "grade_label_ja": None, "criterion_ja": None,
                                     "value_canonical": None, "error_ja": message})
        out.append(j)
    return out


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
    if not math.isfinite(number):
        return error(f"{name_ja} の値「{item.value}」は有限の数値ではありません。")
    if number < 0:
        return error(f"{name_ja} の値 {number:g} は負の値です。検査値として負の値はありえないため判定できません"
                     "（入力誤りの可能性）。")
    if item.unit is None or not item.unit.strip():
        return error(f"{name_ja} の単位が指定されていません（{spec['unit']} などで指定してください）。")
    canonical = _convert(number, item.unit, spec)
    if canonical is None:
        accepted = ", ".join([spec["unit"], *spec.get("conversions", {})])
        return error(f"単位「{item.unit}」は {name_ja} の単位として使えません（対応: {accepted}）。")
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
            return error(f"{name_ja} は男女で基準が異なりますが、性別が不明なため判定できません"
                         "（男性・女性を明記してください）。")
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


_SEX_JA = {"M": "男性", "F": "女性"}


def _withheld_reason_ja(refused: list[ItemJudgement], unread: list[str]) -> str | None:
    """What must be fixed before an overall grade can be given, or None when nothing is missing."""
    parts = []
    if refused:
        parts.append("判定できなかった項目: " + "、".join(dict.fromkeys(j.name_ja for j in refused)))
    if unread:
        parts.append("読み取れなかった項目: " + "、".join(unread))
    if not parts:
        return None
    return "総合判定は保留です（" + "／".join(parts) + "）。これらの値・単位・項目名を確認して再入力してください。"


def _summary_ja(out: JudgeCheckupOutput, criteria: dict[str, Any]) -> str:
    sentences = []
    for j in out.items:
        if j.grade is None:
            sentences.append(f"{j.name_ja}: 判定不能（{j.error_ja.rstrip('。') if j.error_ja else ''}）")
            continue
        assumed = f"（単位の記載がないため {j.unit_canonical} とみなしました）" if j.unit_assumed else ""
        sentences.append(f"{j.name_ja} {_format_value(j)}{assumed}: {j.grade} 判定（{j.grade_label_ja}）")
    if out.unread_ja:
        sentences.append("読み取れなかった項目: " + "、".join(out.unread_ja))
    if out.sex_used:
        names = "・".join(j.name_ja for j in out.items if j.grade and "by_sex" in criteria["items"].get(j.item, {}))
        sentences.append(f"{names}は{_SEX_JA[out.sex_used]}の基準で判定")
    if out.overall_withheld_reason_ja:
        sentences.append(out.overall_withheld_reason_ja)
    else:
        advice = out.recommendation_ja.rstrip("。")
        sentences.append(f"総合判定 {out.overall_grade}（{out.overall_label_ja}）: {advice}")
    sentences.append(f"基準: {out.edition}")
    return "。".join(s.rstrip("。") for s in sentences) + "。"


# --- reading values out of a Japanese question ------------------------------------------------------
#
# Every number in the question is accounted for: it is the value of a table item (judged or refused by
# judge_item), a count that is not a measurement (55歳, 2回目), or it is listed as unread. Nothing is dropped.

_HARD_DELIMITERS = "、,。?!;\n「」『』"
_NUMBER_RE = re.compile(r"(?<![0-9.])([-−]?)([0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?)")
_UNIT_RE = re.compile(r"\s*([%A-Za-zµμ][A-Za-z0-9µμ%/.²分]*)")
_PAIR_RE = re.compile(r"\s*/\s*([0-9]+(?:\.[0-9]+)?)")
_QUAL_RE = re.compile(r"\s*(?:は|が|:|=)?\s*[(]?(1\+|2\+|3\+|4\+|\+\+\+|\+\+|±|\+/-|\+-|-|\+|陰性|陽性)[)]?")
# a number followed by one of these counts something (age, visits, dates); it is not a checkup value
_COUNTERS = ("歳", "才", "年", "か月", "ヶ月", "カ月", "ケ月", "月", "日", "回", "時間", "時", "分", "秒", "週",
             "人", "番", "度目", "代", "型", "件", "枚", "錠", "種類", "項目")
_TREATMENT_WORDS = r"治療中|服薬中|内服中|投薬中"
_TREATMENT_AFTER_RE = re.compile(r"\s*[(]?\s*(?:" + _TREATMENT_WORDS + r")\s*[)]?")
# what follows an item name when a value was meant but is not a number
_NON_NUMBER_VALUE = (r"\s*(?:は|が|:|=)?\s*(nan|[-−+]?inf(?:inity)?|不明|未測定|測定不能|欠測|検出せず|未検査|"
                     r"高値|低値|高め|低め|正常|異常|基準値?内|弱陽性|陽性|陰性|[-−]{2,}|[A-Za-z][A-Za-z0-9]*)")
# after a qualitative item's name, anything but a particle or a delimiter was meant as its value
_NON_QUAL_VALUE = r"\s*(?:は|が|:|=)?\s*([^\s\u3041-\u3096、,。?？!！;]+)"
_FILLERS = ("は", "が", "も", "を", ":", "=", "の値", "値")
_LABEL_EDGES = " \t:=[]・/-−"


def _label_key(text: str) -> str:
    """Compare item labels ignoring width, case, spaces, hyphens and the ガンマ / γ spelling."""
    key = unicodedata.normalize("NFKC", text).lower()
    key = re.sub(r"[\s\-‐‑–—−・_]", "", key)
    return key.replace("ガンマ", "γ")


def _alias_index(criteria: dict[str, Any]) -> list[tuple[str, str]]:
    """(label key, item key) pairs, longest label first so 'non-HDL' wins over 'HDL'."""
    pairs = {(_label_key(a), k) for k, s in criteria["items"].items() for a in [*s["aliases"], s["name_ja"], k]}
    return sorted(pairs, key=lambda pair: (-len(pair[0]), pair))


def _boundary_ok(prefix: str) -> bool:
    """True when what precedes an alias inside a label cannot be part of a longer item name."""
    if not prefix:
        return True
    last = prefix[-1]
    return "\u3041" <= last <= "\u3096" or last in "()[]:/" or prefix.endswith(("男性", "女性", "歳", "才"))


def _match_label(label: str, aliases: list[tuple[str, str]]) -> str | None:
    """Item key whose alias ends the label (after stripping particles like は / の値), else None."""
    key = _label_key(label)
    for _ in range(3):
        for alias, item_key in aliases:
            if key.endswith(alias) and _boundary_ok(key[: len(key) - len(alias)]):
                return item_key
        stripped = next((key[: -len(f)] for f in _FILLERS if key.endswith(f) and len(key) > len(f)), None)
        if stripped is None:
            return None
        key = stripped
    return None


@dataclass
class CheckupReading:
    """What a question says: items to judge, and every labelled number that could not be read."""

    items: list[CheckupItemInput] = field(default_factory=list)
    unread_ja: list[str] = field(default_factory=list)


def parse_checkup_text(text: str) -> list[CheckupItemInput]:
    """Items found in free Japanese text (see :func:`read_checkup_text`, which also names what was not read)."""
    return read_checkup_text(text).items


def read_checkup_text(text: str) -> CheckupReading:
    """Find every 'label value [unit]' in free Japanese text (and '血圧 140/90', '尿蛋白 (-)').

    A value without a unit takes the item's conventional unit in Japanese checkup reports, and the item
    is marked ``unit_assumed`` so the answer says so. A unit that is written is passed on as written,
    so a wrong one is refused by :func:`judge_item` rather than replaced. A number whose label is not an
    item of the table (フェリチン 30), or that has no label, is listed in ``unread_ja``.
    """
    criteria = load_criteria()
    aliases = _alias_index(criteria)
    norm = unicodedata.normalize("NFKC", text)
    reading = CheckupReading()
    found: list[tuple[int, CheckupItemInput]] = []  # (position in text, item)
    taken: list[tuple[int, int]] = []
    cursor = 0

    def label_before(start: int) -> str:
        begin = max([cursor, *(norm.rfind(d, 0, start) + 1 for d in _HARD_DELIMITERS)])
        # a closing parenthesis ends names such as AST(GOT) and HbA1c(NGSP), so only an opening one is cut there
        return norm[begin:start].strip(_LABEL_EDGES + "".join(_FILLERS[:4])).lstrip("()").rstrip("(")

    for key, spec in criteria["items"].items():
        if "categorical" not in spec:
            continue
        for alias in [*spec["aliases"], spec["name_ja"]]:
            pattern = re.escape(unicodedata.normalize("NFKC", alias)) + _QUAL_RE.pattern + r"(?![0-9])"
            for m in re.finditer(pattern, norm):
                if not any(s < m.end() and m.start() < e for s, e in taken):
                    taken.append(m.span())
                    found.append((m.start(), CheckupItemInput(item=key, value=m.group(1))))
    for m in _NUMBER_RE.finditer(norm):
        start = m.start()
        if any(s <= start < e for s, e in taken):
            continue
        glued = norm[:m.start(2)][-1:]
        # glued to letters: the value of 'HbA1c6.8', or part of a name ('HbA1c', 'CA19-9', 'B12')
        if glued.isascii() and glued.isalpha() and not m.group(1) and (
                _match_label(label_before(m.start(2)), aliases) is None or _glued_inside_alias(norm, m.start(2))):
            continue
        sign = "-" if m.group(1) else ""
        number_text = sign + m.group(2).replace(",", "")
        rest = norm[m.end():]
        stripped_rest = rest.lstrip()
        if not sign and stripped_rest.startswith(_COUNTERS):
            taken.append((start, m.end()))
            continue
        label = label_before(start)
        label_begin = max([cursor, *(norm.rfind(d, 0, start) + 1 for d in _HARD_DELIMITERS)])
        item_key = _match_label(label, aliases) if label else None
        pair = _PAIR_RE.match(rest)
        value_end = m.end()
        second: str | None = None
        if pair:
            second = pair.group(1)
            value_end += pair.end()
            rest = norm[value_end:]
        unit_match = _UNIT_RE.match(rest)
        unit: str | None = None
        if unit_match and _match_label(unit_match.group(1), aliases) is None:
            unit = unit_match.group(1).rstrip(".")
            value_end += unit_match.end()
        treated = _TREATMENT_AFTER_RE.match(norm, value_end)
        if treated:
            value_end = treated.end()
        taken.append((label_begin, value_end))
        cursor = value_end
        value_text = number_text + (f"/{second}" if second else "") + (f" {unit}" if unit else "")
        shown = f"{_display_label(label)} {value_text}".strip()
        if second is not None:
            if _label_key(label).endswith("血圧"):
                for part_key, part in (("sbp", number_text), ("dbp", second)):
                    found.append((start, _numeric_item(part_key, part, unit, criteria, bool(treated))))
            else:
                reading.unread_ja.append(shown if label else f"{shown}（項目名なし）")
            continue
        if item_key is None:
            reading.unread_ja.append(shown if label else f"{shown}（項目名なし）")
            continue
        if "categorical" in criteria["items"][item_key]:
            found.append((start, CheckupItemInput(item=item_key, value=number_text, unit=unit,
                                                  on_treatment=bool(treated))))
            continue
        found.append((start, _numeric_item(item_key, number_text, unit, criteria, bool(treated))))
    reading.unread_ja.extend(_stray_mentions(norm, taken, criteria))
    reading.items = [item for _, item in sorted(found, key=lambda pair: pair[0])]
    return reading


def _display_label(label: str) -> str:
    """The name part of an unread label: 「健診でフェリチン」 → 「フェリチン」 (text after the last kana)."""
    pieces = [p for p in re.split(r"[\u3041-\u3096]+", label) if p.strip()]
    return pieces[-1].strip() if pieces else label


def _glued_inside_alias(norm: str, start: int) -> bool:
    """True when the digit at ``start`` belongs to an item name written in the text (the 1 of 'HbA1c')."""
    lowered = norm.lower()
    for alias in ("hba1c", "a1c"):
        for m in re.finditer(re.escape(alias), lowered):
            if m.start() <= start < m.end():
                return True
    return False


def _numeric_item(key: str, number_text: str, unit: str | None, criteria: dict[str, Any],
                  on_treatment: bool = False) -> CheckupItemInput:
    spec = criteria["items"][key]
    assumed = unit is None and bool(spec.get("assume_unit_in_text"))
    return CheckupItemInput(item=key, value=float(number_text), unit=spec["unit"] if assumed else unit,
                            unit_assumed=assumed, on_treatment=on_treatment)


def _stray_mentions(norm: str, taken: list[tuple[int, int]], criteria: dict[str, Any]) -> list[str]:
    """Item names followed by a non-number ('空腹時血糖 NaN', 'LDL 不明') and 治療中 tied to no value."""
    def free(start: int, end: int) -> bool:
        return not any(s < end and start < e for s, e in taken)

    names = sorted({unicodedata.normalize("NFKC", a) for s in criteria["items"].values()
                    for a in [*s["aliases"], s["name_ja"]]}, key=len, reverse=True)
    qualitative = {unicodedata.normalize("NFKC", a) for s in criteria["items"].values() if "categorical" in s
                   for a in [*s["aliases"], s["name_ja"]]}
    seen: list[tuple[int, int]] = []
    unread = []
    for name in names:
        edge = r"(?<![A-Za-z0-9])" if name[:1].isascii() else ""
        tail = r"(?![A-Za-z0-9])" if name[-1:].isascii() else ""
        value_re = _NON_QUAL_VALUE if name in qualitative else _NON_NUMBER_VALUE
        for m in re.finditer(edge + re.escape(name) + tail + value_re, norm, flags=re.IGNORECASE):
            span = (m.start(), m.start() + len(name))
            if free(*span) and not any(s < span[1] and span[0] < e for s, e in seen):
                seen.append(span)
                unread.append(f"{norm[span[0]:span[1]]}（値「{m.group(1)}」を読み取れません）")
    for m in re.finditer(_TREATMENT_WORDS, norm):
        if free(*m.span()):
            unread.append(f"{m.group(0)}（どの項目の治療か読み取れません）")
            break
    return unread


def sexes_in_text(text: str) -> set[Literal["M", "F"]]:
    """The sexes a question names (男性 / 女性, or 男 / 女 next to an age such as 60歳女)."""
    norm = unicodedata.normalize("NFKC", text)
    found: set[Literal["M", "F"]] = set()
    if re.search(r"女性|[0-9]\s*(?:歳|才)\s*女|女\s*[0-9]", norm):
        found.add("F")
    if re.search(r"男性|[0-9]\s*(?:歳|才)\s*男|男\s*[0-9]", norm):
        found.add("M")
    return found
