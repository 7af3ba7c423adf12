"""Each issue's acceptance question, end to end through the agent (deterministic backend, offline).

Data: CT and lymph-node phantoms written by dokuei.phantoms (geometry known by construction; the
expected figures are the analytic values the phantom tests already check within 1 % / 0.5 mm);
pydicom's real 12-lead waveform_ecg.dcm (MIT licence, pydicom test data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dokuei.agent.graph import Agent, TurnResult
from dokuei.settings import Settings
from dokuei.testdata import pydicom_file


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    return Agent(Settings.load(home=tmp_path_factory.mktemp("home")))


def _output(turn: TurnResult, tool: str) -> dict[str, Any]:
    result = next(r for r in turn.results if r.tool == tool)
    assert result.output is not None, result.summary_ja
    return result.output


def test_ct_body_composition_question(agent: Agent, tmp_path: Path) -> None:
    from dokuei.phantoms.ct import write_study

    study = write_study(tmp_path / "ct")
    turn = agent.ask("この CT で L3 の骨格筋量とサルコペニアの判定は？", attachments=[str(study)],
                     patient={"age_years": 72, "sex": "F", "height_cm": 152})
    assert [r.tool for r in turn.results] == ["measure_body_composition"]
    assert turn.verified, turn.verify_issues
    body = turn.answer_ja.split("出典:")[0]
    assert "SMI" in body and "[1]" in body and "筋肉量低下" in body
    artifacts = [a.path for r in turn.results for a in r.artifacts]
    assert artifacts and all(Path(p).exists() for p in artifacts) and artifacts[0] in turn.answer_ja


def test_lymph_node_response_question(agent: Agent, tmp_path: Path) -> None:
    from dokuei.phantoms.nodes import write_pair

    baseline, followup = write_pair(tmp_path / "nodes")
    turn = agent.ask("前回と比べてリンパ節は？RECIST で評価して", attachments=[str(baseline), str(followup)])
    assert [r.tool for r in turn.results] == ["assess_recist_response"]
    out = _output(turn, "assess_recist_response")
    # the phantom's right paratracheal node grows 16 → 24 mm short axis: target sum rises > 20 % and > 5 mm
    assert out["overall_response"] == "PD"
    assert turn.verified, turn.verify_issues
    assert "RECIST 1.1: PD" in turn.answer_ja


def test_ecg_question(agent: Agent) -> None:
    turn = agent.ask("この心電図の所見は？", attachments=[str(pydicom_file("waveform_ecg.dcm"))])
    assert [r.tool for r in turn.results] == ["analyze_ecg"]
    out = _output(turn, "analyze_ecg")
    assert abs(float(out["heart_rate_bpm"]) - 61) <= 3  # manual reading of the record: 61 bpm (see test_analyze_ecg)
    assert turn.verified, turn.verify_issues
    body = turn.answer_ja.split("出典:")[0]
    assert "bpm" in body and "QTc" in body and "[1]" in body
    assert any(a.path.endswith(".png") for a in turn.results[0].artifacts)
