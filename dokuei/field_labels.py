"""Japanese labels for tool-output fields, for what a clinician reads (PDF tables, the UI's value tables).

Field names keep their units (``smi_cm2_per_m2``) because code and exports read them; a person reads
「骨格筋指数（SMI）」 with the unit in its own column. A field without a label here is shown by its name,
so a new tool's output is never hidden, only less polished.
"""

from __future__ import annotations

import re
from typing import Any

FIELD_LABELS_JA: dict[str, str] = {
    # body composition (L3)
    "sma_cm2": "骨格筋面積（SMA）",
    "smi_cm2_per_m2": "骨格筋指数（SMI）",
    "psoas_area_cm2": "大腰筋面積",
    "pmi_cm2_per_m2": "大腰筋指数（PMI）",
    "paraspinal_area_cm2": "傍脊柱筋面積",
    "sfa_cm2": "皮下脂肪面積",
    "vfa_cm2": "内臓脂肪面積",
    "muscle_mean_hu": "骨格筋の平均 CT 値",
    "l3_z_mm": "L3 スライスの z 座標",
    "l3_slice_index": "L3 スライス番号",
    "level": "計測レベル",
    "n_l3_slices": "L3 椎体のスライス数",
    "bmi_kg_m2": "BMI",
    "height_cm": "身長",
    "weight_kg": "体重",
    "age_years": "年齢",
    # organs
    "volume_ml": "体積",
    "mean_hu": "平均 CT 値",
    "sd_hu": "CT 値の標準偏差",
    "noise_sd_hu": "画像ノイズ（SD）",
    # lymph nodes and RECIST
    "short_axis_mm": "短径",
    "long_axis_mm": "長径",
    "slice_z_mm": "計測スライスの z 座標",
    "sum_mm": "径和",
    "sum_of_target_short_axes_mm": "標的病変の短径和",
    "baseline_sum_mm": "ベースラインの径和",
    "nadir_sum_mm": "最小径和（nadir）",
    "change_from_baseline_percent": "ベースラインからの変化率",
    "change_from_nadir_mm": "最小径和からの増加",
    "change_from_nadir_percent": "最小径和からの変化率",
    "distance_mm": "距離",
    "max_slice_thickness_mm": "最大スライス厚",
    "slice_spacing_mm": "スライス間隔",
    "pixel_spacing_mm": "画素間隔",
    # ECG
    "heart_rate_bpm": "心拍数",
    "rr_ms": "RR 間隔",
    "pr_ms": "PR 間隔",
    "qrs_ms": "QRS 幅",
    "qt_ms": "QT 間隔",
    "qtc_ms": "QTc",
    "qtc_bazett_ms": "QTc（Bazett）",
    "qtc_fridericia_ms": "QTc（Fridericia）",
    # common fields
    "name": "名称（英語）",
    "name_ja": "名称",
    "label": "番号",
    "present": "検出",
    "sex": "性別",
    "sex_used": "判定に用いた性別",
    "study_date": "検査日",
    "modality": "モダリティ",
    "item": "項目",
    "value": "値",
    "unit": "単位",
    "grade": "判定",
    "overall_grade": "総合判定",
    "criterion_ja": "基準",
    "error_ja": "エラー",
    "category": "分類",
    "status": "状態",
    "score": "スコア",
    "evidence": "根拠",
    "probability": "確率",
    "threshold": "閾値",
    "positive": "陽性",
    "recist_class": "RECIST 分類",
    "role": "役割",
    "station": "リンパ節ステーション",
    "side": "左右",
    "region_ja": "部位",
    "vertebral_level": "椎体レベル",
    "slice_index": "スライス番号",
    "overall_response": "総合効果判定",
    "report_id": "レポート ID",
    "sampling_rate_hz": "サンプリング周波数",
    "task": "タスク",
    "engine": "実行方式",
    # containers
    "structures": "構造",
    "nodes": "リンパ節",
    "targets": "標的病変",
    "items": "項目",
    "intervals": "間隔",
}

#: field-name suffix → (UCUM code, human unit). Longest suffix first.
UNIT_SUFFIXES: tuple[tuple[str, str, str], ...] = (
    ("_cm2_per_m2", "cm2/m2", "cm²/m²"),
    ("_kg_m2", "kg/m2", "kg/m²"),
    ("_cm2", "cm2", "cm²"),
    ("_mm", "mm", "mm"),
    ("_ml", "mL", "mL"),
    ("_ms", "ms", "ms"),
    ("_bpm", "/min", "/min"),
    ("_hu", "[hnsf'U]", "HU"),
    ("_percent", "%", "%"),
    ("_kg", "kg", "kg"),
    ("_cm", "cm", "cm"),
)


def unit_of(name: str) -> tuple[str, str] | None:
    """(UCUM code, unit as printed) from the field name's suffix, or None for a unit-less field."""
    for suffix, ucum, human in UNIT_SUFFIXES:
        if name.endswith(suffix):
            return ucum, human
    return None


_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def field_label_ja(key: str) -> str:
    return FIELD_LABELS_JA.get(key, key)


def path_label_ja(output: dict[str, Any], path: str) -> str:
    """``structures[3].volume_ml`` → 「肝臓 体積」: a list item is named by its own ``name_ja``, else by
    the container's label and the item's ``label`` (「リンパ節 #3」), else by a 1-based number."""
    parts: list[str] = []
    value: Any = output
    for match in _SEGMENT.finditer(path):
        key, indexes = match.group(1), match.group(2)
        value = value.get(key) if isinstance(value, dict) else None
        if not indexes:
            parts.append(field_label_ja(key))
            continue
        for index in (int(i) for i in re.findall(r"\d+", indexes)):
            value = value[index] if isinstance(value, list) and index < len(value) else None
            item = value if isinstance(value, dict) else {}
            if item.get("name_ja"):
                parts.append(str(item["name_ja"]))
            elif item.get("label") not in (None, ""):
                parts.append(f"{field_label_ja(key)} #{item['label']}")
            else:
                parts.append(f"{field_label_ja(key)} {index + 1}")
    return " ".join(parts)
