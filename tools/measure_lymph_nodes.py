"""measure_lymph_nodes: RECIST 1.1 size of every lymph node of one CT study, targets and non-targets.

Node masks come from (in this order with ``mask_source="auto"``) a user-supplied label mask (NIfTI or
DICOM SEG on the CT grid), click points grown into 3D masks in a soft-tissue window, or an installed
node-segmentation model. Per node: long axis and perpendicular short axis on the axial slice (mm, from
the header spacing), volume, slice, side and region, RECIST class; then targets (at most 2: all nodes
are one organ), non-targets and the sum of target short axes. Thresholds: knowledge/data/recist_1_1.json.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from dokuei.lymph import report_ja
from dokuei.lymph.recist import load_rules
from dokuei.tools.base import Artifact, Citation, Outcome, Requirements, Tool
from dokuei.tools.context import ToolContext


class ClickPoint(BaseModel):
    point: tuple[float, float, float] = Field(
        description="click position: voxel index [i, j, k] of the study's RAS+ canonical array "
        "(k = foot→head), "
        "or patient coordinates in mm"
    )
    coordinate_system: Literal["voxel", "ras_mm", "lps_mm"] = Field(
        default="voxel", description="voxel index, RAS mm (NIfTI/Slicer) or LPS mm (DICOM/PACS)"
    )


class MeasureLymphNodesInput(BaseModel):
    study_path: Path = Field(
        description="study folder (ct.nii.gz + nodes.nii.gz + study.json), CT NIfTI or DICOM series"
    )
    mask_path: Path | None = Field(
        default=None,
        description="node label mask (NIfTI or DICOM SEG) on the CT grid; "
        "default: nodes.nii.gz in the study folder",
    )
    clicks: list[ClickPoint] = Field(
        default_factory=list, description="click points, one per node to segment"
    )
    mask_source: Literal["auto", "mask", "click", "model"] = Field(
        default="auto", description="auto: mask, then clicks, then the installed model"
    )
    render_overlay: bool = Field(default=True, description="write a PNG montage with the axes drawn")


class NodeMeasurement(BaseModel):
    node_id: int = Field(description="label in the mask (or click order after the mask's labels)")
    name_ja: str = Field(description="e.g. 右気管傍リンパ節")
    station: str | None = Field(description="nodal station when given by the user (study.json)")
    side: Literal["right", "left", "midline", "unknown"] = Field(description="patient side")
    region_ja: str | None = Field(description="anatomical region from TotalSegmentator labels, if present")
    vertebral_level: str | None = Field(description="nearest vertebra by height, e.g. T4")
    short_axis_mm: float = Field(description="short axis, perpendicular to the long axis, axial plane, mm")
    long_axis_mm: float = Field(description="long axis on the same axial slice, mm")
    volume_ml: float = Field(description="mask volume, mL")
    slice_index: int = Field(description="axial slice k of the measurement (RAS+ canonical array)")
    slice_z_mm: float = Field(description="height of that slice, patient RAS mm")
    centroid_ras_mm: tuple[float, float, float] = Field(description="mask centroid, patient RAS mm")
    recist_class: Literal["normal", "non_target", "target"] = Field(
        description="short axis <10 mm normal, 10-<15 mm pathological non-target, >=15 mm measurable"
    )
    role: Literal["target", "non_target", "normal"] = Field(description="role after target selection")
    source: Literal["mask", "click", "model"] = Field(description="where the node mask came from")


class MeasureLymphNodesOutput(BaseModel):
    criteria: str = Field(description="response criteria edition, 'RECIST 1.1'")
    study_date: str | None = Field(description="study date (ISO), from study.json")
    spacing_mm: tuple[float, float, float] = Field(description="voxel spacing from the header, mm")
    slice_spacing_mm: float = Field(description="distance between axial slices, mm")
    slice_thickness_over_limit: bool = Field(description="slices farther apart than RECIST's 5 mm")
    mask_source: str = Field(description="mask, click, model (joined with + when mixed)")
    nodes: list[NodeMeasurement]
    target_node_ids: list[int] = Field(description="targets: largest measurable nodes, at most 2 (one organ)")
    non_target_node_ids: list[int] = Field(description="pathological nodes that are not targets")
    sum_of_target_short_axes_mm: float = Field(description="sum of diameters of the targets (short axes), mm")
    n_pathological: int = Field(description="nodes with short axis >= 10 mm")
    thresholds: dict[str, float] = Field(description="RECIST 1.1 thresholds used (mm)")
    warnings_ja: list[str]


class MeasureLymphNodes(Tool[MeasureLymphNodesInput]):
    name = "measure_lymph_nodes"
    title_ja = "リンパ節計測（RECIST 1.1）"
    version = "0.1.0"
    description_ja = (
        "CT の1検査でリンパ節を RECIST 1.1 に従って計測する（短径・長径・体積・部位・標的/非標的・径和）。"
        "マスク、クリック位置、または導入済みモデルから。"
        "前回検査との比較・効果判定は assess_recist_response を使う。"
    )
    description_en = (
        "Measure lymph nodes on one CT study per RECIST 1.1 (short/long axis, volume, location, "
        "target/non-target, sum of diameters) from a mask, click points or an installed model. "
        "For comparison with a prior study and response use assess_recist_response."
    )
    Input = MeasureLymphNodesInput
    Output = MeasureLymphNodesOutput
    heavy = True  # runs in a worker process, killed at the timeout
    requires = Requirements(
        device="cpu",
        licence="Apache-2.0 (dokuei); RECIST 1.1 criteria (Eisenhauer 2009)",
        python_packages=("scipy", "skimage"),
    )
    keywords_ja = ("リンパ節", "短径", "RECIST", "レシスト", "標的病変", "リンパ節腫大")
    keywords_en = ("lymph node", "short axis", "target lesion", "RECIST")
    needs_ja = "リンパ節を計測する CT（DICOM シリーズまたは NIfTI）を添付してください。"
    attachment_kinds = ("ct_series", "nifti", "dicom_seg")

    def run(self, inp: MeasureLymphNodesInput) -> Outcome:
        from dokuei.lymph.study import Seed, measure_study, open_study

        rules = load_rules()
        study = open_study(inp.study_path, inp.mask_path)
        seeds = [Seed(c.point, c.coordinate_system) for c in inp.clicks]
        result = measure_study(study, seeds, inp.mask_source, self.settings.weights_root, self.device, rules)
        output = report_ja.measurement_output(result, rules)
        summary = report_ja.measurement_summary(output)
        artifacts = []
        if inp.render_overlay:
            from dokuei.lymph.overlay import render_montage

            png = render_montage(
                result,
                self.artifact_dir(inp) / "nodes.png",
                title=f"検査日 {output['study_date'] or '不明'}",  # never the folder name: it may name the patient
            )
            artifacts.append(
                Artifact(path=str(png), kind="image", caption_ja="リンパ節の計測断面（黄: 長径、水色: 短径）")
            )
        citation = Citation(
            id="recist_1_1", kind="reference", label_ja="RECIST 1.1（Eisenhauer et al. 2009）", text=rules.source
        )
        return Outcome(
            MeasureLymphNodesOutput.model_validate(output), summary, artifacts, [citation], model_version=None
        )

    def input_from_context(self, ctx: ToolContext) -> MeasureLymphNodesInput | None:
        """The first image attached (several: assess_recist_response, which supersedes this, compares them)."""
        images = [a for a in ctx.of_kind("ct_series", "nifti") if not _looks_like_mask(a.path)]
        if not images:
            return None
        masks = [a.path for a in ctx.of_kind("nifti", "dicom_seg") if _looks_like_mask(a.path)]
        return MeasureLymphNodesInput(
            study_path=images[0].path,
            mask_path=masks[0] if masks else None,
            clicks=_clicks_from_question(ctx.question),
        )


def _looks_like_mask(path: Path) -> bool:
    return path.is_file() and bool(re.search(r"node|mask|seg|label", path.name, re.IGNORECASE))


def _clicks_from_question(question: str) -> list[ClickPoint]:
    """'(120, 88, 40)' voxel triples, or 'RAS (x, y, z)' / 'LPS (x, y, z)' patient coordinates in mm."""
    clicks = []
    for m in re.finditer(
        r"(RAS|LPS)?\s*[\(（]\s*(-?\d+(?:\.\d+)?)\s*[,、]\s*(-?\d+(?:\.\d+)?)\s*[,、]\s*"
        r"(-?\d+(?:\.\d+)?)\s*[\)）]",
        question,
        re.IGNORECASE,
    ):
        system = {"RAS": "ras_mm", "LPS": "lps_mm"}.get((m.group(1) or "").upper(), "voxel")
        clicks.append(
            ClickPoint.model_validate(
                {"point": [float(m.group(i)) for i in (2, 3, 4)], "coordinate_system": system}
            )
        )
    return clicks
