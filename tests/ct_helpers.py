"""Shared fixtures and builders for the CT tests (test_volume, test_segment_ct, test_body_composition).

Data origins:
- the phantom (dokuei.phantoms.ct): synthetic, analytic truth, no licence restriction;
- CT_small.dcm and MR_small.dcm: pydicom's test files (pydicom is MIT; the images are the public
  "CompressedSamples" DICOM test images shipped with pydicom);
- 693_UNCI.dcm: pydicom-data 1.0.0 (MIT package; a 512² head CT slice from the public CQ500 set,
  CC BY-NC-SA 4.0);
- ct_brain_atlas_1mm.nii.gz: shipped inside TotalSegmentator 2.18.0 (Apache-2.0).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dokuei.settings import Settings
from dokuei.testdata import pydicom_file


@pytest.fixture(scope="session", name="phantom_study")
def phantom_study_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written once per session: each test module imports this fixture, so the folder is shared by path."""
    from dokuei.phantoms.ct import write_study

    study = tmp_path_factory.getbasetemp() / "ct_phantom" / "study"
    if not (study / "truth.json").exists():
        write_study(study)
    return study


@pytest.fixture(scope="session", name="truth")
def truth_fixture(phantom_study: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((phantom_study / "truth.json").read_text())
    return data


@pytest.fixture(name="ct_settings")
def ct_settings_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A temporary dokuei home, and TotalSegmentator pointed at empty folders (no weights anywhere)."""
    monkeypatch.setenv("DOKUEI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "totalseg_home"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "totalseg_weights"))
    monkeypatch.delenv("DOKUEI_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv(
        "DOKUEI_DEVICE", "cpu"
    )  # resolving "auto" would import torch: slow, and not needed here
    yield Settings.load(home=tmp_path / "home")


def output(result: Any) -> dict[str, Any]:
    """A tool result's output, asserted present (a failed result shows its Japanese reason)."""
    assert result.output is not None, result.summary_ja
    out: dict[str, Any] = result.output
    return out


def ct_small() -> Any:
    import pydicom

    return pydicom.dcmread(pydicom_file("CT_small.dcm"))


def write_series(
    folder: Path,
    n: int = 6,
    dz: float = 2.5,
    *,
    template: Any | None = None,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    series_number: int = 2,
    z_positions: list[float] | None = None,
    y_shift_per_slice: float = 0.0,
    modify: Any = None,
) -> list[Path]:
    """Copy a real DICOM slice into an n-slice series with new positions and UIDs (real header and pixels)."""
    import pydicom

    base = template if template is not None else ct_small()
    folder.mkdir(parents=True, exist_ok=True)
    ipp0 = [float(v) for v in base.ImagePositionPatient]
    zs = z_positions if z_positions is not None else [ipp0[2] + k * dz for k in range(n)]
    paths = []
    for k, z in enumerate(zs):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SOPInstanceUID = f"{series_uid}.{k + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [ipp0[0], ipp0[1] + k * y_shift_per_slice, z]
        ds.SliceLocation = z
        if modify is not None:
            modify(ds, k)
        path = folder / f"slice_{series_number}_{k:03d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
