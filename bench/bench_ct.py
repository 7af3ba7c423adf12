"""Per-study time of the CT pipeline, split into load, segment, quantify and render.

The study is the dokuei phantom resampled (nearest neighbour) to a 512 × 512 × 300 grid of
0.67 × 0.56 × 0.87 mm — the size of a typical abdominal CT — written either as a DICOM series of 300
slices (real CT_small.dcm header, the default: what hospitals send) or as NIfTI. Segmentation runs
TotalSegmentator (``total``, fast unless ``--full``) only when its weights are installed; otherwise the
phantom's own labels stand in and the line says so. Target: everything but segmentation < 3 s.

    python bench/bench_ct.py [--device cpu|cuda] [--format dicom|nifti] [--repeat 3] [--full]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_ct")
TARGET = (512, 512, 300)


def _resample(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    idx = [
        np.minimum((np.arange(n) * array.shape[a] / n).astype(int), array.shape[a] - 1)
        for a, n in enumerate(shape)
    ]
    return array[np.ix_(*idx)]


def build_study(folder: Path, fmt: str) -> tuple[Path, Path]:
    """Write the resampled phantom; returns (CT path, segmentations folder)."""
    import nibabel as nib
    import pydicom

    from dokuei.io.totalseg import class_map
    from dokuei.phantoms.ct import SHAPE, SPACING_MM, make_phantom
    from dokuei.testdata import pydicom_file

    phantom = make_phantom()
    spacing = [SPACING_MM[a] * SHAPE[a] / TARGET[a] for a in range(3)]
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = phantom.affine_ras[:3, 3]
    ct = _resample(phantom.ct, TARGET).round().astype(np.int16)
    seg_dir = folder / "study" / "segmentations"
    seg_dir.mkdir(parents=True)
    for task, labels in (("total", phantom.total), ("tissue_types", phantom.tissue)):
        img = nib.Nifti1Image(_resample(labels, TARGET).astype(np.uint8), affine)
        img.set_sform(affine, code=1)
        nib.save(img, seg_dir / f"{task}.nii.gz")
    assert class_map("total")
    if fmt == "nifti":
        path = folder / "study" / "ct.nii.gz"
        img = nib.Nifti1Image(ct, affine)
        img.set_sform(affine, code=1)
        nib.save(img, path)
        return path, seg_dir
    # DICOM: LPS patient coordinates; the RAS volume is flipped in x and y
    base = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    series = folder / "study" / "dicom"
    series.mkdir()
    origin_lps = [
        -(affine[0, 3] + (TARGET[0] - 1) * spacing[0]),
        -(affine[1, 3] + (TARGET[1] - 1) * spacing[1]),
    ]
    for k in range(TARGET[2]):
        ds = copy.deepcopy(base)
        pixels = ct[::-1, ::-1, k].T + 1024  # [row, col] in LPS, stored with intercept −1024
        ds.Rows, ds.Columns = TARGET[1], TARGET[0]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.ImagePositionPatient = [origin_lps[0], origin_lps[1], affine[2, 3] + k * spacing[2]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceThickness = spacing[2]
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{k + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.PixelData = np.ascontiguousarray(pixels.astype(np.int16)).tobytes()
        pydicom.dcmwrite(series / f"{k:04d}.dcm", ds, enforce_file_format=True)
    return series, seg_dir


def run_once(ct_path: Path, seg_dir: Path, device: str, fast: bool, out: Path) -> dict[str, float | str]:
    from dokuei.ct.bodycomp import measure
    from dokuei.ct.organs import structure_stats
    from dokuei.ct.render import render_l3, render_montage
    from dokuei.io import totalseg
    from dokuei.io.volume import load_volume
    from dokuei.settings import Settings

    times: dict[str, float | str] = {}
    t0 = time.perf_counter()
    ct = load_volume(ct_path)
    times["load_ct_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    segs = {t: totalseg.load_segmentation(seg_dir / f"{t}.nii.gz", task=t) for t in ("total", "tissue_types")}
    times["load_labels_s"] = time.perf_counter() - t0
    settings = Settings.load()
    if totalseg.find_weights("total", fast, settings) is not None:
        t0 = time.perf_counter()
        totalseg.run_totalsegmentator(
            ct, "total", fast=fast, device=device, out_dir=out / "ts", settings=settings
        )
        times["segment_s"] = time.perf_counter() - t0
    else:
        times["segment_s"] = "skipped (TotalSegmentator weights absent; phantom labels used)"
    t0 = time.perf_counter()
    stats = structure_stats(ct, segs["total"])
    bc = measure(ct, segs, sex="F", height_cm=152.0, weight_kg=None, age_years=72)
    times["quantify_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    render_l3(ct, bc.l3_slice_index, bc.masks, {"muscle": "muscle"}, out / "l3.png", "L3")
    render_montage(ct, segs["total"], [s.name for s in stats if s.present], out / "montage.png", "total")
    times["render_s"] = time.perf_counter() - t0
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--format", choices=("dicom", "nifti"), default="dicom")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--full", action="store_true", help="TotalSegmentator full resolution instead of --fast"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("dokuei").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        ct_path, seg_dir = build_study(folder, args.format)
        log.info(
            "study: %s %s, built in %.1f s", "x".join(map(str, TARGET)), args.format, time.perf_counter() - t0
        )
        runs = [
            run_once(ct_path, seg_dir, args.device, not args.full, folder / f"run{i}")
            for i in range(args.repeat)
        ]
    for key in runs[0]:
        values = [r[key] for r in runs]
        if isinstance(values[0], str):
            log.info("%-14s %s", key, values[0])
            continue
        nums = [float(v) for v in values]
        log.info(
            "%-14s median %.3f s  (min %.3f, max %.3f, n=%d)",
            key,
            statistics.median(nums),
            min(nums),
            max(nums),
            len(nums),
        )
    outside = [
        sum(float(v) for k, v in r.items() if k != "segment_s" and not isinstance(v, str)) for r in runs
    ]
    log.info("%-14s median %.3f s  (target < 3 s)", "non-segment", statistics.median(outside))


if __name__ == "__main__":
    main()
