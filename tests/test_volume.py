"""CT ingestion: NIfTI and DICOM (file, folder, zip), series choice, HU, geometry, refusals,
de-identification.

Data: see tests/ct_helpers.py for the origin and licence of every file. Bad-input series are built in
tmp_path from the real CT_small.dcm (real header and pixels, changed positions/UIDs).
"""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest

from dokuei import testdata
from dokuei.io.volume import check_hu_plausible, load_volume, save_nifti
from dokuei.testdata import package_file, pydicom_file
from dokuei.tools.base import ToolInputError

from .ct_helpers import phantom_study_fixture, truth_fixture, write_series  # noqa: F401 - fixtures

CT_SMALL = pydicom_file("CT_small.dcm")


def test_phantom_nifti_written_lps_is_read_in_ras(phantom_study: Path, truth: dict[str, Any]) -> None:
    vol = load_volume(phantom_study / "ct.nii.gz")
    assert vol.shape == tuple(truth["shape"])
    assert np.allclose(vol.spacing_mm, truth["spacing_mm"], atol=1e-5)  # from the header, float32-exact
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    # the liver is on the patient's right (RAS x < 0), the spleen on the left: reorientation kept sides
    labels = load_volume(phantom_study / "segmentations" / "total.nii.gz", labels=True)
    liver_x = (vol.affine @ [*np.argwhere(labels.array == 5).mean(axis=0), 1])[0]
    spleen_x = (vol.affine @ [*np.argwhere(labels.array == 1).mean(axis=0), 1])[0]
    assert liver_x < -40 and spleen_x > 40


def test_ct_small_hu_spacing_and_position() -> None:
    """pydicom's CT_small.dcm: HU = raw × RescaleSlope(1) + RescaleIntercept(−1024), spacing 0.661468 mm."""
    ds = pydicom.dcmread(CT_SMALL)
    vol = load_volume(CT_SMALL)
    assert vol.shape == (128, 128, 1)
    assert vol.spacing_mm[:2] == pytest.approx((0.661468, 0.661468))
    # one slice: its thickness is the depth, and a note says so
    assert vol.spacing_mm[2] == pytest.approx(5.0)
    assert any("1 枚" in n for n in vol.notes_ja)
    raw = ds.pixel_array.astype(float)
    # RAS canonical flips LPS columns and rows: voxel (i, j) = DICOM pixel (row 127 − j, column 127 − i)
    assert vol.array[0, 0, 0] == raw[127, 127] - 1024
    assert vol.array[127 - 10, 127 - 20, 0] == raw[20, 10] - 1024
    # the world position of DICOM pixel (row 0, col 0) is ImagePositionPatient in LPS → RAS (−x, −y)
    world = vol.affine @ [127, 127, 0, 1]
    ipp = [float(v) for v in ds.ImagePositionPatient]
    assert world[:3] == pytest.approx([-ipp[0], -ipp[1], ipp[2]], abs=1e-4)


def test_512_ct_slice_from_pydicom_data() -> None:
    """693_UNCI.dcm (pydicom-data, CQ500 head CT): 512², 0.478516 mm pixels, padding below −1024 clipped."""
    p = testdata.path("693_UNCI.dcm")
    if not p.exists():
        pytest.skip("693_UNCI.dcm not fetched (python -m dokuei.testdata)")
    vol = load_volume(p)
    assert vol.shape == (512, 512, 1)
    assert vol.spacing_mm[0] == pytest.approx(0.478516)
    assert vol.array.min() == -1024  # outside-FOV padding (raw −2971 → −3995 HU) becomes air
    centre = vol.array[236:276, 236:276, 0]
    assert -50 < float(np.median(centre)) < 100  # brain parenchyma in the middle of a head CT


def test_brain_atlas_ct_from_totalsegmentator() -> None:
    """TotalSegmentator's ct_brain_atlas_1mm.nii.gz: 202×202×179 at 1 mm, RAS, brain ~ 20–60 HU."""
    vol = load_volume(package_file("totalsegmentator", "resources", "ct_brain_atlas_1mm.nii.gz"))
    assert vol.shape == (202, 202, 179)
    assert vol.spacing_mm == pytest.approx((1.0, 1.0, 1.0))
    check_hu_plausible(vol)
    assert 20 <= vol.array[101, 101, 90] <= 60


def test_series_folder_sorted_by_position_not_file_order(tmp_path: Path) -> None:
    # positions written in reverse file order: the volume must still run foot → head
    zs = [-60.0, -62.5, -65.0, -67.5, -70.0]
    write_series(tmp_path / "s", z_positions=zs)
    vol = load_volume(tmp_path / "s")
    assert vol.shape == (128, 128, 5)
    assert vol.spacing_mm[2] == pytest.approx(2.5)
    assert (vol.affine @ [0, 0, 0, 1])[2] == pytest.approx(-70.0)
    assert (vol.affine @ [0, 0, 4, 1])[2] == pytest.approx(-60.0)


def test_zip_of_series_equals_folder(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", 4)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, f"DICOM/{p.name}")
    a, b = load_volume(tmp_path / "s"), load_volume(archive)
    assert np.array_equal(a.array, b.array) and np.allclose(a.affine, b.affine)


def test_mixed_folder_prefers_thin_full_coverage_series_and_ignores_scout_and_mr(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_series(folder, 4, 10.0, series_uid="1.2.3.4.10", series_number=3)  # thick, same coverage
    write_series(folder, 13, 2.5, series_uid="1.2.3.4.25", series_number=4)  # thin
    write_series(
        folder,
        1,
        series_uid="1.2.3.4.99",
        series_number=1,
        modify=lambda ds, k: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]),
    )
    write_series(
        folder,
        3,
        template=pydicom.dcmread(pydicom_file("MR_small.dcm")),
        series_uid="1.2.3.4.77",
        series_number=9,
    )
    vol = load_volume(folder)
    assert vol.shape[2] == 13 and vol.spacing_mm[2] == pytest.approx(2.5)
    note = vol.notes_ja[0]
    assert "系列 4" in note and "位置決め" in note and "MR" in note


def test_mr_offered_as_ct_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "mr", 3, template=pydicom.dcmread(pydicom_file("MR_small.dcm")))
    with pytest.raises(ToolInputError, match="CT ではなく MR"):
        load_volume(tmp_path / "mr")


def test_one_series_mixing_matrix_sizes_is_refused(tmp_path: Path) -> None:
    def halve_spacing(ds: Any, k: int) -> None:
        if k == 2:
            ds.PixelSpacing = [0.33, 0.33]

    write_series(tmp_path / "s", 4, modify=halve_spacing)
    with pytest.raises(ToolInputError, match="混在"):
        load_volume(tmp_path / "s")


def test_two_phases_at_the_same_positions_are_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "s", 4)
    write_series(
        tmp_path / "s2",
        4,
        series_uid="1.2.826.0.1.3680043.8.498.1",
        series_number=2,
        modify=lambda ds, k: setattr(ds, "SOPInstanceUID", f"9.9.{k}"),
    )
    for p in (tmp_path / "s2").iterdir():
        shutil.move(p, tmp_path / "s" / f"phase2_{p.name}")
    with pytest.raises(ToolInputError, match="同じ位置"):
        load_volume(tmp_path / "s")


def test_missing_slices_are_detected(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", 8)
    paths[3].unlink()
    paths[4].unlink()
    with pytest.raises(ToolInputError, match="2 枚欠けています") as err:
        load_volume(tmp_path / "s")
    # the gap runs from the third slice (−75.7 + 2 × 2.5) to the sixth (−75.7 + 5 × 2.5)
    assert "-70.7〜-63.2 mm" in err.value.message_ja


def test_irregular_spacing_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "s", z_positions=[0.0, 2.5, 5.0, 8.7, 11.2])
    with pytest.raises(ToolInputError, match="不均一"):
        load_volume(tmp_path / "s")


def test_truncated_file_in_series_is_refused(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", 4)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])
    with pytest.raises(ToolInputError, match="途中で切れている"):
        load_volume(tmp_path / "s")


def test_gantry_tilt_is_corrected(tmp_path: Path) -> None:
    """A 15° tilt: each 2.5 mm step also moves 2.5·tan 15° = 0.67 mm in y. A bright block placed where the
    tilted slices see it must land on the same (i, j) in every corrected slice."""
    step_y = 2.5 * np.tan(np.deg2rad(15.0))
    spacing = 0.661468

    def block(ds: Any, k: int) -> None:
        pixels = np.full((128, 128), 0, dtype=np.int16)
        row = 60 - round(k * step_y / spacing)  # the block is fixed in space; the slice moved by +y
        pixels[row : row + 10, 50:60] = 2000
        ds.PixelData = pixels.tobytes()

    write_series(tmp_path / "s", 6, y_shift_per_slice=step_y, modify=block)
    vol = load_volume(tmp_path / "s")
    assert any("傾斜 15.0°" in n for n in vol.notes_ja)
    centres = [np.argwhere(vol.array[:, :, k] > 500).mean(axis=0) for k in range(6)]
    assert np.ptp([c[1] for c in centres]) < 0.8  # within one pixel (rounding of the synthetic block)


def test_identifiers_never_reach_written_files(tmp_path: Path) -> None:
    def identify(ds: Any, k: int) -> None:
        ds.PatientName = "YAMADA^TARO"
        ds.PatientID = "ID-99887766"
        ds.InstitutionName = "Dokuei Hospital"
        ds.PatientSex, ds.PatientAge, ds.PatientSize = "F", "072Y", 1.52

    write_series(tmp_path / "s", 3, modify=identify)
    vol = load_volume(tmp_path / "s")
    assert vol.header["patient_sex"] == "F" and vol.header["patient_age_years"] == 72
    assert vol.header["patient_height_cm"] == pytest.approx(152.0)
    out = save_nifti(vol, tmp_path / "out" / "ct.nii.gz")
    blob = gzip.decompress(out.read_bytes()) + repr(vol.header).encode() + repr(vol.notes_ja).encode()
    for secret in (b"YAMADA", b"99887766", b"Dokuei Hospital", b"1.2.826.0.1.3680043"):
        assert secret not in blob


def test_nifti_with_broken_affine_is_refused(tmp_path: Path) -> None:
    """A header whose sform row for y is all zero (as a broken converter writes): nibabel cannot even save
    such an affine, so the bytes are patched (srow_y lies at byte 296 of a NIfTI-1 header)."""
    img = nib.Nifti1Image(np.full((8, 8, 8), -100, dtype=np.int16), np.eye(4))
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "bad.nii")
    raw = bytearray((tmp_path / "bad.nii").read_bytes())
    raw[296:312] = np.zeros(4, dtype="<f4").tobytes()
    (tmp_path / "bad.nii").write_bytes(bytes(raw))
    with pytest.raises(ToolInputError, match="affine"):
        load_volume(tmp_path / "bad.nii")


def test_4d_nifti_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), dtype=np.int16), np.eye(4)), tmp_path / "dwi.nii.gz")
    with pytest.raises(ToolInputError, match="4 次元"):
        load_volume(tmp_path / "dwi.nii.gz")


def test_truncated_nifti_is_refused(phantom_study: Path, tmp_path: Path) -> None:
    data = (phantom_study / "ct.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 3])
    with pytest.raises(ToolInputError, match="NIfTI"):
        load_volume(tmp_path / "cut.nii.gz")


def test_mr_like_nifti_is_not_accepted_as_ct(tmp_path: Path) -> None:
    mr = pydicom.dcmread(pydicom_file("MR_small.dcm")).pixel_array.T[:, :, None].repeat(3, axis=2)
    nib.save(nib.Nifti1Image(mr.astype(np.int16), np.eye(4)), tmp_path / "mr.nii.gz")
    with pytest.raises(ToolInputError, match="HU"):
        check_hu_plausible(load_volume(tmp_path / "mr.nii.gz"))


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a CT")
    with pytest.raises(ToolInputError):
        load_volume(tmp_path / "notes.txt")
    with pytest.raises(ToolInputError, match="見つかりません"):
        load_volume(tmp_path / "absent.nii.gz")
