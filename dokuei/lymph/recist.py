"""RECIST 1.1 for lymph nodes: classes, target selection, node matching and the response at a timepoint.

Every threshold comes from ``knowledge/data/recist_1_1.json`` (Eisenhauer et al., Eur J Cancer
2009;45:228-247). Sizes are compared in tenths of a millimetre as integers, so the boundaries hold
exactly: a sum 30.0% below baseline is PR, +20% over the nadir with less than 5 mm absolute is not PD.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dokuei.knowledge import data_path

RecistClass = Literal["normal", "non_target", "target"]
TargetResponse = Literal["CR", "PR", "SD", "PD", "NE", "none"]
NonTargetResponse = Literal["CR", "non_pd", "NE", "none"]

DATA_FILE = data_path("recist_1_1.json")

RESPONSE_JA = {
    "CR": "完全奏効",
    "PR": "部分奏効",
    "SD": "安定",
    "PD": "進行",
    "NE": "評価不能",
    "non-CR/non-PD": "非 CR/非 PD",
}


@dataclass(frozen=True)
class RecistRules:
    edition: str
    source: str
    normal_below_mm: float
    target_min_mm: float
    max_slice_thickness_mm: float
    max_targets_total: int
    max_targets_per_organ: int
    cr_below_mm: float
    pr_decrease_percent: float
    pd_increase_percent: float
    pd_absolute_mm: float
    new_node_min_mm: float
    table: tuple[dict[str, Any], ...]


@lru_cache(maxsize=1)
def load_rules(path: Path = DATA_FILE) -> RecistRules:
    data = json.loads(path.read_text(encoding="utf-8"))
    cls, sel, resp = data["lymph_node_class"], data["target_selection"], data["response"]
    return RecistRules(
        edition=data["edition"],
        source=data["source"],
        normal_below_mm=cls["normal_below_short_axis_mm"],
        target_min_mm=cls["target_min_short_axis_mm"],
        max_slice_thickness_mm=data["imaging"]["max_slice_thickness_mm"],
        max_targets_total=sel["max_targets_total"],
        max_targets_per_organ=sel["max_targets_per_organ"],
        cr_below_mm=resp["cr_node_short_axis_below_mm"],
        pr_decrease_percent=resp["pr_min_decrease_from_baseline_percent"],
        pd_increase_percent=resp["pd_min_increase_from_nadir_percent"],
        pd_absolute_mm=resp["pd_min_absolute_increase_mm"],
        new_node_min_mm=resp["new_node_min_short_axis_mm"],
        table=tuple(data["overall_response_table"]["rows"]),
    )


def tenths(mm: float) -> int:
    """Millimetres as an integer count of 0.1 mm (half away from zero), the precision sizes are kept at."""
    return math.floor(abs(mm) * 10.0 + 0.5) * (1 if mm >= 0 else -1)


def classify(short_axis_mm: float, rules: RecistRules) -> RecistClass:
    t = tenths(short_axis_mm)
    if t < tenths(rules.normal_below_mm):
        return "normal"
    if t < tenths(rules.target_min_mm):
        return "non_target"
    return "target"


def select_targets(
    nodes: Sequence[tuple[int, float, float]], rules: RecistRules
) -> tuple[list[int], list[int]]:
    """(targets, non-targets) from (node id, short axis mm, volume mL); all nodes are one organ.

    Targets are the largest measurable nodes by short axis (volume breaks ties), at most
    ``max_targets_per_organ`` (and ``max_targets_total``); every other pathological node is a non-target.
    """
    ranked = sorted(nodes, key=lambda n: (-tenths(n[1]), -n[2], n[0]))
    limit = min(rules.max_targets_total, rules.max_targets_per_organ)
    targets = [n[0] for n in ranked if classify(n[1], rules) == "target"][:limit]
    non_targets = [n[0] for n in ranked if classify(n[1], rules) != "normal" and n[0] not in targets]
    return targets, non_targets


# --- matching ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeObs:
    """A node at one timepoint: id, centroid (patient RAS mm, in that study's frame) and size."""

    node_id: int
    centroid_mm: tuple[float, float, float]
    short_axis_mm: float
    long_axis_mm: float


@dataclass(frozen=True)
class Match:
    prev_id: int
    curr_id: int | None
    status: Literal["matched", "ambiguous", "not_found"]
    distance_mm: float | None
    candidates: tuple[int, ...] = ()
    note_ja: str = ""


@dataclass(frozen=True)
class MatchParams:
    gate_mm: float = 15.0  # a node may move this much (plus half its long axis) after alignment
    tie_margin_mm: float = 5.0  # candidates closer than this in distance are a tie on position
    size_margin_mm: float = 3.0  # a tie is broken by size only when sizes differ by more than this


def match_nodes(
    prev: Sequence[NodeObs],
    curr: Sequence[NodeObs],
    translation_mm: Sequence[float],
    params: MatchParams | None = None,
) -> tuple[list[Match], list[int]]:
    """Match nodes of an earlier study to a later one by position (later centroid + translation = earlier
    frame), size breaking ties. Returns one Match per earlier node and the ids of unmatched later nodes
    (new nodes). A node whose candidates cannot be told apart is 'ambiguous' and its candidates are
    neither matched nor counted as new."""
    p = params or MatchParams()
    t = np.asarray(translation_mm, dtype=float)
    cur_pos = {c.node_id: np.asarray(c.centroid_mm) + t for c in curr}
    cur_by_id = {c.node_id: c for c in curr}
    choice: dict[int, Match] = {}
    for node in prev:
        gate = p.gate_mm + node.long_axis_mm / 2.0
        dists = sorted(
            (float(np.linalg.norm(cur_pos[c.node_id] - np.asarray(node.centroid_mm))), c.node_id)
            for c in curr
        )
        near = [(d, cid) for d, cid in dists if d <= gate]
        if not near:
            choice[node.node_id] = Match(
                node.node_id,
                None,
                "not_found",
                None,
                note_ja=f"対応する結節が {gate:.0f} mm 以内にありません",
            )
            continue
        tied = [(d, cid) for d, cid in near if d - near[0][0] < p.tie_margin_mm]
        if len(tied) == 1:
            choice[node.node_id] = Match(node.node_id, tied[0][1], "matched", round(tied[0][0], 1))
            continue
        by_size = sorted((abs(cur_by_id[cid].short_axis_mm - node.short_axis_mm), d, cid) for d, cid in tied)
        if by_size[1][0] - by_size[0][0] > p.size_margin_mm:
            choice[node.node_id] = Match(
                node.node_id,
                by_size[0][2],
                "matched",
                round(by_size[0][1], 1),
                candidates=tuple(cid for _, cid in tied),
                note_ja="位置が近い候補が複数あり、大きさで対応付けました",
            )
        else:
            choice[node.node_id] = Match(
                node.node_id,
                None,
                "ambiguous",
                None,
                candidates=tuple(cid for _, cid in tied),
                note_ja="位置・大きさの近い候補が複数あり、対応付けできません",
            )
    # one later node claimed by two earlier nodes: position decides only with a clear margin
    claims: dict[int, list[int]] = {}
    for m in choice.values():
        if m.curr_id is not None:
            claims.setdefault(m.curr_id, []).append(m.prev_id)
    for cid, owners in claims.items():
        if len(owners) < 2:
            continue
        ranked = sorted(owners, key=lambda o: choice[o].distance_mm or 0.0)
        d0, d1 = choice[ranked[0]].distance_mm or 0.0, choice[ranked[1]].distance_mm or 0.0
        losers = ranked[1:] if d1 - d0 >= p.tie_margin_mm else ranked
        for o in losers:
            choice[o] = Match(
                o,
                None,
                "ambiguous",
                None,
                candidates=(cid,),
                note_ja="同じ結節が複数の前回結節の候補になり、対応付けできません",
            )
    matched = {m.curr_id for m in choice.values() if m.curr_id is not None}
    uncertain = {cid for m in choice.values() if m.status == "ambiguous" for cid in m.candidates}
    new_ids = [c.node_id for c in curr if c.node_id not in matched and c.node_id not in uncertain]
    return [choice[n.node_id] for n in prev], new_ids


# --- response ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """Response at one timepoint against the baseline and the nadir."""

    sum_mm: float | None
    baseline_sum_mm: float
    nadir_sum_mm: float
    change_from_baseline_percent: float | None
    change_from_nadir_percent: float | None
    change_from_nadir_mm: float | None
    target: TargetResponse
    non_target: NonTargetResponse
    new_lesion: bool
    overall: str
    reasons_ja: list[str] = field(default_factory=list)


def display_percent(exact: float, thresholds: Sequence[float]) -> float:
    """Round a percentage to an integer, or to 0.1 where the integer would cross a RECIST threshold."""
    whole = float(math.floor(abs(exact) + 0.5)) * (1 if exact >= 0 else -1)
    for thr in thresholds:
        if (abs(exact) >= thr) != (abs(whole) >= thr):
            return round(exact, 1)
    return whole


def timepoint_response(
    target_sizes_mm: Sequence[float | None],
    baseline_sum_mm: float,
    nadir_sum_mm: float,
    non_target_sizes_mm: Sequence[float | None],
    new_lesion: bool,
    rules: RecistRules,
) -> Response:
    """RECIST 1.1 response of one follow-up. ``None`` sizes are nodes that could not be assessed."""
    reasons: list[str] = []
    base_t, nadir_t = tenths(baseline_sum_mm), tenths(nadir_sum_mm)
    sum_mm: float | None = None
    pct_base = pct_nadir = diff_nadir = None
    target: TargetResponse
    if not target_sizes_mm:
        target = "none"
    elif any(s is None for s in target_sizes_mm):
        target = "NE"
        reasons.append("標的リンパ節の一部を今回の検査で同定できません")
    else:
        sizes = [tenths(s) for s in target_sizes_mm if s is not None]
        now_t = sum(sizes)
        sum_mm = now_t / 10.0
        exact_base = 100.0 * (now_t - base_t) / base_t if base_t else 0.0
        exact_nadir = 100.0 * (now_t - nadir_t) / nadir_t if nadir_t else math.inf if now_t > nadir_t else 0.0
        thresholds = (rules.pr_decrease_percent, rules.pd_increase_percent)
        pct_base = display_percent(exact_base, thresholds)
        pct_nadir = display_percent(exact_nadir, thresholds) if math.isfinite(exact_nadir) else None
        diff_nadir = (now_t - nadir_t) / 10.0
        rise = now_t - nadir_t
        if (
            rise * 100 >= rules.pd_increase_percent * nadir_t
            and rise >= tenths(rules.pd_absolute_mm)
            and rise > 0
        ):
            target = "PD"
            reasons.append(
                f"径和が最小値から {rules.pd_increase_percent:g}% 以上かつ "
                f"{rules.pd_absolute_mm:g} mm 以上増大"
            )
        elif all(s < tenths(rules.cr_below_mm) for s in sizes):
            target = "CR"
            reasons.append(f"すべての標的リンパ節が短径 {rules.cr_below_mm:g} mm 未満")
        elif (base_t - now_t) * 100 >= rules.pr_decrease_percent * base_t:
            target = "PR"
            reasons.append(f"径和がベースラインから {rules.pr_decrease_percent:g}% 以上縮小")
        else:
            target = "SD"
    non_target: NonTargetResponse
    if not non_target_sizes_mm:
        non_target = "none"
    elif any(s is None for s in non_target_sizes_mm):
        non_target = "NE"
    elif all(tenths(s) < tenths(rules.cr_below_mm) for s in non_target_sizes_mm if s is not None):
        non_target = "CR"
    else:
        non_target = "non_pd"
    if new_lesion:
        reasons.append(f"新たな病的リンパ節（短径 {rules.new_node_min_mm:g} mm 以上）")
    overall = overall_response(target, non_target, new_lesion, rules)
    return Response(
        sum_mm,
        baseline_sum_mm,
        nadir_sum_mm,
        pct_base,
        pct_nadir,
        diff_nadir,
        target,
        non_target,
        new_lesion,
        overall,
        reasons,
    )


def overall_response(target: str, non_target: str, new_lesion: bool, rules: RecistRules) -> str:
    """RECIST 1.1 Table 1, read from the data file's rows in order."""
    for row in rules.table:
        if bool(row["new_lesion"]) != new_lesion:
            continue
        if row["target"] in ("any", target) and row["non_target"] in ("any", non_target):
            return str(row["overall"])
    return "NE"
