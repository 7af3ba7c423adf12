"""The DICOM series a tool measured on, found again for SR/SEG exports (which must reference it by UID).

dokuei's readers keep no UID (nothing identifying leaves :mod:`dokuei.io.dicom`), so an export reads the
study again: the CT volume through the same reader the tool used, and the headers (no pixels) of the
series whose slices fall exactly on that volume's grid. ``datasets[k]`` is the slice at canonical RAS
index k, and :func:`pixel_index_map` gives, for each pixel of a slice, the canonical (i, j) it shows, so a
mask computed on the canonical array can be written into frames that overlay the source voxel for voxel.

A NIfTI-only study has no UIDs: SR and SEG are refused with a Japanese reason rather than written with
invented UIDs, because an SR/SEG that references images no PACS holds is an orphan object there.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.errors import InputError
from dokuei.export.errors import ExportError
from dokuei.io import dicom
from dokuei.io.ctstudy import find_study
from dokuei.io.grid import Volume
from dokuei.io.volume import CT_NIFTI_NAMES, is_nifti, load_volume

log = logging.getLogger(__name__)

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class SourceSeries:
    ct: Volume
    datasets: list[Any]  # pydicom Datasets (headers only), index k = canonical slice k
    study_path: Path

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)


def nifti_refusal_ja(name: str) -> str:
    return (f"{name} は NIfTI で、DICOM の UID（検査・系列・画像）を持たないため、DICOM SR/SEG は書き出せません。"
            "PACS にない画像を参照する SR/SEG を作らないためです。元の DICOM 系列を添付して質問し直してください"
            "（FHIR・PDF・テキストは書き出せます）。")


def _ras_of(ds: Any) -> np.ndarray:
    ipp = np.array([float(v) for v in ds.ImagePositionPatient] + [1.0])
    ras: np.ndarray = RAS_TO_LPS @ ipp
    return ras


def load_source(study_path: Path) -> SourceSeries:
    """The CT volume and the header of every source slice, or ExportError saying why there are none."""
    import pydicom

    path = Path(study_path)
    nifti = next((path / n for n in CT_NIFTI_NAMES if (path / n).is_file()), None) if path.is_dir() else None
    if nifti is not None or (path.is_file() and is_nifti(path)):
        raise ExportError(nifti_refusal_ja((nifti or path).name))
    try:  # a DICOM folder (both CT study layouts), else whatever the CT-study reader finds
        image = path if path.is_dir() and dicom.has_dicom_files(path) else Path(find_study(path).image)
        if image.is_file() and is_nifti(image):
            raise ExportError(nifti_refusal_ja(image.name))
        ct = load_volume(image)
    except InputError as exc:
        raise ExportError(f"元の画像を読み直せないため DICOM SR/SEG を書き出せません: {exc.message_ja}") from exc
    if not image.is_dir():
        raise ExportError(f"{image.name} は DICOM フォルダではありません（zip は展開してから添付してください）。"
                          "DICOM SR/SEG は展開した DICOM 系列からのみ書き出せます。")
    by_series: dict[str, list[Any]] = defaultdict(list)
    for path in dicom.walk_study_files(image):
        if not dicom.is_dicom_file(path):
            continue
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:
            log.info("skipped unreadable DICOM %s", path.name)
            continue
        if str(ds.get("Modality", "")) == "CT" and "ImagePositionPatient" in ds:
            by_series[str(ds.SeriesInstanceUID)].append(ds)
    inverse = np.linalg.inv(ct.affine)
    nz = ct.shape[2]
    for uid, slices in by_series.items():
        if len(slices) != nz:
            continue
        ks = [float((inverse @ _ras_of(ds))[2]) for ds in slices]
        order = np.argsort(ks)
        if np.allclose(np.array(ks)[order], np.arange(nz), atol=1e-2):
            log.info("source series %s… matches the CT grid (%d slices)", uid[:12], nz)
            return SourceSeries(ct, [slices[i] for i in order], Path(study_path))
    raise ExportError(f"{image.name} の中に、計測に使った CT と同じ画像格子の DICOM 系列が見つからないため、"
                      "DICOM SR/SEG を書き出せません。")


def pixel_index_map(ds: Any, ct: Volume) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel [row, column] of slice ``ds``: the canonical array indices (i, j) it lies on."""
    iop = [float(v) for v in ds.ImageOrientationPatient]
    row_dir, col_dir = np.array(iop[:3]), np.array(iop[3:])
    spacing_rows, spacing_cols = (float(v) for v in ds.PixelSpacing)
    rows, cols = int(ds.Rows), int(ds.Columns)
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    lps = ipp[None, None, :] + c[..., None] * spacing_cols * row_dir + r[..., None] * spacing_rows * col_dir
    ras = lps * np.array([-1.0, -1.0, 1.0])
    inverse = np.linalg.inv(ct.affine)
    ijk = ras @ inverse[:3, :3].T + inverse[:3, 3]
    i, j = np.rint(ijk[..., 0]).astype(int), np.rint(ijk[..., 1]).astype(int)
    if i.min() < 0 or j.min() < 0 or i.max() >= ct.shape[0] or j.max() >= ct.shape[1]:
        raise ExportError("DICOM 系列の画素が CT の画像格子の外にあり、SEG を重ねられません。")
    return i, j


def to_frame(mask2d: np.ndarray, index: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A canonical (i, j) slice mask as a DICOM frame [row, column] of the source slice."""
    frame: np.ndarray = mask2d[index[0], index[1]]
    return frame
