"""The Gradio app, driven through its own HTTP API on loopback as a browser would."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from dokuei.patient import SOURCE_FORM, SOURCE_QUESTION, SOURCE_UNKNOWN, patient_from_question, resolve_patient
from dokuei.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_checkup_without_patient_fields_uses_the_sex_in_the_question(tmp_path: Path) -> None:
    """Issue #10: an empty form must not mean 男性. Hb 12.5 g/dL is A for a woman (≥ 12.1) and C for a man."""
    from gradio_client import Client

    from dokuei.ui.app import build_app

    app = build_app(Settings.load(home=tmp_path))
    port = _free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        # the session is a gr.State kept by the server per browser session, not part of the API
        # outputs as the client sees them (the button update is not part of the API): chat, banner, sources,
        # trace, raw JSON, gallery, question
        chat, banner, sources, trace, raw, *_ = client.predict(
            "60歳女性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？", [], "", None, "", "", api_name="/respond")
        answer = chat[-1]["content"]
        text = answer if isinstance(answer, str) else "".join(part.get("text", "") for part in answer)
        assert "血色素量 12.5 g/dL: A 判定" in text and "[1]" in text
        assert "女性（質問文）" in banner
        assert "健診判定" in sources and "judge" not in sources  # the tool's Japanese title, not its code name
        assert trace["data"][0][:2] == ["健診判定", "完了"]
        assert json.loads(raw)[0]["input"]["sex"] == "F"
    finally:
        app.close()

def test_question_sex_is_used_when_the_form_is_empty() -> None:
    # the issue #10 example: no form fields, 「60歳女性」 in the question must reach the tool as F/60
    res = resolve_patient("60歳女性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？", {})
    assert res.values == {"age_years": 60, "sex": "F"}
    assert res.sources["sex"] == SOURCE_QUESTION and res.sources["height_cm"] == SOURCE_UNKNOWN
    assert res.conflicts == []
    assert "女性（質問文）" in res.banner_markdown() and "身長** 不明（不明）" in res.banner_markdown()


def test_question_and_form_disagreeing_on_sex_leave_sex_unknown() -> None:
    res = resolve_patient("60歳女性の血色素量 12.5 g/dL は？", {"sex": "M", "height_cm": 158.0})
    assert "sex" not in res.values  # neither value is used silently
    assert res.values == {"age_years": 60, "height_cm": 158.0}
    assert res.sources["height_cm"] == SOURCE_FORM
    assert res.conflict_message_ja() == (
        "患者情報が食い違っています: 性別（質問: 女性 / 入力欄: 男性）。確認してください")


def test_agreeing_sources_are_both_named_and_bad_values_dropped() -> None:
    res = resolve_patient("72歳男性", {"age_years": 72, "weight_kg": 900.0})
    assert res.values == {"age_years": 72, "sex": "M"}  # 900 kg is outside PatientContext's range: not used
    assert res.sources["age_years"] == f"{SOURCE_QUESTION} + {SOURCE_FORM}"


def test_question_parsing_keeps_words_like_danjo_out() -> None:
    assert patient_from_question("男女別の基準で判定して") == {}
    assert patient_from_question("身長 165 cm 体重 58.5 kg の 45 歳男性") == {
        "age_years": 45, "sex": "M", "height_cm": 165.0, "weight_kg": 58.5}
    # two sexes in one question: both kept so resolve_patient reports a conflict
    assert patient_from_question("男性、いや女性") == {"sex": ["M", "F"]}
    assert "sex" not in resolve_patient("男性、いや女性", {}).values


def test_non_loopback_host_without_login_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from dokuei.ui.app import check_access

    monkeypatch.delenv("DOKUEI_UI_USERNAME", raising=False)
    monkeypatch.delenv("DOKUEI_UI_PASSWORD", raising=False)
    assert check_access("127.0.0.1") is None
    with pytest.raises(SystemExit, match="DOKUEI_UI_USERNAME"):
        check_access("0.0.0.0")
    monkeypatch.setenv("DOKUEI_UI_USERNAME", "ward3")
    with pytest.raises(SystemExit):  # a user name without a password is no login
        check_access("192.168.1.20")
    monkeypatch.setenv("DOKUEI_UI_PASSWORD", "s3cret")
    assert check_access("192.168.1.20") == ("ward3", "s3cret")


def test_tool_text_is_escaped_and_server_paths_are_hidden() -> None:
    from dokuei.ui.present import clinician_text

    shown = clinician_text("~/.dokuei/weights を確認 [1]。出力: /home/u/.dokuei/artifacts/ab12/overlay.png *強調*")
    assert "\\~" in shown and "\\*強調\\*" in shown  # no strikethrough or emphasis from tool text
    assert "[1]" in shown  # citations still link
    assert "/home/u" not in shown and "overlay.png" in shown


def test_window_presets_map_hu_to_grey_by_centre_and_width() -> None:
    import numpy as np

    from dokuei.ui.viewer import window

    hu = np.array([-1000.0, 40.0, 240.0, -160.0, 3000.0])
    # 縦隔 (40, 400): low −160, high 240 → centre is mid-grey, the ends black and white
    assert window(hu, "縦隔").tolist() == [0, 127, 255, 0, 255]
    # 肺野 (−600, 1500): low −1350, so air −1000 is (350 / 1500) × 255 = 59.5 → 59, not black
    assert window(hu, "肺野")[0] == 59


def test_axial_render_puts_anterior_up_and_colours_only_the_mask() -> None:
    import numpy as np

    from dokuei.ui.viewer import render_axial

    hu = np.full((4, 5, 3), -1000.0)
    hu[:, 4, 1] = 1500.0  # RAS: j = 4 is the most anterior row of slice 1; 1500 HU is the 骨 window top
    labels = np.zeros((4, 5, 3), dtype=np.uint8)
    labels[0, 0, 1] = 1
    image = render_axial(hu, 1, "骨", labels)
    assert image.shape == (5, 4, 3)  # rows are anterior → posterior, columns the 4 left-right voxels
    assert image[0, 1].tolist() == [255, 255, 255]  # the anterior row is on top
    plain = render_axial(hu, 1, "骨", None)
    changed = np.argwhere((image != plain).any(axis=2))
    assert changed.tolist() == [[4, 0]]  # only the one labelled voxel is tinted


def test_form_fields_empty_means_unknown_not_zero() -> None:
    from dokuei.ui.app import _form_patient, _form_problems

    assert _form_patient("", None, "", "") == {}  # gr.Number showed 0 here, which is not 'unknown'
    assert _form_patient("７２", "女性", "158 cm", "52.5") == {"age_years": 72, "sex": "F", "height_cm": 158.0,
                                                            "weight_kg": 52.5}
    assert _form_patient("abc", "不明", None, "") == {}
    assert _form_problems("abc", "", "60") == ["入力欄の年齢「abc」は数値として読めないため使いませんでした"]


def test_a_dropped_study_or_fact_moves_the_turn_to_a_fresh_server_thread() -> None:
    """The agent's session memory only adds attachments: after a study was asked about and then removed,
    reusing the thread would measure it again (issue #10). Adding a study keeps the conversation."""
    from dokuei.ui.app import _thread_for, new_session_state

    state = new_session_state()
    first = _thread_for(state, ["/u/s/a/series-1"], {"sex": "F"})
    assert first == state["id"]
    assert _thread_for(state, ["/u/s/a/series-1", "/u/s/b/series-1"], {"sex": "F", "age_years": 60}) == first
    replaced = _thread_for(state, ["/u/s/b/series-1"], {"sex": "F", "age_years": 60})
    assert replaced != first
    # a fact that became unknown (a conflict) must not survive in memory either
    assert _thread_for(state, ["/u/s/b/series-1"], {"age_years": 60}) not in (first, replaced)


def test_viewer_opens_a_nifti_study_with_its_masks_as_one_overlay(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    from dokuei.studies import ingest_upload
    from dokuei.ui.viewer import load_for_viewing, render_axial

    ct = np.full((8, 8, 4), -1000, dtype=np.int16)
    ct[2:6, 2:6, :] = 50  # a soft-tissue block
    liver = np.zeros(ct.shape, dtype=np.uint8)
    liver[2:4, 2:6, :] = 1
    src = tmp_path / "src"
    (src / "segmentations").mkdir(parents=True)
    nib.save(nib.Nifti1Image(ct, np.diag([0.8, 0.8, 2.5, 1.0])), src / "ct.nii.gz")
    nib.save(nib.Nifti1Image(liver, np.diag([0.8, 0.8, 2.5, 1.0])), src / "segmentations" / "liver.nii.gz")
    study = ingest_upload([(src / "ct.nii.gz", "case/ct.nii.gz"),
                           (src / "segmentations" / "liver.nii.gz", "case/segmentations/liver.nii.gz")],
                          tmp_path / "up", remove_sources=False)
    assert study.ct_folder is not None
    loaded = load_for_viewing(study.ct_folder)
    assert set(loaded.layers) == {"organs"}  # a single-organ mask joins the organ layer
    assert int((loaded.layers["organs"] > 0).sum()) == 2 * 4 * 4  # 8 voxels per slice × 4 slices
    image = render_axial(loaded.hu, 2, "腹部", loaded.layers["organs"])
    assert image.shape[:2] == (8, 8)
    tinted = (image[..., 0] != image[..., 1]).sum()
    assert tinted == 8  # exactly the liver voxels of that slice carry colour


def test_progress_rows_show_planned_tools_running_and_finished_ones_done() -> None:
    """While a turn runs the table is read from the graph's checkpoint: planned → 実行中, results → 完了/失敗."""
    from types import SimpleNamespace

    from dokuei.tools.base import ToolStatus
    from dokuei.ui.app import _progress_rows

    done = SimpleNamespace(tool="judge_checkup", status=ToolStatus.OK, provenance=SimpleNamespace(runtime_s=0.123))
    snapshot = SimpleNamespace(config={"configurable": {"checkpoint_id": "c2"}},
                               values={"plan": [{"name": "judge_checkup"}, {"name": "analyze_ecg"}],
                                       "results": [done]})
    agent = SimpleNamespace(graph=SimpleNamespace(get_state=lambda config: snapshot))
    assert _progress_rows(agent, "t", before="c1") == [["心電図解析", "実行中", "", ""],
                                                       ["健診判定", "完了", 0.12, ""]]
    # the checkpoint of the previous turn is not this turn's progress
    assert _progress_rows(agent, "t", before="c2") == [["（計画中）", "待機中", "", ""]]


def test_a_reference_whose_label_holds_its_text_is_listed_once() -> None:
    from dokuei.ui.present import sources_markdown

    ref = "Nishikawa H, et al. Hepatol Res 2016;46:951-963."
    shown = sources_markdown([{"number": 2, "label_ja": f"基準の出典: {ref}", "text": ref},
                              {"number": 1, "label_ja": "健診判定（v1.1.0）", "text": "HbA1c 6.8 %: D 判定"}])
    assert shown.count("Hepatol Res") == 1 and "HbA1c 6.8 %: D 判定" in shown


def test_tool_output_reads_as_japanese_labels_with_units_beside_the_values() -> None:
    """The source table and the trace name fields as a clinician does; list items by their own names."""
    from dokuei.ui.present import _key_values, output_rows

    output = {"smi_cm2_per_m2": 34.63, "structures": [{"name": "liver", "name_ja": "肝臓", "volume_ml": 1500.0}],
              "nodes": [{"label": 3, "short_axis_mm": 12.0}], "new_field_mm": 1.5}
    rows = output_rows(output)
    assert ["骨格筋指数（SMI）", "34.63 cm²/m²"] in rows
    assert ["肝臓 体積", "1500 mL"] in rows and ["リンパ節 #3 短径", "12 mm"] in rows
    assert ["new_field_mm", "1.5 mm"] in rows  # an unlabelled field is shown by its name, never hidden
    assert _key_values(output) == "骨格筋指数（SMI）=34.63 cm²/m²、new_field_mm=1.5 mm"


def _viewer_study(shape: tuple[int, int, int] = (40, 30, 5)) -> Any:
    import numpy as np

    from dokuei.ui.viewer import LoadedStudy

    return LoadedStudy(np.full(shape, 40.0), np.diag([0.5, 0.5, 2.0, 1.0]))


def test_zoomed_view_maps_a_click_back_to_the_voxel_measure_lymph_nodes_takes() -> None:
    """Display (x, y) → RAS+ voxel (i, j, k): the display is rot90 of slice k (row = ny-1-j, col = i), then
    cropped by the zoom; a click on the drawn voxel must give back that voxel's index."""
    import numpy as np

    from dokuei.ui.viewer import render_view, voxel_of_click

    study = _viewer_study()
    study.hu[12, 20, 3] = 3000.0  # one bright voxel, white in the 縦隔 window
    view = render_view(study, 3, "縦隔", zoom=2.0, centre_rc=(30 - 1 - 20, 12))
    assert view.image.shape[:2] == (15, 20)  # 30 × 40 display halved
    rows, cols = np.nonzero(view.image[..., 0] == 255)
    assert len(rows) == 1
    assert voxel_of_click(view, int(cols[0]), int(rows[0])) == (12, 20, 3)
    # an unzoomed view: crop offset 0, the same voxel
    full = render_view(study, 3, "縦隔")
    r, c = np.argwhere(full.image[..., 0] == 255)[0]
    assert (full.row0, full.col0) == (0, 0) and voxel_of_click(full, int(c), int(r)) == (12, 20, 3)


def test_tissue_layer_colours_muscle_red_and_fat_yellow_only_when_toggled() -> None:
    import numpy as np

    from dokuei.ui.viewer import TISSUE_RGB, render_view

    study = _viewer_study()
    tissue = np.zeros(study.hu.shape, dtype=np.uint8)
    tissue[5:10, 5:10, 2] = 3  # skeletal_muscle in TotalSegmentator's tissue_types
    tissue[20:25, 5:10, 2] = 1  # subcutaneous_fat
    study.layers["tissue"] = tissue
    study.tissue_rgb = {1: TISSUE_RGB["subcutaneous_fat"], 3: TISSUE_RGB["skeletal_muscle"]}
    off = render_view(study, 2, "腹部", []).image
    on = render_view(study, 2, "腹部", ["tissue"]).image
    assert not (off == on).all() and (off[..., 0] == off[..., 1]).all()  # grey without the layer
    grey = float(off[0, 0, 0])
    # 40 % blend: muscle pixel R = 0.6·grey + 0.4·220; voxel (7, 7) → display (30-1-7, 7)
    assert on[22, 7].tolist() == [int(0.6 * grey + 0.4 * c) for c in TISSUE_RGB["skeletal_muscle"]]
    assert on[22, 22].tolist() == [int(0.6 * grey + 0.4 * c) for c in TISSUE_RGB["subcutaneous_fat"]]


def test_node_layer_draws_the_outline_and_both_axes_of_a_node() -> None:
    """A 12 × 6 voxel (6 × 3 mm) ellipse: the long axis (red) runs along i, the short (green) along j."""
    import numpy as np

    from dokuei.ui.viewer import LONG_AXIS_RGB, NODE_OUTLINE_RGB, SHORT_AXIS_RGB, render_view

    study = _viewer_study()
    i, j = np.mgrid[0:40, 0:30]
    nodes = np.zeros(study.hu.shape, dtype=np.uint8)
    nodes[..., 1] = (((i - 20) / 6.0) ** 2 + ((j - 15) / 3.0) ** 2 <= 1.0).astype(np.uint8)
    study.layers["nodes"] = nodes
    image = render_view(study, 1, "縦隔", ["nodes"]).image
    red = np.argwhere((image == LONG_AXIS_RGB).all(axis=2))
    green = np.argwhere((image == SHORT_AXIS_RGB).all(axis=2))
    assert (image == NODE_OUTLINE_RGB).all(axis=2).any()
    assert np.ptp(red[:, 1]) >= 9 and np.ptp(red[:, 0]) <= 1  # horizontal (along i), ≈ 12 voxels long
    assert np.ptp(green[:, 0]) >= 4 and np.ptp(green[:, 1]) <= 1  # vertical (along j), ≈ 6 voxels
    assert (render_view(study, 0, "縦隔", ["nodes"]).image == render_view(study, 0, "縦隔").image).all()  # none on k=0


def test_side_by_side_study_follows_the_height_not_the_index() -> None:
    import numpy as np

    from dokuei.ui.viewer import LoadedStudy

    fine = LoadedStudy(np.zeros((4, 4, 20)), np.diag([1.0, 1.0, 1.0, 1.0]))  # z = 0..19 mm
    coarse = LoadedStudy(np.zeros((4, 4, 5)), np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 5.0, 2.0],
                                                          [0, 0, 0, 1.0]]))  # z = 2, 7, 12, 17, 22
    assert fine.z_mm(12) == 12.0
    assert coarse.slice_at_z(fine.z_mm(12)) == 2  # 12 mm is slice 2 of the 5 mm study
    assert coarse.slice_at_z(fine.z_mm(0)) == 0


def test_turn_queue_gives_each_waiting_turn_its_place_and_runs_them_all_in_order() -> None:
    """One worker held by the first turn: the next two wait at places 1 and 2, then all three finish, in order."""
    import threading
    import time

    from dokuei.ui.app import waiting_text
    from dokuei.ui.turns import TurnQueue

    gate = threading.Event()
    finished: list[str] = []

    def turn(name: str) -> str:
        gate.wait(timeout=10)
        finished.append(name)
        return name

    queue = TurnQueue(workers=1)
    tickets = [queue.submit(turn, name) for name in ("a", "b", "c")]
    deadline = time.monotonic() + 5
    while tickets[0].position() != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [t.position() for t in tickets] == [0, 1, 2]
    assert waiting_text(1) == "順番待ちです（次に実行します）。"
    assert waiting_text(2).startswith("順番待ちです（前に 1 件）")
    gate.set()
    assert [t.result() for t in tickets] == ["a", "b", "c"] and finished == ["a", "b", "c"]
    assert [t.position() for t in tickets] == [0, 0, 0]


def test_a_ct_answer_opens_its_study_at_the_measured_slice_and_recist_puts_the_baseline_beside(
        tmp_path: Path) -> None:
    from types import SimpleNamespace

    from dokuei.studies import Study
    from dokuei.ui.app import viewer_request

    def study(name: str) -> Study:
        s = Study(study_id=name, folder=tmp_path / name, uploaded_at=0.0)
        s.nifti_study = s.folder / "A"
        return s

    a, b = study("s1"), study("s2")
    body = SimpleNamespace(tool="measure_body_composition", ok=True, input={"study_path": str(a.folder / "A")},
                           output={"l3_slice_index": 47})
    assert viewer_request(SimpleNamespace(results=[body]), [a, b]) == ("s1", 47, None)
    recist = SimpleNamespace(tool="assess_recist_response", ok=True,
                             input={"study_paths": [str(b.folder / "A"), str(a.folder / "A")]}, output={})
    assert viewer_request(SimpleNamespace(results=[recist]), [a, b]) == ("s1", None, "s2")
    failed = SimpleNamespace(tool="measure_body_composition", ok=False, input=body.input, output=None)
    assert viewer_request(SimpleNamespace(results=[failed]), [a, b]) is None
