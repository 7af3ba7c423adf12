"""Attachments are typed by content (DICOM Modality, magic bytes), not by file name.
Data: pydicom's bundled test files (CT_small.dcm, MR_small.dcm, waveform_ecg.dcm; MIT/pydicom licence)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from dokuei.agent.attachments import classify_attachment
from dokuei.testdata import package_file, pydicom_file


def test_dicom_modalities_are_read_from_the_header(tmp_path: Path) -> None:
    # the same bytes under a misleading name are still typed by content
    ct = tmp_path / "scan.png"
    shutil.copy(pydicom_file("CT_small.dcm"), ct)
    assert classify_attachment(ct).kind == "ct_series"
    assert classify_attachment(pydicom_file("MR_small.dcm")).kind == "mr_series"
    assert classify_attachment(pydicom_file("waveform_ecg.dcm")).kind == "ecg"


def test_folders_zips_nifti_and_text(tmp_path: Path) -> None:
    series = tmp_path / "series"
    series.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), series / "IM0001")
    assert classify_attachment(series).kind == "ct_series"
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(series / "IM0001", "IM0001")
    assert classify_attachment(archive).kind == "ct_series"
    nifti = package_file("totalsegmentator", "resources", "ct_brain_atlas_1mm.nii.gz")
    assert classify_attachment(nifti).kind == "nifti"
    report = tmp_path / "report.txt"
    report.write_text("右肺上葉に 8 mm の結節。", encoding="utf-8")
    assert classify_attachment(report).kind == "report_text"
    ecg_csv = tmp_path / "ecg.csv"
    ecg_csv.write_text("time_s,I,II,V1\n0,0.1,0.2,0.3\n")
    assert classify_attachment(ecg_csv).kind == "ecg"
    assert classify_attachment(tmp_path / "missing.dcm").kind == "unknown"


def test_a_dicom_study_with_segmentations_is_described_as_dicom(tmp_path: Path) -> None:
    """Masks under segmentations/ are NIfTI; the study's image is the DICOM series beside them."""
    study = tmp_path / "study"
    (study / "segmentations").mkdir(parents=True)
    shutil.copy(pydicom_file("CT_small.dcm"), study / "IM0001")
    shutil.copy(package_file("totalsegmentator", "resources", "ct_brain_atlas_1mm.nii.gz"),
                study / "segmentations" / "liver.nii.gz")
    described = classify_attachment(study)
    assert described.kind == "ct_series"
    assert described.detail.startswith("DICOM folder") and "segmentations/" in described.detail, described.detail
