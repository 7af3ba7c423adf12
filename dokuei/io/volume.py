"""Volumes in one canonical frame: array indexed [i, j, k] along RAS+ (k runs foot → head).

Every imaging tool reads studies through :func:`load_volume`, so spacing always comes from the header
and never from an assumption. Refusals raise ``ToolInputError`` with a Japanese reason.

Accepted inputs: a NIfTI file, a DICOM file, a folder holding a DICOM series (or several: the best
axial CT series is chosen, see :mod:`dokuei.io.dicom`), a zip of such a folder, and a study folder
holding one CT NIfTI (``ct.nii.gz``, see :mod:`dokuei.io.ctstudy`).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.errors import InputError as ToolInputError
from dokuei.io.grid import MAX_VOXELS, Volume, refuse_non_finite

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: names a study folder may give its CT image (TotalSegmentator and nnU-Net conventions)
CT_NIFTI_NAMES = ("ct.nii.gz", "ct.nii", "image.nii.gz", "image.nii", "ct_0000.nii.gz", "img.nii.gz")


def load_nifti(path: Path, *, labels: bool = False, dtype: type | None = None) -> Volume:
    """Read a NIfTI file, check its affine and dimensionality, and reorient it to RAS+.

    The array is float32 (images) or int32 (``labels``) unless ``dtype`` says otherwise, stored with i
    varying fastest (Fortran order, as in the file): every reader of a Volume may rely on that.
    """
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
    except Exception as exc:
        raise ToolInputError(f"NIfTI ファイル {path.name} を読み込めません。", f"{path}: {exc}") from exc
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise ToolInputError(
            f"{path.name} は {len(img.shape)} 次元の画像です。3 次元の CT ボリュームを指定してください。",
            f"{path}: shape {img.shape}",
        )
    _check_voxel_count(tuple(int(n) for n in img.shape), path.name)
    if int(img.header["sform_code"]) == 0:
        _check_raw_pixdim(path, img)
    affine = np.asarray(img.affine, dtype=np.float64)
    linear = affine[:3, :3]
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(linear)) < 1e-6:
        raise ToolInputError(
            f"{path.name} の向き情報（affine）が壊れているため、寸法を計算できません。",
            f"{path}: affine {affine.tolist()}",
        )
    notes: list[str] = []
    if int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 0:
        notes.append(f"{path.name} に向き情報（qform/sform）がないため、画素間隔のみから座標を作りました。")
    try:
        canonical = nib.as_closest_canonical(img)
        data = np.asanyarray(canonical.dataobj)
    except Exception as exc:  # truncated gzip, short file
        raise ToolInputError(
            f"NIfTI ファイル {path.name} が途中で切れているか壊れています。", f"{path}: {exc}"
        ) from exc
    refuse_non_finite(data, path.name)
    array: np.ndarray = np.asfortranarray(data, dtype=dtype or (np.int32 if labels else np.float32))
    return Volume(
        array=array, affine=np.asarray(canonical.affine, dtype=float), source=str(path), notes_ja=tuple(notes)
    )


def _check_voxel_count(shape: tuple[int, ...], name: str) -> None:
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise ToolInputError(
            f"{name} は大きすぎます（{voxels:,} ボクセル、上限 {MAX_VOXELS:,}）。"
            "範囲を絞るか、スライスを間引いた系列を指定してください。",
            f"{name}: shape {shape} over MAX_VOXELS {MAX_VOXELS}",
        )


def _check_raw_pixdim(path: Path, img: Any) -> None:
    """Without an sform the affine comes from pixdim, which nibabel silently repairs (0 -> 1, -x -> x).

    A spacing guessed as 1 mm would scale every area and volume, so a zero, negative or non-finite
    pixdim in the file itself is refused.
    """
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as fh:
            raw = type(img.header).from_fileobj(fh, check=False)
        pixdim = [float(v) for v in raw["pixdim"][1:4]]
    except Exception as exc:  # a header nibabel read once already; log and let the affine checks decide
        log.warning("cannot re-read raw pixdim of %s: %s", path, exc)
        return
    if not all(np.isfinite(v) and v > 0 for v in pixdim):
        raise ToolInputError(
            f"{path.name} の画素間隔（pixdim）が不正です（{', '.join(f'{v:g}' for v in pixdim)} mm）。"
            "0 以下の間隔では寸法を計算できません。",
            f"{path}: raw pixdim {pixdim}, sform_code 0",
        )


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def find_ct_nifti(folder: Path) -> Path | None:
    """The CT image of a study folder: a conventional name, else the only top-level NIfTI."""
    for name in CT_NIFTI_NAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = [p for p in folder.iterdir() if p.is_file() and is_nifti(p)]
    return candidates[0] if len(candidates) == 1 else None


def load_volume(path: Path, *, labels: bool = False) -> Volume:
    """Load a study: NIfTI, a DICOM file, a DICOM series folder, a zip of one, or a study folder."""
    from dokuei.io import dicom

    path = Path(path)
    if not path.exists():
        raise ToolInputError(f"{path.name} が見つかりません。", f"missing: {path}")
    if not (path.is_dir() or path.is_file()):  # a named pipe or device would block the first read
        raise ToolInputError(
            f"{path.name} は通常のファイルではありません（名前付きパイプなど）。", f"not a regular file: {path}"
        )
    if path.is_file() and path.stat().st_size == 0:
        raise ToolInputError(f"{path.name} は空のファイルです。転送し直してください。", f"empty file: {path}")
    if path.is_file() and is_nifti(path):
        return load_nifti(path, labels=labels)
    if path.is_dir():
        if dicom.has_dicom_files(path):
            _refuse_labels_from_dicom(path, labels)
            return dicom.load_dicom_series(path)
        nifti = find_ct_nifti(path)
        if nifti is not None:
            return load_nifti(nifti, labels=labels)
        raise ToolInputError(
            f"フォルダ {path.name} に DICOM も CT の NIfTI（ct.nii.gz）も見つかりません。",
            f"no DICOM or CT NIfTI in {path}",
        )
    if zipfile.is_zipfile(path):
        _refuse_labels_from_dicom(path, labels)
        return dicom.load_dicom_series(path)
    if dicom.is_dicom_file(path):
        _refuse_labels_from_dicom(path, labels)
        return dicom.load_dicom_series(path)
    with path.open("rb") as fh:
        looks_zipped = fh.read(4) == b"PK\x03\x04"
    if looks_zipped or path.suffix.lower() == ".zip":  # is_zipfile is False when the directory is cut off
        raise ToolInputError(
            f"zip {path.name} が途中で切れているか壊れています。転送し直してください。", f"bad zip: {path}"
        )
    raise ToolInputError(
        f"{path.name} は対応していない形式です（NIfTI または DICOM を指定してください）。",
        f"unsupported volume: {path}",
    )


def _refuse_labels_from_dicom(path: Path, labels: bool) -> None:
    if labels:
        raise ToolInputError(
            f"{path.name} は DICOM 画像です。ラベル（マスク）は NIfTI で指定してください。",
            f"labels requested from DICOM: {path}",
        )


def check_hu_plausible(volume: Volume) -> None:
    """Refuse an image whose values cannot be Hounsfield units (an MR or a label map offered as CT)."""
    arr = volume.array
    sample = arr[:: max(1, arr.shape[0] // 64), :: max(1, arr.shape[1] // 64), :]
    low, high = float(sample.min()), float(np.percentile(sample, 99.9))
    # a CT holds fat, air or water-equivalent noise below 0 HU; MR magnitudes and label maps never do
    if low >= 0 or high > 10000:
        raise ToolInputError(
            "画像の値が CT の HU 値として不自然です（MR 画像やラベル画像の可能性があります）。"
            "CT を指定してください。",
            f"{volume.source}: min {low:.0f}, 99.9th percentile {high:.0f}",
        )


def save_nifti(volume: Volume, path: Path, *, dtype: type = np.int16) -> Path:
    """Write a volume as NIfTI (image data and affine only: no identifying information exists here)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(np.round(volume.array), dtype=dtype), volume.affine)
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path
