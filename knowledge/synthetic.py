"""A J-MID-like synthetic archive: Japanese CT / MRI / chest X-ray reports of head, chest and abdomen.

Every report is marked synthetic (``synthetic: true``, ids ``SYN-…``, source naming the generator and
seed). Patients have several studies over the years; a lesion found once is followed up with its size
changing (増大 / 縮小 / 著変なし) and the earlier study cited by date. Reports mix positive findings with
the negations radiologists write (「胸水は認めない。」). The ground truth sits beside the text: ``labels``
are the finding codes present (codes of :mod:`glossary` terms), ``meta.negated`` the codes explicitly
ruled out, ``meta.sizes_mm`` the measured sizes. Rows are in the import format, so the demo goes
through the same importer as a hospital export. Deterministic for a given seed; streams, so 1,000,000
reports cost time, not memory.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

GENERATOR = "dokuei-jmid-like/1"

LOBES = ("右肺上葉", "右肺中葉", "右肺下葉", "左肺上葉", "左肺下葉")
LIVER_SEGMENTS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
SIDES = ("右", "左", "両側")


@dataclass(frozen=True)
class Track:
    modality: str
    body_part: str
    departments: tuple[str, ...]
    indications: tuple[str, ...]
    findings: tuple[str, ...]  # finding codes that can occur on this track
    normals: tuple[tuple[str, str], ...]  # (code ruled out, sentence)


TRACKS: tuple[Track, ...] = (
    Track(
        "CT",
        "胸部",
        ("呼吸器内科", "呼吸器外科", "健診センター"),
        ("咳嗽精査。", "肺癌術後フォロー。", "健診で胸部異常影を指摘。", "発熱、呼吸苦。", "喫煙歴あり。"),
        (
            "nodule",
            "pleural_effusion",
            "emphysema",
            "ground_glass",
            "consolidation",
            "lymphadenopathy",
            "cardiomegaly",
            "atelectasis",
        ),
        (
            ("pleural_effusion", "胸水は認めない。"),
            ("lymphadenopathy", "縦隔・肺門リンパ節の腫大は認めない。"),
            ("nodule", "明らかな結節影は認めない。"),
            ("pericardial_effusion", "心嚢水貯留なし。"),
            ("consolidation", "浸潤影は認めない。"),
        ),
    ),
    Track(
        "CR",
        "胸部",
        ("内科", "健診センター", "救急科"),
        ("健診。", "発熱。", "術前検査。", "呼吸苦。"),
        ("cardiomegaly", "pleural_effusion", "consolidation", "nodule", "pneumothorax", "atelectasis"),
        (
            ("cardiomegaly", "心胸郭比は正常範囲。"),
            ("pleural_effusion", "両側肋横隔膜角は鋭。"),
            ("pneumothorax", "気胸なし。"),
            ("consolidation", "明らかな肺野異常影なし。"),
        ),
    ),
    Track(
        "CT",
        "腹部",
        ("消化器内科", "消化器外科", "泌尿器科"),
        ("肝機能異常。", "腹痛精査。", "大腸癌術後フォロー。", "血尿。", "体重減少。"),
        (
            "low_attenuation",
            "liver_cyst",
            "hemangioma",
            "fatty_liver",
            "gallstone",
            "renal_cyst",
            "renal_stone",
            "splenomegaly",
            "ascites",
            "pancreatic_cyst",
            "aneurysm",
            "lymphadenopathy",
        ),
        (
            ("low_attenuation", "肝に明らかな腫瘤性病変は認めない。"),
            ("ascites", "腹水は認めない。"),
            ("gallstone", "胆嚢に結石なし。"),
            ("lymphadenopathy", "有意なリンパ節腫大は認めない。"),
            ("splenomegaly", "脾腫なし。"),
        ),
    ),
    Track(
        "MR",
        "腹部",
        ("消化器内科",),
        ("肝腫瘤精査。", "膵嚢胞フォロー。"),
        ("low_attenuation", "liver_cyst", "hemangioma", "pancreatic_cyst"),
        (("low_attenuation", "肝に拡散制限を示す結節は認めない。"), ("ascites", "腹水なし。")),
    ),
    Track(
        "MR",
        "頭部",
        ("脳神経内科", "脳神経外科", "健診センター"),
        ("めまい。", "頭痛精査。", "脳ドック。", "右上下肢脱力。", "もの忘れ。"),
        ("cerebral_infarction", "white_matter", "aneurysm", "hemorrhage"),
        (
            ("cerebral_infarction", "DWI で新鮮梗塞を示唆する高信号は認めない。"),
            ("hemorrhage", "頭蓋内出血なし。"),
            ("aneurysm", "MRA で明らかな動脈瘤は指摘できない。"),
        ),
    ),
    Track(
        "CT",
        "頭部",
        ("救急科", "脳神経外科"),
        ("頭部打撲。", "意識障害。", "頭痛。"),
        ("hemorrhage", "cerebral_infarction", "white_matter"),
        (
            ("hemorrhage", "頭蓋内出血は認めない。"),
            ("cerebral_infarction", "明らかな新鮮梗塞は認めない。"),
            ("fracture", "頭蓋骨骨折なし。"),
        ),
    ),
)

# code -> (probability on its track, whether it has a size that is followed up)
_SIZED = {
    "nodule",
    "low_attenuation",
    "liver_cyst",
    "hemangioma",
    "pancreatic_cyst",
    "aneurysm",
    "lymphadenopathy",
    "renal_cyst",
    "hemorrhage",
}


@dataclass
class Lesion:
    code: str
    where: str
    size_mm: int
    last_seen: date


@dataclass
class Patient:
    pid: str
    age: int
    sex: str
    tracks: list[Track]
    lesions: dict[str, Lesion] = field(default_factory=dict)


def _describe(code: str, where: str, size: int | None, rng: random.Random) -> tuple[str, str]:
    """(findings sentence, diagnosis phrase) for one positive finding."""
    s = f"{size}mm" if size else ""
    table: dict[str, tuple[list[str], str]] = {
        "nodule": (
            [
                f"{where}に{s}大の充実性結節を認める。",
                f"{where}に径{s}の結節影あり。",
                f"{where}に{s}の小結節を認める。辺縁はやや不整。",
            ],
            f"{where}結節（{s}）",
        ),
        "pleural_effusion": (
            [f"{where}胸水を少量認める。", f"{where}に中等量の胸水貯留あり。"],
            f"{where}胸水",
        ),
        "emphysema": (["両肺上葉優位に小葉中心性肺気腫を認める。", "両肺に気腫性変化あり。"], "肺気腫"),
        "ground_glass": (
            [f"{where}にすりガラス影を認める。", f"{where}に淡いすりガラス状陰影あり。"],
            f"{where}すりガラス影",
        ),
        "consolidation": (
            [f"{where}に浸潤影を認める。肺炎を疑う。", f"{where}に air bronchogram を伴う浸潤影。"],
            f"{where}肺炎疑い",
        ),
        "lymphadenopathy": (
            [f"{where}リンパ節の腫大を認める（短径{s}）。", f"{where}に短径{s}のリンパ節腫大あり。"],
            f"{where}リンパ節腫大",
        ),
        "cardiomegaly": (["心拡大を認める。", f"心胸郭比 {rng.randint(52, 65)}% と心拡大あり。"], "心拡大"),
        "atelectasis": ([f"{where}に板状無気肺を認める。", f"{where}に無気肺あり。"], f"{where}無気肺"),
        "pneumothorax": ([f"{where}に気胸を認める。", f"{where}気胸あり、肺尖部は虚脱。"], f"{where}気胸"),
        "low_attenuation": (
            [f"肝{where}に{s}大の低吸収域を認める。", f"肝{where}に径{s}の境界やや不明瞭な低吸収域あり。"],
            f"肝{where}低吸収域（{s}）、転移の除外を要する",
        ),
        "liver_cyst": ([f"肝{where}に{s}の嚢胞を認める。", f"肝{where}に{s}大の肝嚢胞あり。"], "肝嚢胞"),
        "hemangioma": (
            [f"肝{where}に{s}の早期濃染と遷延性濃染を示す結節。血管腫を疑う。"],
            f"肝{where}血管腫疑い",
        ),
        "fatty_liver": (["肝実質の CT 値低下あり、脂肪肝の所見。", "びまん性の脂肪肝を認める。"], "脂肪肝"),
        "gallstone": (["胆嚢内に結石を認める。", "胆嚢結石あり。壁肥厚なし。"], "胆石"),
        "renal_cyst": ([f"{where}腎に{s}の嚢胞を認める。", f"{where}腎嚢胞（{s}）あり。"], f"{where}腎嚢胞"),
        "renal_stone": (
            [f"{where}腎に結石を認める。水腎症なし。", f"{where}腎下極に小結石あり。"],
            f"{where}腎結石",
        ),
        "splenomegaly": (["脾腫を認める。", "脾臓の腫大あり。"], "脾腫"),
        "ascites": (["少量の腹水を認める。", "肝周囲に腹水あり。"], "腹水"),
        "pancreatic_cyst": (
            [f"膵{where}に{s}の嚢胞性病変を認める。IPMN を疑う。", f"膵{where}に{s}大の膵嚢胞あり。"],
            f"膵嚢胞（IPMN 疑い、{s}）",
        ),
        "aneurysm": (
            [f"{where}に{s}の動脈瘤を認める。", f"{where}に最大径{s}の瘤あり。"],
            f"{where}動脈瘤（{s}）",
        ),
        "cerebral_infarction": (
            [f"{where}に陳旧性ラクナ梗塞を認める。", f"{where}に DWI 高信号域あり、急性期脳梗塞を疑う。"],
            f"{where}脳梗塞",
        ),
        "white_matter": (
            ["両側大脳白質に慢性虚血性変化を認める。", "深部白質に散在性の白質病変あり。"],
            "慢性虚血性変化",
        ),
        "hemorrhage": (
            [f"{where}に{s}大の血腫を認める。", f"{where}に高吸収域あり、出血（{s}）を疑う。"],
            f"{where}出血",
        ),
    }
    sentences, dx = table[code]
    return rng.choice(sentences), dx


def _where(code: str, body_part: str, rng: random.Random) -> str:
    if code in ("nodule", "ground_glass", "consolidation", "atelectasis"):
        return rng.choice(LOBES)
    if code in ("pleural_effusion", "pneumothorax"):
        return rng.choice(SIDES)
    if code in ("low_attenuation", "liver_cyst", "hemangioma"):
        return rng.choice(LIVER_SEGMENTS)
    if code in ("renal_cyst", "renal_stone"):
        return rng.choice(("右", "左"))
    if code == "pancreatic_cyst":
        return rng.choice(("頭部", "体部", "尾部"))
    if code == "aneurysm":
        return "腹部大動脈" if body_part == "腹部" else rng.choice(("左中大脳動脈", "前交通動脈"))
    if code == "lymphadenopathy":
        return "傍大動脈" if body_part == "腹部" else rng.choice(("縦隔", "右肺門"))
    if code == "cerebral_infarction":
        return rng.choice(("左基底核", "右放線冠", "左視床", "右前頭葉"))
    if code == "hemorrhage":
        return rng.choice(("右被殻", "左硬膜下", "左視床"))
    return ""


def _size(code: str, rng: random.Random) -> int:
    return {
        "nodule": rng.randint(4, 28),
        "aneurysm": rng.randint(4, 45),
        "lymphadenopathy": rng.randint(10, 25),
        "hemorrhage": rng.randint(8, 40),
    }.get(code, rng.randint(5, 35))


def _report(p: Patient, track: Track, study: date, n: int, rng: random.Random, seed: int) -> dict[str, Any]:
    labels: list[str] = []
    sizes: dict[str, int] = {}
    findings: list[str] = []
    diagnoses: list[str] = []
    for code in track.findings:
        key = f"{track.body_part}:{code}"
        lesion = p.lesions.get(key)
        if lesion is not None:
            before = lesion.size_mm
            lesion.size_mm = max(2, round(before * rng.choice((0.7, 0.9, 1.0, 1.0, 1.15, 1.4))))
            change = "増大" if lesion.size_mm > before else "縮小" if lesion.size_mm < before else "著変なし"
            sentence, dx = _describe(code, lesion.where, lesion.size_mm, rng)
            findings.append(
                f"前回（{lesion.last_seen:%Y/%m/%d}）と比較して、{sentence.rstrip('。')}"
                f"（{before}mm→{lesion.size_mm}mm、{change}）。"
            )
            diagnoses.append(f"{dx}、{change}")
            lesion.last_seen = study
        elif rng.random() < 0.16:
            where, size = _where(code, track.body_part, rng), _size(code, rng) if code in _SIZED else None
            sentence, dx = _describe(code, where, size, rng)
            findings.append(sentence)
            diagnoses.append(dx)
            if size:
                p.lesions[key] = Lesion(code, where, size, study)
        else:
            continue
        labels.append(code)
        if key in p.lesions:
            sizes[code] = p.lesions[key].size_mm
    negated = []
    for code, sentence in rng.sample(track.normals, k=min(len(track.normals), rng.randint(1, 3))):
        if code not in labels:
            findings.append(sentence)
            negated.append(code)
    if not labels:
        diagnoses.append(
            rng.choice(("有意な異常所見なし。", "特記すべき異常を認めない。", "明らかな異常なし。"))
        )
    return {
        "report_id": f"SYN-{n:07d}",
        "patient_id": p.pid,
        "study_date": study.isoformat(),
        "modality": track.modality,
        "body_part": track.body_part,
        "department": rng.choice(track.departments),
        "clinical_info": f"{p.age}歳{'男性' if p.sex == 'M' else '女性'}。{rng.choice(track.indications)}",
        "findings": "".join(findings),
        "diagnosis": "。".join(d.rstrip("。") for d in diagnoses) + "。",
        "labels": labels,
        "synthetic": True,
        "meta": {"generator": GENERATOR, "seed": seed, "negated": negated, "sizes_mm": sizes},
    }


def generate(
    n: int, seed: int = 0, start: date = date(2015, 1, 5), end: date = date(2025, 12, 26)
) -> Iterator[dict[str, Any]]:
    """``n`` synthetic reports as import rows, patient by patient (1–6 studies each, 2–18 months apart),
    study dates between ``start`` and ``end``."""
    rng = random.Random(seed)
    made = 0
    patient_no = 0
    while made < n:
        patient_no += 1
        p = Patient(
            f"SYN-P{seed:02d}{patient_no:07d}",
            rng.randint(25, 92),
            rng.choice("MF"),
            rng.sample(TRACKS, k=rng.randint(1, 2)),
        )
        study = start + timedelta(days=rng.randint(0, max(0, (end - start).days - 60)))
        for _ in range(min(rng.randint(1, 6), n - made)):
            if study > end:
                break
            made += 1
            yield _report(p, rng.choice(p.tracks), study, made, rng, seed)
            study += timedelta(days=rng.randint(60, 540))


def write_jsonl(path: Path, n: int, seed: int = 0) -> int:
    """Export ``n`` synthetic reports with their labels in the JSONL import format."""
    with path.open("w", encoding="utf-8") as fh:
        for row in generate(n, seed):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return n
