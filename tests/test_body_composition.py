"""measure_body_composition on the phantom: L3 on the right slice, areas within 1 %, judgements, batch.

Data: the phantom (dokuei/phantoms/ct.py). Its L3 vertebral body spans slices 42–52, so the centroid
slice is 47. At that slice the analytic areas are: psoas 2·π·13·10 mm², paraspinal 2·π·24·16 mm², the
abdominal-wall ring π(135·95 − 127·89) mm², subcutaneous fat π(160·115 − 135·95) mm², visceral fat
π·80·36 mm². Psoas grows 0.4 %/slice caudally, so measuring the wrong slice would miss the psoas truth.
The demo patient is a 152 cm woman: SMI = SMA / 1.52², below the JSH female cut-off 38 cm²/m².
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from dokuei.batch import find_studies, register_cli, run_ct_batch
from dokuei.ct.bodycomp import criteria
from dokuei.settings import Settings
from dokuei.testdata import pydicom_file
from dokuei.tools.base import ToolStatus
from dokuei.tools.context import Attachment, PatientContext, ToolContext
from dokuei.tools.measure_body_composition import MeasureBodyComposition

from .ct_helpers import (  # noqa: F401 - fixtures
    ct_settings_fixture,
    output,
    phantom_study_fixture,
    truth_fixture,
    write_series,
)

QUESTION = "この CT で L3 の骨格筋量とサルコペニアの判定は？"


@pytest.fixture(scope="module", name="demo_result")
def demo_result_fixture(phantom_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings.load(home=tmp_path_factory.mktemp("home"), device="cpu")
    ctx = ToolContext(
        QUESTION,
        [Attachment(phantom_study, "ct_series")],
        PatientContext(age_years=72, sex="F", height_cm=152),
    )
    tool = MeasureBodyComposition(settings)
    inp = tool.input_from_context(ctx)
    assert inp is not None and inp.sex == "F" and inp.height_cm == 152
    return tool(inp)


def test_l3_found_on_the_right_slice(demo_result: Any, truth: dict[str, Any]) -> None:
    assert demo_result.status is ToolStatus.OK, demo_result.summary_ja
    out = demo_result.output
    assert out["l3_slice_index"] == truth["l3_slice_index"] == 47
    assert out["l3_z_mm"] == pytest.approx(truth["l3_z_mm"])
    assert out["n_l3_slices"] == 11


def test_areas_within_one_percent(demo_result: Any, truth: dict[str, Any]) -> None:
    out, l3 = demo_result.output, truth["l3"]
    for key in ("sma_cm2", "psoas_area_cm2", "sfa_cm2", "vfa_cm2"):
        assert out[key] == pytest.approx(l3[key], rel=0.01), key
    assert out["muscle_mean_hu"] == pytest.approx(l3["muscle_hu_mean"], abs=0.5)  # 45 HU + zero-mean noise
    assert out["smi_cm2_per_m2"] == pytest.approx(truth["demo_smi_cm2_per_m2"], rel=0.01)
    assert out["pmi_cm2_per_m2"] == pytest.approx(truth["demo_pmi_cm2_per_m2"], rel=0.01)
    assert out["muscle_source"].startswith("tissue_types") and out["psoas_source"].startswith(
        "abdominal_muscles"
    )


def test_judged_against_the_jsh_female_cut_offs_with_sources(demo_result: Any) -> None:
    judged = {j["criterion_id"]: j for j in demo_result.output["judgements"]}
    smi, pmi = judged["jsh_smi_l3"], judged["jsh_pmi_l3"]
    assert smi["cutoff"] == 38.0 and smi["result"] == "below" and "Hepatol Res" in smi["source"]
    assert pmi["cutoff"] == 3.92 and pmi["result"] == "below"
    assert judged["martin_muscle_attenuation"]["result"] == "not_assessable"  # no weight → no BMI
    assert any(c.id == "criteria:jsh2016" for c in demo_result.citations)
    assert "筋肉量低下" in demo_result.summary_ja and "握力" in demo_result.summary_ja


def test_every_number_in_the_summary_is_in_the_output(demo_result: Any) -> None:
    """The agent's verifier traces each number of an answer to a tool output; the summary must pass it."""
    values: set[float] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            values.add(float(node))
        elif isinstance(node, str):
            values.update(float(x) for x in re.findall(r"\d+(?:\.\d+)?", node))

    collect(demo_result.output)
    numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", demo_result.summary_ja)]
    assert numbers and all(n in values for n in numbers), (numbers, demo_result.summary_ja)


def test_overlay_is_a_png_artifact(demo_result: Any) -> None:
    path = Path(demo_result.output["overlay_path"])
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert demo_result.artifacts[0].path == str(path) and "L3" in demo_result.artifacts[0].caption_ja


def test_missing_height_reports_areas_and_says_why_no_index(
    phantom_study: Path, ct_settings: Settings, truth: dict[str, Any]
) -> None:
    result = MeasureBodyComposition(ct_settings)(
        {"study_path": str(phantom_study), "sex": "M", "write_overlay": False}
    )
    assert result.ok
    out = output(result)
    assert out["sma_cm2"] == pytest.approx(truth["l3"]["sma_cm2"], rel=0.01)
    assert out["smi_cm2_per_m2"] is None and out["pmi_cm2_per_m2"] is None
    assert all(j["result"] == "not_assessable" for j in out["judgements"])
    assert "身長" in result.summary_ja and any("身長" in m for m in out["missing_ja"])


def test_male_with_weight_gets_the_muscle_hu_judgement(phantom_study: Path, ct_settings: Settings) -> None:
    result = MeasureBodyComposition(ct_settings)(
        {
            "study_path": str(phantom_study),
            "sex": "M",
            "height_cm": 152,
            "weight_kg": 50,
            "write_overlay": False,
        }
    )
    judged = {j["criterion_id"]: j for j in output(result)["judgements"]}
    # BMI 50 / 1.52² = 21.6 < 25 → cut-off 41 HU (Martin 2013); muscle is 45 HU → at or above
    assert output(result)["bmi_kg_m2"] == pytest.approx(21.6)
    assert judged["martin_muscle_attenuation"]["cutoff"] == 41.0
    assert judged["martin_muscle_attenuation"]["result"] == "at_or_above"
    assert judged["jsh_smi_l3"]["cutoff"] == 42.0  # the male cut-off


def _study_with(phantom_study: Path, dest: Path, tasks: tuple[str, ...]) -> Path:
    dest.mkdir(parents=True)
    (dest / "segmentations").mkdir()
    (dest / "ct.nii.gz").symlink_to(phantom_study / "ct.nii.gz")
    for task in tasks:
        src = phantom_study / "segmentations" / (task if task == "abdominal_muscles" else f"{task}.nii.gz")
        (dest / "segmentations" / src.name).symlink_to(src)
    return dest


def test_muscle_from_abdominal_muscles_when_no_licence(
    phantom_study: Path, tmp_path: Path, ct_settings: Settings, truth: dict[str, Any]
) -> None:
    study = _study_with(phantom_study, tmp_path / "s", ("total", "abdominal_muscles"))
    result = MeasureBodyComposition(ct_settings)(
        {"study_path": str(study), "sex": "F", "height_cm": 152, "write_overlay": False}
    )
    out = output(result)
    assert out["muscle_source"] == "abdominal_muscles:all"
    assert out["sma_cm2"] == pytest.approx(truth["l3"]["sma_cm2"], rel=0.01)
    assert out["vfa_cm2"] is None and any("tissue_types" in m for m in out["missing_ja"])


def test_total_only_gives_psoas_not_sma(
    phantom_study: Path, tmp_path: Path, ct_settings: Settings, truth: dict[str, Any]
) -> None:
    study = _study_with(phantom_study, tmp_path / "s", ("total",))
    result = MeasureBodyComposition(ct_settings)(
        {"study_path": str(study), "sex": "F", "height_cm": 152, "write_overlay": False}
    )
    out = output(result)
    assert out["sma_cm2"] is None and out["smi_cm2_per_m2"] is None
    assert out["psoas_area_cm2"] == pytest.approx(truth["l3"]["psoas_area_cm2"], rel=0.01)  # iliopsoas at L3
    assert "SMA" in " ".join(out["missing_ja"])


def test_no_l3_in_the_scan_is_a_clear_failure(
    phantom_study: Path, tmp_path: Path, ct_settings: Settings
) -> None:
    import nibabel as nib

    study = _study_with(phantom_study, tmp_path / "s", ("tissue_types",))
    img: Any = nib.load(str(phantom_study / "segmentations" / "total.nii.gz"))
    labels = np.asarray(img.dataobj).copy()
    labels[labels == 29] = 0  # remove vertebrae_L3
    nib.save(nib.Nifti1Image(labels, img.affine), study / "segmentations" / "total.nii.gz")
    result = MeasureBodyComposition(ct_settings)({"study_path": str(study), "sex": "F", "height_cm": 152})
    assert result.status is ToolStatus.FAILED and "L3 椎体が見つかりません" in result.summary_ja


def test_criteria_file_names_a_source_for_every_cut_off() -> None:
    data = criteria()
    assert data["edition"] and data["version"]
    for crit in data["criteria"]:
        assert crit["source_id"] in data["sources"]
    assert data["criteria"][0]["cutoff"] == {"M": 42.0, "F": 38.0}
    assert data["criteria"][1]["cutoff"] == {"M": 6.36, "F": 3.92}


def test_batch_over_studies_is_resumable(
    phantom_study: Path,
    tmp_path: Path,
    ct_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    truth: dict[str, Any],
) -> None:
    batch_dir = tmp_path / "batch"
    batch_dir.mkdir()
    _study_with(phantom_study, batch_dir / "case01", ("total", "tissue_types"))
    shutil.copy(phantom_study / "patient.json", batch_dir / "case01" / "patient.json")
    write_series(
        batch_dir / "case02_mr", 3, template=__import__("pydicom").dcmread(pydicom_file("MR_small.dcm"))
    )
    (batch_dir / "notes.txt").write_text("not a study")
    assert [p.name for p in find_studies(batch_dir)] == ["case01", "case02_mr"]

    out = run_ct_batch(batch_dir, tmp_path / "results.csv", settings=ct_settings, write_overlays=False)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["study"] for r in rows] == ["case01", "case02_mr"]
    assert float(rows[0]["smi_cm2_per_m2"]) == pytest.approx(truth["demo_smi_cm2_per_m2"], rel=0.01)
    assert float(rows[0]["liver_volume_ml"]) == pytest.approx(truth["volumes_ml"]["liver"], rel=0.01)
    assert rows[1]["segment_ct_status"] == "failed" and "MR" in rows[1]["error_ja"]

    # resume: nothing is recomputed, and the Parquet output holds the same rows
    calls: list[str] = []
    monkeypatch.setattr("dokuei.tools.segment_ct.SegmentCt.run", lambda self, inp: calls.append("x"))
    (tmp_path / "results.parquet.partial.jsonl").write_bytes(
        (tmp_path / "results.csv.partial.jsonl").read_bytes()
    )
    table = pq.read_table(run_ct_batch(batch_dir, tmp_path / "results.parquet", settings=ct_settings))
    assert calls == [] and table.column("study").to_pylist() == ["case01", "case02_mr"]


def test_batch_cli_registration() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="dokuei")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["batch", "ct", "/data/ct", "--out", "r.parquet"])
    assert args.dir == Path("/data/ct") and args.out == Path("r.parquet") and callable(args.func)
