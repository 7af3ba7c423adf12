"""A session must not carry one patient's study into another patient's answer (issue #9 item 3), and a
tool's artifacts are keyed by content and call so an earlier answer's plot never changes (item 4).

All through ``Agent.ask`` with the deterministic backend and pydicom's real 12-lead ``waveform_ecg.dcm``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dokuei.agent.graph import Agent, sqlite_checkpointer
from dokuei.settings import Settings

ECG = Path(str(get_testdata_file("waveform_ecg.dcm")))
HBA1C_NEW_PATIENT = "別の患者です。HbA1c 6.8% は？"


def _tools(turn: object) -> list[str]:
    return [r.tool for r in turn.results]  # type: ignore[attr-defined]


@pytest.fixture()
def agent(settings: Settings) -> Agent:
    return Agent(settings, checkpointer=sqlite_checkpointer(settings.checkpoint_db))


def _ecg_turn(agent: Agent, session: str, path: Path = ECG, patient: dict[str, object] | None = None) -> object:
    turn = agent.ask("この心電図を解析してください", attachments=[str(path)], session_id=session,
                     patient=patient or {"patient_id": "P-1001", "age_years": 70, "sex": "M"})
    assert _tools(turn) == ["analyze_ecg"] and turn.results[0].ok
    return turn


def test_new_patient_id_drops_the_earlier_ecg(agent: Agent) -> None:
    _ecg_turn(agent, "s")
    turn = agent.ask("HbA1c 6.8% は？", session_id="s", patient={"patient_id": "P-2002", "age_years": 45})
    assert _tools(turn) == ["judge_checkup"]
    assert turn.attachments == []
    assert "心電図" not in turn.answer_ja
    state = agent.graph.get_state({"configurable": {"thread_id": "s"}}).values
    assert state["attachments"] == []
    # the old patient's sex (M) is gone too: only what the new context gave is known
    assert "sex" not in state["patient"] and state["patient"]["age_years"] == 45


def test_the_words_another_patient_drop_studies_and_patient_facts(agent: Agent) -> None:
    _ecg_turn(agent, "s")
    turn = agent.ask(HBA1C_NEW_PATIENT, session_id="s")
    assert _tools(turn) == ["judge_checkup"]
    assert turn.results[0].output["items"][0]["grade"] is not None  # type: ignore[index]
    state = agent.graph.get_state({"configurable": {"thread_id": "s"}}).values
    assert state["attachments"] == [] and state["patient"] == {}


def test_a_different_age_or_sex_is_another_patient(agent: Agent) -> None:
    _ecg_turn(agent, "s")
    turn = agent.ask("心電図の QTc は？", session_id="s", patient={"sex": "F"})
    # the question names the ECG, but the ECG belonged to a man: it is not reused for this woman
    assert _tools(turn) != ["analyze_ecg"]
    assert turn.attachments == []


def test_same_patient_unrelated_question_does_not_rerun_the_ecg(agent: Agent) -> None:
    _ecg_turn(agent, "s")
    turn = agent.ask("HbA1c 6.8% は？", session_id="s")
    assert _tools(turn) == ["judge_checkup"]
    # still remembered for later turns that ask about it
    state = agent.graph.get_state({"configurable": {"thread_id": "s"}}).values
    assert [a["kind"] for a in state["attachments"]] == ["ecg"]


def test_same_patient_question_about_the_earlier_ecg_reuses_it(agent: Agent) -> None:
    first = _ecg_turn(agent, "s")
    turn = agent.ask("先ほどの心電図の心拍数は？", session_id="s")
    assert _tools(turn) == ["analyze_ecg"]
    assert turn.results[0].provenance.file_sha256 == first.results[0].provenance.file_sha256  # type: ignore


def test_patient_id_is_kept_only_as_a_keyed_hash(agent: Agent) -> None:
    _ecg_turn(agent, "s")
    state = agent.graph.get_state({"configurable": {"thread_id": "s"}}).values
    assert state["patient"]["patient_id"].startswith("p_") and "1001" not in state["patient"]["patient_id"]
    # the same id on a later turn is the same patient (hashing is stable): the ECG stays available
    turn = agent.ask("この心電図の心拍数は？", session_id="s", patient={"patient_id": "P-1001"})
    assert _tools(turn) == ["analyze_ecg"]


def test_reset_session_forgets_the_thread(agent: Agent) -> None:
    _ecg_turn(agent, "s")
    agent.reset_session("s")
    assert agent.graph.get_state({"configurable": {"thread_id": "s"}}).values == {}
    turn = agent.ask("この心電図の心拍数は？", session_id="s")
    assert _tools(turn) == []  # nothing attached any more: the answer says an ECG is needed


def _louder_copy(src: Path, dst: Path) -> None:
    """The same recording with every sample doubled: a different file (and plot) under the same name."""
    ds = pydicom.dcmread(src)
    seq = ds.WaveformSequence[0]
    samples = np.frombuffer(seq.WaveformData, dtype="<i2")
    seq.WaveformData = np.clip(samples.astype(np.int32) * 2, -32768, 32767).astype("<i2").tobytes()
    ds.save_as(dst)


def test_artifacts_of_two_files_at_the_same_path_never_overwrite(agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    shutil.copy(ECG, path)
    first = _ecg_turn(agent, "a", path)
    first_png = Path(first.results[0].artifacts[0].path)  # type: ignore[attr-defined]
    before = hashlib.sha256(first_png.read_bytes()).hexdigest()
    _louder_copy(ECG, path)  # another patient's ECG, same file name and folder
    second = _ecg_turn(agent, "b", path, patient={"patient_id": "P-3003"})
    second_png = Path(second.results[0].artifacts[0].path)  # type: ignore[attr-defined]
    assert second_png != first_png and second_png.exists()
    assert hashlib.sha256(first_png.read_bytes()).hexdigest() == before  # the first answer's link is intact
    assert hashlib.sha256(second_png.read_bytes()).hexdigest() != before  # doubled amplitude: another plot
    # the folder name starts with the content hash of the input file, not of its path
    file_hash = second.results[0].provenance.file_sha256  # type: ignore[attr-defined]
    assert file_hash != first.results[0].provenance.file_sha256  # type: ignore[attr-defined]


def test_every_per_turn_field_is_reset_at_intake() -> None:
    """A per-turn field added to AgentState but not to fresh_turn() would leak the previous turn's value."""
    from dokuei.agent.state import AgentState, fresh_turn

    persisted = {"messages", "attachments", "patient"}
    set_by_intake = {"question", "turn_attachments"}  # given by ask() / computed by intake every turn
    assert set(AgentState.__annotations__) - persisted - set_by_intake == set(fresh_turn())


def test_the_llm_planner_sees_earlier_attachments_only_when_the_question_refers_to_them(settings: Settings,
                                                                                         tmp_path: Path) -> None:
    from dokuei.agent.llm import ScriptedBackend

    report = tmp_path / "report_0001.txt"
    report.write_text("胸部CT: 右上葉に 12 mm の結節。", encoding="utf-8")
    backend = ScriptedBackend([])  # no tool calls: every turn plans once and answers deterministically
    agent = Agent(settings, backend=backend)
    agent.ask("添付のレポートを確認してください", attachments=[str(report)], session_id="l")
    agent.ask("HbA1c 6.8% は？", session_id="l")
    agent.ask("前回のレポートの結節の大きさは？", session_id="l")
    plan_users = [next(m["content"] for m in seen if m["role"] == "user") for seen in backend.seen]
    assert len(plan_users) == 3
    assert report.name in plan_users[0]      # new attachments always count
    assert report.name not in plan_users[1]  # an unrelated question does not get the old report
    assert report.name in plan_users[2]      # 「前回のレポート」 refers to it
