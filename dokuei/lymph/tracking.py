"""Nodes followed over time: align consecutive studies, match nodes, RECIST 1.1 response per timepoint.

Studies are in chronological order; the first is the baseline, where targets and non-targets are
chosen. Each later study is aligned to the one before and its nodes are matched by position (size
breaking ties); a node that cannot be matched unambiguously is reported as such and never guessed.
The nadir at a timepoint is the smallest sum of target short axes on study before it (baseline
included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from dokuei.lymph.align import Alignment, align
from dokuei.lymph.recist import (
    MatchParams,
    NodeObs,
    RecistRules,
    Response,
    match_nodes,
    tenths,
    timepoint_response,
)
from dokuei.lymph.study import StudyNodes

log = logging.getLogger(__name__)

Role = Literal["target", "non_target", "normal", "new"]


@dataclass
class Track:
    track_id: int
    name_ja: str
    role: Role
    first_timepoint: int
    node_ids: list[int | None]
    sizes_mm: list[float | None]
    status: list[str]  # per timepoint: baseline, matched, ambiguous, not_found, new, absent


@dataclass
class Ambiguity:
    timepoint: int
    track_id: int
    name_ja: str
    candidate_node_ids: tuple[int, ...]
    note_ja: str


@dataclass
class Course:
    studies: list[StudyNodes]
    tracks: list[Track]
    alignments: list[Alignment]
    responses: list[Response]  # one per follow-up (timepoint 1..T-1)
    ambiguities: list[Ambiguity] = field(default_factory=list)


def _obs(n_label: int, sn: StudyNodes) -> NodeObs:
    node = next(n for n in sn.nodes if n.label == n_label)
    return NodeObs(node.label, node.centroid_mm, round(node.axes.short_axis_mm, 1), node.axes.long_axis_mm)


def follow(studies: list[StudyNodes], rules: RecistRules, params: MatchParams | None = None) -> Course:
    base = studies[0]
    t_count = len(studies)
    tracks: list[Track] = []
    for node in base.nodes:
        role: Role = (
            "target"
            if node.label in base.targets
            else "non_target"
            if node.label in base.non_targets
            else "normal"
        )
        tracks.append(
            Track(
                node.label,
                node.name_ja,
                role,
                0,
                [node.label] + [None] * (t_count - 1),
                [round(node.axes.short_axis_mm, 1)] + [None] * (t_count - 1),
                ["baseline"] + ["absent"] * (t_count - 1),
            )
        )
    alignments: list[Alignment] = []
    ambiguities: list[Ambiguity] = []
    next_id = max((t.track_id for t in tracks), default=0) + 1
    for t in range(1, t_count):
        prev, curr = studies[t - 1], studies[t]
        alignment = align(prev.study.ct, curr.study.ct, prev.study.labels, curr.study.labels)
        alignments.append(alignment)
        live = [tr for tr in tracks if tr.node_ids[t - 1] is not None]
        prev_obs = []
        for tr in live:
            o = _obs(tr.node_ids[t - 1] or 0, prev)
            prev_obs.append(NodeObs(tr.track_id, o.centroid_mm, o.short_axis_mm, o.long_axis_mm))
        curr_obs = [_obs(n.label, curr) for n in curr.nodes]
        matches, new_ids = match_nodes(prev_obs, curr_obs, alignment.translation_mm, params)
        by_track = {tr.track_id: tr for tr in tracks}
        for m in matches:
            tr = by_track[m.prev_id]
            tr.status[t] = m.status
            if m.curr_id is not None:
                tr.node_ids[t] = m.curr_id
                tr.sizes_mm[t] = _obs(m.curr_id, curr).short_axis_mm
            if m.status == "ambiguous":
                ambiguities.append(Ambiguity(t, tr.track_id, tr.name_ja, m.candidates, m.note_ja))
        for nid in new_ids:
            o = _obs(nid, curr)
            node = next(n for n in curr.nodes if n.label == nid)
            pathological = tenths(o.short_axis_mm) >= tenths(rules.new_node_min_mm)
            sizes: list[float | None] = [None] * t_count
            ids: list[int | None] = [None] * t_count
            sizes[t], ids[t] = o.short_axis_mm, nid
            status = ["absent"] * t_count
            status[t] = "new"
            tracks.append(
                Track(next_id, node.name_ja, "new" if pathological else "normal", t, ids, sizes, status)
            )
            next_id += 1
    responses = responses_over_time(tracks, t_count, rules)
    return Course(studies, tracks, alignments, responses, ambiguities)


def responses_over_time(tracks: list[Track], t_count: int, rules: RecistRules) -> list[Response]:
    """Response at each follow-up: targets and non-targets are the baseline roles; nadir before each."""
    targets = [tr for tr in tracks if tr.role == "target"]
    non_targets = [tr for tr in tracks if tr.role == "non_target"]
    baseline_sum = sum(tenths(tr.sizes_mm[0] or 0.0) for tr in targets) / 10.0
    sums = [baseline_sum]
    out = []
    for t in range(1, t_count):
        nadir = min(sums)
        new_lesion = any(tr.role == "new" and 1 <= tr.first_timepoint <= t for tr in tracks)
        resp = timepoint_response(
            [tr.sizes_mm[t] for tr in targets],
            baseline_sum,
            nadir,
            [tr.sizes_mm[t] for tr in non_targets],
            new_lesion,
            rules,
        )
        out.append(resp)
        if resp.sum_mm is not None:  # a timepoint that could not be summed never lowers the nadir
            sums.append(resp.sum_mm)
    return out
