"""RECIST 1.1 response for lymph nodes: every category and its boundaries, matching, and the tool end to end.

Expected categories follow RECIST 1.1 (Eisenhauer et al., Eur J Cancer 2009;45:228-247): PR at a 30%
decrease of the sum from baseline; PD at a 20% increase over the nadir AND at least 5 mm absolute, or a
new pathological node; CR when every target node is < 10 mm short axis. The end-to-end test uses the
synthetic phantom pair of dokuei.phantoms.nodes (no licence needed), whose truth is analytic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dokuei.lymph.recist import (
    NodeObs,
    classify,
    display_percent,
    load_rules,
    match_nodes,
    overall_response,
    select_targets,
    timepoint_response,
)
from dokuei.lymph.tracking import Track, responses_over_time
from dokuei.phantoms.nodes import write_pair
from dokuei.settings import Settings
from dokuei.tools.assess_recist_response import AssessRecistResponse
from dokuei.tools.base import ToolResult
from dokuei.tools.context import Attachment, ToolContext

RULES = load_rules()


def _out(result: ToolResult) -> dict[str, Any]:
    assert result.output is not None, result.error_detail
    return result.output


def resp(targets, base, nadir, non_targets=(), new=False):
    return timepoint_response(list(targets), base, nadir, list(non_targets), new, RULES)


def test_rules_come_from_the_data_file_with_their_source():
    assert RULES.edition == "RECIST 1.1"
    assert "Eur J Cancer 2009;45(2):228-247" in RULES.source
    assert (RULES.normal_below_mm, RULES.target_min_mm) == (10, 15)
    assert (RULES.pr_decrease_percent, RULES.pd_increase_percent, RULES.pd_absolute_mm) == (30, 20, 5)


@pytest.mark.parametrize(
    ("short_axis", "expected"),
    [
        (9.9, "normal"),
        (10.0, "non_target"),
        (14.9, "non_target"),
        (15.0, "target"),
        (14.96, "target"),
    ],
)
def test_node_classes_at_the_boundaries(short_axis, expected):
    # sizes are kept to 0.1 mm, so 14.96 reads 15.0 and is measurable
    assert classify(short_axis, RULES) == expected


def test_targets_are_the_two_largest_nodes_because_all_nodes_are_one_organ():
    nodes = [(1, 16.0, 2.0), (2, 22.0, 5.0), (3, 18.0, 3.0), (4, 12.0, 1.0), (5, 8.0, 0.5), (6, 18.0, 4.0)]
    targets, non_targets = select_targets(nodes, RULES)
    assert targets == [2, 6]  # 22 mm, then 18 mm with the larger volume
    assert non_targets == [3, 1, 4]  # other pathological nodes, largest first; the 8 mm node is normal


def test_exactly_minus_30_percent_is_pr_and_just_above_is_sd():
    # baseline 20 + 20 = 40 mm; 14 + 14 = 28 mm is exactly -30%
    r = resp([14.0, 14.0], 40.0, 40.0, [12.0])
    assert (r.target, r.overall, r.change_from_baseline_percent) == ("PR", "PR", -30.0)
    r = resp([14.1, 14.0], 40.0, 40.0, [12.0])
    assert (r.target, r.overall) == ("SD", "SD")
    assert r.change_from_baseline_percent == -29.8  # shown to 0.1 because -30 would cross the threshold


def test_plus_20_percent_needs_5_mm_absolute_for_pd():
    # one target 15 -> 18 mm: +20% but only +3 mm -> not PD
    r = resp([18.0], 15.0, 15.0)
    assert (r.target, r.overall, r.change_from_nadir_percent, r.change_from_nadir_mm) == (
        "SD",
        "SD",
        20.0,
        3.0,
    )
    # 25 -> 30 mm: +20% and +5 mm, both exactly at the boundary -> PD
    r = resp([15.0, 15.0], 25.0, 25.0)
    assert (r.target, r.overall) == ("PD", "PD")
    # 25 -> 29.9 mm: +19.6%, +4.9 mm -> SD
    assert resp([15.0, 14.9], 25.0, 25.0).target == "SD"


def test_pd_is_measured_from_the_nadir_not_the_baseline():
    # baseline 40, PR to 28 at the first follow-up, then 33.6 mm: below baseline but +20% / +5.6 mm over nadir
    tracks = [
        Track(1, "a", "target", 0, [1, 1, 1], [20.0, 14.0, 16.8], ["baseline", "matched", "matched"]),
        Track(2, "b", "target", 0, [2, 2, 2], [20.0, 14.0, 16.8], ["baseline", "matched", "matched"]),
    ]
    first, second = responses_over_time(tracks, 3, RULES)
    assert first.overall == "PR"
    assert (second.nadir_sum_mm, second.sum_mm, second.change_from_nadir_mm) == (28.0, 33.6, 5.6)
    assert second.overall == "PD"


def test_a_new_pathological_node_is_pd_even_when_targets_shrink():
    r = resp([12.0, 12.0], 40.0, 40.0, new=True)
    assert r.target == "PR"
    assert r.overall == "PD"


def test_all_target_nodes_below_10_mm_is_cr():
    r = resp([9.0, 8.0], 36.0, 36.0, [7.0])
    assert (r.target, r.non_target, r.overall) == ("CR", "CR", "CR")
    # a non-target still pathological (12 mm) makes the overall response PR (RECIST 1.1 Table 1)
    r = resp([9.0, 9.9], 36.0, 36.0, [12.0])
    assert (r.target, r.non_target, r.overall) == ("CR", "non_pd", "PR")
    # 10.0 mm is not below 10 mm: not CR
    assert resp([10.0, 5.0], 36.0, 36.0).target != "CR"


def test_a_target_that_cannot_be_found_makes_the_response_not_evaluable():
    assert resp([None, 16.0], 36.0, 36.0).overall == "NE"
    assert resp([None, 16.0], 36.0, 36.0, new=True).overall == "PD"


def test_no_target_at_baseline_uses_non_targets_only():
    assert overall_response("none", "non_pd", False, RULES) == "non-CR/non-PD"
    assert overall_response("none", "CR", False, RULES) == "CR"


def test_display_percent_rounds_like_a_report():
    assert display_percent(37.5, (30, 20)) == 38.0  # 6/16 mm: +38% as in the example
    assert display_percent(19.6, (30, 20)) == 19.6  # would read +20% and cross the PD threshold


def _obs(i, pos, sa, la=20.0):
    return NodeObs(i, pos, sa, la)


def test_matching_by_position_after_alignment():
    prev = [_obs(1, (0.0, 0.0, 0.0), 16.0), _obs(2, (50.0, 0.0, 0.0), 20.0)]
    # the follow-up is shifted by (+10, 0, -20) mm; its labels are in another order
    curr = [
        _obs(7, (60.0, 0.0, -20.0), 21.0),
        _obs(8, (10.0, 0.0, -20.0), 22.0),
        _obs(9, (-60.0, 30.0, -20.0), 12.0),
    ]
    matches, new = match_nodes(prev, curr, (-10.0, 0.0, 20.0))
    assert [(m.prev_id, m.curr_id, m.status) for m in matches] == [(1, 8, "matched"), (2, 7, "matched")]
    assert new == [9]


def test_size_breaks_a_tie_in_position_and_an_unbreakable_tie_is_reported():
    prev = [_obs(1, (0.0, 0.0, 0.0), 16.0)]
    # two candidates 4 mm and 6 mm away: a tie on position; sizes 16 vs 25 mm decide
    curr = [_obs(5, (4.0, 0.0, 0.0), 25.0), _obs(6, (-6.0, 0.0, 0.0), 16.5)]
    (m,), new = match_nodes(prev, curr, (0.0, 0.0, 0.0))
    assert (m.curr_id, m.status) == (6, "matched")
    assert new == [5]
    # the same tie with similar sizes: ambiguous, and neither candidate is called new
    curr = [_obs(5, (4.0, 0.0, 0.0), 17.0), _obs(6, (-6.0, 0.0, 0.0), 16.5)]
    (m,), new = match_nodes(prev, curr, (0.0, 0.0, 0.0))
    assert (m.curr_id, m.status, set(m.candidates)) == (None, "ambiguous", {5, 6})
    assert new == []


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("lymph_pair"))


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings.load(home=tmp_path / "home")


def test_phantom_pair_is_pd_with_the_node_table(pair, settings):
    baseline, followup = pair
    truth_b = json.loads((baseline / "ground_truth.json").read_text())
    truth_f = json.loads((followup / "ground_truth.json").read_text())
    result = AssessRecistResponse(settings)({"study_paths": [str(baseline), str(followup)]})
    assert result.ok, result.error_detail
    out = _out(result)
    assert out["overall_response"] == "PD"
    assert out["order_basis"] == "study_date"
    assert out["alignments"][0]["method"] == "vertebrae"
    # the follow-up was shifted by (+6, -4, +12.5) mm: the translation back is its negative
    assert out["alignments"][0]["translation_mm"] == pytest.approx([-6.0, 4.0, -12.5], abs=0.5)
    targets = {n["track_id"]: n for n in out["nodes"] if n["role"] == "target"}
    assert set(targets) == {1, 2}  # baseline labels 1 (4R, 15.9 mm) and 2 (#7, 18.0 mm)
    # the right paratracheal node is label 1 at baseline and label 3 at follow-up (relabelled on purpose)
    assert targets[1]["node_id_by_timepoint"] == [1, 3]
    assert targets[1]["short_axis_mm_by_timepoint"][0] == pytest.approx(
        truth_b["1"]["short_axis_mm"], abs=0.5
    )
    assert targets[1]["short_axis_mm_by_timepoint"][1] == pytest.approx(
        truth_f["3"]["short_axis_mm"], abs=0.5
    )
    # truth: 15.9 + 18.0 = 33.8 -> 24.0 + 17.0 = 41.0 mm: +21% and +7.2 mm over the nadir (baseline)
    tp = out["timepoints"][1]
    assert tp["change_from_nadir_percent"] == pytest.approx(21.0, abs=2.0)
    assert tp["change_from_nadir_mm"] == pytest.approx(7.2, abs=1.0)
    assert not tp["new_lesion"]
    # the left para-aortic non-target shrank below 10 mm
    assert next(n for n in out["nodes"] if n["track_id"] == 3)["short_axis_mm_by_timepoint"][1] < 10
    assert "RECIST 1.1: PD" in result.summary_ja
    assert "前回" in result.summary_ja
    assert all(Path(a.path).exists() for a in result.artifacts)
    assert any(c.id == "recist_1_1" for c in result.citations)


def test_dates_win_over_the_order_given(pair, settings, tmp_path):
    baseline, followup = pair
    result = AssessRecistResponse(settings)(
        {"study_paths": [str(followup), str(baseline)], "render_overlay": False}
    )
    assert result.ok
    assert (_out(result)["baseline_study"], _out(result)["followup_study"]) == ("baseline", "followup")
    assert "入れ替えて" in result.summary_ja
    # without dates, the order given decides (first = baseline) and the answer says so
    import shutil

    undated = []
    for src in (followup, baseline):
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        (dst / "study.json").unlink()
        undated.append(str(dst))
    result = AssessRecistResponse(settings)({"study_paths": undated, "render_overlay": False})
    assert _out(result)["order_basis"] == "attachment_order"
    assert _out(result)["baseline_study"] == "followup"
    assert "指定の順序" in result.summary_ja


def test_every_number_in_the_summary_is_in_the_output(pair, settings):
    import re

    baseline, followup = pair
    result = AssessRecistResponse(settings)(
        {"study_paths": [str(baseline), str(followup)], "render_overlay": False}
    )
    text = json.dumps(_out(result), ensure_ascii=False)
    numbers_out = {float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)}
    for raw in re.findall(r"\d+(?:\.\d+)?", result.summary_ja):
        assert float(raw) in numbers_out, raw


def test_input_from_context_needs_two_studies(pair, settings):
    baseline, followup = pair
    tool = AssessRecistResponse(settings)
    q = "前回と比べてリンパ節は？RECIST で評価して"
    ctx = ToolContext(q, [Attachment(baseline, "ct_series"), Attachment(followup, "ct_series")])
    inp = tool.input_from_context(ctx)
    assert inp is not None and inp.study_paths == [baseline, followup]
    assert tool.input_from_context(ToolContext(q, [Attachment(baseline, "ct_series")])) is None


def test_roles_order_the_studies_whatever_the_attach_order(pair, settings, tmp_path):
    # undated copies (no study.json), attached follow-up first: only the roles the UI wrote
    # (.dokuei-study.json) can tell which is the baseline; the answer must still be PD (see the pair test)
    import shutil

    copies = {}
    for src, role in ((pair[1], "current"), (pair[0], "baseline")):
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        (dst / "study.json").unlink()
        (dst / ".dokuei-study.json").write_text(json.dumps({"role": role}))
        copies[role] = dst
    tool = AssessRecistResponse(settings)
    ctx = ToolContext("前回と比べて", [Attachment(copies["current"], "ct_series"),
                                      Attachment(copies["baseline"], "ct_series")])
    inp = tool.input_from_context(ctx)
    assert inp is not None and inp.study_roles == ["current", "baseline"]
    result = tool(inp.model_copy(update={"render_overlay": False}))
    out = _out(result)
    assert out["order_basis"] == "study_role" and out["overall_response"] == "PD"
    assert (out["baseline_study"], out["followup_study"]) == ("baseline", "followup")
    assert "役割" in result.summary_ja


def test_roles_that_contradict_the_dates_are_followed_and_flagged(pair, settings, tmp_path):
    import shutil

    copies = []
    for src, role in ((pair[0], "current"), (pair[1], "baseline")):  # roles against the dates
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        (dst / ".dokuei-study.json").write_text(json.dumps({"role": role}))
        copies.append(dst)
    tool = AssessRecistResponse(settings)
    inp = tool.input_from_context(ToolContext("RECIST", [Attachment(p, "ct_series") for p in copies]))
    assert inp is not None
    result = tool(inp.model_copy(update={"render_overlay": False}))
    assert _out(result)["baseline_study"] == "followup"
    assert "一致しません" in result.summary_ja
