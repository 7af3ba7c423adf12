"""Upload → study grouping: folders, zips, many files, mixed series, and zips that try to escape."""

from __future__ import annotations

import json
import zipfile
from datetime import date
from pathlib import Path

import pytest

from dokuei.studies import (
    STUDY_FILE,
    UploadError,
    assign_roles,
    attachments_in_role_order,
    ingest_upload,
    purge_expired,
    set_role,
)


def _dicom(path: Path, series_uid: str, instance: int, *, study_date: str = "20240110", modality: str = "CT") -> Path:
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3"
    ds.Modality = modality
    ds.StudyDate = study_date
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyDescription = "胸腹部 CT"
    ds.SeriesDescription = f"series {series_uid}"
    ds.PatientAge = "060Y"
    ds.PatientSex = "F"
    ds.InstanceNumber = instance
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.zeros((4, 4), dtype=np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _gradio_copy(tmp: Path, name: str, data: bytes) -> tuple[Path, str]:
    """As Gradio hands files over: each in its own temporary folder, base name only."""
    folder = tmp / "gradio" / f"{abs(hash((name, len(data))))}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / Path(name).name).write_bytes(data)
    return folder / Path(name).name, name


def test_many_dicom_files_become_one_series_folder_and_temp_copies_go(tmp_path: Path) -> None:
    src = [_dicom(tmp_path / "src" / f"IM{i:04d}.dcm", "1.2.3.1", i) for i in range(12)]
    picked = [_gradio_copy(tmp_path, p.name, p.read_bytes()) for p in src]
    study = ingest_upload(picked, tmp_path / "uploads" / "s1")
    assert len(study.series) == 1 and study.series[0].n_files == 12  # 12 slices stay one series, not 12 files
    assert len(list(study.series[0].folder.glob("*.dcm"))) == 12
    assert study.study_date == date(2024, 1, 10)
    assert study.header_patient == {"age_years": 60, "sex": "F"}
    assert not any(p.exists() for p, _ in picked)  # Gradio's temp copies are deleted
    assert study.attachments() == [study.series[0].folder]


def test_mixed_series_in_a_folder_upload_are_split_by_series_uid(tmp_path: Path) -> None:
    files = [_dicom(tmp_path / "dir" / f"a{i}.dcm", "1.1", i) for i in range(3)]
    files += [_dicom(tmp_path / "dir" / f"b{i}.dcm", "2.2", i) for i in range(5)]
    study = ingest_upload([(p, f"dir/{p.name}") for p in files], tmp_path / "up", remove_sources=False)
    assert sorted(s.n_files for s in study.series) == [3, 5]
    assert {s.uid for s in study.series} == {"1.1", "2.2"}
    assert study.n_slices == 8


def test_zip_of_a_nifti_study_keeps_segmentations(tmp_path: Path) -> None:
    archive = tmp_path / "case.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("case/ct.nii.gz", b"\x1f\x8b fake volume")
        zf.writestr("case/segmentations/liver.nii.gz", b"\x1f\x8b liver")
        zf.writestr("case/segmentations/spleen.nii.gz", b"\x1f\x8b spleen")
    study = ingest_upload([(archive, "case.zip")], tmp_path / "up", remove_sources=False)
    assert study.nifti_study is not None and (study.nifti_study / "ct.nii.gz").is_file()
    assert (study.nifti_study / "segmentations" / "liver.nii.gz").is_file()
    assert study.segmentations == ["liver", "spleen"]
    assert study.attachments() == [study.nifti_study]  # the study folder, not its files one by one


def test_flat_pick_of_ct_and_masks_rebuilds_the_segmentations_folder(tmp_path: Path) -> None:
    picked = [_gradio_copy(tmp_path, n, b"\x1f\x8b x") for n in ("ct.nii.gz", "liver.nii.gz", "kidney_left.nii.gz")]
    study = ingest_upload(picked, tmp_path / "up")
    assert study.nifti_study == study.folder
    assert study.segmentations == ["kidney_left", "liver"]


def test_zip_with_path_traversal_is_refused_and_nothing_is_written_outside(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr("../../escaped.txt", b"bad")
    with pytest.raises(UploadError, match=r"evil\.zip.*安全でないパス"):
        ingest_upload([(archive, "evil.zip")], tmp_path / "up" / "s", remove_sources=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "up" / "escaped.txt").exists()
    assert list((tmp_path / "up" / "s").iterdir()) == []  # the half-made study folder is removed


def test_zip_with_too_many_members_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dokuei.studies as studies

    monkeypatch.setattr(studies, "MAX_ZIP_MEMBERS", 3)
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            zf.writestr(f"f{i}.txt", b"x")
    with pytest.raises(UploadError, match=r"ファイル数が多すぎます（4 件、上限 3）"):
        ingest_upload([(archive, "many.zip")], tmp_path / "up", remove_sources=False)


def test_empty_dcm_is_named_and_an_upload_of_only_that_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "broken.dcm"
    empty.write_bytes(b"")
    with pytest.raises(UploadError, match=r"「broken\.dcm」は空のファイル"):
        ingest_upload([(empty, "broken.dcm")], tmp_path / "up", remove_sources=False)
    good = _dicom(tmp_path / "good.dcm", "9.9", 1)
    study = ingest_upload([(empty, "broken.dcm"), (good, "good.dcm")], tmp_path / "up", remove_sources=False)
    assert study.problems == ["「broken.dcm」は空のファイルのため読み込めませんでした"]
    assert study.series[0].n_files == 1


def test_roles_follow_study_date_not_upload_order_and_are_written(tmp_path: Path) -> None:
    # uploaded newest first: the role must still make the 2023 study the baseline
    late = ingest_upload([(_dicom(tmp_path / "l.dcm", "3", 1, study_date="20240301"), "l.dcm")], tmp_path / "up")
    early = ingest_upload([(_dicom(tmp_path / "e.dcm", "4", 1, study_date="20230915"), "e.dcm")], tmp_path / "up")
    assign_roles([late, early])
    assert (early.role, late.role) == ("baseline", "current")
    record = json.loads((early.series[0].folder / STUDY_FILE).read_text(encoding="utf-8"))
    assert record == {"role": "baseline"}  # the date stays in memory (de-identification, dokuei.deid)
    assert attachments_in_role_order([late, early]) == [str(early.series[0].folder), str(late.series[0].folder)]
    set_role(late, "prior")  # the user overrides the automatic role
    assert json.loads((late.folder / STUDY_FILE).read_text(encoding="utf-8"))["role"] == "prior"


def test_retention_removes_old_session_folders_only(tmp_path: Path) -> None:
    import os

    old = tmp_path / "uploads" / "old"
    new = tmp_path / "uploads" / "new"
    old.mkdir(parents=True)
    new.mkdir()
    os.utime(old, (0, 0))
    assert purge_expired(tmp_path, retention_hours=24) == [old]
    assert new.exists() and not old.exists()


def test_an_ecg_series_is_handed_over_as_its_file_not_its_folder(tmp_path: Path) -> None:
    # analyze_ecg reads a file; a CT series is read as a folder (found in the browser test)
    ecg = _dicom(tmp_path / "wave.dcm", "7.7", 1, modality="ECG")
    study = ingest_upload([(ecg, "wave.dcm")], tmp_path / "up")
    assert study.attachments() == [study.series[0].folder / "00000.dcm"]  # renamed: a file name may identify


def test_lymph_node_study_takes_its_date_from_study_json_and_keeps_its_masks_beside_the_ct(tmp_path: Path) -> None:
    """A NIfTI study has no DICOM header: without study.json's date it got no role and RECIST in the UI fell
    back to upload order. Picked flat, nodes.nii.gz / totalseg.nii.gz must stay where the lymph reader looks."""
    meta = json.dumps({"study_date": "2025-04-16", "description_ja": "胸部 CT"}).encode()
    files = [_gradio_copy(tmp_path, name, data) for name, data in
             (("ct.nii.gz", b"ct"), ("nodes.nii.gz", b"nodes"), ("totalseg.nii.gz", b"ts"), ("study.json", meta))]
    study = ingest_upload(files, tmp_path / "up")
    assert study.study_date == date(2025, 4, 16) and study.description == "胸部 CT"
    assert study.nifti_study == study.folder
    assert (study.folder / "nodes.nii.gz").is_file() and (study.folder / "totalseg.nii.gz").is_file()
    assert not (study.folder / "segmentations").exists()
    assert study.segmentations == ["nodes", "totalseg"]
