"""measure_body_composition: L3 skeletal muscle, psoas and fat areas from CT, judged by Japanese criteria.

L3 is found from TotalSegmentator's vertebra labels; SMA, SMI, muscle HU, PMI, VFA and SFA are measured
on that slice (method: :mod:`dokuei.ct.bodycomp`); cut-offs by sex and their sources live in
``knowledge/data/sarcopenia_ct_jp.json``. Without height the indices are not computed and the answer
says so; every area is still reported. The L3 slice with tissues coloured is written as an artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from dokuei.ct import pipeline
from dokuei.ct.bodycomp import BodyComposition, criteria, measure
from dokuei.io.totalseg import totalseg_version
from dokuei.io.volume import Volume
from dokuei.tools.base import Artifact, Citation, Outcome, Requirements, Tool
from dokuei.tools.context import ToolContext
from dokuei.tools.segment_ct import CT_KINDS, LICENCE, fmt, split_ct_attachments


class MeasureBodyCompositionInput(BaseModel):
    study_path: Path = Field(
        description="CT study: DICOM series folder or zip, NIfTI, or a study folder with "
        "ct.nii.gz and TotalSegmentator outputs in segmentations/"
    )
    segmentation_paths: list[Path] = Field(
        default_factory=list,
        description="precomputed TotalSegmentator outputs "
        "(total, abdominal_muscles, tissue_types) when not inside the study folder",
    )
    sex: Literal["M", "F"] | None = Field(default=None, description="patient sex; cut-offs differ by sex")
    age_years: int | None = Field(default=None, ge=0, le=130, description="patient age in years (context)")
    height_cm: float | None = Field(default=None, gt=30, lt=260, description="height for SMI/PMI, cm")
    weight_kg: float | None = Field(
        default=None, gt=1, lt=400, description="weight for BMI (muscle HU criterion), kg"
    )
    fast: bool | None = Field(
        default=None,
        description="TotalSegmentator --fast for the total task; default: fast "
        "on CPU, full resolution on GPU",
    )
    write_overlay: bool = Field(default=True, description="write the L3 overlay PNG")


class JudgementResult(BaseModel):
    criterion_id: str = Field(description="criterion id in sarcopenia_ct_jp.json")
    label_ja: str = Field(description="what is judged")
    value: float | None = Field(description="measured value (unit in 'unit')")
    unit: str = Field(description="unit of value and cutoff")
    cutoff: float | None = Field(description="cut-off for this patient's sex (and BMI), same unit")
    result: Literal["below", "at_or_above", "not_assessable"] = Field(
        description="value below the cut-off or not"
    )
    result_ja: str = Field(description="the judgement in Japanese")
    source_id: str = Field(description="id of the source of the cut-off")
    source: str = Field(description="citation of the source")


class MeasureBodyCompositionOutput(BaseModel):
    level: str = Field(description="vertebral level measured (always L3)")
    l3_slice_index: int = Field(
        description="axial slice index k (RAS+, foot to head) through the L3 centroid"
    )
    l3_z_mm: float = Field(description="z coordinate of that slice, mm")
    n_l3_slices: int = Field(description="slices the L3 label spans")
    sma_cm2: float | None = Field(description="skeletal muscle area at L3 (−29…150 HU), cm²")
    smi_cm2_per_m2: float | None = Field(description="skeletal muscle index SMA/height², cm²/m²")
    muscle_mean_hu: float | None = Field(description="mean CT value of L3 skeletal muscle (myosteatosis), HU")
    psoas_area_cm2: float | None = Field(description="both psoas muscles at L3, cm²")
    pmi_cm2_per_m2: float | None = Field(description="psoas muscle index psoas area/height², cm²/m²")
    paraspinal_area_cm2: float | None = Field(
        description="both paraspinal (autochthonous) muscles at L3, cm²"
    )
    vfa_cm2: float | None = Field(description="visceral (torso) fat area at L3 (−190…−30 HU), cm²")
    sfa_cm2: float | None = Field(description="subcutaneous fat area at L3 (−190…−30 HU), cm²")
    bmi_kg_m2: float | None = Field(description="body-mass index from the given height and weight, kg/m²")
    sex: Literal["M", "F"] | None = Field(description="sex used for the cut-offs")
    age_years: int | None = Field(description="age used for context")
    height_cm: float | None = Field(description="height used for the indices, cm")
    patient_source: str = Field(description="where sex/age/height came from: input, DICOM header or none")
    muscle_source: str = Field(description="labels that define skeletal muscle")
    psoas_source: str = Field(description="labels that define psoas")
    fat_source: str = Field(description="labels that define fat")
    engine: dict[str, str] = Field(description="task → where its labels came from")
    judgements: list[JudgementResult] = Field(description="each criterion with its cut-off and source")
    missing_ja: list[str] = Field(description="what could not be measured or judged, and why")
    context_ja: list[str] = Field(description="how to read the judgement (AWGS, JSH diagnosis, fat criteria)")
    notes_ja: list[str] = Field(description="what ingestion noticed or did")
    overlay_path: str | None = Field(description="L3 overlay PNG")


class MeasureBodyComposition(Tool[MeasureBodyCompositionInput]):
    name: ClassVar[str] = "measure_body_composition"
    title_ja: ClassVar[str] = "体組成計測（L3）"
    version: ClassVar[str] = "1.0.0"
    description_ja: ClassVar[str] = (
        "CT から L3 椎体レベルを自動で特定し、骨格筋面積（SMA）、SMI、筋肉の平均 CT 値（筋内脂肪化）、"
        "大腰筋面積と PMI、"
        "内臓・皮下脂肪面積を計測して、日本肝臓学会のサルコペニア CT 基準（性別ごと）で判定します。骨格筋量・"
        "サルコペニア・体組成の質問に使います。臓器の体積には segment_ct を使います。"
    )
    description_en: ClassVar[str] = (
        "Finds the L3 vertebral level on a CT and measures skeletal muscle area, SMI, muscle attenuation, "
        "psoas area and PMI, visceral and subcutaneous fat areas; judges them against the Japan Society of "
        "Hepatology CT cut-offs by sex, with sources. Use for muscle mass, sarcopenia and body composition; "
        "not for organ "
        "volumes (segment_ct)."
    )
    Input: ClassVar[type[BaseModel]] = MeasureBodyCompositionInput
    Output: ClassVar[type[BaseModel]] = MeasureBodyCompositionOutput
    heavy: ClassVar[bool] = True  # runs in a worker process, killed at the timeout
    requires: ClassVar[Requirements] = Requirements(
        device="cuda_preferred",
        min_vram_gb=4.0,
        licence=LICENCE,
        python_packages=("nibabel", "pydicom"),
    )
    keywords_ja: ClassVar[tuple[str, ...]] = (
        "L3", "骨格筋", "骨格筋量", "筋肉量", "筋量", "サルコペニア", "SMI", "PMI", "大腰筋", "腸腰筋", "体組成",
        "内臓脂肪", "皮下脂肪", "筋内脂肪", "筋肉の質",
    )
    keywords_en: ClassVar[tuple[str, ...]] = (
        "skeletal muscle", "muscle area", "sarcopenia", "body composition", "visceral fat", "subcutaneous fat",
        "psoas", "SMI",
    )
    #: a body-composition question names fat or muscle volumes too; the L3 measurement answers it
    supersedes: ClassVar[tuple[str, ...]] = ("segment_ct",)
    needs_ja: ClassVar[str] = "L3 椎体を含む腹部 CT（DICOM シリーズまたは NIfTI）を添付してください。"
    attachment_kinds: ClassVar[tuple[str, ...]] = CT_KINDS

    def run(self, inp: MeasureBodyCompositionInput) -> Outcome:
        prepared = pipeline.prepare(
            inp.study_path,
            settings=self.settings,
            device=self.device,
            required=("total",),
            optional=("abdominal_muscles", "tissue_types"),
            segmentation_paths=inp.segmentation_paths,
            fast=inp.fast,
        )
        ct = prepared.ct
        sex, age, height, weight, source = _patient(inp, dict(ct.header))
        bc = measure(ct, prepared.segs, sex=sex, height_cm=height, weight_kg=weight, age_years=age)
        artifacts = []
        overlay = None
        if inp.write_overlay:
            overlay = self._overlay(inp, ct, bc)
            artifacts.append(
                Artifact(
                    path=overlay,
                    kind="image",
                    caption_ja=f"L3 レベル（スライス {bc.l3_slice_index}）の筋・脂肪の色分け",
                )
            )
        output = MeasureBodyCompositionOutput(
            level="L3",
            l3_slice_index=bc.l3_slice_index,
            l3_z_mm=bc.l3_z_mm,
            n_l3_slices=bc.l3_slices_in_label,
            sma_cm2=bc.sma_cm2,
            smi_cm2_per_m2=bc.smi_cm2_per_m2,
            muscle_mean_hu=bc.muscle_hu_mean,
            psoas_area_cm2=bc.psoas_area_cm2,
            pmi_cm2_per_m2=bc.pmi_cm2_per_m2,
            paraspinal_area_cm2=bc.paraspinal_area_cm2,
            vfa_cm2=bc.vfa_cm2,
            sfa_cm2=bc.sfa_cm2,
            bmi_kg_m2=bc.bmi_kg_per_m2,
            sex=sex,
            age_years=age,
            height_cm=height,
            patient_source=source,
            muscle_source=bc.muscle_source,
            psoas_source=bc.psoas_source,
            fat_source=bc.fat_source,
            engine=prepared.engine,
            judgements=[JudgementResult(**j.__dict__) for j in bc.judgements],
            missing_ja=bc.missing_ja,
            context_ja=bc.context_ja,
            notes_ja=prepared.notes_ja,
            overlay_path=overlay,
        )
        sources = criteria()["sources"]
        cited = sorted({j.source_id for j in bc.judgements if j.result != "not_assessable"})
        citations = [
            Citation(
                id=f"criteria:{sid}", kind="reference", label_ja=f"基準の出典: {sources[sid]}", text=sources[sid]
            )
            for sid in cited
        ]
        return Outcome(
            output=output,
            summary_ja=summary_ja(output),
            artifacts=artifacts,
            citations=citations,
            model_version=f"TotalSegmentator {totalseg_version()}",
        )

    def _overlay(self, inp: MeasureBodyCompositionInput, ct: Volume, bc: BodyComposition) -> str:
        from dokuei.ct.render import render_l3

        legend = {}
        if bc.sma_cm2 is not None:
            legend["muscle"] = f"骨格筋 {fmt(bc.sma_cm2)} cm²"
        if bc.psoas_area_cm2 is not None:
            legend["psoas"] = f"大腰筋 {fmt(bc.psoas_area_cm2)} cm²"
        if bc.sfa_cm2 is not None:
            legend["sat"] = f"皮下脂肪 {fmt(bc.sfa_cm2)} cm²"
        if bc.vfa_cm2 is not None:
            legend["vat"] = f"内臓脂肪 {fmt(bc.vfa_cm2)} cm²"
        out_dir = self.artifact_dir(inp)
        path = render_l3(
            ct,
            bc.l3_slice_index,
            bc.masks,
            legend,
            out_dir / "l3_overlay.png",
            f"L3 椎体レベル（スライス {bc.l3_slice_index}、z {bc.l3_z_mm:.1f} mm）",
        )
        return str(path)

    def input_from_context(self, ctx: ToolContext) -> MeasureBodyCompositionInput | None:
        images, masks = split_ct_attachments(ctx)
        if not images:
            return None
        p = ctx.patient
        return MeasureBodyCompositionInput(
            study_path=images[0],
            segmentation_paths=masks,
            sex=p.sex,
            age_years=p.age_years,
            height_cm=p.height_cm,
            weight_kg=p.weight_kg,
        )


def _patient(
    inp: MeasureBodyCompositionInput, header: dict[str, Any]
) -> tuple[Literal["M", "F"] | None, int | None, float | None, float | None, str]:
    """Patient facts: the input wins; the DICOM header fills what the input lacks (and says so)."""
    sex, age, height, weight = inp.sex, inp.age_years, inp.height_cm, inp.weight_kg
    used_header = []
    if sex is None and header.get("patient_sex") in ("M", "F"):
        sex = "M" if header["patient_sex"] == "M" else "F"
        used_header.append("性別")
    if age is None and isinstance(header.get("patient_age_years"), int):
        age = int(header["patient_age_years"])
        used_header.append("年齢")
    if height is None and isinstance(header.get("patient_height_cm"), float):
        height = float(header["patient_height_cm"])
        used_header.append("身長")
    if weight is None and isinstance(header.get("patient_weight_kg"), float):
        weight = float(header["patient_weight_kg"])
    given = any(v is not None for v in (inp.sex, inp.age_years, inp.height_cm))
    from_header = f"DICOM({'・'.join(used_header)})" if used_header else ""
    source = ("input" + (f"+{from_header}" if from_header else "")) if given else (from_header or "none")
    return sex, age, height, weight, source


def summary_ja(out: MeasureBodyCompositionOutput) -> str:
    """A radiologist's sentence: every number in it is a field of ``out``."""
    parts = [f"L3 椎体中央（スライス {out.l3_slice_index}）で計測しました。"]
    if out.sma_cm2 is not None:
        text = f"骨格筋面積（SMA）は {fmt(out.sma_cm2)} cm²"
        if out.smi_cm2_per_m2 is not None:
            text += f"、SMI は {fmt(out.smi_cm2_per_m2)} cm²/m²"
        if out.muscle_mean_hu is not None:
            text += f"、筋肉の平均 CT 値は {fmt(out.muscle_mean_hu)} HU"
        parts.append(text + " です。")
    if out.psoas_area_cm2 is not None:
        text = f"大腰筋面積は左右合計 {fmt(out.psoas_area_cm2)} cm²"
        if out.pmi_cm2_per_m2 is not None:
            text += f"（PMI {fmt(out.pmi_cm2_per_m2)} cm²/m²）"
        parts.append(text + " です。")
    if out.vfa_cm2 is not None and out.sfa_cm2 is not None:
        parts.append(f"内臓脂肪面積 {fmt(out.vfa_cm2)} cm²、皮下脂肪面積 {fmt(out.sfa_cm2)} cm² です。")
    sex_ja = {"M": "男性", "F": "女性"}.get(out.sex or "", "")
    for j in out.judgements:
        if j.criterion_id == "martin_muscle_attenuation" and j.result == "not_assessable":
            continue  # optional criterion: listed in the output, not repeated in the sentence
        if j.result == "not_assessable":
            parts.append(f"{j.label_ja}: {j.result_ja}。")
        else:
            relation = "未満" if j.result == "below" else "以上"
            parts.append(
                f"{j.label_ja}は基準値（{sex_ja} {fmt(j.cutoff or 0.0)} {j.unit}）{relation}で、"
                f"{j.result_ja}と判定されます。"
            )
    if any(j.result == "below" and j.criterion_id.startswith("jsh") for j in out.judgements):
        parts.append("ただし CT の筋肉量だけではサルコペニアと確定できず、握力（筋力）の評価が必要です。")
    for m in out.missing_ja:
        if "身長" in m or "性別" in m:
            parts.append(m)
    return "".join(parts)
