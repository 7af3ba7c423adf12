"""judge_checkup against the 判定区分 table, item by item, on both sides of every boundary.

Expected grades are transcribed by hand from the table (edition named in
knowledge/data/checkup_criteria.json), not computed from the data file, so a typo in either shows up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dokuei.tools.base import ToolResult, ToolStatus
from dokuei.tools.context import PatientContext, ToolContext
from dokuei.tools.judge_checkup import JudgeCheckup, parse_checkup_text

# (item, value, unit, sex, expected grade) — each pair sits on the two sides of a band edge
BOUNDARIES = [
    ("bmi", 18.4, "kg/m2", None, "C"), ("bmi", 18.5, "kg/m2", None, "A"), ("bmi", 24.9, "kg/m2", None, "A"),
    ("bmi", 25.0, "kg/m2", None, "C"),
    ("waist", 84.9, "cm", "M", "A"), ("waist", 85.0, "cm", "M", "C"),
    ("waist", 89.9, "cm", "F", "A"), ("waist", 90.0, "cm", "F", "C"),
    ("sbp", 129, "mmHg", None, "A"), ("sbp", 130, "mmHg", None, "B"), ("sbp", 139, "mmHg", None, "B"),
    ("sbp", 140, "mmHg", None, "C"), ("sbp", 159, "mmHg", None, "C"), ("sbp", 160, "mmHg", None, "D"),
    ("dbp", 84, "mmHg", None, "A"), ("dbp", 85, "mmHg", None, "B"), ("dbp", 89, "mmHg", None, "B"),
    ("dbp", 90, "mmHg", None, "C"), ("dbp", 99, "mmHg", None, "C"), ("dbp", 100, "mmHg", None, "D"),
    ("fpg", 69, "mg/dL", None, "D"), ("fpg", 70, "mg/dL", None, "A"), ("fpg", 99, "mg/dL", None, "A"),
    ("fpg", 100, "mg/dL", None, "B"), ("fpg", 109, "mg/dL", None, "B"), ("fpg", 110, "mg/dL", None, "C"),
    ("fpg", 125, "mg/dL", None, "C"), ("fpg", 126, "mg/dL", None, "D"),
    ("hba1c", 5.5, "%", None, "A"), ("hba1c", 5.6, "%", None, "B"), ("hba1c", 5.9, "%", None, "B"),
    ("hba1c", 6.0, "%", None, "C"), ("hba1c", 6.4, "%", None, "C"), ("hba1c", 6.5, "%", None, "D"),
    ("ldl", 59, "mg/dL", None, "D"), ("ldl", 60, "mg/dL", None, "A"), ("ldl", 119, "mg/dL", None, "A"),
    ("ldl", 120, "mg/dL", None, "B"), ("ldl", 139, "mg/dL", None, "B"), ("ldl", 140, "mg/dL", None, "C"),
    ("ldl", 179, "mg/dL", None, "C"), ("ldl", 180, "mg/dL", None, "D"),
    ("hdl", 34, "mg/dL", None, "D"), ("hdl", 35, "mg/dL", None, "C"), ("hdl", 39, "mg/dL", None, "C"),
    ("hdl", 40, "mg/dL", None, "A"),
    ("non_hdl", 89, "mg/dL", None, "D"), ("non_hdl", 90, "mg/dL", None, "A"), ("non_hdl", 149, "mg/dL", None, "A"),
    ("non_hdl", 150, "mg/dL", None, "B"), ("non_hdl", 169, "mg/dL", None, "B"), ("non_hdl", 170, "mg/dL", None, "C"),
    ("non_hdl", 209, "mg/dL", None, "C"), ("non_hdl", 210, "mg/dL", None, "D"),
    ("tg", 29, "mg/dL", None, "D"), ("tg", 30, "mg/dL", None, "A"), ("tg", 149, "mg/dL", None, "A"),
    ("tg", 150, "mg/dL", None, "C"), ("tg", 299, "mg/dL", None, "C"), ("tg", 300, "mg/dL", None, "D"),
    ("ast", 30, "U/L", None, "A"), ("ast", 31, "U/L", None, "B"), ("ast", 35, "U/L", None, "B"),
    ("ast", 36, "U/L", None, "C"), ("ast", 50, "U/L", None, "C"), ("ast", 51, "U/L", None, "D"),
    ("alt", 30, "U/L", None, "A"), ("alt", 31, "U/L", None, "B"), ("alt", 40, "U/L", None, "B"),
    ("alt", 41, "U/L", None, "C"), ("alt", 50, "U/L", None, "C"), ("alt", 51, "U/L", None, "D"),
    ("ggt", 50, "U/L", None, "A"), ("ggt", 51, "U/L", None, "B"), ("ggt", 80, "U/L", None, "B"),
    ("ggt", 81, "U/L", None, "C"), ("ggt", 100, "U/L", None, "C"), ("ggt", 101, "U/L", None, "D"),
    ("egfr", 44.9, "mL/min/1.73m2", None, "D"), ("egfr", 45.0, "mL/min/1.73m2", None, "B"),
    ("egfr", 59.9, "mL/min/1.73m²", None, "B"), ("egfr", 60.0, "mL/min/1.73m2", None, "A"),
    ("uric_acid", 2.0, "mg/dL", None, "C"), ("uric_acid", 2.1, "mg/dL", None, "A"),
    ("uric_acid", 7.0, "mg/dL", None, "A"), ("uric_acid", 7.1, "mg/dL", None, "B"),
    ("uric_acid", 7.9, "mg/dL", None, "B"), ("uric_acid", 8.0, "mg/dL", None, "C"),
    ("uric_acid", 8.9, "mg/dL", None, "C"), ("uric_acid", 9.0, "mg/dL", None, "D"),
    ("hemoglobin", 12.0, "g/dL", "M", "D"), ("hemoglobin", 12.1, "g/dL", "M", "C"),
    ("hemoglobin", 13.0, "g/dL", "M", "C"), ("hemoglobin", 13.1, "g/dL", "M", "A"),
    ("hemoglobin", 16.3, "g/dL", "M", "A"), ("hemoglobin", 16.4, "g/dL", "M", "B"),
    ("hemoglobin", 18.0, "g/dL", "M", "B"), ("hemoglobin", 18.1, "g/dL", "M", "D"),
    ("hemoglobin", 11.0, "g/dL", "F", "D"), ("hemoglobin", 11.1, "g/dL", "F", "C"),
    ("hemoglobin", 12.0, "g/dL", "F", "C"), ("hemoglobin", 12.1, "g/dL", "F", "A"),
    ("hemoglobin", 14.5, "g/dL", "F", "A"), ("hemoglobin", 14.6, "g/dL", "F", "B"),
    ("hemoglobin", 16.0, "g/dL", "F", "B"), ("hemoglobin", 16.1, "g/dL", "F", "D"),
    ("urine_protein", "-", None, None, "A"), ("urine_protein", "±", None, None, "B"),
    ("urine_protein", "+", None, None, "C"), ("urine_protein", "2+", None, None, "D"),
    ("urine_protein", "（－）", None, None, "A"),
]


@pytest.fixture(scope="module")
def tool() -> JudgeCheckup:
    return JudgeCheckup()


@pytest.mark.parametrize(("item", "value", "unit", "sex", "grade"), BOUNDARIES)
def test_boundary(tool: JudgeCheckup, item: str, value: float | str, unit: str | None, sex: str | None,
                  grade: str) -> None:
    result = tool({"items": [{"item": item, "value": value, "unit": unit}], "sex": sex})
    assert result.status is ToolStatus.OK, result.summary_ja
    assert result.output is not None
    assert result.output["items"][0]["grade"] == grade


def test_acceptance_question_judges_both_items_d(tool: JudgeCheckup) -> None:
    items = parse_checkup_text("55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？")
    by_key = {i.item: i for i in items}
    assert by_key["hba1c"].value == 6.8 and by_key["hba1c"].unit == "%"
    assert by_key["fpg"].value == 130 and by_key["fpg"].unit == "mg/dL"
    result = tool({"items": [i.model_dump() for i in items], "sex": "M"})
    assert result.output is not None
    assert {j["item"]: j["grade"] for j in result.output["items"]} == {"hba1c": "D", "fpg": "D"}
    assert result.output["overall_grade"] == "D"
    assert "受診" in result.summary_ja


def test_mmol_units_are_converted(tool: JudgeCheckup) -> None:
    # 7.0 mmol/L glucose × 18.016 = 126.1 → 126 mg/dL, the D edge; LDL 3.62 mmol/L × 38.67 = 140.0 → C;
    # HbA1c 48 mmol/mol (IFCC) → 0.09148 × 48 + 2.152 = 6.54 → 6.5 % (NGSP), the D edge.
    result = tool({"items": [{"item": "空腹時血糖", "value": 7.0, "unit": "mmol/L"},
                             {"item": "LDL-C", "value": 3.62, "unit": "mmol/l"},
                             {"item": "HbA1c", "value": 48, "unit": "mmol/mol"}]})
    assert result.output is not None
    items = result.output["items"]
    assert [(i["value_canonical"], i["grade"]) for i in items] == [(126, "D"), (140, "C"), (6.5, "D")]


def test_bad_item_gets_its_own_error_and_the_rest_is_judged(tool: JudgeCheckup) -> None:
    result = tool({"items": [{"item": "hba1c", "value": 6.8, "unit": "%"},
                             {"item": "fpg", "value": 130, "unit": "kg"},        # wrong unit
                             {"item": "ldl", "value": 130},                      # no unit
                             {"item": "hdl", "value": 4000, "unit": "mg/dL"},    # impossible
                             {"item": "血液型", "value": 1, "unit": "-"}]})      # not in the table
    assert result.status is ToolStatus.OK
    assert result.output is not None
    items = result.output["items"]
    assert items[0]["grade"] == "D"
    assert [i["grade"] for i in items[1:]] == [None, None, None, None]
    assert "単位「kg」は 空腹時血糖 の単位として使えません" in items[1]["error_ja"]
    assert "単位が指定されていません" in items[2]["error_ja"]
    assert "ありえない" in items[3]["error_ja"]
    assert "判定区分表にない" in items[4]["error_ja"]
    assert result.output["n_judged"] == 1 and result.output["n_errors"] == 4
    # four items refused: the D of HbA1c is shown, but no overall grade pretends to cover the rest
    assert result.output["overall_grade"] is None and result.output["worst_judged_grade"] == "D"
    assert "総合判定は保留" in result.summary_ja and "総合判定 D" not in result.summary_ja


def test_sex_dependent_item_without_sex_is_an_item_error(tool: JudgeCheckup) -> None:
    result = tool({"items": [{"item": "hemoglobin", "value": 13.0, "unit": "g/dL"},
                             {"item": "hba1c", "value": 5.0, "unit": "%"}]})
    assert result.output is not None
    assert "性別が不明なため判定できません" in result.output["items"][0]["error_ja"]
    # the one judged item is A, but an overall A would hide the unjudged 血色素量: withheld
    assert result.output["items"][1]["grade"] == "A"
    assert result.output["overall_grade"] is None and result.output["sex_used"] is None
    assert "総合判定は保留" in result.summary_ja and "血色素量" in result.output["overall_withheld_reason_ja"]


def test_on_treatment_is_e_and_does_not_raise_the_overall_grade(tool: JudgeCheckup) -> None:
    result = tool({"items": [{"item": "hba1c", "value": 7.5, "unit": "%", "on_treatment": True},
                             {"item": "ldl", "value": 125, "unit": "mg/dL"}]})
    assert result.output is not None
    assert [i["grade"] for i in result.output["items"]] == ["E", "B"]
    assert result.output["overall_grade"] == "B"


def test_nothing_judgeable_is_a_failed_result(tool: JudgeCheckup) -> None:
    result = tool({"items": [{"item": "fpg", "value": 130, "unit": "kg"}]})
    assert result.status is ToolStatus.FAILED
    assert "判定できる検査項目がありませんでした" in result.summary_ja


def test_values_are_rounded_half_up_to_the_tables_digits(tool: JudgeCheckup) -> None:
    # 5.55 % reads as 5.6 % (B); banker's rounding of the binary float would give 5.5 (A).
    # 129.5 mmHg reads as 130 (B), not 129 (A).
    result = tool({"items": [{"item": "hba1c", "value": 5.55, "unit": "%"},
                             {"item": "sbp", "value": 129.5, "unit": "mmHg"}]})
    assert result.output is not None
    assert [(i["value_canonical"], i["grade"]) for i in result.output["items"]] == [(5.6, "B"), (130, "B")]


def test_lipids_in_mmol_without_a_unit_are_not_judged_as_mg(tool: JudgeCheckup) -> None:
    # 「LDL 3.4、HDL 1.2」 are mmol/L values; read as mg/dL they would be D (要医療). Below 10 / 5 mg/dL
    # they are impossible, so each item asks for its unit instead of judging.
    items = parse_checkup_text("LDL 3.4、HDL 1.2 は？")
    result = tool({"items": [i.model_dump() for i in items]})
    assert result.status is ToolStatus.FAILED
    assert "ありえない値" in result.summary_ja


def test_text_without_units_marks_them_assumed() -> None:
    items = {i.item: i for i in parse_checkup_text("HbA1c 6.8、空腹時血糖 130 は要受診？血圧 142/88")}
    assert items["hba1c"].unit == "%" and items["hba1c"].unit_assumed
    assert (items["sbp"].value, items["dbp"].value) == (142, 88)


def test_cli_tools_run_prints_a_tool_result(tmp_path: Path) -> None:
    payload = {"items": [{"item": "hba1c", "value": 6.8, "unit": "%"}, {"item": "fpg", "value": 130, "unit": "kg"}]}
    proc = subprocess.run([sys.executable, "-m", "dokuei.cli", "tools", "run", "judge_checkup",
                           "--json-input", json.dumps(payload)], capture_output=True, text=True, check=False,
                          env={**os.environ, "DOKUEI_HOME": str(tmp_path)})
    result = json.loads(proc.stdout)
    assert result["status"] == "ok"
    assert result["output"]["items"][0]["grade"] == "D"
    assert result["output"]["items"][1]["error_ja"].startswith("単位「kg」は 空腹時血糖 の単位として使えません")
    assert result["output"]["overall_grade"] is None
    assert {"status", "output", "summary_ja", "citations", "provenance"} <= set(result)
    assert result["provenance"]["tool"] == "judge_checkup" and len(result["provenance"]["input_sha256"]) == 64


def _ask(tool: JudgeCheckup, question: str, sex: str | None = None) -> tuple[ToolResult, dict[str, Any]]:
    """Run the tool on what input_from_context reads from a question, as the deterministic agent does."""
    inp = tool.input_from_context(ToolContext(question=question, patient=PatientContext(sex=sex)))
    assert inp is not None, question
    result = tool(inp.model_dump())
    return result, (result.output or {})


def test_ldl_written_with_a_space_is_judged_and_raises_the_overall_grade(tool: JudgeCheckup) -> None:
    # Issue #9 repro: 「LDL コレステロール」 with a space used to match nothing, so only HbA1c 5.0 % (A) was
    # judged and the answer said 総合判定 A. LDL 180 mg/dL is on the D edge (≥ 180) of the table.
    result, out = _ask(tool, "LDL コレステロール 180 mg/dL、HbA1c 5.0% は要受診ですか？")
    assert {j["item"]: j["grade"] for j in out["items"]} == {"ldl": "D", "hba1c": "A"}
    assert out["overall_grade"] == "D" and out["unread_ja"] == []
    assert "LDLコレステロール 180 mg/dL: D 判定" in result.summary_ja


@pytest.mark.parametrize("spelling", ["γ GTP", "γ-GTP", "γGTP", "ガンマGTP", "ガンマ GTP", "γ－ＧＴＰ", "GGT"])
def test_every_spelling_of_gamma_gtp_is_read(tool: JudgeCheckup, spelling: str) -> None:
    # 250 U/L is above the D edge (≥ 101 U/L)
    _, out = _ask(tool, f"{spelling} 250 は？")
    assert [(j["item"], j["value_canonical"], j["grade"]) for j in out["items"]] == [("ggt", 250, "D")]
    assert out["overall_grade"] == "D"


def test_a_written_wrong_unit_is_an_error_not_a_missing_unit(tool: JudgeCheckup) -> None:
    # 「HbA1c 6.8 kg」 used to be judged as 6.8 % 「単位の記載がないため」; kg is written, and wrong
    result, out = _ask(tool, "HbA1c 6.8 kg、LDL 100 mg/dL")
    hba1c = out["items"][0]
    assert hba1c["grade"] is None and hba1c["unit_given"] == "kg" and not hba1c["unit_assumed"]
    assert "単位「kg」は HbA1c の単位として使えません" in hba1c["error_ja"]
    assert out["items"][1]["grade"] == "A"  # LDL 100 mg/dL lies in A (60–119)
    assert out["overall_grade"] is None and "HbA1c" in out["overall_withheld_reason_ja"]
    assert "単位の記載がない" not in result.summary_ja


def test_a_negative_value_is_refused_and_named(tool: JudgeCheckup) -> None:
    result = tool(tool.input_from_context(ToolContext(question="空腹時血糖 -5")).model_dump())  # type: ignore[union-attr]
    assert result.status is ToolStatus.FAILED
    assert "空腹時血糖" in result.summary_ja and "負の値" in result.summary_ja


def test_an_unknown_label_next_to_a_number_is_listed_and_withholds_the_overall_grade(tool: JudgeCheckup) -> None:
    result, out = _ask(tool, "HbA1c 5.0%、フェリチン 30 ng/mL は？")
    assert out["items"][0]["grade"] == "A"
    assert out["unread_ja"] == ["フェリチン 30 ng/mL"] and out["n_unread"] == 1
    assert out["overall_grade"] is None and out["worst_judged_grade"] == "A"
    assert "読み取れなかった項目: フェリチン 30 ng/mL" in result.summary_ja
    assert "総合判定は保留" in result.summary_ja and "総合判定 A" not in result.summary_ja


def test_sex_from_the_question_is_used_and_named(tool: JudgeCheckup) -> None:
    # 腹囲 88 cm: A for women (< 90), C for men (≥ 85); 血色素量 12.5 g/dL: A for women (12.1–14.5), C for men
    result, out = _ask(tool, "60歳女性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？")
    assert [j["grade"] for j in out["items"]] == ["A", "A"] and out["overall_grade"] == "A"
    assert out["sex_used"] == "F" and "女性の基準で判定" in result.summary_ja
    _, male = _ask(tool, "60歳男性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？")
    assert [j["grade"] for j in male["items"]] == ["C", "C"] and male["sex_used"] == "M"


def test_unknown_sex_is_never_defaulted(tool: JudgeCheckup) -> None:
    result, out = _ask(tool, "腹囲 88 cm、HbA1c 5.0%")
    assert out["items"][0]["grade"] is None and "性別が不明なため判定できません" in out["items"][0]["error_ja"]
    assert out["overall_grade"] is None and "男性の基準" not in result.summary_ja


def test_patient_sex_contradicting_the_question_refuses_sex_dependent_items(tool: JudgeCheckup) -> None:
    _, out = _ask(tool, "60歳女性、血色素量 12.5 g/dL、HbA1c 5.0%", sex="M")
    assert out["items"][0]["grade"] is None and out["overall_grade"] is None
    assert any("性別" in u for u in out["unread_ja"])


def test_the_readme_acceptance_question_still_gives_d_d_and_overall_d(tool: JudgeCheckup) -> None:
    result, out = _ask(tool, "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？")
    assert [(j["item"], j["grade"]) for j in out["items"]] == [("hba1c", "D"), ("fpg", "D")]
    assert out["overall_grade"] == "D" and out["unread_ja"] == [] and out["overall_withheld_reason_ja"] is None
    assert "総合判定 D" in result.summary_ja


@pytest.mark.parametrize(("value", "reason"), [("nan", "有限の数値ではありません"), ("inf", "有限の数値ではありません"),
                                               (-5, "負の値"), ("六・八", "数値ではありません")])
def test_impossible_values_from_a_planner_are_refused_by_name(tool: JudgeCheckup, value: float | str,
                                                              reason: str) -> None:
    # an LLM planner builds items itself; 'nan' parses as a float and must not fall through the range checks
    result = tool({"items": [{"item": "hba1c", "value": value, "unit": "%"},
                             {"item": "ldl", "value": 100, "unit": "mg/dL"}]})
    assert result.output is not None
    hba1c, ldl = result.output["items"]
    assert hba1c["grade"] is None and reason in hba1c["error_ja"]
    assert ldl["grade"] == "A" and result.output["overall_grade"] is None


def test_all_items_on_treatment_give_e_and_no_withholding(tool: JudgeCheckup) -> None:
    result = tool({"items": [{"item": "hba1c", "value": 7.5, "unit": "%", "on_treatment": True}]})
    assert result.output is not None
    assert result.output["overall_grade"] == "E" and result.output["overall_withheld_reason_ja"] is None


def test_a_question_naming_both_sexes_uses_neither(tool: JudgeCheckup) -> None:
    _, out = _ask(tool, "男性と女性で腹囲 88 cm の判定は違いますか？HbA1c 5.0%")
    assert out["items"][0]["item"] == "waist" and out["items"][0]["grade"] is None
    assert out["sex_used"] is None and out["overall_grade"] is None
