"""Body composition at L3: find the level, measure muscle and fat areas, judge them against criteria.

L3 is the slice through the centroid of TotalSegmentator's ``vertebrae_L3`` label (mid-vertebral level,
where published SMI cut-offs are defined). Areas count pixels of a tissue label whose HU lie in the
tissue's range (skeletal muscle −29…150, adipose −190…−30; Mitsiopoulos 1998) times the pixel area
from the header. Muscle comes, in order of preference, from ``tissue_types`` (skeletal_muscle), from
``abdominal_muscles`` (every muscle label), or, for psoas and paraspinal muscles only, from ``total``.
Criteria (cut-offs by sex, their sources) are data: ``knowledge/data/sarcopenia_ct_jp.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.errors import InputError as ToolInputError
from dokuei.io.totalseg import Segmentation
from dokuei.io.volume import Volume, refuse_non_finite
from dokuei.knowledge import load_json


def criteria() -> dict[str, Any]:
    return load_json("sarcopenia_ct_jp.json")  # cached by load_json


@dataclass
class Judgement:
    criterion_id: str
    label_ja: str
    value: float | None
    unit: str
    cutoff: float | None
    result: str  # "below" | "at_or_above" | "not_assessable"
    result_ja: str
    source_id: str
    source: str


@dataclass
class BodyComposition:
    l3_slice_index: int
    l3_z_mm: float
    l3_slices_in_label: int
    sma_cm2: float | None = None
    muscle_hu_mean: float | None = None
    psoas_area_cm2: float | None = None
    paraspinal_area_cm2: float | None = None
    sfa_cm2: float | None = None
    vfa_cm2: float | None = None
    smi_cm2_per_m2: float | None = None
    pmi_cm2_per_m2: float | None = None
    bmi_kg_per_m2: float | None = None
    muscle_source: str = ""
    psoas_source: str = ""
    fat_source: str = ""
    judgements: list[Judgement] = field(default_factory=list)
    missing_ja: list[str] = field(default_factory=list)
    context_ja: list[str] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # for the overlay


def find_l3(total: Segmentation) -> tuple[int, int]:
    """(slice index through the L3 centroid, number of slices the L3 label spans)."""
    ids = [i for i, n in total.names.items() if n == "vertebrae_L3"]
    per_slice = np.zeros(total.labels.shape[2], dtype=np.int64)
    for i in ids:
        per_slice += (total.labels == i).sum(axis=(0, 1))
    slices = np.flatnonzero(per_slice)
    if slices.size == 0:
        raise ToolInputError(
            "L3 椎体が見つかりません（撮像範囲外か、椎体のセグメンテーションがありません）。",
            "no vertebrae_L3 voxels",
        )
    centroid = float(np.sum(np.arange(per_slice.size) * per_slice) / per_slice.sum())
    return round(centroid), int(slices.size)


def _area(
    mask2d: np.ndarray, ct2d: np.ndarray | None, hu_range: list[float] | None, pixel_cm2: float
) -> float:
    m = mask2d if hu_range is None or ct2d is None else mask2d & (ct2d >= hu_range[0]) & (ct2d <= hu_range[1])
    return round(float(m.sum()) * pixel_cm2, 2)


def measure(
    ct: Volume,
    segs: dict[str, Segmentation],
    *,
    sex: str | None,
    height_cm: float | None,
    weight_kg: float | None,
    age_years: int | None,
) -> BodyComposition:
    if "total" not in segs:
        raise ToolInputError(
            "L3 の位置を決めるには TotalSegmentator の total タスク（椎体ラベル）が必要です。",
            f"tasks present: {sorted(segs)}",
        )
    k, n_l3 = find_l3(segs["total"])
    # defence in depth (the readers refuse these too): a NaN/inf voxel or a bad spacing changes every area
    refuse_non_finite(ct.array[:, :, k], Path(ct.source).name)
    if not (np.isfinite(ct.pixel_area_cm2) and ct.pixel_area_cm2 > 0):
        raise ToolInputError(
            f"{Path(ct.source).name} の画素間隔が不正なため、面積を計算できません。",
            f"{ct.source}: spacing {ct.spacing_mm}",
        )
    z_mm = float((ct.affine @ np.array([0, 0, k, 1.0]))[2])
    result = BodyComposition(l3_slice_index=k, l3_z_mm=round(z_mm, 1), l3_slices_in_label=n_l3)
    c = criteria()
    muscle_hu, fat_hu = c["thresholds_hu"]["skeletal_muscle"], c["thresholds_hu"]["adipose"]
    px = ct.pixel_area_cm2
    hu2d = ct.array[:, :, k]
    edge = k in (0, ct.shape[2] - 1) or n_l3 <= 1
    if edge:
        result.missing_ja.append("L3 椎体が撮像範囲の端にかかっており、L3 中央の位置が不確かです。")

    muscle: np.ndarray | None = None
    if "tissue_types" in segs:
        muscle, result.muscle_source = (
            segs["tissue_types"].slice_mask(k, "skeletal_muscle"),
            "tissue_types:skeletal_muscle",
        )
    elif "abdominal_muscles" in segs:
        am = segs["abdominal_muscles"]
        muscle, result.muscle_source = am.labels[:, :, k] > 0, "abdominal_muscles:all"
    if muscle is not None:
        muscle_in_range = muscle & (hu2d >= muscle_hu[0]) & (hu2d <= muscle_hu[1])
        result.sma_cm2 = round(float(muscle_in_range.sum()) * px, 2)
        if muscle_in_range.any():
            result.muscle_hu_mean = round(float(hu2d[muscle_in_range].mean()), 1)
        result.masks["muscle"] = muscle_in_range
    else:
        result.missing_ja.append(
            "全骨格筋のラベル（tissue_types または abdominal_muscles）がないため、"
            "骨格筋面積（SMA）と SMI は計算できません。"
        )

    psoas: np.ndarray | None = None
    if "abdominal_muscles" in segs:
        psoas = segs["abdominal_muscles"].slice_mask(k, "psoas_major_left", "psoas_major_right")
        result.psoas_source = "abdominal_muscles:psoas_major"
    elif "total" in segs:
        psoas = segs["total"].slice_mask(k, "iliopsoas_left", "iliopsoas_right")
        result.psoas_source = "total:iliopsoas（L3 では大腰筋に相当）"
    if psoas is not None and psoas.any():
        result.psoas_area_cm2 = _area(psoas, None, None, px)
        result.masks["psoas"] = psoas
    paraspinal = segs["total"].slice_mask(k, "autochthon_left", "autochthon_right")
    if paraspinal.any():
        result.paraspinal_area_cm2 = _area(paraspinal, hu2d, muscle_hu, px)

    if "tissue_types" in segs:
        tt = segs["tissue_types"]
        sat = tt.slice_mask(k, "subcutaneous_fat") & (hu2d >= fat_hu[0]) & (hu2d <= fat_hu[1])
        vat = tt.slice_mask(k, "torso_fat") & (hu2d >= fat_hu[0]) & (hu2d <= fat_hu[1])
        result.sfa_cm2, result.vfa_cm2 = round(float(sat.sum()) * px, 2), round(float(vat.sum()) * px, 2)
        result.masks["sat"], result.masks["vat"] = sat, vat
        result.fat_source = "tissue_types"
        result.context_ja.append(c["context"]["visceral_fat"]["text_ja"])
    else:
        result.missing_ja.append(
            "脂肪のラベル（tissue_types、ライセンスが必要）がないため、皮下・内臓脂肪面積は計算できません。"
        )

    height_m2 = (height_cm / 100.0) ** 2 if height_cm else None
    if height_m2 is None:
        result.missing_ja.append("身長が不明なため、SMI と PMI（身長² で割る指標）は計算・判定できません。")
    else:
        if result.sma_cm2 is not None:
            result.smi_cm2_per_m2 = round(result.sma_cm2 / height_m2, 2)
        if result.psoas_area_cm2 is not None:
            result.pmi_cm2_per_m2 = round(result.psoas_area_cm2 / height_m2, 2)
        if weight_kg:
            result.bmi_kg_per_m2 = round(weight_kg / height_m2, 1)
    if sex is None:
        result.missing_ja.append("性別が不明なため、性別ごとの基準値で判定できません。")
    result.judgements = _judge(result, sex)
    _context(result, sex, age_years)
    return result


#: what a missing measure needs: (the area it is computed from, the mask that area comes from)
_MUSCLE_MASK_JA = "skeletal_muscle（tissue_types）または腹筋群（abdominal_muscles）のマスク"
_NEEDS_JA = {
    "smi_cm2_per_m2": ("sma_cm2", f"骨格筋面積（SMA）の元になる {_MUSCLE_MASK_JA}"),
    "pmi_cm2_per_m2": ("psoas_area_cm2", "大腰筋面積の元になる大腰筋（abdominal_muscles または total）のマスク"),
    "muscle_hu_mean": ("sma_cm2", f"骨格筋 CT 値の元になる {_MUSCLE_MASK_JA}"),
}


def _why_no_value(bc: BodyComposition, measure: str) -> str:
    """Why ``measure`` has no value: which mask is missing, or that the height is (index = area / height²)."""
    area, needs_ja = _NEEDS_JA.get(measure, ("", ""))
    if not area:
        return f"{measure} を計算できない"
    if getattr(bc, area) is None:
        return f"{needs_ja}がない"
    return "身長が不明（指数 = 面積 / 身長²）"


def _judge(bc: BodyComposition, sex: str | None) -> list[Judgement]:
    c = criteria()
    out = []
    for crit in c["criteria"]:
        value = getattr(bc, crit["measure"])
        cutoff: float | None = None
        reason = ""
        if "cutoff" in crit:
            cutoff = crit["cutoff"].get(sex) if sex else None
            reason = "" if sex else "性別が不明"
        elif "cutoff_by_bmi" in crit:
            if bc.bmi_kg_per_m2 is None:
                reason = "BMI（身長・体重）が不明"
            else:
                for rule in crit["cutoff_by_bmi"]:
                    if ("bmi_below" in rule and bc.bmi_kg_per_m2 < rule["bmi_below"]) or (
                        "bmi_at_or_above" in rule and bc.bmi_kg_per_m2 >= rule["bmi_at_or_above"]
                    ):
                        cutoff = rule["cutoff"]
        if value is None:
            why = _why_no_value(bc, crit["measure"])
            reason = f"{reason}、{why}" if reason else why
        if value is None or cutoff is None:
            result, result_ja = "not_assessable", f"判定不能（{reason}）"
        elif value < cutoff:
            result, result_ja = "below", crit["below_ja"]
        else:
            result, result_ja = "at_or_above", crit["at_or_above_ja"]
        out.append(
            Judgement(
                crit["id"],
                crit["label_ja"],
                value,
                crit["unit"],
                cutoff,
                result,
                result_ja,
                crit["source_id"],
                c["sources"][crit["source_id"]],
            )
        )
    return out


def _context(bc: BodyComposition, sex: str | None, age_years: int | None) -> None:
    ctx = criteria()["context"]
    awgs = ctx["awgs2019"]
    text = awgs["text_ja"]
    if age_years is not None and age_years < awgs["age_min_years"]:
        text += f"（AWGS は {awgs['age_min_years']} 歳以上の高齢者を対象とする基準です。）"
    bc.context_ja.insert(0, ctx["jsh_diagnosis"]["text_ja"])
    bc.context_ja.insert(0, text)
