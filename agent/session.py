"""What one turn may take from the earlier turns of its session.

A session remembers attachments and patient facts, but an answer about a new patient must never reuse the
previous patient's study: a different patient id, age or sex, or a question that says 「別の患者」, starts
over. Earlier attachments count for a turn only when its question refers to them (「この」「前回」, or
their modality by name); attachments sent with the turn always count.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

#: phrases that announce a different patient
NEW_PATIENT_CUES_JA = ("別の患者", "別患者", "次の患者", "他の患者", "新しい患者", "新患")
#: phrases that point back at something already attached
REFERENCE_CUES_JA = ("この", "その", "前回", "先ほど", "さっき", "上記", "添付")
#: words that name an attachment kind (see agent.attachments)
KIND_WORDS_JA: dict[str, tuple[str, ...]] = {
    "ecg": ("心電図", "ECG", "EKG", "波形", "QT", "心拍", "不整脈"),
    "ct_series": ("CT", "ＣＴ", "断層", "体組成", "内臓脂肪", "リンパ節", "臓器"),
    "mr_series": ("MR", "ＭＲ"),
    "nifti": ("CT", "NIfTI", "ボリューム", "セグメンテーション", "マスク"),
    "dicom_seg": ("セグメンテーション", "マスク", "SEG"),
    "chest_xray": ("X線", "Ｘ線", "レントゲン", "胸写", "胸部写真", "XP", "CXR"),
    "image": ("画像", "写真"),
    "report_text": ("レポート", "報告書", "所見", "読影"),
    "table": ("表", "CSV", "検査値"),
}
#: patient facts whose change means another person (height and weight change within one person)
IDENTITY_FIELDS = ("patient_id", "age_years", "sex")

_FIELD_JA = {
    "age_years": "年齢は 0〜130 の整数（歳）で指定してください",
    "sex": "性別は M（男性）または F（女性）で指定してください",
    "height_cm": "身長は 30〜260 の数値（cm）で指定してください",
    "weight_kg": "体重は 1〜400 の数値（kg）で指定してください",
    "patient_id": "患者 ID は文字列で指定してください",
}


def starts_new_patient(question: str, session_patient: dict[str, Any], new_patient: dict[str, Any]) -> bool:
    """True when this turn is about another patient than the session's so far."""
    if any(cue in question for cue in NEW_PATIENT_CUES_JA):
        return True
    return any(name in session_patient and name in new_patient and session_patient[name] != new_patient[name]
               for name in IDENTITY_FIELDS)


def refers_to(question: str, attachment: dict[str, Any]) -> bool:
    if any(cue in question for cue in REFERENCE_CUES_JA):
        return True
    upper = question.upper()
    return any(word.upper() in upper for word in KIND_WORDS_JA.get(str(attachment.get("kind")), ()))


def select_attachments(question: str, earlier: list[dict[str, Any]],
                       added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This turn's attachments: every new one, and the earlier ones the question refers to."""
    paths = {a["path"] for a in added}
    kept = [a for a in earlier if a["path"] not in paths and refers_to(question, a)]
    return [*kept, *added]


def patient_ja_errors(exc: ValidationError) -> str:
    """A PatientContext validation error as one Japanese sentence per field, without pydantic's English."""
    fields = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        message = _FIELD_JA.get(name, _unknown_ja(name))
        if message not in fields:
            fields.append(message)
    return "患者情報が正しくありません: " + "。".join(fields) + "。"


def _unknown_ja(name: str) -> str:
    return f"患者情報の項目「{name}」は指定できません（年齢・性別・身長・体重・ID のみ）"


def unknown_patient_fields_ja(names: list[str]) -> str:
    return "患者情報が正しくありません: " + "。".join(_unknown_ja(n) for n in names) + "。"
