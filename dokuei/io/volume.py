"""Volumes in one canonical frame: array indexed [i, j, k] along RAS+ (k runs foot → head).

Every imaging tool reads studies through :func:`load_volume`, so spacing always comes from the header
and never from an assumption. Refusals raise ``ToolInputError`` with a Japanese reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.tools.base import ToolInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Volume:
    """A 3D image in RAS+ canonical voxel order. ``array`` holds HU for CT, labels for masks."""

    array: np.ndarray
    affine: np.ndarray  # 4x4, voxel index -> RAS mm
    source: str
    modality: str = "CT"

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        sx, sy, sz = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(sx), float(sy), float(sz))

    @property
    def voxel_volume_ml(self) -> float:
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz / 1000.0

    @property
    def shape(self) -> tuple[int, int, int]:
        i, j, k = self.array.shape
        return (int(i), int(j), int(k))


def load_nifti(path: Path, *, labels: bool = False) -> Volume:
    """Read a NIfTI file, check its affine and dimensionality, and reorient it to RAS+."""
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
    affine = np.asarray(img.affine, dtype=np.float64)
    linear = affine[:3, :3]
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(linear)) < 1e-6:
        raise ToolInputError(
            f"{path.name} の向き情報（affine）が壊れているため、寸法を計算できません。",
            f"{path}: affine {affine.tolist()}",
        )
    canonical = nib.as_closest_canonical(img)
    data = np.asanyarray(canonical.dataobj)
    array = data.astype(np.int32 if labels else np.float32, copy=False)
    return Volume(array=array, affine=np.asarray(canonical.affine, dtype=float), source=str(path))


def load_volume(path: Path, *, labels: bool = False) -> Volume:
    """Load a study from NIfTI (``.nii``/``.nii.gz``). DICOM series support lives here too."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return load_nifti(path, labels=labels)
    raise ToolInputError(f"{path.name} は対応していない形式です（NIfTI または DICOM を指定してください）。",
                         f"unsupported volume: {path}")
