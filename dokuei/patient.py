"""Patient facts from the three places a clinician gives them: the form, the question text, the DICOM header.

Nothing is defaulted. When two places disagree the field is *unknown* and the answer says so, because a
judgement made with the wrong sex or age is worse than none (issue #10: a default 男性 once overrode
「60歳女性」 in the question and changed Hb 12.5 from A to C).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: the PatientContext fields a clinician can give, with their Japanese labels
FIELD_LABELS_JA = {"age_years": "年齢", "sex": "性別", "height_cm": "身長", "weight_kg": "体重"}
SOURCE_FORM = "入力欄"
SOURCE_QUESTION = "質問文"
SOURCE_HEADER = "DICOM ヘッダ"
SOURCE_UNKNOWN = "不明"
SEX_JA = {"M": "男性", "F": "女性"}
_SHORT_SOURCE = {SOURCE_QUESTION: "質問"}

_SEXES = {"m": "M", "male": "M", "男": "M", "男性": "M", "f": "F", "female": "F", "女": "F", "女性": "F"}
_AGE_RE = re.compile(r"(\d{1,3})\s*(?:歳|才)")
_SEX_RE = re.compile(r"(?<![男女])(男性|女性|男児|女児|男|女)(?![女男性児])|(男性|女性)")
_HEIGHT_RE = re.compile(r"身長\s*[:：]?\s*(\d{2,3}(?:\.\d+)?)\s*(?:cm|センチ)", re.IGNORECASE)
_WEIGHT_RE = re.compile(r"体重\s*[:：]?\s*(\d{1,3}(?:\.\d+)?)\s*(?:kg|キロ)", re.IGNORECASE)


def parse_patient(text: str | None) -> dict[str, Any]:
    """``age=55,sex=M,height_cm=170`` → PatientContext fields. Bad keys or values raise ValueError."""
    if not text:
        return {}
    aliases = {"age": "age_years", "age_years": "age_years", "sex": "sex", "height": "height_cm",
               "height_cm": "height_cm", "weight": "weight_kg", "weight_kg": "weight_kg", "id": "patient_id",
               "patient_id": "patient_id"}
    fields: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip().lower() not in aliases:
            raise ValueError(f"患者情報の項目「{part}」を解釈できません（例: age=55,sex=M,height_cm=170）")
        name = aliases[key.strip().lower()]
        value = value.strip()
        if name == "sex":
            if value.lower() not in _SEXES:
                raise ValueError(f"性別「{value}」は M/F で指定してください")
            fields[name] = _SEXES[value.lower()]
        elif name == "age_years":
            fields[name] = int(value)
        elif name == "patient_id":
            fields[name] = value
        else:
            fields[name] = float(value)
    from dokuei.tools.context import PatientContext

    PatientContext(**fields)
    return fields


def patient_from_question(question: str) -> dict[str, Any]:
    """Age, sex, height and weight stated in the question text. A field stated twice with two values
    (「男性…女性」) is returned as the list of values, so the caller reports it as a conflict."""
    found: dict[str, list[Any]] = {}
    for match in _AGE_RE.finditer(question):
        found.setdefault("age_years", []).append(int(match.group(1)))
    for match in _SEX_RE.finditer(question):
        word = match.group(1) or match.group(2)
        found.setdefault("sex", []).append("M" if word.startswith("男") else "F")
    for name, pattern in (("height_cm", _HEIGHT_RE), ("weight_kg", _WEIGHT_RE)):
        for match in pattern.finditer(question):
            found.setdefault(name, []).append(float(match.group(1)))
    result: dict[str, Any] = {}
    for name, values in found.items():
        distinct = list(dict.fromkeys(values))
        result[name] = distinct[0] if len(distinct) == 1 else distinct
    return result


def format_value(name: str, value: Any) -> str:
    """A value as a clinician reads it: 女性, 60 歳, 158 cm."""
    if value is None:
        return SOURCE_UNKNOWN
    if name == "sex":
        return SEX_JA.get(str(value), str(value))
    unit = {"age_years": " 歳", "height_cm": " cm", "weight_kg": " kg"}[name]
    number = f"{value:g}" if isinstance(value, float) else str(value)
    return number + unit


@dataclass(frozen=True)
class Conflict:
    field: str
    values: dict[str, list[Any]]  # source label → the values it stated

    def text_ja(self) -> str:
        parts = " / ".join(f"{_SHORT_SOURCE.get(source, source)}: "
                           + "・".join(format_value(self.field, v) for v in stated)
                           for source, stated in self.values.items())
        return f"{FIELD_LABELS_JA[self.field]}（{parts}）"


@dataclass(frozen=True)
class PatientResolution:
    """The patient facts a turn uses, where each came from, and the disagreements that made a field unknown."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)

    def conflict_message_ja(self) -> str:
        if not self.conflicts:
            return ""
        return ("患者情報が食い違っています: " + "、".join(c.text_ja() for c in self.conflicts)
                + "。確認してください")

    def banner_markdown(self) -> str:
        cells = [f"**{FIELD_LABELS_JA[name]}** {format_value(name, self.values.get(name))}"
                 f"（{self.sources.get(name, SOURCE_UNKNOWN)}）" for name in FIELD_LABELS_JA]
        banner = "患者: " + " ｜ ".join(cells)
        if self.conflicts:
            banner += "\n\n⚠ " + self.conflict_message_ja()
        return banner


def _valid(name: str, value: Any) -> bool:
    from dokuei.tools.context import PatientContext

    try:
        PatientContext(**{name: value})
    except ValueError:
        return False
    return True


def resolve_patient(question: str, form: dict[str, Any], header: dict[str, Any] | None = None) -> PatientResolution:
    """Merge form, question and DICOM-header facts. Agreeing sources → the value; disagreeing → unknown
    and a conflict; an out-of-range value (年齢 300) is not used."""
    stated = {SOURCE_QUESTION: patient_from_question(question),
              SOURCE_FORM: {k: v for k, v in form.items() if v not in (None, "")},
              SOURCE_HEADER: {k: v for k, v in (header or {}).items() if v not in (None, "")}}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    conflicts: list[Conflict] = []
    for name in FIELD_LABELS_JA:
        given = {source: facts[name] for source, facts in stated.items() if name in facts}
        if not given:
            sources[name] = SOURCE_UNKNOWN
            continue
        flat = [v for value in given.values() for v in (value if isinstance(value, list) else [value])]
        if len({float(v) if name != "sex" else v for v in flat}) > 1:
            conflicts.append(Conflict(name, {s: v if isinstance(v, list) else [v] for s, v in given.items()}))
            sources[name] = SOURCE_UNKNOWN
            continue
        value = flat[0]
        if name == "age_years":
            value = int(value)
        elif name != "sex":
            value = float(value)
        if not _valid(name, value):
            sources[name] = SOURCE_UNKNOWN
            continue
        values[name] = value
        sources[name] = " + ".join(given)
    return PatientResolution(values=values, sources=sources, conflicts=conflicts)
