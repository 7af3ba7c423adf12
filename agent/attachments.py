"""Type attached files by their content (magic bytes, DICOM Modality), not only by extension."""

from __future__ import annotations

import gzip
import logging
import zipfile
from pathlib import Path

from dokuei.tools.context import Attachment, AttachmentKind

log = logging.getLogger(__name__)

_ECG_LEADS = {"i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6", "mlii"}
_XRAY_MODALITIES = {"CR", "DX", "RG"}


def _is_dicom(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _dicom_kind(path: Path) -> tuple[AttachmentKind, str]:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:
        log.warning("unreadable DICOM %s: %s", path, exc)
        return "unknown", "読み込めない DICOM"
    modality = str(getattr(ds, "Modality", "") or "")
    if "WaveformSequence" in ds or modality == "ECG":
        return "ecg", f"DICOM waveform ({modality})"
    if modality == "CT":
        return "ct_series", "DICOM CT"
    if modality == "MR":
        return "mr_series", "DICOM MR"
    if modality == "SEG":
        return "dicom_seg", "DICOM SEG"
    if modality in _XRAY_MODALITIES:
        return "chest_xray", f"DICOM {modality}"
    return "image", f"DICOM {modality or '?'}"


def _is_nifti(path: Path, head: bytes) -> bool:
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(348)
        except OSError:
            return False
    return len(head) >= 348 and (head[344:348] in (b"n+1\x00", b"ni1\x00") or head[344:348] == b"n+2\x00")


def _csv_kind(path: Path) -> AttachmentKind:
    try:
        first = path.open(encoding="utf-8", errors="replace").readline()
    except OSError:
        return "unknown"
    columns = {c.strip().strip('"').lower() for c in first.replace(";", ",").split(",")}
    return "ecg" if len(columns & _ECG_LEADS) >= 1 else "table"


def _folder_kind(path: Path) -> tuple[AttachmentKind, str]:
    files = [p for p in sorted(path.rglob("*")) if p.is_file()]
    for f in files:
        if f.name.lower().endswith((".nii", ".nii.gz")):
            return "ct_series", f"NIfTI study folder ({f.name})"
    for f in files[:50]:
        with f.open("rb") as fh:
            head = fh.read(132)
        if _is_dicom(head):
            kind, detail = _dicom_kind(f)
            return kind, f"DICOM folder: {detail}"
    return "unknown", "画像を含まないフォルダ"


def classify_attachment(path: Path) -> Attachment:
    """Return the attachment with its kind; unknown files are typed 'unknown', never rejected here."""
    path = Path(path)
    if not path.exists():
        return Attachment(path, "unknown", "ファイルが存在しません")
    if path.is_dir():
        kind, detail = _folder_kind(path)
        return Attachment(path, kind, detail)
    with path.open("rb") as fh:
        head = fh.read(512)
    name = path.name.lower()
    if _is_dicom(head):
        kind, detail = _dicom_kind(path)
        return Attachment(path, kind, detail)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if not m.endswith("/")]
                if members and any(_is_dicom(zf.open(m).read(132)) for m in members[:20]):
                    return Attachment(path, "ct_series", "zip of DICOM")
        except zipfile.BadZipFile:
            return Attachment(path, "unknown", "壊れた zip")
        return Attachment(path, "unknown", "zip")
    if _is_nifti(path, head):
        return Attachment(path, "nifti", "NIfTI")
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff":
        return Attachment(path, "image", "PNG/JPEG")
    if name.endswith(".hea") or (name.endswith(".dat") and path.with_suffix(".hea").exists()):
        return Attachment(path, "ecg", "WFDB record")
    if name.endswith(".xml") and b"AnnotatedECG" in head + path.read_bytes()[:4096]:
        return Attachment(path, "ecg", "HL7 aECG")
    if name.endswith(".csv"):
        return Attachment(path, _csv_kind(path), "CSV")
    if name.endswith((".txt", ".md")):
        return Attachment(path, "report_text", "text")
    return Attachment(path, "unknown", "不明な形式")
