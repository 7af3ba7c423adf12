"""Outputs and Japanese summaries of the lymph-node tools, written as a radiologist writes them.

Every number in a summary is taken from the output dict built next to it (rounded the same way), so
the agent's verifier can trace each one: sizes to 0.1 mm, percentages as RECIST reports them.
"""

from __future__ import annotations

from typing import Any

from dokuei.lymph.recist import RESPONSE_JA, RecistRules
from dokuei.lymph.study import StudyNodes
from dokuei.lymph.tracking import Course

SOURCE_JA = {"mask": "マスク", "click": "クリック", "model": "モデル"}


def mm(x: float) -> str:
    """22.0 -> '22', 21.6 -> '21.6'."""
    return f"{x:.1f}".removesuffix(".0")


def signed(x: float) -> str:
    return ("+" if x >= 0 else "-") + mm(abs(x))


def measurement_output(result: StudyNodes, rules: RecistRules) -> dict[str, Any]:
    ct = result.study.ct
    nodes = []
    for n in sorted(result.nodes, key=lambda n: -n.axes.short_axis_mm):
        role = (
            "target"
            if n.label in result.targets
            else "non_target"
            if n.label in result.non_targets
            else "normal"
        )
        nodes.append(
            {
                "node_id": n.label,
                "name_ja": n.name_ja,
                "station": n.station,
                "side": n.location.side,
                "region_ja": n.location.region_ja,
                "vertebral_level": n.location.level,
                "short_axis_mm": round(n.axes.short_axis_mm, 1),
                "long_axis_mm": round(n.axes.long_axis_mm, 1),
                "volume_ml": round(n.axes.volume_ml, 2),
                "slice_index": n.axes.slice_index,
                "slice_z_mm": round(n.slice_z_mm, 1),
                "centroid_ras_mm": tuple(round(v, 1) for v in n.centroid_mm),
                "recist_class": n.recist_class,
                "role": role,
                "source": n.source,
            }
        )
    sz = ct.spacing_mm[2]
    return {
        "criteria": rules.edition,
        "study_date": result.study.study_date.isoformat() if result.study.study_date else None,
        "spacing_mm": tuple(round(s, 3) for s in ct.spacing_mm),
        "slice_spacing_mm": round(sz, 2),
        "slice_thickness_over_limit": sz > rules.max_slice_thickness_mm + 1e-6,
        "mask_source": result.source,
        "nodes": nodes,
        "target_node_ids": result.targets,
        "non_target_node_ids": result.non_targets,
        "sum_of_target_short_axes_mm": result.target_sum_mm,
        "n_pathological": sum(1 for n in result.nodes if n.recist_class != "normal"),
        "thresholds": {
            "normal_below_mm": rules.normal_below_mm,
            "target_min_mm": rules.target_min_mm,
            "max_slice_thickness_mm": rules.max_slice_thickness_mm,
        },
        "warnings_ja": result.warnings_ja,
    }


def measurement_summary(out: dict[str, Any]) -> str:
    by_id = {n["node_id"]: n for n in out["nodes"]}
    parts = []
    if out["target_node_ids"]:
        targets = "、".join(
            f"{by_id[i]['name_ja']} 短径 {mm(by_id[i]['short_axis_mm'])} mm"
            f"（長径 {mm(by_id[i]['long_axis_mm'])} mm）"
            for i in out["target_node_ids"]
        )
        parts.append(f"標的病変: {targets}。標的病変の径和 {mm(out['sum_of_target_short_axes_mm'])} mm。")
    else:
        parts.append("短径 15 mm 以上の測定可能なリンパ節（標的病変）はありません。")
    if out["non_target_node_ids"]:
        nts = "、".join(
            f"{by_id[i]['name_ja']} 短径 {mm(by_id[i]['short_axis_mm'])} mm"
            for i in out["non_target_node_ids"]
        )
        parts.append(f"非標的病変: {nts}。")
    normal = [n for n in out["nodes"] if n["role"] == "normal"]
    if normal:
        parts.append(
            "短径 10 mm 未満（非病的）: "
            + "、".join(f"{n['name_ja']} {mm(n['short_axis_mm'])} mm" for n in normal)
            + "。"
        )
    parts.extend(out["warnings_ja"])
    return "".join(parts)


def response_output(
    course: Course, order_basis: str, rules: RecistRules, notes_ja: list[str]
) -> dict[str, Any]:
    studies = course.studies
    timepoints = []
    for t, sn in enumerate(studies):
        tp: dict[str, Any] = {
            "timepoint": t,
            "study": sn.study.path.name,
            "study_date": sn.study.study_date.isoformat() if sn.study.study_date else None,
            "sum_of_target_short_axes_mm": None,
            "baseline_sum_mm": None,
            "nadir_sum_mm": None,
            "change_from_baseline_percent": None,
            "change_from_nadir_percent": None,
            "change_from_nadir_mm": None,
            "target_response": None,
            "non_target_response": None,
            "new_lesion": False,
            "overall_response": None,
            "reasons_ja": [],
        }
        if t == 0:
            tp["sum_of_target_short_axes_mm"] = round(
                sum(tr.sizes_mm[0] or 0.0 for tr in course.tracks if tr.role == "target"), 1
            )
            tp["baseline_sum_mm"] = tp["sum_of_target_short_axes_mm"]
        else:
            r = course.responses[t - 1]
            tp.update(
                {
                    "sum_of_target_short_axes_mm": r.sum_mm,
                    "baseline_sum_mm": r.baseline_sum_mm,
                    "nadir_sum_mm": r.nadir_sum_mm,
                    "change_from_baseline_percent": r.change_from_baseline_percent,
                    "change_from_nadir_percent": r.change_from_nadir_percent,
                    "change_from_nadir_mm": r.change_from_nadir_mm,
                    "target_response": r.target,
                    "non_target_response": r.non_target,
                    "new_lesion": r.new_lesion,
                    "overall_response": r.overall,
                    "reasons_ja": r.reasons_ja,
                }
            )
        timepoints.append(tp)
    last = course.responses[-1]
    nodes = [
        {
            "track_id": tr.track_id,
            "name_ja": tr.name_ja,
            "role": tr.role,
            "first_timepoint": tr.first_timepoint,
            "node_id_by_timepoint": tr.node_ids,
            "short_axis_mm_by_timepoint": tr.sizes_mm,
            "match_by_timepoint": tr.status,
        }
        for tr in course.tracks
    ]
    return {
        "criteria": rules.edition,
        "order_basis": order_basis,
        "baseline_study": studies[0].study.path.name,
        "followup_study": studies[-1].study.path.name,
        "overall_response": last.overall,
        "overall_response_ja": RESPONSE_JA.get(last.overall, last.overall),
        "timepoints": timepoints,
        "nodes": nodes,
        "alignments": [
            {
                "from_timepoint": t + 1,
                "to_timepoint": t,
                "method": a.method,
                "translation_mm": a.translation_mm,
                "detail_ja": a.detail,
            }
            for t, a in enumerate(course.alignments)
        ],
        "ambiguous_matches": [
            {
                "timepoint": a.timepoint,
                "track_id": a.track_id,
                "name_ja": a.name_ja,
                "candidate_node_ids": list(a.candidate_node_ids),
                "note_ja": a.note_ja,
            }
            for a in course.ambiguities
        ],
        "thresholds": {
            "pr_decrease_percent": rules.pr_decrease_percent,
            "pd_increase_percent": rules.pd_increase_percent,
            "pd_absolute_mm": rules.pd_absolute_mm,
            "normal_below_mm": rules.normal_below_mm,
            "target_min_mm": rules.target_min_mm,
        },
        "notes_ja": notes_ja,
    }


def response_summary(out: dict[str, Any]) -> str:
    tps = out["timepoints"]
    t = len(tps) - 1
    last = tps[-1]
    parts = []

    def line(tr: dict[str, Any]) -> str:
        now, before = tr["short_axis_mm_by_timepoint"][t], tr["short_axis_mm_by_timepoint"][t - 1]
        if now is None:
            status = tr["match_by_timepoint"][t]
            return (
                f"{tr['name_ja']} 今回同定できず（{'対応付け不能' if status == 'ambiguous' else '未検出'}）"
            )
        prev = f"（前回 {mm(before)} mm）" if before is not None else ""
        return f"{tr['name_ja']} 短径 {mm(now)} mm{prev}"

    targets = [tr for tr in out["nodes"] if tr["role"] == "target"]
    non_targets = [tr for tr in out["nodes"] if tr["role"] == "non_target"]
    new = [tr for tr in out["nodes"] if tr["role"] == "new"]
    if targets:
        parts.append("、".join(line(tr) for tr in targets) + "。")
    if last["sum_of_target_short_axes_mm"] is not None and targets:
        base, nadir = last["baseline_sum_mm"], last["nadir_sum_mm"]
        if nadir == base or last["change_from_nadir_percent"] is None:
            ref = f"ベースライン（最小値） {mm(base)} mm から {signed(last['change_from_baseline_percent'])}%"
        else:
            ref = (
                f"ベースライン {mm(base)} mm から {signed(last['change_from_baseline_percent'])}%、"
                f"最小値 {mm(nadir)} mm から {signed(last['change_from_nadir_percent'])}%"
            )
        parts.append(
            f"標的病変の径和 {mm(last['sum_of_target_short_axes_mm'])} mm（{ref}、"
            f"{signed(last['change_from_nadir_mm'])} mm）。"
        )
    elif not targets:
        parts.append("ベースラインに標的病変（短径 15 mm 以上のリンパ節）はありません。")
    if non_targets:
        parts.append("非標的病変: " + "、".join(line(tr) for tr in non_targets) + "。")
    if new:
        parts.append(
            "新規病変: "
            + "、".join(
                f"{tr['name_ja']} 短径 {mm(tr['short_axis_mm_by_timepoint'][tr['first_timepoint']])} mm"
                for tr in new
            )
            + "。"
        )
    else:
        parts.append("新たな病的リンパ節はありません。")
    for a in out["ambiguous_matches"]:
        parts.append(f"{a['name_ja']} は{a['note_ja']}。")
    parts.extend(out["notes_ja"])
    parts.append(f"{out['criteria']}: {out['overall_response']}（{out['overall_response_ja']}）")
    return "".join(parts)
