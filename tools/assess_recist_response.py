"""assess_recist_response: lymph-node response (CR/PR/SD/PD) per RECIST 1.1 against prior CT studies.

Each study is measured as ``measure_lymph_nodes`` does; studies are put in time order: by the roles set
in the UI (``<study>/.dokuei-study.json``: baseline < prior < current) when every study has one, else
by study date, else in the order given (first = baseline, last = follow-up); the answer says which, and
says so when roles and dates disagree. Targets are
chosen at baseline; consecutive studies are aligned and nodes matched by position, size breaking ties;
ambiguous matches are reported, never guessed. The response uses the baseline sum (PR) and the nadir
(PD), thresholds from knowledge/data/recist_1_1.json.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from dokuei.lymph import report_ja
from dokuei.lymph.recist import MatchParams, load_rules
from dokuei.tools.base import Artifact, Citation, Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

log = logging.getLogger(__name__)

StudyRole = Literal["baseline", "prior", "current"]
#: time rank of each role: the baseline first, the current study last
ROLE_RANK: dict[str, int] = {"baseline": 0, "prior": 1, "current": 2}
#: the file the UI writes into a study folder to say which study it is
STUDY_META_FILE = ".dokuei-study.json"


def study_role(path: Path) -> StudyRole | None:
    """The role recorded in ``<study>/.dokuei-study.json`` (written by the UI), or None."""
    meta = (path if path.is_dir() else path.parent) / STUDY_META_FILE
    if not meta.is_file():
        return None
    try:
        role = json.loads(meta.read_text(encoding="utf-8")).get("role")
    except (OSError, ValueError, AttributeError):
        log.warning("unreadable study metadata %s", meta)
        return None
    return role if role in ROLE_RANK else None


class AssessRecistResponseInput(BaseModel):
    study_paths: list[Path] = Field(
        min_length=2,
        description="two or more study folders (ct.nii.gz + nodes.nii.gz "
        "+ study.json) or CT files, earliest first if undated",
    )
    mask_paths: list[Path | None] | None = Field(
        default=None,
        description="node mask per study (NIfTI or DICOM SEG), same order; default: in each folder",
    )
    study_dates: list[str | None] | None = Field(
        default=None, description="ISO dates per study, override study.json"
    )
    study_roles: list[StudyRole | None] | None = Field(
        default=None,
        description="role of each study, same order (baseline < prior < current); when every study has one, "
        "the roles decide the order (the UI writes them to <study>/.dokuei-study.json)",
    )
    match_gate_mm: float = Field(
        default=15.0,
        gt=0,
        description="max node displacement after alignment, mm (plus half the node's long axis)",
    )
    render_overlay: bool = Field(default=True, description="write one PNG montage per study with the axes")


class TimepointOut(BaseModel):
    timepoint: int = Field(description="0 = baseline")
    study: str = Field(description="study folder or file name")
    study_date: str | None = Field(description="ISO date")
    sum_of_target_short_axes_mm: float | None = Field(description="sum of target short axes, mm")
    baseline_sum_mm: float | None = Field(description="baseline sum, mm")
    nadir_sum_mm: float | None = Field(description="smallest sum before this timepoint, mm")
    change_from_baseline_percent: float | None = Field(description="change of the sum from baseline, %")
    change_from_nadir_percent: float | None = Field(description="change of the sum from the nadir, %")
    change_from_nadir_mm: float | None = Field(description="change of the sum from the nadir, mm")
    target_response: str | None = Field(description="CR, PR, SD, PD, NE or none")
    non_target_response: str | None = Field(description="CR, non_pd (non-CR/non-PD), NE or none")
    new_lesion: bool = Field(description="a new pathological node (short axis >= 10 mm)")
    overall_response: str | None = Field(description="RECIST 1.1 overall response")
    reasons_ja: list[str]


class TrackedNode(BaseModel):
    track_id: int = Field(description="baseline label, or a new id for nodes first seen later")
    name_ja: str
    role: Literal["target", "non_target", "normal", "new"]
    first_timepoint: int
    node_id_by_timepoint: list[int | None] = Field(description="mask label of the node in each study")
    short_axis_mm_by_timepoint: list[float | None] = Field(description="short axis per timepoint, mm")
    match_by_timepoint: list[str] = Field(description="baseline, matched, ambiguous, not_found, new, absent")


class AlignmentOut(BaseModel):
    from_timepoint: int
    to_timepoint: int
    method: str = Field(description="vertebrae, registration or body_centroid")
    translation_mm: tuple[float, float, float] = Field(description="p_earlier = p_later + t, RAS mm")
    detail_ja: str


class AmbiguousMatch(BaseModel):
    timepoint: int
    track_id: int
    name_ja: str
    candidate_node_ids: list[int]
    note_ja: str


class AssessRecistResponseOutput(BaseModel):
    criteria: str = Field(description="'RECIST 1.1'")
    order_basis: Literal["study_role", "study_date", "attachment_order"] = Field(
        description="how baseline/follow-up were ordered: the roles set in the UI, the study dates, or the "
        "order given"
    )
    baseline_study: str
    followup_study: str
    overall_response: str = Field(description="CR, PR, SD, PD, NE or non-CR/non-PD at the last timepoint")
    overall_response_ja: str
    timepoints: list[TimepointOut]
    nodes: list[TrackedNode] = Field(description="node table over the timepoints")
    alignments: list[AlignmentOut]
    ambiguous_matches: list[AmbiguousMatch]
    thresholds: dict[str, float] = Field(description="RECIST 1.1 thresholds used (percent, mm)")
    notes_ja: list[str]


class AssessRecistResponse(Tool[AssessRecistResponseInput]):
    name = "assess_recist_response"
    title_ja = "RECIST 1.1 効果判定"
    version = "0.1.0"
    description_ja = (
        "前回（ベースライン）と今回の CT でリンパ節を対応付け、RECIST 1.1 の効果判定（CR/PR/SD/PD）と"
        "径和の変化を出す。CT が2検査以上あるときに使う。1検査だけの計測は measure_lymph_nodes。"
    )
    description_en = (
        "Match lymph nodes between a baseline/prior CT and a follow-up CT and give the RECIST 1.1 "
        "response (CR/PR/SD/PD) with the sum of diameters and nadir. Needs two or more studies; "
        "for one study use measure_lymph_nodes."
    )
    Input = AssessRecistResponseInput
    Output = AssessRecistResponseOutput
    heavy = True  # runs in a worker process, killed at the timeout
    requires = Requirements(
        device="cpu",
        licence="Apache-2.0 (dokuei); RECIST 1.1 criteria (Eisenhauer 2009)",
        python_packages=("scipy", "skimage", "SimpleITK"),
    )
    keywords_ja = ("前回と比べて", "前回比", "前回から", "RECIST", "レシスト", "効果判定", "リンパ節", "増大", "縮小",
                   "PD", "奏効", "経時", "比較")
    keywords_en = ("compared with", "compare", "prior study", "response", "progression", "RECIST")
    #: with two studies or more the comparison answers what a single-study measurement would
    supersedes = ("measure_lymph_nodes",)
    needs_ja = "比較する 2 時点以上の CT（ベースラインと今回、DICOM シリーズまたは NIfTI）を添付してください。"
    attachment_kinds = ("ct_series", "nifti")

    def run(self, inp: AssessRecistResponseInput) -> Outcome:
        from dokuei.lymph.overlay import render_montage
        from dokuei.lymph.study import measure_study, open_study
        from dokuei.lymph.tracking import follow

        rules = load_rules()
        n = len(inp.study_paths)
        masks = inp.mask_paths or [None] * n
        dates = inp.study_dates or [None] * n
        if len(masks) != n or len(dates) != n:
            raise ToolInputError(
                "検査・マスク・検査日の数が一致しません。",
                f"{n} studies, {len(masks)} masks, {len(dates)} dates",
            )
        studies = [open_study(p, m) for p, m in zip(inp.study_paths, masks, strict=True)]
        for s, d in zip(studies, dates, strict=True):
            if d:
                try:
                    s.study_date = date.fromisoformat(d)
                except ValueError as exc:
                    message = f"検査日「{d}」を読めません（YYYY-MM-DD で指定してください）。"
                    raise ToolInputError(message, str(exc)) from exc
        notes: list[str] = []
        order = list(range(n))
        roles = inp.study_roles or [None] * n
        basis: Literal["study_role", "study_date", "attachment_order"] = "attachment_order"
        if len(roles) == n and all(r is not None for r in roles):
            basis = "study_role"
            order = sorted(order, key=lambda i: (ROLE_RANK[str(roles[i])], i))
            if order != list(range(n)):
                notes.append("指定された検査の役割（ベースライン・前回・今回）に基づき、順序を入れ替えて比較しました。")
            by_date = [studies[i].study_date for i in order]
            if all(d is not None for d in by_date) and by_date != sorted(by_date):  # type: ignore[type-var]
                notes.append("検査日の順序が指定された役割と一致しません。役割に従って比較しました。検査日を確認してください。")
        elif all(s.study_date is not None for s in studies):
            basis = "study_date"
            order = sorted(order, key=lambda i: (studies[i].study_date, i))
            if order != list(range(n)):
                notes.append("検査日に基づき、指定の順序を入れ替えて比較しました。")
            if len({s.study_date for s in studies}) < n:
                notes.append("同じ検査日の検査があり、その間は指定の順序に従いました。")
        else:
            notes.append("検査日が不明な検査があるため、指定の順序（最初 = ベースライン）で比較しました。")
        ordered = [studies[i] for i in order]
        measured = [
            measure_study(s, None, "auto", self.settings.weights_root, self.device, rules) for s in ordered
        ]
        for sn in measured:
            notes.extend(f"{sn.study.path.name}: {w}" for w in sn.warnings_ja)
        course = follow(measured, rules, MatchParams(gate_mm=inp.match_gate_mm))
        output = report_ja.response_output(course, basis, rules, notes)
        summary = report_ja.response_summary(output)
        artifacts = []
        if inp.render_overlay:
            out_dir = self.artifact_dir(inp)
            for t, sn in enumerate(measured):
                png = render_montage(
                    sn,
                    out_dir / f"timepoint{t}.png",
                    title=f"T{t}",  # never the folder name: it may name the patient
                )
                artifacts.append(
                    Artifact(
                        path=str(png),
                        kind="image",
                        caption_ja=f"時点 {t}（{sn.study.path.name}）のリンパ節計測断面",
                    )
                )
        citation = Citation(
            id="recist_1_1", kind="reference", label_ja="RECIST 1.1（Eisenhauer et al. 2009）", text=rules.source
        )
        return Outcome(AssessRecistResponseOutput.model_validate(output), summary, artifacts, [citation])

    def input_from_context(self, ctx: ToolContext) -> AssessRecistResponseInput | None:
        studies = [
            a.path
            for a in ctx.of_kind("ct_series", "nifti")
            if not re.search(r"node|mask|seg|label", a.path.name, re.IGNORECASE) or a.path.is_dir()
        ]
        if len(studies) < 2:
            return None
        roles = [study_role(p) for p in studies]
        return AssessRecistResponseInput(study_paths=studies, study_roles=roles if any(roles) else None)
