"""Type attached files by their content (magic bytes, DICOM Modality), not only by extension.

A file that cannot be read is typed ``"unknown"`` and keeps the reason in ``detail`` (空のファイル,
壊れた DICOM, 途中で切れた zip…), so the answer can name it instead of asking for an attachment:
:func:`unreadable_reason_ja` turns it into one Japanese sentence that names the file (its name only,
never the server path). Nothing here blocks or reads a file whole: non-regular files (named pipes,
devices) are refused without opening them, folders are listed up to a cap, zip members are checked by
their declared sizes and only their first bytes are read.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import zipfile
from pathlib import Path

from dokuei.io import dicom
from dokuei.io.dicom import walk_study_files, zip_members
from dokuei.io.ecg import csv_header_leads
from dokuei.tools.base import ToolInputError
from dokuei.tools.context import Attachment, AttachmentKind

log = logging.getLogger(__name__)

_XRAY_MODALITIES = {"CR", "DX", "RG"}
#: a single DICOM file is read whole (to check its pixel data is complete) only below this size
_DICOM_FULL_READ_BYTES = 64 << 20
_UNCOMPRESSED_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}

# the reasons an attachment is unreadable; each is shown to the clinician after the file's name
MISSING = "ファイルが見つかりません"
NOT_REGULAR = "通常のファイルではありません（名前付きパイプやデバイスなど）"
EMPTY = "空のファイルです"
UNREADABLE = "読み取れません（権限がないか、入出力エラー）"
BROKEN_DICOM = "壊れた DICOM です（ヘッダを読めません）"
TRUNCATED_DICOM = "途中で切れた DICOM です（画素データが不足しています）"
BROKEN_ZIP = "途中で切れたか壊れた zip です"
TRUNCATED_NIFTI = "途中で切れた NIfTI です（データがヘッダの記載より短い）"
NO_IMAGES_FOLDER = "画像（DICOM・NIfTI）を含まないフォルダです"
ZIP_WITHOUT_DICOM = "DICOM を含まない zip です"
UNKNOWN_FORMAT = "対応していない形式です"


def _is_dicom(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _expected_pixel_bytes(ds: object) -> int | None:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)  # type: ignore[attr-defined]
        bits = int(ds.BitsAllocated)  # type: ignore[attr-defined]
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    return rows * cols * samples * frames * bits // 8


def _dicom_kind(path: Path, *, check_pixels: bool) -> tuple[AttachmentKind, str]:
    import pydicom

    full = check_pixels and path.stat().st_size <= _DICOM_FULL_READ_BYTES
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=not full)
    except Exception as exc:
        log.warning("unreadable DICOM %s: %s", path, exc)
        return "unknown", BROKEN_DICOM
    modality = str(getattr(ds, "Modality", "") or "")
    if not modality and "SOPClassUID" not in ds:
        return "unknown", BROKEN_DICOM
    if "WaveformSequence" in ds or modality == "ECG":
        return "ecg", f"DICOM waveform ({modality})"
    if full and modality in {"CT", "MR", *_XRAY_MODALITIES}:
        syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        expected = _expected_pixel_bytes(ds)
        if "PixelData" not in ds:
            return "unknown", TRUNCATED_DICOM
        if syntax in _UNCOMPRESSED_SYNTAXES and expected and len(ds.PixelData) < expected:
            log.warning("truncated DICOM %s: %d of %d pixel bytes", path, len(ds.PixelData), expected)
            return "unknown", TRUNCATED_DICOM
    if modality == "CT":
        return "ct_series", "DICOM CT"
    if modality == "MR":
        return "mr_series", "DICOM MR"
    if modality == "SEG":
        return "dicom_seg", "DICOM SEG"
    if modality in _XRAY_MODALITIES:
        return "chest_xray", f"DICOM {modality}"
    return "image", f"DICOM {modality or '?'}"


def _nifti_header(path: Path, head: bytes) -> bytes | None:
    """The first 348 bytes of a NIfTI (gzipped or not), or None when the file is not NIfTI."""
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(348)
        except (OSError, EOFError):
            return None
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00", b"n+2\x00"):
        return head
    return None


def _nifti_truncated(path: Path, header: bytes, gzipped: bool) -> bool:
    """True when the file holds fewer bytes than its NIfTI-1 header declares (checked without decoding).

    For gzip, the trailer's ISIZE (uncompressed size mod 2**32) is compared with the declared size: a file
    cut short ends in compressed data, whose last 4 bytes match only by chance.
    """
    if header[344:348] == b"n+2\x00":
        return False  # NIfTI-2 has another layout; the reader checks it
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            break
    else:
        return False
    dims = struct.unpack(endian + "8h", header[40:56])
    bitpix = struct.unpack(endian + "h", header[72:74])[0]
    vox_offset = struct.unpack(endian + "f", header[108:112])[0]
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or any(d < 0 for d in dims[1 : ndim + 1]):
        return False
    n = 1
    for d in dims[1 : ndim + 1]:
        n *= max(d, 1)
    expected = int(max(vox_offset, 352)) + n * bitpix // 8
    if not gzipped:
        return path.stat().st_size < expected
    with path.open("rb") as fh:
        fh.seek(-4, os.SEEK_END)
        isize = struct.unpack("<I", fh.read(4))[0]
    if isize == expected % (1 << 32):
        return False
    # a multi-member gzip (pigz -i, concatenated files) records only its last member's size: decompress
    # the stream to be sure before calling an intact file truncated (rare, so the cost is acceptable)
    total = 0
    try:
        with gzip.open(path, "rb") as gz:
            while block := gz.read(1 << 22):
                total += len(block)
                if total >= expected:
                    return False
    except (OSError, EOFError):
        return True
    return total < expected


def _csv_kind(path: Path) -> AttachmentKind:
    """An ECG CSV names leads in its first non-comment line (``# sampling_rate_hz: 500`` may come first)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return "unknown"
    return "ecg" if csv_header_leads(head) else "table"


def _folder_files(path: Path) -> list[Path]:
    try:
        return list(walk_study_files(path))
    except OSError as exc:
        log.warning("cannot list %s: %s", path, exc)
        return []


def _folder_kind(path: Path) -> tuple[AttachmentKind, str]:
    try:
        files = _folder_files(path)
    except ToolInputError:
        return "unknown", f"ファイルが多すぎるフォルダです（{dicom.MAX_STUDY_FILES:,} 個超）"
    # masks under segmentations/ are NIfTI too: only an image NIfTI makes this a NIfTI study
    masks = [f for f in files if "segmentations" in f.relative_to(path).parts[:-1]]
    for f in files:
        if f.name.lower().endswith((".nii", ".nii.gz")) and f not in masks:
            return "ct_series", f"NIfTI study folder ({f.name})"
    with_masks = " + segmentations/" if masks else ""
    for f in [f for f in files if f not in masks][:50]:
        try:
            with f.open("rb") as fh:
                head = fh.read(132)
        except OSError:
            continue
        if _is_dicom(head):
            kind, detail = _dicom_kind(f, check_pixels=False)
            return kind, f"DICOM folder: {detail}{with_masks}"
    return "unknown", NO_IMAGES_FOLDER


def _zip_kind(path: Path) -> tuple[AttachmentKind, str]:
    try:
        with zipfile.ZipFile(path) as zf:
            members = zip_members(zf, path.name)
            for m in members[:20]:
                with zf.open(m) as fh:
                    if _is_dicom(fh.read(132)):
                        return "ct_series", "zip of DICOM"
    except ToolInputError as exc:  # too many members or a zip bomb: say which limit
        return "unknown", exc.message_ja.rstrip("。")
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        log.warning("broken zip %s: %s", path, exc)
        return "unknown", BROKEN_ZIP
    return "unknown", ZIP_WITHOUT_DICOM


def classify_attachment(path: Path) -> Attachment:
    """Return the attachment with its kind; unreadable files are typed 'unknown' with the reason."""
    path = Path(path)
    if not path.exists():
        return Attachment(path, "unknown", MISSING)
    if path.is_dir():
        kind, detail = _folder_kind(path)
        return Attachment(path, kind, detail)
    if not path.is_file():  # opening a FIFO blocks until a writer appears
        return Attachment(path, "unknown", NOT_REGULAR)
    try:
        if path.stat().st_size == 0:
            return Attachment(path, "unknown", EMPTY)
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return Attachment(path, "unknown", UNREADABLE)
    name = path.name.lower()
    if _is_dicom(head):
        kind, detail = _dicom_kind(path, check_pixels=True)
        return Attachment(path, kind, detail)
    if head[:4] == b"PK\x03\x04" or name.endswith(".zip"):
        kind, detail = _zip_kind(path)
        return Attachment(path, kind, detail)
    nifti = _nifti_header(path, head)
    if nifti is not None:
        if _nifti_truncated(path, nifti, gzipped=head[:2] == b"\x1f\x8b"):
            return Attachment(path, "unknown", TRUNCATED_NIFTI)
        return Attachment(path, "nifti", "NIfTI")
    if name.endswith((".nii", ".nii.gz")):
        return Attachment(path, "unknown", "壊れた NIfTI です（ヘッダを読めません）")
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff":
        return Attachment(path, "image", "PNG/JPEG")
    if name.endswith(".hea") or (name.endswith(".dat") and path.with_suffix(".hea").exists()):
        return Attachment(path, "ecg", "WFDB record")
    if name.endswith(".xml"):
        with path.open("rb") as fh:
            if b"AnnotatedECG" in fh.read(4096):
                return Attachment(path, "ecg", "HL7 aECG")
    if name.endswith(".csv"):
        kind = _csv_kind(path)
        return Attachment(path, kind, "CSV" if kind != "unknown" else UNREADABLE)
    if name.endswith((".txt", ".md")):
        return Attachment(path, "report_text", "text")
    return Attachment(path, "unknown", UNKNOWN_FORMAT)


def unreadable_reason_ja(attachment: Attachment) -> str | None:
    """One Japanese sentence naming an attachment that cannot be used and why; None when it is usable.

    Only the file's name is shown (the server path may hold other patients' folder names).
    """
    if attachment.kind != "unknown":
        return None
    reason = attachment.detail or UNKNOWN_FORMAT
    return f"添付ファイル「{attachment.path.name}」は使えません: {reason}。"
