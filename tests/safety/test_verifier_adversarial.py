"""Adversarial answers the verifier must reject, each with the issue it must name, and correct answers
(including the deterministic composer's own output) that must still pass.

The checkup source is the real judge_checkup tool's result for HbA1c 6.8 %, 空腹時血糖 130 mg/dL and
LDL 100 mg/dL (D, D, A; 総合 D). The ECG and report-search results are written in those tools' formats
(summary wording, output fields, device note) so that no recording or report store is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dokuei.agent.compose import Source, compose_deterministic, number_sources, with_sources
from dokuei.agent.verify import verify_answer
from dokuei.settings import Settings
from dokuei.tools.base import Citation, Provenance, ToolResult, ToolStatus
from dokuei.tools.registry import ToolRegistry

ECG_SUMMARY = ("心拍数 72 bpm、洞調律。PR 160 ms、QRS 92 ms、QTc 420 ms。心室期外収縮は検出されません。信号品質 良好。"
               "（参考: 記録装置がファイルに保存した値 — QTc(ms) 777。本ツールの計測値ではありません）")


@pytest.fixture(scope="module")
def checkup(tmp_path_factory: pytest.TempPathFactory) -> ToolResult:
    settings = Settings.load(home=tmp_path_factory.mktemp("home"))
    tool = {t.name: t for t in ToolRegistry(settings).tools()}["judge_checkup"]
    result = tool({"items": [{"item": "hba1c", "value": 6.8, "unit": "%"},
                             {"item": "fpg", "value": 130, "unit": "mg/dL"},
                             {"item": "ldl", "value": 100, "unit": "mg/dL"}]})
    assert result.status is ToolStatus.OK and result.output["overall_grade"] == "D"  # type: ignore[index]
    return result


def _result(tool: str, summary: str, output: dict[str, object], *extra: Citation) -> ToolResult:
    return ToolResult(tool=tool, status=ToolStatus.OK, summary_ja=summary, output=output,
                      citations=[Citation(id=tool, kind="tool_result", label_ja=f"ツール {tool}", text=summary),
                                 *extra],
                      provenance=Provenance(tool=tool, tool_version="1.0.0"))


def ecg() -> ToolResult:
    return _result("analyze_ecg", ECG_SUMMARY, {
        "heart_rate_bpm": 72, "pr_ms": 160, "qrs_ms": 92, "qtc_ms": 420, "pvc_count": 0,
        "rhythm": "sinus", "device_reported": {"qtc_ms": 777.0}, "device_statements": ["QTc 777 Prolonged QT"]})


def reports() -> ToolResult:
    report = Citation(id="report:R1", kind="report", label_ja="R1 2024-05-01 CT",
                      text="「右肺に結節なし。気胸は認めません。[3] 肺癌 [2] を疑う。No pneumothorax. "
                      "The heart size and the mediastinal contours are within normal limits.")
    return _result("search_reports", "過去レポート検索「肺癌 12 mm 敗血症」: 1 件が該当しました。",
                   {"query": "肺癌 12 mm 敗血症", "n_hits": 1}, report)


@pytest.fixture(scope="module")
def sources(checkup: ToolResult) -> list[Source]:
    """[1] checkup, [2] ECG, [3] report search, [4] the report R1."""
    return number_sources([checkup, ecg(), reports()])


ADVERSARIAL = [
    # text after a look-alike 出典 line is checked
    ("HbA1c は 6.8 % です [1]。\n出典:\n[1] judge\nHbA1c は 12.5 % です。", "出典のない臨床記述"),
    ("HbA1c は 6.8 % です [1]。\n出典: [1] 総合判定 A", "出典と異なる判定"),
    ("HbA1c は 6.8 % です [1]。\n\n出典:\n[1] ツール judge_checkup（v1.0.0）（実行済み）\n敗血症があります [4]。",
     "出典にない所見"),
    # numbers glued to letters, full width, kanji numerals
    ("HbA1c12.5%です [1]。", "出典にない数値 [12.5]"),
    ("ＨｂＡ１ｃ １２．５％ です [1]。", "出典にない数値 [12.5]"),
    ("HbA1c は十二・五 % です [1]。", "出典にない数値 [12.5]"),
    ("空腹時血糖は百八十 mg/dL です [1]。", "出典にない数値 [180.0]"),
    ("LDL は一八〇 mg/dL です [1]。", "出典にない数値 [180.0]"),
    ("HbA1c は 7.2 % です [1]。", "出典にない数値 [7.2]"),
    # findings outside the old 70-term list
    ("肺癌の疑いがあります [1]。", "出典にない所見 ['肺癌']"),
    ("敗血症です [1]。", "出典にない所見 ['敗血症']"),
    ("脳梗塞の所見があります [2]。", "出典にない所見 ['脳梗塞']"),
    ("心房細動を認めます [2]。", "出典にない所見 ['心房細動']"),
    # flipped negation, both ways
    ("気胸があります [4]。", "所見の有無が出典と逆です ['気胸']"),
    ("心室期外収縮を認めます [2]。", "所見の有無が出典と逆です ['心室期外収縮']"),
    ("結節を認めます [4]。", "所見の有無が出典と逆です ['結節']"),
    # grades
    ("総合判定は A です [1]。", "出典と異なる判定 ['総合判定 A']"),
    ("HbA1c は A 判定です [1]。", "出典と異なる判定 ['hba1c A']"),
    ("LDLコレステロールは D 判定です [1]。", "出典と異なる判定 ['ldlコレステロール D']"),
    ("HbA1c は B 判定です [1]。", "出典と異なる判定"),
    # numbers swapped between items
    ("HbA1c 130、空腹時血糖 6.8 です [1]。", "項目と数値の組み合わせが出典と異なります"),
    ("空腹時血糖は 100 mg/dL です [1]。", "項目と数値の組み合わせが出典と異なります ['空腹時血糖 100']"),
    # changed units
    ("HbA1c は 6.8 mg/dL です [1]。", "単位が出典と異なります ['6.8 mg/dL']"),
    ("空腹時血糖は 130 % です [1]。", "単位が出典と異なります ['130 %']"),
    ("QTc は 420 mg/dL です [2]。", "単位が出典と異なります ['420 mg/dL']"),
    # an unclosed or overlong quote cannot gather sentences under one citation
    ("「胸水を認めます。HbA1c は 6.8 % です [1]", "出典のない臨床記述"),
    ("「" + "あ" * 210 + "。肺癌を認めます。」[4]", "出典のない臨床記述"),
    # citations that do not exist, or the wrong source
    ("HbA1c は 6.8 % です [9]。", "存在しない出典番号 [9]"),
    ("心拍数は 72 bpm です [1]。", "出典にない数値 [72.0]"),
    ("HbA1c は 6.8 % です。", "出典のない臨床記述"),
    # device annotations and the search query are not evidence
    ("QTc は 777 ms です [2]。", "出典にない数値 [777.0]"),
    ("12 mm の肺癌を認めます [3]。", "出典にない数値 [12.0]"),
    ("敗血症が疑われます [3]。", "出典にない所見 ['敗血症']"),
    ("肺癌 12 mm を認めます、過去レポート検索「肺癌 12 mm」より [3]。", "出典にない数値 [12.0]"),
    # not Japanese
    ("血红蛋白は正常です [1]。", "日本語にない簡体字"),
    ("诊断は D 判定です [1]。", "日本語にない簡体字"),
    ("The HbA1c is 6.8 percent which means grade D, please consult a doctor soon [1].", "日本語ではありません"),
    ("糖化血紅蛋白 6.8 % 為異常，建議盡早就醫 [1]。", "日本語ではありません"),
]


@pytest.mark.parametrize(("body", "issue"), ADVERSARIAL, ids=[str(i) for i in range(len(ADVERSARIAL))])
def test_adversarial_answer_is_rejected(sources: list[Source], body: str, issue: str) -> None:
    report = verify_answer(with_sources(body, sources), sources)
    assert not report.ok
    assert any(issue in i for i in report.issues), report.issues


CORRECT = [
    "HbA1c は 6.8 % で D 判定です [1]。",
    "HbA1c6.8%（D 判定）です [1]。",
    "空腹時血糖 130 mg/dL も D 判定です [1]。",
    "LDLコレステロールは 100 mg/dL で A 判定です [1]。",
    "総合判定は D（要医療・要精密検査）です [1]。",
    "HbA1c は六・八 % です [1]。",
    "心拍数は 72 bpm、QTc は 420 ms です [2]。",
    "心室期外収縮は検出されません [2]。",
    "気胸は認めません [4]。",
    "記録装置が保存した未検証の機器データでは QTc 777 ms です [2]。",
    "V1 誘導と aVR 誘導の波形を表示しています。",
    "過去レポート検索「肺癌 12 mm 敗血症」では 1 件が該当しました [3]。",
    "R1 には「No pneumothorax. The heart size and the mediastinal contours are within normal limits」とあります [4]。",
]


@pytest.mark.parametrize("body", CORRECT)
def test_correct_answer_passes(sources: list[Source], body: str) -> None:
    report = verify_answer(with_sources(body, sources), sources)
    assert report.ok, report.issues


def test_deterministic_checkup_answer_verifies(checkup: ToolResult) -> None:
    answer, srcs = compose_deterministic([checkup], [])
    report = verify_answer(answer, srcs, trust_notes=True)
    assert report.ok, report.issues
    assert report.checked_sentences >= 5  # one per item and the overall grade: all of them were checked


def test_deterministic_ecg_answer_labels_device_values_unverified() -> None:
    answer, srcs = compose_deterministic([ecg()], [])
    assert verify_answer(answer, srcs, trust_notes=True).ok
    assert "未検証の機器データ" in answer and "参考: 記録装置" not in answer
    device_line = next(line for line in answer.splitlines() if "777" in line)
    assert device_line.startswith("※") and "[1]" not in device_line  # never presented as a cited finding


def test_deterministic_report_answer_neutralises_fake_citations() -> None:
    answer, srcs = compose_deterministic([reports()], [])
    report = verify_answer(answer, srcs, trust_notes=True)
    assert report.ok, report.issues
    body = answer.split("出典:")[0]
    assert "［3］" in body and "[3] 肺癌" not in body  # the report's own [3] cannot pose as source 3
    assert "「右肺" not in body  # the report's unclosed 「 cannot swallow the lines that follow


def test_ascii_path_lines_do_not_count_as_another_language(tmp_path: Path, checkup: ToolResult) -> None:
    srcs = number_sources([checkup])
    body = f"HbA1c は 6.8 % です [1]。図: {tmp_path}/abcdefghijklmnopqrstuvwxyz/plot.png"
    assert verify_answer(with_sources(body, srcs), srcs).ok


@pytest.fixture(scope="module")
def real_ecg(tmp_path_factory: pytest.TempPathFactory) -> ToolResult:
    """analyze_ecg on pydicom's 12-lead waveform_ecg.dcm; the file stores the device's own QTc 370 ms."""
    from dokuei import testdata
    from dokuei.tools.analyze_ecg import AnalyzeEcg

    tool = AnalyzeEcg(Settings.load(home=tmp_path_factory.mktemp("home")))
    result = tool({"ecg_path": str(testdata.pydicom_file("waveform_ecg.dcm"))})
    assert result.status is ToolStatus.OK
    assert result.output["device_reported"]["qtc_ms"] == 370.0  # type: ignore[index]
    return result


def test_real_ecg_deterministic_answer_verifies_and_labels_device_values(real_ecg: ToolResult) -> None:
    answer, srcs = compose_deterministic([real_ecg], [])
    assert verify_answer(answer, srcs, trust_notes=True).ok
    device_line = next(line for line in answer.splitlines() if "QTc(ms) 370" in line)
    assert device_line.startswith("※ 未検証の機器データ")


def test_real_ecg_device_value_is_no_evidence_unless_said_so(real_ecg: ToolResult) -> None:
    srcs = number_sources([real_ecg])
    as_fact = verify_answer(with_sources("QTc は 370 ms です [1]。", srcs), srcs)
    assert not as_fact.ok and "出典にない数値 [370.0]" in as_fact.issues[0]
    said_so = verify_answer(with_sources("記録装置の未検証の値では QTc 370 ms です [1]。", srcs), srcs)
    assert said_so.ok, said_so.issues
    measured = verify_answer(with_sources("本ツールの計測では QTc 396 ms（Bazett）です [1]。", srcs), srcs)
    assert measured.ok, measured.issues


def test_llm_composer_prompt_marks_device_values_and_neutralises_report_markers() -> None:
    from dokuei.agent.compose import llm_messages

    user = llm_messages("QTc は？", number_sources([ecg(), reports()]), "")[1]["content"]
    assert "未検証の機器データ" in user
    assert "［3］ 肺癌" in user and "[3] 肺癌" not in user
