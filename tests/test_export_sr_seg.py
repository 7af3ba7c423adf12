"""DICOM SR (TID 1500) and SEG exports of the CT phantom question, read back with highdicom and pydicom.

Data: the abdominal CT phantom of ``dokuei.phantoms.ct`` (analytic, no licence restriction) written as
a DICOM CT series by ``dokuei.phantoms.ct_dicom`` with its TotalSegmentator masks beside it. Why the
expected numbers are right: SMI 34.63 cm²/m² is the phantom's L3 muscle area (psoas + paraspinal +
abdominal-wall ring, analytic 80.0 cm²; 80.01 cm² counted on the voxel grid, which the body-composition
tests already check within 1 %) over the demo patient's height² (1.52² m²). The SEG's expected masks are
computed here from the phantom arrays directly (tissue label at L3 AND the HU window of
``sarcopenia_ct_jp.json``), not from the export code, and must match pixel for pixel.

One question is asked through the real ``dokuei ask … --export`` command for the whole module (the turn
takes tens of seconds on a shared CPU); every test reads the files it wrote.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from dokuei.export import ExportError
from dokuei.export.sr import BODY_COMPOSITION, PRIVATE_SCHEME, read_sr
from dokuei.phantoms import ct as ct_phantom
from dokuei.phantoms.ct_dicom import write_dicom_study

QUESTION = "この CT で L3 の骨格筋量とサルコペニアの判定は？"
PATIENT = "age=72,sex=F,height_cm=152"
EXPECTED_SMI = 34.63  # cm²/m², see the module docstring
STUDY_NAME = "yamada_taro_ct"  # an identifying folder name: it must not reach the stored turn


@pytest.fixture(scope="module")
def phantom() -> ct_phantom.Phantom:
    return ct_phantom.make_phantom()


@pytest.fixture(scope="module")
def study(phantom: ct_phantom.Phantom, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dicom_study(tmp_path_factory.mktemp("dicom") / STUDY_NAME, phantom)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOKUEI_HOME", str(home))
        mp.setenv("DOKUEI_DEVICE", "cpu")
        mp.setenv("TOTALSEG_WEIGHTS_PATH", str(home / "no_weights"))
        mp.delenv("DOKUEI_WEIGHTS_DIR", raising=False)
        yield home


def _dokuei(*args: str) -> tuple[int, str]:
    from dokuei.cli import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(list(args))
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def asked(study: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("out")
    code, text = _dokuei("ask", QUESTION, "--attach", str(study), "--patient", PATIENT,
                         "--export", "sr,seg,fhir,pdf", str(out))
    assert code == 0, text
    turn_id = text.split("ターン ID: ")[1].split("（")[0].strip()
    return {"out": out, "stdout": text, "turn_id": turn_id, "files": sorted(out.iterdir())}


def _one(files: list[Path], suffix: str) -> Path:
    found = [p for p in files if p.name.endswith(suffix)]
    assert len(found) == 1, [p.name for p in files]
    return found[0]


def _source(study: Path) -> list[Any]:
    slices = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((study / "dicom").iterdir())]
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def test_dicom_phantom_reads_back_voxel_for_voxel_as_the_nifti_phantom(phantom: ct_phantom.Phantom,
                                                                     study: Path) -> None:
    from dokuei.io.volume import load_volume

    ct = load_volume(study)
    assert np.array_equal(ct.array, np.round(phantom.ct))  # HU exact: stored = HU + 1024, intercept -1024
    assert np.allclose(ct.affine, phantom.affine_ras, atol=1e-6)  # RAS -> LPS -> RAS loses nothing
    assert ct.header["patient_height_cm"] == 152.0 and ct.header["patient_sex"] == "F"
    uids = {str(ds.SeriesInstanceUID) for ds in _source(study)}
    assert len(uids) == 1 and next(iter(uids)).startswith("2.25.")


def test_ask_export_writes_four_files_with_smi_in_each(asked: dict[str, Any], study: Path) -> None:
    from fhir.resources.R4B.bundle import Bundle
    from pypdf import PdfReader

    files = asked["files"]
    assert len(files) == 4, [p.name for p in files]
    sr_path, seg_path = _one(files, ".sr.dcm"), _one(files, ".seg.dcm")
    _, values = read_sr(sr_path)
    smi = [v for v in values if v.name == "SMI"]
    assert len(smi) == 1 and abs(smi[0].value - EXPECTED_SMI) <= 0.005 and smi[0].unit == "cm2/m2"
    bundle: Any = Bundle.model_validate(json.loads(_one(files, ".fhir.json").read_text(encoding="utf-8")))
    fhir_smi = [e.resource.valueQuantity for e in bundle.entry if e.resource.get_resource_type() == "Observation"
                and e.resource.code.text.endswith("smi_cm2_per_m2")]
    assert len(fhir_smi) == 1 and abs(float(fhir_smi[0].value) - EXPECTED_SMI) <= 0.005
    text = "".join(page.extract_text() for page in PdfReader(_one(files, ".pdf")).pages)
    assert "34.63" in text
    # the SEG holds the muscle map the SMA was counted on: its area over height² is the same SMI
    seg = pydicom.dcmread(seg_path)
    muscle = [s.SegmentNumber for s in seg.SegmentSequence if s.SegmentedPropertyTypeCodeSequence[0].CodeValue
              == "127954009"]
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    numbers = [f.SegmentIdentificationSequence[0].ReferencedSegmentNumber
               for f in seg.PerFrameFunctionalGroupsSequence]
    pixels = sum(int(frames[i].sum()) for i, n in enumerate(numbers) if n in muscle)
    dx, dy, _ = ct_phantom.SPACING_MM
    assert abs(round(pixels * dx * dy / 100, 2) / 1.52**2 - EXPECTED_SMI) <= 0.005
    assert "書き出し" in asked["stdout"] and "34.63" in asked["stdout"]


def test_sr_round_trips_every_measurement_and_references_the_source(asked: dict[str, Any], study: Path,
                                                                    home: Path) -> None:
    sr, values = read_sr(_one(asked["files"], ".sr.dcm"))
    stored = json.loads((home / "turns" / f"{asked['turn_id']}.json").read_text(encoding="utf-8"))
    output = stored["tool_calls"][0]["output"]
    expected = {(name[0], site[0]): (round(float(output[f]), 2), {"cm2": "cm2", "cm2/m2": "cm2/m2",
                                                                  "HU": "[hnsf'U]"}[unit])
                for f, (name, unit, site, _) in BODY_COMPOSITION.items() if output.get(f) is not None}
    got = {(v.name, v.site): (round(v.value, 2), v.unit) for v in values}
    assert len(expected) == 8 and got == expected  # SMA, SMI, HU, psoas, PMI, paraspinal, VFA, SFA
    source = _source(study)
    assert sr.StudyInstanceUID == source[0].StudyInstanceUID and sr.PatientID == "PHANTOM-CT"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in evidence.ReferencedSOPSequence} == {
        str(ds.SOPInstanceUID) for ds in source}
    # the measurement group's source image is the L3 slice the tool measured (k = 47 of the phantom)
    dumped = str(sr)
    assert str(source[ct_phantom.L3_SLICE].SOPInstanceUID) in dumped
    assert "measure_body_composition" in dumped and "1.0.0" in dumped  # TID 4019 algorithm name, version
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"


def _expected_masks(phantom: ct_phantom.Phantom) -> dict[str, np.ndarray]:
    from dokuei.io.totalseg import class_map

    k = ct_phantom.L3_SLICE
    ids = {v: i for i, v in class_map("tissue_types").items()}
    hu = np.round(phantom.ct[:, :, k])
    tissue = phantom.tissue[:, :, k]
    muscle_window, fat_window = (hu >= -29) & (hu <= 150), (hu >= -190) & (hu <= -30)
    return {"127954009": (tissue == ids["skeletal_muscle"]) & muscle_window,
            "PSOAS": phantom.muscles["psoas_major_left"][:, :, k] | phantom.muscles["psoas_major_right"][:, :, k],
            "SAT": (tissue == ids["subcutaneous_fat"]) & fat_window,
            "VAT": (tissue == ids["torso_fat"]) & fat_window}


def test_seg_overlays_the_source_voxel_for_voxel(asked: dict[str, Any], study: Path,
                                                 phantom: ct_phantom.Phantom) -> None:
    import highdicom as hd

    seg_path = _one(asked["files"], ".seg.dcm")
    seg = hd.seg.segread(str(seg_path))  # highdicom accepts it
    source = _source(study)
    l3 = source[ct_phantom.L3_SLICE]
    assert seg.StudyInstanceUID == l3.StudyInstanceUID and seg.FrameOfReferenceUID == l3.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == l3.SeriesInstanceUID
    ds = pydicom.dcmread(seg_path)
    keys = {s.SegmentNumber: (s.SegmentedPropertyTypeCodeSequence[0].CodeValue if s.SegmentNumber < 3 else
                              s.AnatomicRegionSequence[0].CodeValue) for s in ds.SegmentSequence}
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    expected = _expected_masks(phantom)
    seen = set()
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(ipp, [float(v) for v in l3.ImagePositionPatient])  # on the L3 source slice
        src = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert src == l3.SOPInstanceUID
        key = keys[item.SegmentIdentificationSequence[0].ReferencedSegmentNumber]
        # DICOM rows run along +y LPS (= -y RAS), columns along +x LPS (= -x RAS): flip both back to RAS i, j
        canonical = frame.astype(bool).T[::-1, ::-1]
        assert canonical.shape == expected[key].shape
        assert int((canonical != expected[key]).sum()) == 0, key
        seen.add(key)
    assert seen == set(expected)


def test_nifti_only_study_is_refused_with_a_japanese_reason(asked: dict[str, Any], home: Path, tmp_path: Path,
                                                            phantom: ct_phantom.Phantom) -> None:
    from dokuei.export import export_turn

    nifti = ct_phantom.write_study(tmp_path / "nifti", phantom)
    stored = json.loads((home / "turns" / f"{asked['turn_id']}.json").read_text(encoding="utf-8"))
    stored["tool_calls"][0]["input"]["study_path"] = str(nifti)
    report = export_turn(stored, ["sr", "seg", "fhir"], tmp_path / "out")
    assert set(report.refused_ja) == {"sr", "seg"}
    assert all("NIfTI" in why and "UID" in why for why in report.refused_ja.values())
    assert [p.name.endswith(".fhir.json") for p in report.written] == [True]  # the rest is still written


def test_export_turn_id_rebuilds_from_the_stored_turn(asked: dict[str, Any], study: Path, home: Path,
                                                      tmp_path: Path) -> None:
    stored_path = home / "turns" / f"{asked['turn_id']}.json"
    assert stat.S_IMODE(stored_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored_path.parent.stat().st_mode) == 0o700
    raw = stored_path.read_text(encoding="utf-8")
    assert STUDY_NAME not in raw and str(study) not in raw  # de-identified: no path, no folder name
    assert QUESTION not in raw  # question_retention "hash" by default

    code, text = _dokuei("export", asked["turn_id"], "--formats", "sr,fhir", "--out", str(tmp_path / "a"))
    assert code == 1 and "--source" in text  # SR needs the study again; FHIR is written anyway
    assert [p.name.endswith(".fhir.json") for p in (tmp_path / "a").iterdir()] == [True]

    code, text = _dokuei("export", asked["turn_id"], "--formats", "sr", "--out", str(tmp_path / "b"),
                         "--source", str(study))
    assert code == 0, text
    (sr_path,) = list((tmp_path / "b").iterdir())
    _, values = read_sr(sr_path)
    assert [round(v.value, 2) for v in values if v.name == "SMI"] == [EXPECTED_SMI]

    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("not the study")
    code, text = _dokuei("export", asked["turn_id"], "--formats", "sr", "--out", str(tmp_path / "c"),
                         "--source", str(other))
    assert code == 2 and "一致しません" in text


def test_unknown_turn_and_format_are_refused_in_japanese(home: Path) -> None:
    code, text = _dokuei("export", "0123456789abcdef", "--formats", "sr", "--out", str(home / "x"))
    assert code == 2 and "記録" in text
    code, text = _dokuei("export", "0123456789abcdef", "--formats", "dicom", "--out", str(home / "x"))
    assert code == 2 and "未対応の出力形式" in text
    with pytest.raises(ExportError):
        from dokuei.export import parse_formats

        parse_formats("")
    assert not os.path.exists(home / "x")


def _call(result: Any) -> dict[str, Any]:
    """A ToolResult as a turn's tool call (the shape of ``TurnResult.to_json()``)."""
    assert result.output is not None, result.summary_ja
    return {"name": result.tool, "input": result.input, "status": result.status.value, "output": result.output,
            "provenance": result.provenance.model_dump(mode="json")}


def test_organ_volume_sr_round_trips_each_structure(study: Path, home: Path, tmp_path: Path) -> None:
    from dokuei.settings import Settings
    from dokuei.tools.segment_ct import SegmentCt

    call = _call(SegmentCt(Settings.load(home=home))({"study_path": str(study)}))
    from dokuei.export import export_sr

    (path,) = export_sr({"tool_calls": [call]}, tmp_path, "o")
    _, values = read_sr(path)
    present = {s["name"]: s for s in call["output"]["structures"] if s["present"]}
    volumes = {v.group.removeprefix("organ "): (v.site, v.value, v.unit) for v in values if v.name == "118565006"}
    assert set(volumes) == set(present)
    for name, s in present.items():
        _, value, unit = volumes[name]
        assert unit == "ml" and abs(value - s["volume_ml"]) < 1e-9, name
    assert volumes["liver"][0] == "10200004" and volumes["kidney_left"][0] == "64033007"  # SNOMED CT sites


def test_lymph_node_sr_round_trips_axes_class_and_target_sum(home: Path, tmp_path: Path) -> None:
    from dokuei.phantoms.ct_dicom import write_nodes_dicom_study
    from dokuei.phantoms.nodes import pair_studies
    from dokuei.settings import Settings
    from dokuei.tools.measure_lymph_nodes import MeasureLymphNodes

    baseline, _ = pair_studies()
    folder = write_nodes_dicom_study(baseline, tmp_path / "nodes")
    call = _call(MeasureLymphNodes(Settings.load(home=home))({"study_path": str(folder)}))
    from dokuei.export import export_sr

    (path,) = export_sr({"tool_calls": [call]}, tmp_path / "out", "n")
    sr, values = read_sr(path)
    nodes = call["output"]["nodes"]
    assert nodes and all(n["short_axis_mm"] > 0 for n in nodes)
    for n in nodes:
        got = {v.name: (v.value, v.unit) for v in values if v.group == f"lymph node {n['node_id']}"}
        assert got == {"103339001": (n["long_axis_mm"], "mm"), "103340004": (n["short_axis_mm"], "mm"),
                       "118565006": (n["volume_ml"], "ml")}
        assert all(v.site == "59441001" for v in values if v.group == f"lymph node {n['node_id']}")
    (total,) = [v for v in values if v.name == "SUMTGTSA"]
    assert total.value == call["output"]["sum_of_target_short_axes_mm"] and total.unit == "mm"
    roles = sorted(str(n["role"]).upper() for n in nodes)
    assert sorted(line.split("'")[1] for line in str(sr).splitlines()
                  if "Code Value" in line and any(r in line for r in ("'TARGET'", "'NON_TARGET'", "'NORMAL'"))
                  ) == roles  # the RECIST class of every node, as a private-scheme code


def test_lymph_node_seg_overlays_the_phantom_node_mask_voxel_for_voxel(home: Path, tmp_path: Path) -> None:
    from dokuei.export import export_seg
    from dokuei.phantoms.ct_dicom import write_nodes_dicom_study
    from dokuei.phantoms.nodes import pair_studies, render
    from dokuei.settings import Settings
    from dokuei.tools.measure_lymph_nodes import MeasureLymphNodes

    baseline, _ = pair_studies()
    folder = write_nodes_dicom_study(baseline, tmp_path / "nodes")
    call = _call(MeasureLymphNodes(Settings.load(home=home))({"study_path": str(folder)}))
    (path,) = export_seg({"tool_calls": [call]}, tmp_path / "out", "n")
    _, truth, _ = render(baseline)  # the phantom's own label map: the exact expected masks
    ds = pydicom.dcmread(path)
    affine = baseline.grid.affine
    got = np.zeros(truth.shape, dtype=np.int32)
    labels = {s.SegmentNumber: int(s.SegmentLabel.split()[-1]) for s in ds.SegmentSequence}
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        z = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        k = round((z - affine[2, 3]) / affine[2, 2])
        got[:, :, k][frame.astype(bool).T[::-1, ::-1]] = labels[item.SegmentIdentificationSequence[0]
                                                                .ReferencedSegmentNumber]
    assert sorted(labels.values()) == sorted(int(n["node_id"]) for n in call["output"]["nodes"])
    assert int((got != np.asarray(truth)).sum()) == 0


def test_recist_response_sr_carries_the_category_and_the_target_sum(home: Path, tmp_path: Path) -> None:
    from dokuei.export import export_sr
    from dokuei.phantoms.ct_dicom import write_nodes_dicom_study
    from dokuei.phantoms.nodes import pair_studies
    from dokuei.settings import Settings
    from dokuei.tools.assess_recist_response import AssessRecistResponse

    baseline, followup = pair_studies()
    paths = [str(write_nodes_dicom_study(s, tmp_path / name)) for s, name in ((baseline, "b"), (followup, "f"))]
    call = _call(AssessRecistResponse(Settings.load(home=home))({"study_paths": paths}))
    assert call["output"]["overall_response"] == "PD"  # the right paratracheal node grows 16 -> 24 mm
    (path,) = export_sr({"tool_calls": [call]}, tmp_path / "out", "r")
    sr, values = read_sr(path)
    last = call["output"]["timepoints"][-1]
    (total,) = [v for v in values if v.name == "SUMTGTSA"]
    assert total.value == last["sum_of_target_short_axes_mm"] and total.unit == "mm"
    assert "'PD'" in str(sr) and "112020" in str(sr)  # Response Evaluation (DCM) = PD
    # the SR references the follow-up series (the timepoint judged), not the baseline
    follow_uid = pydicom.dcmread(sorted((tmp_path / "f" / "dicom").iterdir())[0]).SeriesInstanceUID
    assert follow_uid != pydicom.dcmread(sorted((tmp_path / "b" / "dicom").iterdir())[0]).SeriesInstanceUID
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID == follow_uid
