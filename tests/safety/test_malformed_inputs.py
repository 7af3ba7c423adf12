"""Malformed inputs at every reader: each is refused with a Japanese message naming the file, or read right.

Issue #9 items 2, 8, 9, 10, 11 (plot). A confident wrong answer is the failure mode guarded here: NaN/inf
voxels once changed VFA 90.33 -> 52.84 cm² with status ok, inf ECG samples once produced 「QTc 延長」.

Data: synthetic files written in tmp_path; the CT phantom (dokuei.phantoms.ct, analytic truth); pydicom's
bundled CT_small.dcm and waveform_ecg.dcm (MIT). Caps are monkeypatched down so that no test writes GBs.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dokuei.agent import attachments as att
from dokuei.agent.attachments import classify_attachment, unreadable_reason_ja
from dokuei.io import dicom, volume
from dokuei.io.ecg import EcgRecord, load_ecg, read_dicom_ecg
from dokuei.io.volume import Volume, load_volume
from dokuei.settings import Settings
from dokuei.testdata import pydicom_file
from dokuei.tools import base
from dokuei.tools.base import ToolInputError, ToolStatus
from dokuei.tools.context import Attachment
from tests.ct_helpers import (  # noqa: F401  (pytest fixtures)
    ct_settings_fixture,
    ct_small,
    phantom_study_fixture,
    truth_fixture,
    write_series,
)

# --- helpers -------------------------------------------------------------------------------------


def _nifti(path: Path, data: np.ndarray, *, pixdim: tuple[float, float, float] | None = None) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0]))
    if pixdim is not None:  # an affine from pixdim only: no sform, qform from the header fields
        img = nib.Nifti1Image(data, None)
        img.header["pixdim"][1:4] = pixdim
        img.header["qform_code"], img.header["sform_code"] = 1, 0
    nib.save(img, str(path))
    return path


def _ct_array(shape: tuple[int, int, int] = (8, 8, 4)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1000, 200, size=shape).astype(np.float32)


def _refused(call: Callable[[], Any], *substrings: str) -> ToolInputError:
    with pytest.raises(ToolInputError) as info:
        call()
    for s in substrings:
        assert s in info.value.message_ja, info.value.message_ja
    return info.value


def _returns_within(call: Callable[[], Any], seconds: float = 10.0) -> Any:
    """Run ``call`` in a thread: a reader that opens a FIFO would block here forever."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except Exception as exc:  # the refusal is the expected outcome; hand it back
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked on a non-regular file"
    return box.get("error", box.get("value"))


@pytest.fixture(name="fifo")
def fifo_fixture(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    path = tmp_path / "pipe.dcm"
    os.mkfifo(path)
    return path


# --- NIfTI: non-finite voxels, spacing, truncation, caps --------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nifti_with_non_finite_voxels_is_refused_with_the_count(tmp_path: Path, bad: float) -> None:
    data = _ct_array()
    data[1, 2, 3] = data[4, 4, 0] = data[7, 0, 1] = bad
    path = _nifti(tmp_path / "poisoned.nii.gz", data)
    err = _refused(lambda: load_volume(path), "poisoned.nii.gz", "NaN", "3 個")
    assert "3 non-finite" in err.detail


def test_nan_in_a_label_map_is_refused_not_cast_to_garbage_labels(tmp_path: Path) -> None:
    data = np.zeros((6, 6, 3), np.float32)
    data[2, 2, 1] = np.nan  # float NaN cast to int32 would become -2147483648, a label that does not exist
    path = _nifti(tmp_path / "mask.nii.gz", data)
    _refused(lambda: load_volume(path, labels=True), "mask.nii.gz", "1 個")


def test_finite_float_nifti_is_read_unchanged(tmp_path: Path) -> None:
    data = _ct_array()
    vol = load_volume(_nifti(tmp_path / "ok.nii.gz", data))
    np.testing.assert_allclose(vol.array, data)  # the affine is already RAS+: no reorientation
    assert vol.spacing_mm == pytest.approx((0.8, 0.8, 2.5))


@pytest.mark.parametrize(
    "pixdim", [(0.0, 0.8, 2.5), (0.8, -0.8, 2.5), (0.8, 0.8, 0.0), (0.8, 0.8, -2.5), (np.nan, 0.8, 2.5)]
)
def test_nifti_with_zero_negative_or_nan_pixdim_is_refused(
    tmp_path: Path, pixdim: tuple[float, float, float]
) -> None:
    # nibabel silently turns a 0 into 1 mm and -x into x: the spacing would be guessed, not read
    path = _nifti(tmp_path / "spacing.nii", _ct_array(), pixdim=pixdim)
    _refused(lambda: load_volume(path), "spacing.nii", "画素間隔")


def test_nifti_with_valid_pixdim_only_is_read_with_that_spacing(tmp_path: Path) -> None:
    vol = load_volume(_nifti(tmp_path / "q.nii", _ct_array(), pixdim=(0.7, 0.7, 3.0)))
    assert vol.spacing_mm == pytest.approx((0.7, 0.7, 3.0))


def test_truncated_nifti_gz_is_refused_by_name(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "cut.nii.gz", _ct_array((32, 32, 16)))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _refused(lambda: load_volume(path), "cut.nii.gz", "途中で切れて")


def test_nifti_over_the_voxel_cap_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(volume, "MAX_VOXELS", 100)
    path = _nifti(tmp_path / "big.nii.gz", _ct_array((8, 8, 4)))  # 256 voxels
    _refused(lambda: load_volume(path), "big.nii.gz", "大きすぎ", "256")


def test_load_volume_refuses_a_named_pipe_without_opening_it(fifo: Path) -> None:
    err = _returns_within(lambda: load_volume(fifo))
    assert isinstance(err, ToolInputError) and "pipe.dcm" in err.message_ja and "通常のファイル" in err.message_ja


# --- DICOM: spacing, slope, thickness, truncation, zips, caps -------------------------------------


def _series(folder: Path, modify: Callable[[Any, int], None] | None = None, n: int = 4) -> Path:
    write_series(folder, n=n, modify=modify)
    return folder


@pytest.mark.parametrize("spacing", [[0.0, 0.0], [0.0, 0.66], [-0.66, 0.66]])
def test_dicom_pixel_spacing_zero_or_negative_is_a_named_refusal(tmp_path: Path, spacing: list[float]) -> None:
    def modify(ds: Any, k: int) -> None:
        ds.PixelSpacing = spacing

    folder = _series(tmp_path / "series", modify)
    err = _refused(lambda: load_volume(folder), "series", "PixelSpacing", "0 以下")
    assert "slice_2_000.dcm" in err.message_ja  # the slice whose header is wrong


def test_dicom_rescale_slope_zero_is_refused_naming_the_slice(tmp_path: Path) -> None:
    def modify(ds: Any, k: int) -> None:
        if k == 2:
            ds.RescaleSlope = 0

    folder = _series(tmp_path / "series", modify)
    _refused(lambda: load_volume(folder), "slice_2_002.dcm", "RescaleSlope", "傾き 0")


def test_dicom_rescale_overflowing_to_infinity_is_refused(tmp_path: Path) -> None:
    def modify(ds: Any, k: int) -> None:
        ds.RescaleIntercept = "1e39"  # beyond float32: every HU becomes +inf

    folder = _series(tmp_path / "series", modify)
    _refused(lambda: load_volume(folder), "slice_2_000.dcm", "NaN・無限大")


@pytest.mark.parametrize("thickness", ["0", "-2.5"])
def test_single_dicom_slice_with_zero_or_negative_thickness_is_refused(tmp_path: Path, thickness: str) -> None:
    ds = ct_small()
    ds.SliceThickness = thickness
    ds.SpacingBetweenSlices = None
    import pydicom

    path = tmp_path / "one.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    _refused(lambda: load_volume(path), "one.dcm", "スライス厚")


def test_valid_dicom_series_reads_real_hu(tmp_path: Path) -> None:
    # control for the refusals above: the same builder with nothing broken gives CT_small's HU
    folder = _series(tmp_path / "series")
    vol = load_volume(folder)
    ds = ct_small()
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert vol.shape[2] == 4
    assert float(vol.array.mean()) == pytest.approx(float(np.maximum(expected, -1024).mean()), rel=1e-4)


def test_truncated_dicom_slice_is_named(tmp_path: Path) -> None:
    folder = _series(tmp_path / "series")
    victim = folder / "slice_2_001.dcm"
    victim.write_bytes(victim.read_bytes()[:-1000])
    _refused(lambda: load_volume(folder), "slice_2_001.dcm", "途中で切れて")


def test_folder_without_images_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("no image here")
    _refused(lambda: load_volume(folder), "notes", "DICOM も")


def test_garbage_zip_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "study.zip"
    path.write_bytes(b"PK\x03\x04" + os.urandom(2000))
    _refused(lambda: load_volume(path), "study.zip", "途中で切れているか壊れて")


def test_truncated_zip_of_a_series_is_refused_by_name(tmp_path: Path) -> None:
    folder = _series(tmp_path / "series")
    z = _zip_of(tmp_path / "cut.zip", {p.name: p.read_bytes() for p in folder.iterdir()})
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    _refused(lambda: load_volume(z), "cut.zip", "途中で切れているか壊れて")


@pytest.mark.parametrize("name", ["scan.dcm", "ct.nii.gz", "study.zip"])
def test_empty_file_is_refused_as_empty(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    _refused(lambda: load_volume(tmp_path / name), name, "空のファイル")


def _zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_bomb_member_is_refused_from_its_declared_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom, "MAX_ZIP_MEMBER_BYTES", 1 << 20)
    bomb = _zip_of(tmp_path / "bomb.zip", {"IM0001": bytes(4 << 20)})  # 4 MB of zeros in ~4 KB
    assert bomb.stat().st_size < 64 << 10
    _refused(lambda: load_volume(bomb), "bomb.zip", "大きすぎる", "4 MB")


def test_zip_with_too_many_members_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom, "MAX_ZIP_MEMBERS", 5)
    many = _zip_of(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(6)})
    _refused(lambda: load_volume(many), "many.zip", "ファイル数が多すぎ", "6")


def test_zip_over_the_total_size_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom, "MAX_ZIP_BYTES", 1 << 20)
    total = _zip_of(tmp_path / "total.zip", {f"f{i}": bytes(600 << 10) for i in range(2)})
    _refused(lambda: load_volume(total), "total.zip", "大きすぎ")


def test_valid_zip_of_a_series_still_loads(tmp_path: Path) -> None:
    folder = _series(tmp_path / "series")
    members = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    vol = load_volume(_zip_of(tmp_path / "ok.zip", members))
    assert vol.shape[2] == 4


def test_study_folder_with_too_many_files_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom, "MAX_STUDY_FILES", 5)
    folder = _series(tmp_path / "huge", n=6)
    _refused(lambda: load_volume(folder), "huge", "多すぎ")


def test_dicom_series_over_the_voxel_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom, "MAX_VOXELS", 1000)
    folder = _series(tmp_path / "series")
    _refused(lambda: load_volume(folder), "大きすぎ", str(f"{4 * 128 * 128:,}"))


def test_named_pipe_inside_a_series_folder_is_skipped_not_waited_on(tmp_path: Path) -> None:
    folder = _series(tmp_path / "series")
    os.mkfifo(folder / "zz_pipe")
    vol = _returns_within(lambda: load_volume(folder))
    assert isinstance(vol, Volume) and vol.shape[2] == 4


# --- CT measurements on poisoned data -----------------------------------------------------------


def _poisoned_study(phantom_study: Path, dest: Path, n_bad: int) -> Path:
    import nibabel as nib

    dest.mkdir()
    (dest / "segmentations").symlink_to(phantom_study / "segmentations")
    img: Any = nib.load(str(phantom_study / "ct.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)
    k = data.shape[2] // 2
    flat = data[:, :, k].reshape(-1)
    flat[:n_bad] = np.nan  # reshape of a contiguous slice view is a copy: write it back
    data[:, :, k] = flat.reshape(data.shape[:2])
    header = img.header.copy()
    header.set_data_dtype(np.float32)  # the phantom is int16, which cannot hold NaN
    nib.save(nib.Nifti1Image(data, img.affine, header), str(dest / "ct.nii.gz"))
    return dest


def test_nan_poisoned_phantom_is_refused_not_measured(
    phantom_study: Path, tmp_path: Path, ct_settings: Settings
) -> None:
    from dokuei.tools.measure_body_composition import MeasureBodyComposition

    study = _poisoned_study(phantom_study, tmp_path / "poisoned", n_bad=500)
    result = MeasureBodyComposition(ct_settings)({"study_path": str(study), "sex": "M", "write_overlay": False})
    assert result.status is ToolStatus.FAILED
    assert "ct.nii.gz" in result.summary_ja and "500 個" in result.summary_ja
    assert result.output is None  # no VFA, no HU mean: nothing was measured


def test_body_composition_refuses_nan_at_l3_even_past_the_reader(phantom_study: Path) -> None:
    from dokuei.ct import bodycomp
    from dokuei.io.totalseg import load_segmentation

    seg = load_segmentation(phantom_study / "segmentations" / "total.nii.gz", task="total")
    ct = load_volume(phantom_study / "ct.nii.gz")
    k, _ = bodycomp.find_l3(seg)
    arr = ct.array.copy()
    arr[10, 10, k] = np.inf
    hacked = Volume(arr, ct.affine, ct.source)
    _refused(
        lambda: bodycomp.measure(hacked, {"total": seg}, sex="M", height_cm=None, weight_kg=None, age_years=None),
        "ct.nii.gz",
        "1 個",
    )


def test_organ_statistics_refuse_nan_inside_a_label(phantom_study: Path) -> None:
    from dokuei.ct.organs import structure_stats
    from dokuei.io.totalseg import load_segmentation

    seg = load_segmentation(phantom_study / "segmentations" / "total.nii.gz", task="total")
    ct = load_volume(phantom_study / "ct.nii.gz")
    arr = ct.array.copy()
    i, j, k = np.argwhere(seg.labels > 0)[0]
    arr[i, j, k] = np.nan
    _refused(lambda: structure_stats(Volume(arr, ct.affine, ct.source), seg), "ct.nii.gz")


# --- ECG ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", name="dicom_ecg")
def dicom_ecg_fixture() -> EcgRecord:
    return load_ecg(pydicom_file("waveform_ecg.dcm"))


def _write_ecg_csv(path: Path, record: EcgRecord, *, header: bool = True, units: bool = True,
                   poison: Callable[[np.ndarray], None] | None = None) -> Path:
    """The DICOM record's own samples as a CSV in the format our error message asks for."""
    raw = read_dicom_ecg(pydicom_file("waveform_ecg.dcm"))
    sig = raw.signals_mv.copy()
    if poison is not None:
        poison(sig)
    lines = []
    if header:
        lines.append(f"# sampling_rate_hz: {raw.sampling_rate_hz:g}")
    if units:
        lines.append("# units: mV")
    lines.append(",".join(raw.leads))
    lines.extend(",".join(repr(float(v)) for v in sig[:, t]) for t in range(sig.shape[1]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_header_csv_is_typed_as_ecg_and_analysed_like_the_dicom(tmp_path: Path, dicom_ecg: EcgRecord) -> None:
    from dokuei.signals.ecg_measure import analyze_record

    path = _write_ecg_csv(tmp_path / "ecg.csv", dicom_ecg)
    assert classify_attachment(path).kind == "ecg"  # once typed "table" from its first (comment) line
    record = load_ecg(path)
    assert record.sampling_rate_hz == dicom_ecg.sampling_rate_hz
    hr_csv = analyze_record(record).heart_rate_bpm
    hr_dicom = analyze_record(dicom_ecg).heart_rate_bpm
    # the same samples: only CSV float formatting differs, so the rate agrees within ±3 bpm
    assert hr_csv == pytest.approx(hr_dicom, abs=3.0)
    assert 40 < hr_dicom < 150


def test_header_csv_without_units_is_refused_clearly(tmp_path: Path, dicom_ecg: EcgRecord) -> None:
    path = _write_ecg_csv(tmp_path / "nounits.csv", dicom_ecg, units=False)
    _refused(lambda: load_ecg(path), "nounits.csv", "単位")


def test_csv_without_sampling_rate_is_refused_with_the_expected_format(tmp_path: Path, dicom_ecg: EcgRecord) -> None:
    path = _write_ecg_csv(tmp_path / "nofs.csv", dicom_ecg, header=False)
    _refused(lambda: load_ecg(path), "nofs.csv", "# sampling_rate_hz: 500")


@pytest.mark.parametrize("bad", ["inf", "nan", "-inf"])
def test_ecg_lead_with_non_finite_samples_is_excluded_not_measured(
    tmp_path: Path, dicom_ecg: EcgRecord, bad: str
) -> None:
    from dokuei.signals.ecg_measure import analyze_record

    raw = read_dicom_ecg(pydicom_file("waveform_ecg.dcm"))
    ii = raw.leads.index("II")

    def poison(sig: np.ndarray) -> None:
        sig[ii, 100:400] = float(bad)

    record = load_ecg(_write_ecg_csv(tmp_path / "bad.csv", dicom_ecg, poison=poison))
    assert record.lead_flags["II"] == "nonfinite"
    assert np.all(np.isfinite(record.signals_mv))
    analysis = analyze_record(record)
    assert analysis.heart_rate_bpm == pytest.approx(analyze_record(dicom_ecg).heart_rate_bpm, abs=3.0)
    assert any("II 誘導が数値でないサンプル" in n for n in analysis.quality_notes)


def test_ecg_with_every_lead_non_finite_is_refused_with_the_count(tmp_path: Path, dicom_ecg: EcgRecord) -> None:
    def poison(sig: np.ndarray) -> None:
        sig[:, 0] = np.inf

    path = _write_ecg_csv(tmp_path / "allbad.csv", dicom_ecg, poison=poison)
    n_leads = len(read_dicom_ecg(pydicom_file("waveform_ecg.dcm")).leads)
    _refused(lambda: load_ecg(path), "allbad.csv", f"計 {n_leads} 個")


def test_analysis_refuses_a_record_whose_leads_are_all_non_finite() -> None:
    from dokuei.signals.ecg_measure import EcgAnalysisError, analyze_record

    sig = np.full((2, 5000), np.inf)
    with pytest.raises(EcgAnalysisError, match="non-finite"):
        analyze_record(EcgRecord(sig, ("I", "II"), 500.0, "x.csv", "csv", "mV"))


def test_load_ecg_refuses_a_named_pipe(fifo: Path) -> None:
    err = _returns_within(lambda: load_ecg(fifo))
    assert isinstance(err, ToolInputError) and "pipe.dcm" in err.message_ja


def test_ecg_plot_never_draws_the_file_name(tmp_path: Path, dicom_ecg: EcgRecord) -> None:
    from dokuei.signals.ecg_measure import analyze_record
    from dokuei.signals.ecg_plot import caption, plot_ecg

    name = "Yamada_Taro_19600101.csv"
    record = load_ecg(_write_ecg_csv(tmp_path / name, dicom_ecg))
    a = analyze_record(record)
    text = caption(record)
    assert "Yamada" not in text and text.isascii()
    png = plot_ecg(record, a.r_peaks, a.beat_types, tmp_path / "p.png", title=name)
    assert b"Yamada" not in png.read_bytes()


# --- attachments: every unreadable file keeps its reason ---------------------------------------


def _reason(path: Path) -> str:
    a = classify_attachment(path)
    assert a.kind == "unknown", a
    reason = unreadable_reason_ja(a)
    assert reason is not None and f"「{path.name}」" in reason
    assert str(path.parent) not in reason  # the name only, never the server path
    return reason


def test_empty_file_is_named_as_empty(tmp_path: Path) -> None:
    (tmp_path / "scan.dcm").write_bytes(b"")
    assert att.EMPTY in _reason(tmp_path / "scan.dcm")


def test_corrupt_dicom_header_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    assert att.BROKEN_DICOM in _reason(tmp_path / "bad.dcm")


def test_truncated_dicom_is_named(tmp_path: Path) -> None:
    raw = pydicom_file("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[:-1000])
    assert att.TRUNCATED_DICOM in _reason(tmp_path / "cut.dcm")


def test_intact_dicom_is_usable(tmp_path: Path) -> None:
    a = classify_attachment(pydicom_file("CT_small.dcm"))
    assert a.kind == "ct_series" and unreadable_reason_ja(a) is None


def test_truncated_zip_is_named(tmp_path: Path) -> None:
    folder = _series(tmp_path / "series")
    z = _zip_of(tmp_path / "study.zip", {p.name: p.read_bytes() for p in folder.iterdir()})
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    assert att.BROKEN_ZIP in _reason(z)


def test_zip_bomb_attachment_is_named_without_decompressing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom, "MAX_ZIP_MEMBER_BYTES", 1 << 20)
    bomb = _zip_of(tmp_path / "bomb.zip", {"IM0001": bytes(4 << 20)})
    assert "大きすぎる" in _reason(bomb)


def test_named_pipe_attachment_is_refused_without_opening(fifo: Path) -> None:
    a = _returns_within(lambda: classify_attachment(fifo))
    assert a.kind == "unknown" and a.detail == att.NOT_REGULAR


def test_truncated_nifti_gz_attachment_is_named(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "ct.nii.gz", _ct_array((32, 32, 16)))
    ok = classify_attachment(path)
    assert ok.kind == "nifti"  # control: the intact file passes the ISIZE check
    path.write_bytes(path.read_bytes()[:-200])
    assert att.TRUNCATED_NIFTI in _reason(path)


def test_truncated_plain_nifti_attachment_is_named(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "ct.nii", _ct_array((16, 16, 8)))
    assert classify_attachment(path).kind == "nifti"
    path.write_bytes(path.read_bytes()[:-100])
    assert att.TRUNCATED_NIFTI in _reason(path)


def test_garbage_named_nifti_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.nii.gz").write_bytes(gzip.compress(b"not a header"))
    assert "壊れた NIfTI" in _reason(tmp_path / "x.nii.gz")


def test_missing_file_and_imageless_folder_are_named(tmp_path: Path) -> None:
    assert att.MISSING in _reason(tmp_path / "gone.dcm")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    assert att.NO_IMAGES_FOLDER in _reason(folder)


def test_unknown_format_is_named(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(os.urandom(600))
    assert att.UNKNOWN_FORMAT in _reason(tmp_path / "data.bin")


def test_usable_attachment_has_no_reason() -> None:
    assert unreadable_reason_ja(Attachment(Path("/x/report.txt"), "report_text", "text")) is None


# --- provenance hashing caps ---------------------------------------------------------------------


def test_hashing_a_folder_over_the_file_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MAX_HASH_FILES", 3)
    folder = tmp_path / "usr"
    folder.mkdir()
    for i in range(4):
        (folder / f"f{i}").write_bytes(b"x")
    _refused(lambda: base.sha256_path(folder), "usr", "3 個超")


def test_hashing_a_folder_over_the_byte_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MAX_HASH_BYTES", 1000)
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "a").write_bytes(bytes(1500))
    _refused(lambda: base.sha256_path(folder), "big", "大きすぎ")
    _refused(lambda: base.sha256_path(folder / "a"), "a", "大きすぎ")


def test_hashing_under_the_caps_is_unchanged(tmp_path: Path) -> None:
    import hashlib

    folder = tmp_path / "s"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "b").write_bytes(b"b")
    (folder / "a").write_bytes(b"a")
    listing = sorted(f"{n} {hashlib.sha256(c).hexdigest()}" for n, c in (("a", b"a"), ("sub/b", b"b")))
    assert base.sha256_path(folder) == hashlib.sha256("\n".join(listing).encode()).hexdigest()


def test_hashing_a_named_pipe_is_refused(fifo: Path) -> None:
    err = _returns_within(lambda: base.sha256_path(fifo))
    assert isinstance(err, ToolInputError) and "pipe.dcm" in err.message_ja


def test_tool_on_an_oversized_folder_fails_with_a_message_not_a_crash(
    tmp_path: Path, ct_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dokuei.tools.measure_body_composition import MeasureBodyComposition

    monkeypatch.setattr(base, "MAX_HASH_FILES", 3)
    folder = tmp_path / "usr"
    folder.mkdir()
    for i in range(5):
        (folder / f"f{i}").write_bytes(b"x")
    result = MeasureBodyComposition(ct_settings)({"study_path": str(folder), "sex": "M"})
    assert result.status is ToolStatus.FAILED and "usr" in result.summary_ja and "大きすぎ" in result.summary_ja


# --- report imports ----------------------------------------------------------------------------


def _jsonl(tmp_path: Path, rows: list[dict[str, Any] | str]) -> Path:
    path = tmp_path / "reports.jsonl"
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


def _good(report_id: str, **extra: Any) -> dict[str, Any]:
    return {"report_id": report_id, "study_date": "2022-05-01", "findings": "肝嚢胞を認める。", **extra}


def _import(tmp_path: Path, rows: list[dict[str, Any] | str]) -> Any:
    from dokuei.knowledge.archive import ReportArchive
    from dokuei.knowledge.importers import import_file
    from tests.reports_fixtures import HashEmbedder

    archive = ReportArchive(Settings.load(home=tmp_path / "home"), embedder=HashEmbedder())
    return import_file(archive, _jsonl(tmp_path, rows), progress=False)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"labels": 5}, "labels"),
        ({"labels": [{"x": 1}]}, "labels"),
        ({"meta": "x"}, "meta"),
        ({"synthetic": "maybe"}, "synthetic"),
        ({"findings": "", "diagnosis": None}, "所見"),
    ],
)
def test_one_bad_jsonl_row_is_named_and_the_rest_imported(
    tmp_path: Path, bad: dict[str, Any], reason: str
) -> None:
    res = _import(tmp_path, [_good("A"), _good("B", **bad), _good("C")])
    assert res.inserted == 2  # once: 0 rows, the whole import aborted by a TypeError
    assert [e.row for e in res.errors] == [2] and reason in res.errors[0].reason_ja


def test_synthetic_false_string_is_false(tmp_path: Path) -> None:
    from dokuei.knowledge.importers import parse_row

    rec = parse_row(1, _good("A", synthetic="false"), "salt", "x.jsonl")
    assert getattr(rec, "synthetic", None) is False  # bool("false") is True: strings are parsed


def test_jsonl_non_object_and_broken_lines_are_named(tmp_path: Path) -> None:
    res = _import(tmp_path, [_good("A"), "[1, 2]", "{broken", _good("D")])
    assert res.inserted == 2
    assert [e.row for e in res.errors] == [2, 3]
    assert "オブジェクト" in res.errors[0].reason_ja and "JSON" in res.errors[1].reason_ja



# --- radiographs -------------------------------------------------------------------------------


def _dx(path: Path, spacing: list[str]) -> Path:
    import pydicom

    ds = ct_small()  # a real 128² image re-labelled as a DX: the reader only needs the pixels and tags
    ds.Modality = "DX"
    ds.ImagerPixelSpacing = spacing
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.mark.parametrize("spacing", [["0", "0"], ["-0.1", "0.1"]])
def test_radiograph_with_zero_or_negative_spacing_has_unknown_spacing(tmp_path: Path, spacing: list[str]) -> None:
    from dokuei.io.radiograph import load_radiograph

    # unknown spacing means no millimetre is ever derived from it; a 0 would give 0 mm everywhere
    assert load_radiograph(_dx(tmp_path / "dx.dcm", spacing)).pixel_spacing_mm is None


def test_radiograph_keeps_a_valid_spacing(tmp_path: Path) -> None:
    from dokuei.io.radiograph import load_radiograph

    assert load_radiograph(_dx(tmp_path / "dx.dcm", ["0.143", "0.15"])).pixel_spacing_mm == (0.143, 0.15)


def test_radiograph_reader_refuses_a_named_pipe(fifo: Path) -> None:
    from dokuei.io.radiograph import load_radiograph

    err = _returns_within(lambda: load_radiograph(fifo))
    assert isinstance(err, ToolInputError) and "pipe.dcm" in err.message_ja


def test_multi_member_gzip_nifti_is_not_called_truncated(tmp_path: Path) -> None:
    # the gzip trailer then holds only the last member's size; the stream is decompressed to be sure
    raw = gzip.decompress(_nifti(tmp_path / "a.nii.gz", _ct_array((16, 16, 8))).read_bytes())
    path = tmp_path / "multi.nii.gz"
    path.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    assert classify_attachment(path).kind == "nifti"


def test_attachment_folder_over_the_file_cap_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom, "MAX_STUDY_FILES", 3)
    folder = tmp_path / "everything"
    folder.mkdir()
    for i in range(5):
        (folder / f"f{i}.txt").write_text("x")
    reason = _reason(folder)
    assert "多すぎる" in reason


def test_label_mask_reader_refuses_a_named_pipe(fifo: Path, tmp_path: Path) -> None:
    from dokuei.io.masks import load_label_mask

    image = load_volume(_nifti(tmp_path / "ct.nii.gz", _ct_array()))
    err = _returns_within(lambda: load_label_mask(fifo, image))
    assert isinstance(err, ToolInputError) and "pipe.dcm" in err.message_ja


def test_analyze_ecg_on_a_csv_with_an_inf_lead_reports_the_dicom_qtc(
    tmp_path: Path, dicom_ecg: EcgRecord, settings: Settings
) -> None:
    # the reproduction of issue #9: inf samples once produced a 「QTc 延長」 finding with status ok
    from dokuei.tools.analyze_ecg import AnalyzeEcg

    raw = read_dicom_ecg(pydicom_file("waveform_ecg.dcm"))
    v2 = raw.leads.index("V2")

    def poison(sig: np.ndarray) -> None:
        sig[v2, ::50] = np.inf

    csv_path = _write_ecg_csv(tmp_path / "inf.csv", dicom_ecg, poison=poison)
    tool = AnalyzeEcg(settings)
    clean = tool({"ecg_path": str(pydicom_file("waveform_ecg.dcm")), "make_plot": False})
    poisoned = tool({"ecg_path": str(csv_path), "make_plot": False})
    assert clean.output is not None and poisoned.output is not None, poisoned.summary_ja
    assert poisoned.output["flagged_leads"] == {"V2": "nonfinite"}
    # the same beats measured on 11 of the 12 leads: QTc within 20 ms, and no finding the clean file lacks
    assert abs(poisoned.output["qtc_ms"] - clean.output["qtc_ms"]) <= 20
    names = {f["code"] for f in poisoned.output["findings"]} if poisoned.output["findings"] else set()
    clean_names = {f["code"] for f in clean.output["findings"]} if clean.output["findings"] else set()
    assert names <= clean_names
