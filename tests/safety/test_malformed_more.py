"""More malformed inputs (stop 16), each with its expected outcome: a Japanese refusal that names the file
or the value, never a traceback, never a silently used value.

- ``--patient`` mistakes: exit code 2 and a Japanese message (no pydantic English);
- ECG CSV headers and bodies: a stated but unusable sampling rate (0, negative, text) was reported as
  "not stated" or raised a bare ``ValueError``; a broken time column raised ``ValueError``/``IndexError``;
- uploads (the UI's path, ``dokuei.studies``): unsafe zip members, fake DICOM, empty files;
- odd DICOM values through de-identification: unreadable dates are emptied, never kept; nested and
  multi-valued attributes are cleaned too.
"""

from __future__ import annotations

import io
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dokuei import deid
from dokuei import studies as st
from dokuei.cli import build_parser, cmd_ask
from dokuei.io import ecg
from dokuei.settings import Settings
from dokuei.tools.base import ToolInputError
from tests.ct_helpers import ct_small

PATIENT_MISTAKES = [
    ("age=abc", "年齢は 0〜130 の整数"),
    ("age=200", "年齢は 0〜130 の整数"),
    ("age=-1", "年齢は 0〜130 の整数"),
    ("sex=X", "性別「X」は M/F"),
    ("height_cm=-5", "身長は 30〜260"),
    ("height_cm=1e9", "身長は 30〜260"),
    ("weight_kg=nan", "体重は 1〜400"),
    ("foo=1", "項目「foo=1」を解釈できません"),
    ("age", "項目「age」を解釈できません"),
]


@pytest.mark.parametrize(("patient", "expected"), PATIENT_MISTAKES)
def test_patient_mistake_is_a_japanese_error(settings: Settings, patient: str, expected: str) -> None:
    args = build_parser().parse_args(["ask", "HbA1c 6.8% は？", "--patient", patient])
    out = io.StringIO()
    with redirect_stdout(out):
        code = cmd_ask(args, settings)
    text = out.getvalue()
    assert code == 2 and text.startswith("エラー: ") and expected in text
    assert "validation error" not in text.lower() and "Traceback" not in text


UNITS = "# units: mV\n"
ECG_CSV = [
    ("# sampling_rate_hz: 0\n" + UNITS + "I,II\n0.1,0.2\n0.1,0.2\n", "「0」は正の数ではない"),
    ("# sampling_rate_hz: -500\n" + UNITS + "I,II\n0.1,0.2\n0.1,0.2\n", "「-500」は正の数ではない"),
    ("# sampling_rate_hz: abc\n" + UNITS + "I,II\n0.1,0.2\n0.1,0.2\n", "「abc」は正の数ではない"),
    ("# sampling_rate_hz: inf\n" + UNITS + "I,II\n0.1,0.2\n0.1,0.2\n", "「inf」は正の数ではない"),
    ("# sampling_rate_hz: 500\n" + UNITS + "I,II\n", "波形データがありません"),
    ("# sampling_rate_hz: 500\n" + UNITS + "I,II\nfoo,bar\n", "2 行目、誘導 I に数値でない値「foo」"),
    ("# sampling_rate_hz: 500\n# units: furlong\nI,II\n0.1,0.2\n0.1,0.2\n", "電位の単位"),
    (UNITS + "time_s,I,II\n0.0,0.1,0.2\nx,0.1,0.2\n", "時刻列「time_s」に数値でない値"),
    (UNITS + "time_ms,I,II\n2,0.1,0.2\n1,0.1,0.2\n0,0.1,0.2\n", "時刻列「time_ms」が増加していない"),
]


@pytest.mark.parametrize(("text", "expected"), ECG_CSV)
def test_malformed_ecg_csv_is_refused_by_name(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "patient_ecg.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ToolInputError) as err:
        ecg.read_csv_ecg(path)
    assert "patient_ecg.csv" in err.value.message_ja and expected in err.value.message_ja


def _zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _dicom_bytes() -> bytes:
    buf = io.BytesIO()
    ct_small().save_as(buf, enforce_file_format=True)
    return buf.getvalue()


UPLOADS = [
    ("escape.zip", lambda p: _zip(p, {"../../evil.dcm": b"x"}), "安全でないパス"),
    ("absolute.zip", lambda p: _zip(p, {"/etc/cron.d/evil": b"x"}), "安全でないパス"),
    ("backslash.zip", lambda p: _zip(p, {"..\\..\\evil.dcm": b"x"}), "安全でないパス"),
    ("link.zip", lambda p: _zip(p, {"a.dcm": _dicom_bytes()}, symlink="b.dcm"), "安全でないパス"),
    ("broken.zip", lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "壊れた zip"),
    ("empty.dcm", lambda p: p.write_bytes(b""), "空のファイル"),
    ("fake.dcm", lambda p: p.write_bytes(b"not a dicom at all" * 20), "DICOM ファイルではない"),
    ("preamble.dcm", lambda p: p.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 64), "DICOM として読み込めません"),
]


@pytest.mark.parametrize(("name", "make", "expected"), UPLOADS, ids=[u[0] for u in UPLOADS])
def test_malformed_upload_is_refused_by_name(tmp_path: Path, name: str, make: object, expected: str) -> None:
    source = tmp_path / "gradio" / name
    source.parent.mkdir()
    make(source)  # type: ignore[operator]
    session = tmp_path / "uploads" / "s"
    with pytest.raises(st.UploadError) as err:
        st.ingest_upload([(source, name)], session)
    assert name in str(err.value) and expected in str(err.value)
    assert not session.exists() or not any(session.iterdir())  # nothing half-unpacked stays behind


ODD_DATES = [("2024", ""), ("20241399", ""), ("20240230", ""), ("garbage!", "")]


@pytest.mark.parametrize(("raw", "kept"), ODD_DATES)
def test_an_unreadable_date_is_emptied_not_kept(raw: str, kept: str) -> None:
    ds = ct_small()
    ds.StudyDate = raw
    out = deid.deidentify(ds, "k")
    assert str(out.StudyDate or "") == kept


def test_a_multi_valued_and_nested_attribute_is_cleaned() -> None:
    ds = ct_small()
    ds.OtherPatientIDs = ["MKA", "MKB"]  # X: removed whatever its multiplicity
    inner = Dataset()
    inner.PatientName = "MK-INNER"
    inner.ReferencedSOPInstanceUID = "1.2.3.4"
    middle = Dataset()
    middle.ReferencedSeriesSequence = Sequence([inner])  # a sequence the table does not list: cleaned inside
    ds.add_new(0x00081115, "SQ", Sequence([middle]))
    out = deid.deidentify(ds, "k")
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=False)
    assert b"MK" not in buf.getvalue() and "OtherPatientIDs" not in out
    item = out[0x00081115].value[0].ReferencedSeriesSequence[0]
    assert item.ReferencedSOPInstanceUID == deid.mapped_uid("1.2.3.4", "k")


def test_a_file_that_cannot_be_de_identified_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "one.dcm"
    ct_small().save_as(source, enforce_file_format=True)

    def refuse(*_: object, **__: object) -> None:
        raise ValueError("cannot write")

    monkeypatch.setattr(deid, "deidentify_file", refuse)
    with pytest.raises(st.UploadError) as err:
        st.ingest_upload([(source, "one.dcm")], tmp_path / "uploads" / "s", remove_sources=False)
    assert "匿名化できなかった" in str(err.value)
    assert not list((tmp_path / "uploads").rglob("*.dcm"))
    assert pydicom.dcmread(source).PatientName  # the source is untouched; only the kept copy is refused
