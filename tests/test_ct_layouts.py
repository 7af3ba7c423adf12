"""CT studies as users lay them out: several TotalSegmentator tasks in one mask folder, and the mask
folder attached beside its CT. Expected values are the phantom's own (dokuei/phantoms/ct.py, the
analytic truth in truth.json): SMA 80.01 cm², and SMI = SMA / 1.52² = 34.63 cm²/m² for the demo
patient (F, 72, 152 cm)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from dokuei.io.ctstudy import find_study, is_mask_folder
from dokuei.io.totalseg import class_map, tasks_of_masks
from dokuei.settings import Settings
from dokuei.tools.context import Attachment, PatientContext, ToolContext
from dokuei.tools.measure_body_composition import MeasureBodyComposition
from tests.ct_helpers import ct_settings_fixture, output, phantom_study_fixture, truth_fixture

__all__ = ["ct_settings_fixture", "phantom_study_fixture", "truth_fixture"]

PATIENT = PatientContext(age_years=72, sex="F", height_cm=152)


def _split(multilabel: Path, task: str, out: Path, keep: str = "") -> list[str]:
    """Write a multilabel file as one binary mask per structure (TotalSegmentator without --ml)."""
    img: Any = nib.load(str(multilabel))
    data = np.asanyarray(img.dataobj)
    written = []
    for label_id, name in class_map(task).items():
        if keep and not name.startswith(keep):
            continue
        mask = data == label_id
        if mask.any():
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), img.affine, img.header), str(out / f"{name}.nii.gz"))
            written.append(name)
    return written


@pytest.fixture(scope="module")
def mixed_study(phantom_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ct.nii.gz + segmentations/ holding total's vertebrae AND tissue_types' masks, loose, in one folder."""
    study = tmp_path_factory.mktemp("mixed") / "study"
    seg = study / "segmentations"
    seg.mkdir(parents=True)
    shutil.copy(phantom_study / "ct.nii.gz", study / "ct.nii.gz")
    vertebrae = _split(phantom_study / "segmentations" / "total.nii.gz", "total", seg, keep="vertebrae_")
    tissue = _split(phantom_study / "segmentations" / "tissue_types.nii.gz", "tissue_types", seg)
    assert "vertebrae_L3" in vertebrae and set(tissue) == {"subcutaneous_fat", "torso_fat", "skeletal_muscle"}
    return study


def test_masks_are_assigned_to_their_task_by_name() -> None:
    groups = tasks_of_masks({"vertebrae_L3", "vertebrae_L2", "skeletal_muscle", "torso_fat", "my_lesion"})
    # my_lesion belongs to no task: it goes with the task that holds most of the others
    assert groups == {"total": {"vertebrae_L3", "vertebrae_L2", "my_lesion"},
                      "tissue_types": {"skeletal_muscle", "torso_fat"}}


def test_a_mixed_folder_is_read_as_two_tasks(mixed_study: Path) -> None:
    study = find_study(mixed_study)
    assert set(study.segmentations) == {"total", "tissue_types"}
    assert study.segmentations["total"] == study.segmentations["tissue_types"] == mixed_study / "segmentations"


def _check_acceptance(result: Any, truth: dict[str, Any]) -> None:
    out = output(result)
    assert out["sma_cm2"] == pytest.approx(80.01, abs=0.01 * 80.01)  # the phantom's analytic SMA, 1 %
    assert out["sma_cm2"] == pytest.approx(truth["l3"]["sma_cm2"], rel=0.01)
    assert out["smi_cm2_per_m2"] == pytest.approx(34.63, rel=0.01)  # 80.01 / 1.52²
    assert out["muscle_source"].startswith("tissue_types")


def test_mixed_folder_gives_sma_and_smi(mixed_study: Path, ct_settings: Settings, truth: dict[str, Any]) -> None:
    tool = MeasureBodyComposition(ct_settings)
    inp = tool.input_from_context(ToolContext("L3 の骨格筋量は？", [Attachment(mixed_study, "ct_series")], PATIENT))
    assert inp is not None
    _check_acceptance(tool(inp), truth)


@pytest.mark.parametrize("reverse", [False, True])
def test_mask_folder_attached_beside_its_ct(
    mixed_study: Path, ct_settings: Settings, truth: dict[str, Any], tmp_path: Path, reverse: bool
) -> None:
    # two --attach: the CT file and its segmentations/ folder, in either order
    ct = tmp_path / "ct.nii.gz"
    shutil.copy(mixed_study / "ct.nii.gz", ct)
    seg = mixed_study / "segmentations"
    assert is_mask_folder(seg) and not is_mask_folder(mixed_study)
    attachments = [Attachment(ct, "nifti"), Attachment(seg, "ct_series")]
    tool = MeasureBodyComposition(ct_settings)
    inp = tool.input_from_context(ToolContext("SMI は？", attachments[::-1] if reverse else attachments, PATIENT))
    assert inp is not None and inp.study_path == ct and inp.segmentation_paths == [seg]
    _check_acceptance(tool(inp), truth)


def test_every_not_assessable_says_why(phantom_study: Path, ct_settings: Settings, tmp_path: Path) -> None:
    # total only (no muscle masks): SMI and muscle HU name the missing mask; no height: PMI names the height
    study = tmp_path / "s"
    (study / "segmentations").mkdir(parents=True)
    shutil.copy(phantom_study / "ct.nii.gz", study / "ct.nii.gz")
    shutil.copy(phantom_study / "segmentations" / "total.nii.gz", study / "segmentations" / "total.nii.gz")
    result = MeasureBodyComposition(ct_settings)({"study_path": str(study), "sex": "F", "write_overlay": False})
    judged = {j["criterion_id"]: j for j in output(result)["judgements"]}
    texts = [j["result_ja"] for j in judged.values() if j["result"] == "not_assessable"]
    assert len(texts) == len(judged) == 3  # all three cannot be judged here
    assert all("値を計算できない" not in t for t in texts)
    # SMI: the muscle mask is missing; PMI: the psoas area is there, the height is not; muscle HU (cut-off
    # by BMI): both the BMI and the muscle mask are missing, and both are said
    assert "skeletal_muscle" in judged["jsh_smi_l3"]["result_ja"]
    assert "身長が不明" in judged["jsh_pmi_l3"]["result_ja"] and "マスク" not in judged["jsh_pmi_l3"]["result_ja"]
    martin = judged["martin_muscle_attenuation"]["result_ja"]
    assert "BMI" in martin and "skeletal_muscle" in martin
