"""DICOM SEG node masks (dokuei.io.masks.read_dicom_seg): a standards-shaped SEG built with pydicom only.

Data: the synthetic baseline phantom study of ``dokuei.phantoms.nodes`` (analytic, no licence needed),
written to tmp_path. Its own ``nodes.nii.gz`` labels are encoded as a BINARY DICOM SEG (SOP Class
1.2.840.10008.5.1.4.1.1.66.4, 1 bit per pixel, little bit order as PS3.5 §8.1.1 requires), one frame per
(segment, axial slice) where that segment is present, each frame placed by its own ImagePositionPatient in
patient LPS. So the exact expected mask is the phantom label map itself: the reader must give it back
voxel for voxel. NIfTI/Volume coordinates are RAS, DICOM is LPS: (x, y, z)_LPS = (-x, -y, z)_RAS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from dokuei.io.masks import load_label_mask, read_dicom_seg
from dokuei.io.volume import Volume, load_volume
from dokuei.phantoms.nodes import EllipsoidNode, Grid, PhantomStudy, pair_studies, write_study
from dokuei.settings import Settings
from dokuei.tools.base import ToolInputError, ToolResult, ToolStatus
from dokuei.tools.measure_lymph_nodes import MeasureLymphNodes

SEG_SOP_CLASS = UID("1.2.840.10008.5.1.4.1.1.66.4")  # Segmentation Storage
LPS = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS: flip x and y
SEGMENTS = (1, 2)  # phantom labels encoded: 1 right paratracheal (4R), 2 subcarinal (7), the two targets

Frame = tuple[int, np.ndarray, np.ndarray]  # (segment number, ImagePositionPatient LPS mm, bool rows×cols)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SCT", meaning
    return item


def write_seg(
    path: Path,
    frames: Sequence[Frame],
    *,
    iop: Sequence[float],
    pixel_spacing_mm: tuple[float, float],
    slice_thickness_mm: float,
    rows: int,
    cols: int,
    n_segments: int = len(SEGMENTS),
) -> Path:
    """A BINARY DICOM SEG (PS3.3 A.51) with the given frames; geometry in the functional groups."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SEG_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SEG_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.Modality = "SEG"
    ds.PatientID, ds.PatientName = "PHANTOM", "Phantom^Nodes"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = 300, 1
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ContentLabel, ds.ContentDescription = "NODES", "lymph nodes"
    ds.ContentCreatorName = "Test^Author"
    ds.SegmentationType = "BINARY"
    ds.LossyImageCompression = "00"
    segments = []
    for n in range(1, n_segments + 1):
        seg = Dataset()
        seg.SegmentNumber, seg.SegmentLabel = n, f"node {n}"
        seg.SegmentAlgorithmType = "MANUAL"
        seg.SegmentedPropertyCategoryCodeSequence = DicomSequence([_code("123037004", "Anatomical Structure")])
        seg.SegmentedPropertyTypeCodeSequence = DicomSequence([_code("59441001", "Lymph node")])
        segments.append(seg)
    ds.SegmentSequence = DicomSequence(segments)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [f"{v:.6g}" for v in pixel_spacing_mm]  # (row spacing, column spacing)
    measures.SliceThickness = f"{slice_thickness_mm:.6g}"
    orientation = Dataset()
    orientation.ImageOrientationPatient = [f"{v:.8g}" for v in iop]
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    groups = []
    for seg_no, ipp, _ in frames:
        group = Dataset()
        position, ident = Dataset(), Dataset()
        position.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ident.ReferencedSegmentNumber = seg_no
        group.PlanePositionSequence = DicomSequence([position])
        group.SegmentIdentificationSequence = DicomSequence([ident])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    # frames are concatenated bit-wise with no padding between them (PS3.5 §8.1.1), first pixel in the
    # least significant bit; the value is padded to an even length
    bits = np.concatenate([f.astype(np.uint8).ravel() for _, _, f in frames]) if frames else np.zeros(0, np.uint8)
    packed = np.packbits(bits, bitorder="little").tobytes()
    ds.PixelData = packed + b"\0" * (len(packed) % 2)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def axial_geometry(ct: Volume) -> tuple[np.ndarray, list[float], tuple[float, float]]:
    """DICOM axial layout of a RAS grid: columns run to the patient's left (+x LPS = voxel i descending),
    rows run posterior (+y LPS = voxel j descending), as a scanner writes the same CT.

    Returns the affine taking (column, row, frame k) to LPS, the IOP and PixelSpacing (row, col)."""
    a = ct.affine
    ni, nj, _ = ct.shape
    col_step = -a[:3, 0] * LPS  # one column to the right in the image = one voxel down in i
    row_step = -a[:3, 1] * LPS  # one row down in the image = one voxel down in j
    origin = a[:3, :3] @ [ni - 1, nj - 1, 0] + a[:3, 3]  # voxel (ni-1, nj-1, 0) is pixel (0, 0) of slice 0
    to_lps = np.eye(4)
    to_lps[:3, 0], to_lps[:3, 1], to_lps[:3, 2] = col_step, row_step, a[:3, 2] * LPS
    to_lps[:3, 3] = origin * LPS
    col_mm, row_mm = float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step))
    iop = [*(col_step / col_mm), *(row_step / row_mm)]
    return to_lps, iop, (row_mm, col_mm)


def axial_frames(labels: np.ndarray, to_lps: np.ndarray, segments: Sequence[int]) -> list[Frame]:
    """One frame per (segment, slice k) holding that segment; frame[r, c] = labels[ni-1-c, nj-1-r, k]."""
    frames: list[Frame] = []
    for seg_no, label in enumerate(segments, start=1):
        for k in range(labels.shape[2]):
            plane = labels[:, :, k] == label
            if plane.any():
                frames.append((seg_no, (to_lps @ [0.0, 0.0, k, 1.0])[:3], plane[::-1, ::-1].T))
    return frames


def seg_of_labels(path: Path, ct: Volume, labels: np.ndarray, segments: Sequence[int] = SEGMENTS) -> Path:
    to_lps, iop, spacing = axial_geometry(ct)
    return write_seg(
        path,
        axial_frames(labels, to_lps, segments),
        iop=iop,
        pixel_spacing_mm=spacing,
        slice_thickness_mm=ct.spacing_mm[2],
        rows=ct.shape[1],
        cols=ct.shape[0],
    )


def expected_labels(labels: np.ndarray, segments: Sequence[int] = SEGMENTS) -> np.ndarray:
    """The encoded labels renumbered to their segment numbers (label = segment number in the reader)."""
    out = np.zeros(labels.shape, np.int32)
    for seg_no, label in enumerate(segments, start=1):
        out[labels == label] = seg_no
    return out


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study, _ = pair_studies()  # 320×256×64 voxels of 0.8×0.8×2.5 mm, RAS+ diagonal affine
    return write_study(study, tmp_path_factory.mktemp("seg_study") / "baseline", with_names=True)


@pytest.fixture(scope="module")
def ct(baseline: Path) -> Volume:
    return load_volume(baseline / "ct.nii.gz")


@pytest.fixture(scope="module")
def labels(baseline: Path) -> np.ndarray:
    return np.asarray(load_volume(baseline / "nodes.nii.gz", labels=True).array)


@pytest.fixture()
def tool(tmp_path: Path) -> MeasureLymphNodes:
    return MeasureLymphNodes(Settings.load(home=tmp_path / "home", weights_dir=tmp_path / "weights"))


def _out(result: ToolResult) -> dict[str, Any]:
    assert result.output is not None, result.error_detail
    return result.output


# --- round trip ------------------------------------------------------------------------------------------


def test_seg_file_is_standards_shaped(ct: Volume, labels: np.ndarray, tmp_path: Path) -> None:
    path = seg_of_labels(tmp_path / "nodes_seg.dcm", ct, labels)
    ds = pydicom.dcmread(str(path))
    assert ds.SOPClassUID == SEG_SOP_CLASS and ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert len(ds.SegmentSequence) == 2
    # frames only where a segment is present: the slices each node touches, counted from the label map
    n_expected = sum(int((labels == lab).any(axis=(0, 1)).sum()) for lab in SEGMENTS)
    assert int(ds.NumberOfFrames) == len(ds.PerFrameFunctionalGroupsSequence) == n_expected
    # pydicom decodes the 1-bit data back to what was packed: frame 0 is segment 1's lowest slice
    k0 = int(np.flatnonzero((labels == 1).any(axis=(0, 1)))[0])
    assert np.array_equal(ds.pixel_array[0], (labels[:, :, k0] == 1)[::-1, ::-1].T)


def test_seg_gives_the_phantom_labels_voxel_for_voxel(ct: Volume, labels: np.ndarray, tmp_path: Path) -> None:
    path = seg_of_labels(tmp_path / "nodes_seg.dcm", ct, labels)
    mask = load_label_mask(path, ct)
    assert mask.shape == ct.shape and np.array_equal(mask.affine, ct.affine)
    # exact: every frame pixel lands on one CT voxel centre, so no voxel may differ
    assert np.array_equal(mask.array, expected_labels(labels))
    assert int((mask.array == 1).sum()) == int((labels == 1).sum()) > 0


def test_frame_order_and_odd_sized_frames(tmp_path: Path) -> None:
    """Shuffled frames, anisotropic in-plane spacing and rows×cols not a multiple of 8 (frames then share
    bytes in the packed bit stream): a row/column or PixelSpacing mix-up, or per-frame byte padding,
    would move or scramble voxels."""
    shape, grid_mm = (61, 47, 21), (0.7, 0.9, 2.5)  # 61*47 = 2867 bits a frame
    origin = (-30 * 0.7, -23 * 0.9, -10 * 2.5)  # grid centred on the isocentre
    nodes = (
        EllipsoidNode((-8.0, 5.0, 0.0), (6.0, 4.0, 5.0), yaw_deg=30),
        EllipsoidNode((10.0, -8.0, 5.0), (5.0, 3.0, 6.0), yaw_deg=-20),
    )
    study = PhantomStudy(Grid(shape, grid_mm, origin), "2025-01-15", nodes, label_order=(1, 2))
    folder = write_study(study, tmp_path / "small")
    ct = load_volume(folder / "ct.nii.gz")
    labels = np.asarray(load_volume(folder / "nodes.nii.gz", labels=True).array)
    present = sorted(int(v) for v in np.unique(labels) if v)
    assert present == [1, 2], "both nodes lie well inside the small grid"
    to_lps, iop, spacing = axial_geometry(ct)
    assert spacing == pytest.approx((0.9, 0.7))  # rows step along j (0.9 mm), columns along i (0.7 mm)
    frames = axial_frames(labels, to_lps, present)
    order = np.random.default_rng(0).permutation(len(frames))
    seg = write_seg(
        tmp_path / "shuffled_seg.dcm",
        [frames[i] for i in order],
        iop=iop,
        pixel_spacing_mm=spacing,
        slice_thickness_mm=2.5,
        rows=47,
        cols=61,
        n_segments=len(present),
    )
    assert np.array_equal(read_dicom_seg(seg, ct).array, expected_labels(labels, present))


def test_sagittal_frames_on_the_same_voxels_are_accepted(ct: Volume, labels: np.ndarray, tmp_path: Path) -> None:
    """Orientation is free as long as every pixel is a CT voxel centre: sagittal frames of the same voxels
    (columns run anterior→posterior = j descending, rows run head→foot = k descending) give the same mask."""
    a = ct.affine
    _, nj, nk = ct.shape
    col_step, row_step = -a[:3, 1] * LPS, -a[:3, 2] * LPS
    frames: list[Frame] = []
    for i in range(ct.shape[0]):
        plane = labels[i, :, :] == 1
        if plane.any():
            ipp = (a[:3, :3] @ [i, nj - 1, nk - 1] + a[:3, 3]) * LPS
            frames.append((1, ipp, plane[::-1, ::-1].T))  # frame[r, c] = plane[nj-1-c, nk-1-r]
    seg = write_seg(
        tmp_path / "sagittal_seg.dcm",
        frames,
        iop=[*(col_step / np.linalg.norm(col_step)), *(row_step / np.linalg.norm(row_step))],
        pixel_spacing_mm=(float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))),
        slice_thickness_mm=ct.spacing_mm[0],
        rows=nk,
        cols=nj,
        n_segments=1,
    )
    assert np.array_equal(read_dicom_seg(seg, ct).array, expected_labels(labels, (1,)))


def test_measure_with_seg_equals_measure_with_nifti(
    baseline: Path, ct: Volume, labels: np.ndarray, tmp_path: Path, tool: MeasureLymphNodes
) -> None:
    """The same voxels through either file format: identical axes (0.05 mm leaves room only for rounding)."""
    seg = seg_of_labels(tmp_path / "nodes_seg.dcm", ct, labels)
    nifti = tmp_path / "nodes_two.nii.gz"
    nib.save(nib.Nifti1Image(expected_labels(labels).astype(np.int16), ct.affine), str(nifti))
    by_format = {}
    for mask in (seg, nifti):
        result = tool(
            {"study_path": str(baseline), "mask_path": str(mask), "mask_source": "mask", "render_overlay": False}
        )
        assert result.ok, result.error_detail
        by_format[mask.suffix] = {n["node_id"]: n for n in _out(result)["nodes"]}
    from_seg, from_nifti = by_format[".dcm"], by_format[".gz"]
    assert sorted(from_seg) == sorted(from_nifti) == [1, 2]
    for node_id in (1, 2):
        for key in ("short_axis_mm", "long_axis_mm"):
            assert from_seg[node_id][key] == pytest.approx(from_nifti[node_id][key], abs=0.05), (node_id, key)
        assert from_seg[node_id]["source"] == "mask"
    # and they are the phantom's nodes: truth short axes 15.9 (#1) and 18.0 mm (#2), ground_truth.json
    assert from_seg[1]["short_axis_mm"] == pytest.approx(15.9, abs=0.5)
    assert from_seg[2]["short_axis_mm"] == pytest.approx(18.0, abs=0.5)


# --- bad input -------------------------------------------------------------------------------------------


def _moved_seg(
    path: Path,
    ct: Volume,
    labels: np.ndarray,
    *,
    shift_lps: Sequence[float] = (0, 0, 0),
    yaw_deg: float = 0.0,
    spacing_factor: int = 1,
) -> Path:
    to_lps, iop, (row_mm, col_mm) = axial_geometry(ct)
    frames = axial_frames(labels, to_lps, SEGMENTS)
    if spacing_factor > 1:  # every n-th pixel, with PixelSpacing n times the CT's: pixels still on voxels
        frames = [(s, p, f[::spacing_factor, ::spacing_factor]) for s, p, f in frames]
        row_mm, col_mm = row_mm * spacing_factor, col_mm * spacing_factor
    t = np.deg2rad(yaw_deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    iop = [*(rot @ iop[:3]), *(rot @ iop[3:])]
    frames = [(s, p + np.asarray(shift_lps, float), f) for s, p, f in frames]
    rows, cols = frames[0][2].shape
    return write_seg(
        path,
        frames,
        iop=iop,
        pixel_spacing_mm=(row_mm, col_mm),
        slice_thickness_mm=ct.spacing_mm[2],
        rows=rows,
        cols=cols,
    )


@pytest.mark.parametrize(
    "how",
    [
        {"shift_lps": (0.4, 0.0, 0.0)},  # half a 0.8 mm voxel to the left: between voxel centres
        {"shift_lps": (0.0, 0.0, 1.25)},  # half a 2.5 mm slice: between slices
        {"yaw_deg": 30.0},  # frames rotated 30° in the axial plane: pixels off the CT grid
        {"spacing_factor": 2},  # 1.6 mm pixels: each lands on a voxel centre but skips every other voxel
    ],
    ids=["half_voxel", "half_slice", "rotated", "coarser_pixels"],
)
def test_seg_off_the_ct_grid_is_refused(
    baseline: Path, ct: Volume, labels: np.ndarray, tmp_path: Path, tool: MeasureLymphNodes, how: dict[str, Any]
) -> None:
    seg = _moved_seg(tmp_path / "moved_seg.dcm", ct, labels, **how)
    with pytest.raises(ToolInputError) as err:
        load_label_mask(seg, ct)
    assert "格子と一致しません" in err.value.message_ja
    result = tool({"study_path": str(baseline), "mask_path": str(seg), "mask_source": "mask", "render_overlay": False})
    assert result.status is ToolStatus.FAILED
    assert "DICOM SEG" in result.summary_ja and "一致しません" in result.summary_ja


def test_empty_seg_is_refused(baseline: Path, ct: Volume, tmp_path: Path, tool: MeasureLymphNodes) -> None:
    _, iop, spacing = axial_geometry(ct)
    seg = write_seg(
        tmp_path / "empty_seg.dcm",
        [],
        iop=iop,
        pixel_spacing_mm=spacing,
        slice_thickness_mm=2.5,
        rows=ct.shape[1],
        cols=ct.shape[0],
    )
    with pytest.raises(ToolInputError) as err:
        load_label_mask(seg, ct)
    assert "リンパ節の領域がありません" in err.value.message_ja
    result = tool({"study_path": str(baseline), "mask_path": str(seg), "mask_source": "mask", "render_overlay": False})
    assert result.status is ToolStatus.FAILED
    assert "リンパ節の領域がありません" in result.summary_ja
