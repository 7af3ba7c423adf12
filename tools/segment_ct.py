"""segment_ct: per-structure volume (mL), mean/SD HU and presence from a CT, with Japanese names.

The labels come from TotalSegmentator (run here when its weights are installed) or from its
precomputed outputs lying beside the CT (see :mod:`dokuei.io.ctstudy`). An organ montage is written
as an artifact.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from dokuei.ct import pipeline
from dokuei.ct.organs import structure_stats
from dokuei.io import totalseg
from dokuei.io.totalseg import japanese_names, totalseg_version
from dokuei.tools.base import Artifact, Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

CT_KINDS = ("ct_series", "nifti")
LICENCE = "Apache-2.0 (TotalSegmentator code and open weights); tissue_types weights need a licence key"
#: Japanese words that name several structures at once
GROUPS_JA: dict[str, tuple[str, ...]] = {
    "腎臓": ("kidney_left", "kidney_right"),
    "腎": ("kidney_left", "kidney_right"),
    "肺": (
        "lung_upper_lobe_left",
        "lung_lower_lobe_left",
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
    ),
    "副腎": ("adrenal_gland_left", "adrenal_gland_right"),
}
class SegmentCtInput(BaseModel):
    study_path: Path = Field(
        description="CT study: a DICOM series folder or zip, a NIfTI file, or a study folder "
        "holding ct.nii.gz and TotalSegmentator outputs in segmentations/"
    )
    segmentation_path: Path | None = Field(
        default=None,
        description="precomputed TotalSegmentator output "
        "(multilabel NIfTI or folder of masks) when not inside the study folder",
    )
    task: Literal["total", "abdominal_muscles", "tissue_types"] = Field(
        default="total", description="TotalSegmentator task whose structures are measured"
    )
    fast: bool | None = Field(
        default=None,
        description="TotalSegmentator --fast (3 mm model); default: fast on "
        "CPU, full resolution on GPU. Ignored for precomputed labels",
    )
    structures: list[str] = Field(
        default_factory=list,
        description="TotalSegmentator structure names to report "
        "(e.g. ['liver', 'spleen']); empty = every structure",
    )
    write_overlay: bool = Field(default=True, description="write an organ montage PNG")


class StructureResult(BaseModel):
    name: str = Field(description="TotalSegmentator structure name")
    name_ja: str = Field(description="Japanese name")
    label_id: int = Field(description="label value in the task's multilabel map")
    present: bool = Field(description="at least 0.1 mL labelled")
    voxel_count: int = Field(description="labelled voxels")
    volume_ml: float = Field(description="labelled volume, mL (voxel count × voxel volume from the header)")
    mean_hu: float | None = Field(description="mean CT value inside the structure, HU")
    sd_hu: float | None = Field(description="standard deviation of the CT value inside the structure, HU")
    touches_scan_edge: bool = Field(description="cut by the first or last slice: the volume is a lower bound")


class SegmentCtOutput(BaseModel):
    task: str = Field(description="TotalSegmentator task")
    engine: str = Field(description="where the labels came from: precomputed file or TotalSegmentator run")
    spacing_mm: list[float] = Field(description="voxel spacing (x, y, z) from the header, mm")
    n_voxels_per_axis: list[int] = Field(description="volume size (i, j, k) in voxels")
    n_present: int = Field(description="number of structures present")
    structures: list[StructureResult] = Field(description="one entry per reported structure")
    notes_ja: list[str] = Field(
        description="what ingestion noticed or did (series choice, tilt correction …)"
    )
    overlay_path: str | None = Field(description="organ montage PNG")


class SegmentCt(Tool[SegmentCtInput]):
    name: ClassVar[str] = "segment_ct"
    title_ja: ClassVar[str] = "CT臓器セグメンテーション"
    version: ClassVar[str] = "1.0.0"
    description_ja: ClassVar[str] = (
        "CT（DICOM 系列・zip・NIfTI）から TotalSegmentator で臓器・骨・筋を抽出し、構造ごとの体積（mL）、"
        "平均・標準偏差 CT 値（HU）、有無を日本語名つきで返します。"
        "肝臓・脾臓・腎臓の体積などの質問に使います。"
        "骨格筋量やサルコペニアの判定には measure_body_composition を、リンパ節の計測には使いません。"
    )
    description_en: ClassVar[str] = (
        "Segments a CT (DICOM series, zip or NIfTI) with TotalSegmentator, or reads its precomputed outputs, "
        "and reports per-structure volume (mL), mean/SD HU and presence, with Japanese names. Use for organ "
        "volumes (liver, spleen, kidneys). Not for L3 muscle or sarcopenia (measure_body_composition), "
        "not for lymph nodes."
    )
    Input: ClassVar[type[BaseModel]] = SegmentCtInput
    Output: ClassVar[type[BaseModel]] = SegmentCtOutput
    heavy: ClassVar[bool] = True  # runs in a worker process, killed at the timeout
    requires: ClassVar[Requirements] = Requirements(
        device="cuda_preferred",
        min_vram_gb=4.0,
        licence=LICENCE,
        python_packages=("nibabel", "pydicom"),
    )
    keywords_ja: ClassVar[tuple[str, ...]] = (
        "臓器の体積", "体積", "容積", "肝臓", "脾臓", "腎臓", "膵臓", "セグメンテーション", "脾腫", "肝容積",
        "萎縮", "CT値", "臓器",
    )
    keywords_en: ClassVar[tuple[str, ...]] = (
        "organ volume", "volume of", "segmentation", "segment the", "liver", "spleen", "kidney", "splenomegaly",
        "HU of",
    )
    needs_ja: ClassVar[str] = "CT（DICOM シリーズまたは NIfTI）を添付してください。"
    attachment_kinds: ClassVar[tuple[str, ...]] = CT_KINDS

    def run(self, inp: SegmentCtInput) -> Outcome:
        prepared = pipeline.prepare(
            inp.study_path,
            settings=self.settings,
            device=self.device,
            required=(inp.task,),
            segmentation_paths=[inp.segmentation_path] if inp.segmentation_path else None,
            fast=inp.fast,
        )
        ct, seg = prepared.ct, prepared.segs[inp.task]
        known = set(seg.names.values())
        unknown = [s for s in inp.structures if s not in known]
        if unknown:
            raise ToolInputError(
                f"{inp.task} タスクにない構造名です: {', '.join(unknown)}",
                f"unknown structures {unknown} for task {inp.task}",
            )
        stats = structure_stats(ct, seg, inp.structures or None)
        results = [
            StructureResult(
                name=s.name,
                name_ja=s.name_ja,
                label_id=s.label_id,
                present=s.present,
                voxel_count=s.voxel_count,
                volume_ml=s.volume_ml,
                mean_hu=s.hu_mean,
                sd_hu=s.hu_sd,
                touches_scan_edge=s.touches_scan_edge,
            )
            for s in stats
        ]
        artifacts = []
        overlay = None
        if inp.write_overlay:
            from dokuei.ct.render import render_montage

            present = [r.name for r in results if r.present]
            out_dir = self.artifact_dir(inp)
            overlay = str(
                render_montage(
                    ct, seg, present, out_dir / "organ_montage.png", f"{inp.task}: {len(present)} 構造"
                )
            )
            artifacts.append(
                Artifact(path=overlay, kind="image", caption_ja="臓器セグメンテーションのモンタージュ")
            )
        output = SegmentCtOutput(
            task=inp.task,
            engine=prepared.engine[inp.task],
            spacing_mm=[round(v, 4) for v in ct.spacing_mm],
            n_voxels_per_axis=list(ct.shape),
            n_present=sum(r.present for r in results),
            structures=results,
            notes_ja=prepared.notes_ja,
            overlay_path=overlay,
        )
        return Outcome(
            output=output,
            summary_ja=_summary(output, bool(inp.structures)),
            artifacts=artifacts,
            model_version=f"TotalSegmentator {totalseg_version()}",
        )

    def input_from_context(self, ctx: ToolContext) -> SegmentCtInput | None:
        """The first CT attached and the structures the question names (none named: every structure)."""
        images, masks = split_ct_attachments(ctx)
        if not images:
            return None
        structures = structures_in_question(unicodedata.normalize("NFKC", ctx.question))
        return SegmentCtInput(study_path=images[0], segmentation_path=masks[0] if masks else None,
                              structures=structures)


def split_ct_attachments(ctx: ToolContext) -> tuple[list[Path], list[Path]]:
    """(CT images, mask folders) among the attachments: ``segmentations/`` attached beside its ``ct.nii.gz``
    is a mask folder for that CT, not a second study (the pipeline checks that it lies on the CT's grid)."""
    from dokuei.io.ctstudy import is_mask_folder

    paths = [a.path for a in ctx.of_kind("ct_series", "nifti")]
    masks = [p for p in paths if is_mask_folder(p)]
    return [p for p in paths if p not in masks], masks


def structures_in_question(question: str) -> list[str]:
    """TotalSegmentator names of the structures a Japanese question mentions (longest phrases first)."""
    total = set(totalseg.class_map("total").values())
    phrases: dict[str, tuple[str, ...]] = {ja: (en,) for en, ja in japanese_names().items() if en in total}
    phrases.update(GROUPS_JA)
    found: list[str] = []
    text = question
    for ja in sorted(phrases, key=len, reverse=True):
        if ja in text:
            found.extend(phrases[ja])
            text = text.replace(ja, " ")
    return list(dict.fromkeys(found))


def fmt(value: float) -> str:
    """A number as the summary writes it: exactly the (already rounded) value stored in the output."""
    return f"{value:g}"


def _summary(out: SegmentCtOutput, subset: bool) -> str:
    shown = [s for s in out.structures if s.present]
    if not subset:
        shown = sorted(shown, key=lambda s: -s.volume_ml)[:8]
    parts = []
    for s in shown:
        notes = [f"平均 {fmt(s.mean_hu)} HU"] if s.mean_hu is not None else []
        if s.touches_scan_edge:
            notes.append("撮像範囲の端で切れており下限値")
        parts.append(f"{s.name_ja} {fmt(s.volume_ml)} mL" + (f"（{'、'.join(notes)}）" if notes else ""))
    absent = [s.name_ja for s in out.structures if not s.present]
    source = "既存のセグメンテーション" if out.engine.startswith("precomputed") else "TotalSegmentator"
    text = f"CT を{source}で解析し、{out.n_present} 構造を確認しました。"
    if parts:
        text += ("" if subset else "体積の大きい順に ") + "、".join(parts) + "。"
    if subset and absent:
        text += f"検出されなかった構造: {'、'.join(absent)}。"
    return text
