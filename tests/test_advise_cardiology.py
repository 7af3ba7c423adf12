"""advise_cardiology: the rule table applied to real analyze_ecg outputs and hand-set chest X-ray outputs.

ECG outputs are real (pydicom's waveform_ecg.dcm, a normal 12-lead; see test_analyze_ecg.py for the
data's origin). Chest X-ray outputs are written by hand with the model card's labels and thresholds:
these tests check the rules, not the classifier. Expected recommendations follow the rule table
``knowledge/data/cardiology_advice_rules.json`` (rules HF-1, CM-1, CM-2, NORMAL-1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dokuei import testdata
from dokuei.settings import Settings
from dokuei.tools.advise_cardiology import AdviseCardiology, load_rules
from dokuei.tools.analyze_ecg import AnalyzeEcg, AnalyzeEcgOutput, EcgFinding
from dokuei.tools.base import ToolStatus
from dokuei.tools.classify_chest_xray import ClassifyChestXrayOutput, PathologyScore
from dokuei.tools.context import ToolContext


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings.load(home=tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def normal_ecg(settings: Settings) -> AnalyzeEcgOutput:
    result = AnalyzeEcg(settings)(
        {"ecg_path": str(testdata.pydicom_file("waveform_ecg.dcm")), "make_plot": False}
    )
    assert result.output is not None
    return AnalyzeEcgOutput.model_validate(result.output)


def cxr(*positive: str) -> ClassifyChestXrayOutput:
    from dokuei.models.cxr import model_card

    card = model_card()
    scores = [
        PathologyScore(
            label=lab,
            label_ja=ja,
            probability=0.6 if lab in positive else 0.001,
            threshold=round(t, 3),
            normalized_score=0.7 if lab in positive else 0.01,
            positive=lab in positive,
        )
        for lab, ja, t in zip(card.labels, card.labels_ja, card.op_threshs, strict=True)
    ]
    return ClassifyChestXrayOutput(
        model_id=card.weights_id,
        view_position="PA",
        photometric="MONOCHROME1",
        inverted=True,
        flips=[],
        input_size_px=224,
        scores=scores,
        positive_labels=list(positive),
        warnings_ja=[],
    )


def test_every_rule_has_rationale_and_source() -> None:
    table = load_rules()
    assert table["version"] and table["source"]
    for rule in table["rules"]:
        assert rule["rationale_ja"] and rule["statement_ja"] and rule["urgency"] in table["urgency_order"]


def test_normal_ecg_and_clear_cxr_is_routine(settings: Settings, normal_ecg: AnalyzeEcgOutput) -> None:
    result = AdviseCardiology(settings)({"ecg": normal_ecg.model_dump(), "cxr": cxr().model_dump()})
    assert result.status is ToolStatus.OK and result.output is not None
    assert result.output["urgency"] == "routine"
    assert [r["id"] for r in result.output["matched_rules"]] == ["NORMAL-1"]


def test_cardiomegaly_with_normal_ecg_suggests_outpatient(
    settings: Settings, normal_ecg: AnalyzeEcgOutput
) -> None:
    result = AdviseCardiology(settings)(
        {"ecg": normal_ecg.model_dump(), "cxr": cxr("Cardiomegaly").model_dump()}
    )
    assert result.output is not None
    assert result.output["urgency"] == "consider" and result.output["matched_rules"][0]["id"] == "CM-2"
    assert "循環器外来受診を検討" in result.summary_ja
    assert {c.id for c in result.citations} >= {"analyze_ecg", "classify_chest_xray"}


def test_abnormal_ecg_cardiomegaly_and_congestion_is_urgent(
    settings: Settings, normal_ecg: AnalyzeEcgOutput
) -> None:
    ecg = normal_ecg.model_copy(
        update={"findings": [EcgFinding(code="left_axis_deviation", label_ja="左軸偏位")]}
    )
    inp = {"ecg": ecg.model_dump(), "cxr": cxr("Cardiomegaly", "Edema").model_dump()}
    result = AdviseCardiology(settings)(inp)
    assert result.output is not None
    ids = [r["id"] for r in result.output["matched_rules"]]
    assert ids[0] == "HF-1" and "CM-1" in ids and result.output["urgency"] == "urgent"
    assert "心拡大" in result.summary_ja and "左軸偏位" in result.summary_ja


def test_reads_both_results_from_context(
    settings: Settings, normal_ecg: AnalyzeEcgOutput, tmp_path: Path
) -> None:
    tool = AdviseCardiology(settings)
    assert tool.depends_on == ("analyze_ecg", "classify_chest_xray")
    ecg_result = AnalyzeEcg(settings)(
        {"ecg_path": str(testdata.pydicom_file("waveform_ecg.dcm")), "make_plot": False}
    )
    assert (
        tool.input_from_context(
            ToolContext(question="循環器受診は必要？", results={"analyze_ecg": ecg_result})
        )
        is None
    )  # only one of the two results: the tool does not apply
    from dokuei.tools.base import Provenance, ToolResult

    cxr_result = ToolResult(
        tool="classify_chest_xray",
        status=ToolStatus.OK,
        output=cxr("Cardiomegaly").model_dump(),
        summary_ja="胸部 X 線: 心拡大",
        provenance=Provenance(tool="classify_chest_xray", tool_version="0.1.0"),
    )
    ctx = ToolContext(
        question="この心電図と胸部 X 線から何が疑われる？",
        results={"analyze_ecg": ecg_result, "classify_chest_xray": cxr_result},
    )
    inp = tool.input_from_context(ctx)
    assert inp is not None and inp.cxr_summary_ja == "胸部 X 線: 心拡大"
    assert tool(inp).status is ToolStatus.OK
