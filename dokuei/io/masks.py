"""Label masks aligned to a study: NIfTI label maps and DICOM SEG, checked against the image grid.

A mask is only trusted on the exact grid of its image: same shape and the same voxel-to-patient affine
(within 0.01 mm). A mask made on another grid is refused with the two geometries in the detail, never
silently resampled, because a shifted mask shifts every measurement. DICOM SEG frames are placed by
their own ImagePositionPatient/ImageOrientationPatient (patient LPS → RAS), so frame order is irrelevant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.errors import InputError as ToolInputError
from dokuei.io.volume import Volume, load_volume

log = logging.getLogger(__name__)

AFFINE_TOL_MM = 0.01
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def _geometry(v: Volume) -> str:
    sx, sy, sz = v.spacing_mm
    return f"{v.shape[0]}×{v.shape[1]}×{v.shape[2]} ボクセル、{sx:.3g}×{sy:.3g}×{sz:.3g} mm"


def check_aligned(image: Volume, mask: Volume, mask_name: str) -> None:
    """Raise ToolInputError unless ``mask`` lies on exactly the grid of ``image``."""
    same_shape = image.shape == mask.shape
    same_affine = bool(np.allclose(image.affine, mask.affine, atol=AFFINE_TOL_MM))
    if same_shape and same_affine:
        return
    raise ToolInputError(
        f"マスク {mask_name}（{_geometry(mask)}）の位置・格子が CT（{_geometry(image)}）と一致しません。"
        "同じ CT から作成したマスクを指定してください。",
        f"mask/image geometry mismatch: shape {mask.shape} vs {image.shape}; "
        f"affine {mask.affine.tolist()} vs {image.affine.tolist()}",
    )


def is_dicom_seg(path: Path) -> bool:
    """True for a DICOM file (or a folder holding exactly one) whose Modality is SEG."""
    files = [path] if path.is_file() else sorted(path.glob("*.dcm")) if path.is_dir() else []
    if len(files) != 1 or files[0].name.lower().endswith((".nii", ".nii.gz")):
        return False
    import pydicom

    try:
        ds = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    except Exception:
        return False
    return str(getattr(ds, "Modality", "")) == "SEG"


def load_label_mask(path: Path, image: Volume) -> Volume:
    """A node label mask (NIfTI labels or DICOM SEG) on the grid of ``image``; empty masks are refused."""
    if not path.exists():
        raise ToolInputError(f"マスク {path.name} が見つかりません。", f"missing mask {path}")
    if not (path.is_file() or path.is_dir()):  # a named pipe would block the DICOM sniffing below
        raise ToolInputError(f"マスク {path.name} は通常のファイルではありません。", f"not a regular file: {path}")
    if is_dicom_seg(path):
        mask = read_dicom_seg(path if path.is_file() else next(path.glob("*.dcm")), image)
    else:
        mask = load_volume(path, labels=True)
        check_aligned(image, mask, path.name)
    if not np.any(mask.array):
        raise ToolInputError(
            f"マスク {path.name} にリンパ節の領域がありません（すべて 0）。", f"empty mask {path}"
        )
    return mask


def read_dicom_seg(path: Path, image: Volume) -> Volume:
    """Rasterise a DICOM SEG (binary or fractional) onto ``image``'s grid; label = segment number."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise ToolInputError(f"DICOM SEG {path.name} を読み込めません。", f"{path}: {exc}") from exc
    per_frame = list(getattr(ds, "PerFrameFunctionalGroupsSequence", None) or [])
    # a SEG with no frames is legal DICOM but holds no segment: say so, not "cannot read" (pydicom
    # would take NumberOfFrames 0 for 1 and fail on the missing pixel data)
    if int(getattr(ds, "NumberOfFrames", 1) or 0) == 0 or not per_frame or not getattr(ds, "PixelData", b""):
        raise ToolInputError(
            f"マスク {path.name} にリンパ節の領域がありません（DICOM SEG のフレームが 0 枚です）。",
            f"empty DICOM SEG {path}: NumberOfFrames {getattr(ds, 'NumberOfFrames', None)}",
        )
    try:
        frames = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise ToolInputError(f"DICOM SEG {path.name} を読み込めません。", f"{path}: {exc}") from exc
    if frames.ndim == 2:
        frames = frames[None]
    shared_seq = getattr(ds, "SharedFunctionalGroupsSequence", None)
    shared = shared_seq[0] if shared_seq else None
    if len(per_frame) != frames.shape[0]:
        raise ToolInputError(
            f"DICOM SEG {path.name} のフレーム情報が壊れています。",
            f"{len(per_frame)} functional groups for {frames.shape[0]} frames",
        )
    threshold = (
        0.5 * float(getattr(ds, "MaximumFractionalValue", 1)) if ds.SegmentationType == "FRACTIONAL" else 0
    )
    out = np.zeros(image.shape, dtype=np.int32)
    inv = np.linalg.inv(image.affine)
    for f, group in enumerate(per_frame):
        seg_no = int(_item(group, shared, "SegmentIdentificationSequence").ReferencedSegmentNumber)
        ipp = np.array([float(v) for v in _item(group, shared, "PlanePositionSequence").ImagePositionPatient])
        iop = np.asarray(
            _item(group, shared, "PlaneOrientationSequence").ImageOrientationPatient, dtype=float
        )
        row_mm, col_mm = (float(v) for v in _item(group, shared, "PixelMeasuresSequence").PixelSpacing)
        rr, cc = np.nonzero(frames[f] > threshold)
        if rr.size == 0:
            continue
        # one column and one row must each step exactly one voxel along a CT axis: pixels that only land
        # on voxel centres (a 2x coarser SEG grid) would otherwise leave every other voxel out of the node
        steps = [inv[:3, :3] @ (col_mm * iop[:3] * _LPS_TO_RAS), inv[:3, :3] @ (row_mm * iop[3:] * _LPS_TO_RAS)]
        unit = all(np.allclose(np.sort(np.abs(s)), [0.0, 0.0, 1.0], atol=0.01) for s in steps)
        if not unit or np.argmax(np.abs(steps[0])) == np.argmax(np.abs(steps[1])):
            raise ToolInputError(
                f"DICOM SEG {path.name} が CT（{_geometry(image)}）の格子と一致しません。"
                "同じシリーズを参照する SEG を指定してください。",
                f"SEG frame {f}: column/row step {[s.round(3).tolist() for s in steps]} voxels, not unit steps",
            )
        lps = ipp[None, :] + cc[:, None] * col_mm * iop[None, :3] + rr[:, None] * row_mm * iop[None, 3:]
        ras = lps * _LPS_TO_RAS
        ijk = (inv[:3, :3] @ ras.T).T + inv[:3, 3]
        rounded = np.rint(ijk)
        off_grid = float(np.abs(ijk - rounded).max())
        inside = np.all((rounded >= 0) & (rounded < np.asarray(image.shape)), axis=1)
        if off_grid > 0.1 or not inside.all():
            raise ToolInputError(
                f"DICOM SEG {path.name} が CT（{_geometry(image)}）の格子と一致しません。"
                "同じシリーズを参照する SEG を指定してください。",
                f"SEG frame {f}: max off-grid {off_grid:.3f} voxel, {int((~inside).sum())} pixels outside",
            )
        idx = rounded.astype(int)
        out[idx[:, 0], idx[:, 1], idx[:, 2]] = seg_no
    log.debug("DICOM SEG %s: %d frames, %d labelled voxels", path, frames.shape[0], int((out > 0).sum()))
    return Volume(array=out, affine=image.affine.copy(), source=str(path), modality="SEG")


def _item(group: Any, shared: Any, name: str) -> Any:
    """A functional-group macro item from the per-frame group, else from the shared group."""
    for holder in (group, shared):
        seq = getattr(holder, name, None)
        if seq is not None and len(seq) > 0:
            return seq[0]
    raise ToolInputError("DICOM SEG に必要な位置情報がありません。", f"missing {name}")
