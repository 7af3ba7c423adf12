"""The :class:`Volume` value: a 3D grid in RAS+ with its affine. Imports nothing of dokuei.

It sits below both :mod:`dokuei.io.volume` (which dispatches a study to the NIfTI or DICOM reader) and
:mod:`dokuei.io.dicom` (which builds volumes), so neither reader imports the other to name it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dokuei.errors import InputError


@dataclass(frozen=True)
class Volume:
    """A 3D image in RAS+ canonical voxel order. ``array`` holds HU for CT, labels for masks."""

    array: np.ndarray
    affine: np.ndarray  # 4x4, voxel index -> RAS mm
    source: str
    modality: str = "CT"
    #: what ingestion did or noticed (series chosen, tilt corrected…), in Japanese, for the summary
    notes_ja: tuple[str, ...] = ()
    #: non-identifying header facts (slice thickness, kernel, patient sex/age/height when given)
    header: Mapping[str, Any] = field(default_factory=dict)

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

    @property
    def pixel_area_cm2(self) -> float:
        """Area of one in-plane (axial) pixel."""
        sx, sy, _ = self.spacing_mm
        return sx * sy / 100.0


#: the largest volume read (voxels): 512 x 512 x 2300 slices, about 2.4 GB as float32; beyond it memory,
#: not the study, decides what happens
MAX_VOXELS = 512 * 512 * 2300


def refuse_non_finite(array: np.ndarray, name: str) -> None:
    """Refuse an image holding NaN or ±inf: every area, mean and threshold computed on it would be wrong.

    Masking them instead would change what is measured without the clinician seeing it, so the file is
    refused and named, with the count of bad voxels.
    """
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise InputError(
            f"{name} に数値でない画素（NaN・無限大）が {bad:,} 個あるため、計測できません。"
            "元の画像を出力し直してください。",
            f"{name}: {bad} non-finite voxels of {array.size}",
        )
