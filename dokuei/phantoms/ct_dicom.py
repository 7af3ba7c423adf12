"""The abdominal CT phantom (:mod:`dokuei.phantoms.ct`) as a real DICOM CT series, for SR/SEG exports.

A DICOM SR or SEG must reference the images it was measured on by their UIDs; a NIfTI file has none.
This writes the same phantom voxels as one axial CT Image Storage series (one file per slice), with
deterministic UIDs (``2.25.…`` derived from the phantom's name, so two runs give the same series), and
the TotalSegmentator masks beside it as NIfTI, exactly as a hospital batch job leaves them::

    OUTDIR/dicom/CT_000.dcm … CT_103.dcm    the CT in HU (stored value = HU + 1024, intercept −1024)
    OUTDIR/segmentations/…                  the same label files as ``write_study`` writes
    OUTDIR/truth.json, OUTDIR/patient.json

Geometry comes from the phantom's RAS affine: DICOM is LPS, so x and y change sign; the rows run along
+x LPS (patient left) and the columns along +y LPS (posterior), ImageOrientationPatient (1,0,0,0,1,0),
and ImagePositionPatient is the LPS position of each slice's first pixel. dokuei's DICOM reader turns
the series back into the canonical RAS array and affine of the NIfTI, voxel for voxel, so the masks
beside it stay aligned (tests/test_export_sr_seg.py checks both).

``python -m dokuei.phantoms.ct_dicom OUTDIR`` writes the study.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.phantoms import ct as ct_phantom

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
HU_OFFSET = 1024  # stored value = HU + 1024 (RescaleIntercept −1024), as most scanners store CT
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
STUDY_DATE = date(2026, 11, 22)


def phantom_uid(*parts: str) -> str:
    """A deterministic UID under the 2.25 root (PS3.5 B.2), derived from ``parts``."""
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=None, entropy_srcs=["dokuei-phantom", *parts]))


def _lps_pixels(hu_ras: np.ndarray, k: int) -> np.ndarray:
    """Slice k as a DICOM pixel matrix [row, column]: rows along +y LPS, columns along +x LPS."""
    return np.ascontiguousarray(hu_ras[::-1, ::-1, k].T)


def _check_axis_aligned(affine_ras: np.ndarray) -> None:
    linear = affine_ras[:3, :3]
    if not np.allclose(linear, np.diag(np.diag(linear))) or np.any(np.diag(linear) <= 0):
        raise ValueError(f"only an axis-aligned RAS+ affine is written as DICOM here, got {affine_ras.tolist()}")


def write_ct_series(
    hu_ras: np.ndarray,
    affine_ras: np.ndarray,
    folder: Path,
    *,
    patient: dict[str, Any],
    name: str = "abdomen",
    series_description: str = "dokuei phantom abdomen CT",
) -> list[Path]:
    """Write a canonical RAS+ HU volume as an axial CT series (one file per slice); returns the paths."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    _check_axis_aligned(affine_ras)
    nx, ny, nz = hu_ras.shape
    sx, sy, sz = (float(v) for v in np.diag(affine_ras)[:3])
    study_uid, series_uid = phantom_uid(name, "study"), phantom_uid(name, "series")
    frame_uid = phantom_uid(name, "frame-of-reference")
    stored = np.clip(np.round(hu_ras) + HU_OFFSET, 0, 4095).astype(np.uint16)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(nz):
        ipp = (RAS_TO_LPS @ affine_ras @ np.array([nx - 1, ny - 1, k, 1.0]))[:3]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
        meta.MediaStorageSOPInstanceUID = UID(phantom_uid(name, "image", str(k)))
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID = "Phantom^Abdomen", "PHANTOM-CT"
        ds.PatientBirthDate = ""
        ds.PatientSex = str(patient.get("sex") or "")
        if patient.get("age_years") is not None:
            ds.PatientAge = f"{int(patient['age_years']):03d}Y"
        if patient.get("height_cm"):
            ds.PatientSize = f"{float(patient['height_cm']) / 100:.2f}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "100000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "PHANTOM1", ""
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 2, k + 1, 1
        ds.SeriesDescription = series_description
        ds.Manufacturer, ds.ManufacturerModelName = "dokuei", "analytic phantom"
        ds.BodyPartExamined = "ABDOMEN"
        ds.PatientPosition = "FFS"
        ds.PositionReferenceIndicator = ""
        ds.KVP, ds.ConvolutionKernel = 120, "STANDARD"
        ds.ImagePositionPatient = [round(float(v), 4) for v in ipp]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [sy, sx]  # [between rows, between columns]
        ds.SliceThickness = ds.SpacingBetweenSlices = sz
        ds.SliceLocation = round(float(ipp[2]), 4)
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -HU_OFFSET, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = _lps_pixels(stored, k).tobytes()
        path = folder / f"CT_{k:03d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_dicom_study(outdir: Path, phantom: ct_phantom.Phantom | None = None) -> Path:
    """The CT phantom study with the CT as a DICOM series under ``dicom/`` (no ct.nii.gz); returns outdir."""
    from dokuei.io.totalseg import class_map

    phantom = phantom or ct_phantom.make_phantom()
    outdir.mkdir(parents=True, exist_ok=True)
    write_ct_series(phantom.ct, phantom.affine_ras, outdir / "dicom", patient=ct_phantom.DEMO_PATIENT)
    affine = ct_phantom._lps_affine(phantom.affine_ras)
    seg = outdir / "segmentations"
    ct_phantom._save(phantom.total, affine, seg / "total.nii.gz", np.uint8, class_map("total"))
    ct_phantom._save(phantom.tissue, affine, seg / "tissue_types.nii.gz", np.uint8, class_map("tissue_types"))
    for mask_name, mask in phantom.muscles.items():
        ct_phantom._save(mask, affine, seg / "abdominal_muscles" / f"{mask_name}.nii.gz", np.uint8)
    (outdir / "truth.json").write_text(json.dumps(phantom.truth, indent=1))
    (outdir / "patient.json").write_text(json.dumps(ct_phantom.DEMO_PATIENT))
    return outdir


def write_nodes_dicom_study(study: Any, folder: Path) -> Path:
    """A lymph-node phantom study (:mod:`dokuei.phantoms.nodes`) with its CT as a DICOM series in ``dicom/``.

    The node mask, TotalSegmentator map and study.json stay NIfTI/JSON beside it; ct.nii.gz is removed.
    """
    from dokuei.phantoms import nodes

    nodes.write_study(study, folder, with_names=True)
    ct, _, _ = nodes.render(study)
    (folder / "ct.nii.gz").unlink()
    write_ct_series(np.asarray(ct, dtype=np.float32), study.grid.affine, folder / "dicom", patient={},
                    name=f"nodes-{study.study_date}", series_description="dokuei phantom lymph nodes CT")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the abdominal CT phantom as a DICOM series + masks.")
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_dicom_study(args.outdir)
    log.info("DICOM phantom study written to %s", args.outdir)


if __name__ == "__main__":
    main()
