"""segment_ct and the TotalSegmentator backend: volumes on the phantom, precomputed formats, no downloads.

Data: the phantom (analytic truth, see dokuei/phantoms/ct.py) and TotalSegmentator's own
ct_brain_atlas_1mm.nii.gz (Apache-2.0) for the live run. Expected volumes are 4/3·π·a·b·c for the
ellipsoid organs, π·r²·h for the cylinders; voxelisation at 0.9 × 0.9 × 2.5 mm stays within 1 %.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from dokuei.io import totalseg
from dokuei.settings import Settings
from dokuei.testdata import package_file
from dokuei.tools.base import Tool, ToolStatus
from dokuei.tools.context import Attachment, PatientContext, ToolContext
from dokuei.tools.measure_body_composition import MeasureBodyComposition
from dokuei.tools.segment_ct import SegmentCt, structures_in_question

from .ct_helpers import ct_settings_fixture, output, phantom_study_fixture, truth_fixture  # noqa: F401


def test_phantom_volumes_within_one_percent(
    phantom_study: Path, truth: dict[str, Any], ct_settings: Settings
) -> None:
    result = SegmentCt(ct_settings)({"study_path": str(phantom_study)})
    assert result.status is ToolStatus.OK, result.summary_ja
    by_name = {s["name"]: s for s in output(result)["structures"]}
    for name, expected_ml in truth["volumes_ml"].items():
        assert by_name[name]["present"]
        assert by_name[name]["volume_ml"] == pytest.approx(expected_ml, rel=0.01), name
    # HU: the organ's constant value plus zero-mean noise of SD 8 → mean within 0.5 HU, SD within 0.5 HU
    assert by_name["liver"]["mean_hu"] == pytest.approx(truth["hu_mean"]["liver"], abs=0.5)
    assert by_name["spleen"]["sd_hu"] == pytest.approx(truth["noise_sd_hu"], abs=0.5)
    assert by_name["liver"]["name_ja"] == "肝臓" and by_name["vertebrae_L3"]["name_ja"] == "L3 椎体"
    # structures of the total task the phantom does not contain are listed as absent
    assert by_name["pancreas"]["present"] is False and by_name["pancreas"]["volume_ml"] == 0
    # the aorta and T11 run into the first/last slice: their volumes are lower bounds
    assert by_name["aorta"]["touches_scan_edge"] and by_name["vertebrae_T11"]["touches_scan_edge"]
    assert not by_name["liver"]["touches_scan_edge"]
    assert output(result)["spacing_mm"] == pytest.approx(truth["spacing_mm"])
    assert output(result)["engine"].startswith("precomputed")
    png = Path(result.artifacts[0].path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "肝臓 357.8 mL" in result.summary_ja


def test_subset_from_a_japanese_question(phantom_study: Path, ct_settings: Settings) -> None:
    ctx = ToolContext(
        "肝臓と脾臓、腎臓の体積を教えて", [Attachment(phantom_study, "ct_series")], PatientContext()
    )
    tool = SegmentCt(ct_settings)
    inp = tool.input_from_context(ctx)
    assert inp is not None and set(inp.structures) == {"liver", "spleen", "kidney_left", "kidney_right"}
    result = tool(inp)
    assert result.ok and len(output(result)["structures"]) == 4
    # a body-composition question goes to measure_body_composition (the router, from the keywords and the
    # declared precedence); without a CT there is no input to build
    from dokuei.agent.router import plan_deterministic
    from tests.routing_cases import NoSemantic

    both: list[Tool[Any]] = [tool, MeasureBodyComposition(ct_settings)]
    for question in ("L3 の骨格筋量は？", "内臓脂肪の体積は？"):
        plan = plan_deterministic(ToolContext(question, [Attachment(phantom_study, "ct_series")]), both, NoSemantic())
        assert [c.name for c in plan.calls] == ["measure_body_composition"], question
    assert tool.input_from_context(ToolContext("肝臓の体積は？", [])) is None
    assert set(structures_in_question("右腎と左副腎")) == {"kidney_right", "adrenal_gland_left"}


def test_folder_of_masks_and_explicit_segmentation_path(
    phantom_study: Path, tmp_path: Path, ct_settings: Settings
) -> None:
    """TotalSegmentator's default output (one mask per structure), given beside a bare NIfTI."""
    result = SegmentCt(ct_settings)(
        {
            "study_path": str(phantom_study / "ct.nii.gz"),
            "task": "abdominal_muscles",
            "segmentation_path": str(phantom_study / "segmentations" / "abdominal_muscles"),
        }
    )
    assert result.ok, result.summary_ja
    names = {s["name"] for s in output(result)["structures"] if s["present"]}
    assert {"psoas_major_left", "erector_spinae_right", "rectus_abdominis_left"} <= names
    ids = {s["name"]: s["label_id"] for s in output(result)["structures"]}
    assert ids["psoas_major_left"] == 20  # the abdominal_muscles class map, not file order


def test_segmentation_on_another_grid_is_refused(
    phantom_study: Path, tmp_path: Path, ct_settings: Settings
) -> None:
    seg: Any = nib.load(str(phantom_study / "segmentations" / "total.nii.gz"))
    small = nib.Nifti1Image(np.asarray(seg.dataobj)[::2, ::2, :], seg.affine @ np.diag([2, 2, 1, 1]))
    nib.save(small, tmp_path / "total.nii.gz")
    result = SegmentCt(ct_settings)(
        {"study_path": str(phantom_study / "ct.nii.gz"), "segmentation_path": str(tmp_path / "total.nii.gz")}
    )
    assert result.status is ToolStatus.FAILED and "同じ画像格子" in result.summary_ja


def test_without_labels_or_weights_the_tool_is_unavailable_and_downloads_nothing(
    phantom_study: Path, tmp_path: Path, ct_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(phantom_study / "ct.nii.gz", bare / "ct.nii.gz")

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("TotalSegmentator must not be started without its weights")

    monkeypatch.setattr(totalseg, "run_totalsegmentator", must_not_run)
    result = SegmentCt(ct_settings)({"study_path": str(bare), "fast": True})
    assert result.status is ToolStatus.UNAVAILABLE
    assert "Dataset297_TotalSegmentator_total_3mm_1559subj" in result.summary_ja
    assert "コピー" in result.summary_ja
    assert (
        not any((tmp_path / "totalseg_weights").glob("*"))
        if (tmp_path / "totalseg_weights").exists()
        else True
    )


def test_weights_lookup_needs_a_trained_fold(tmp_path: Path, ct_settings: Settings) -> None:
    root = tmp_path / "totalseg_weights"
    folder = root / "Dataset297_TotalSegmentator_total_3mm_1559subj"
    folder.mkdir(parents=True)
    assert totalseg.find_weights("total", True, ct_settings) is None  # an empty folder is not weights
    fold = folder / "nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_final.pth").write_bytes(b"x")
    assert totalseg.find_weights("total", True, ct_settings) == root
    assert totalseg.find_weights("total", False, ct_settings) is None  # the full model needs 291–295


def test_class_maps_match_the_installed_totalsegmentator() -> None:
    """knowledge/data/totalseg_classes.json was generated from TotalSegmentator 2.18.0; it must not drift."""
    pytest.importorskip("totalsegmentator")
    from totalsegmentator.map_to_binary import class_map

    for task in totalseg.TASKS:
        assert totalseg.class_map(task) == dict(class_map[task])
        assert all(v["ja"] for v in totalseg.class_data()["tasks"][task]["classes"].values())


def test_multilabel_without_label_table_uses_the_task_name(phantom_study: Path, tmp_path: Path) -> None:
    img: Any = nib.load(str(phantom_study / "segmentations" / "tissue_types.nii.gz"))
    plain = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)  # no CaretExtension
    nib.save(plain, tmp_path / "tissue_types.nii.gz")
    seg = totalseg.load_segmentation(tmp_path / "tissue_types.nii.gz")
    assert seg.task == "tissue_types" and seg.names[3] == "skeletal_muscle"
    with_table = totalseg.load_segmentation(phantom_study / "segmentations" / "tissue_types.nii.gz")
    assert with_table.names == seg.names


@pytest.mark.live_model
def test_real_totalsegmentator_fast_on_the_brain_atlas(tmp_path: Path) -> None:
    """A real TotalSegmentator run (total --fast) on its own bundled brain CT: brain and skull are found.

    Skipped unless the Dataset297 weights are installed (see dokuei.io.totalseg for where)."""
    settings = Settings.load()
    if totalseg.find_weights("total", True, settings) is None:
        pytest.skip(
            "TotalSegmentator weights Dataset297 (total --fast) are not installed: "
            + totalseg.install_ja("total", True, settings)
        )
    monkey_home = tmp_path / "home"
    tool = SegmentCt(Settings.load(home=monkey_home, weights_dir=settings.weights_root))
    ct = package_file("totalsegmentator", "resources", "ct_brain_atlas_1mm.nii.gz")
    result = tool({"study_path": str(ct), "fast": True, "structures": ["brain", "skull"]})
    assert result.ok, result.summary_ja
    by_name = {s["name"]: s for s in output(result)["structures"]}
    assert by_name["brain"]["present"] and 900 < by_name["brain"]["volume_ml"] < 1800  # adult brain volume
    assert by_name["skull"]["present"]
    assert "TotalSegmentator" in output(result)["engine"]


def test_totalsegmentator_call_is_wired_offline(
    phantom_study: Path, tmp_path: Path, ct_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plumbing only (no weights here): the real python_api module with its ``totalsegmentator`` function
    replaced by a stand-in that asks for weights the way TotalSegmentator does. The guard must refuse a
    Dataset that is not installed, usage statistics stay off, and the environment is restored."""
    api = pytest.importorskip("totalsegmentator.python_api")
    root = tmp_path / "totalseg_weights"
    fold = root / "Dataset297_TotalSegmentator_total_3mm_1559subj" / "trainer" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_final.pth").write_bytes(b"stand-in")
    calls: dict[str, Any] = {}

    def fake_totalsegmentator(input: Path, output: Path, **kwargs: Any) -> None:
        api.download_pretrained_weights(297)  # installed: allowed
        with pytest.raises(Exception, match="コピー"):
            api.download_pretrained_weights(298)  # not installed: refused, never fetched
        calls.update(kwargs, input=input, weights=os.environ["TOTALSEG_WEIGHTS_PATH"])
        seg: Any = nib.load(str(phantom_study / "segmentations" / "total.nii.gz"))
        nib.save(seg, output)

    monkeypatch.setattr(api, "totalsegmentator", fake_totalsegmentator)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(phantom_study / "ct.nii.gz", bare / "ct.nii.gz")
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("DOKUEI_WEIGHTS_DIR", str(tmp_path / "dokuei_weights"))
    (tmp_path / "dokuei_weights").mkdir()
    (tmp_path / "dokuei_weights" / "totalsegmentator").symlink_to(root)
    settings = Settings.load(home=tmp_path / "home")
    result = SegmentCt(settings)({"study_path": str(bare), "fast": True, "structures": ["liver"]})
    assert result.ok, result.summary_ja
    assert (
        calls["ml"] is True and calls["fast"] is True and calls["device"] == "cpu" and calls["quiet"] is True
    )
    assert calls["weights"] == str(tmp_path / "dokuei_weights" / "totalsegmentator")
    assert os.environ["TOTALSEG_WEIGHTS_PATH"] == str(tmp_path / "elsewhere")  # restored
    assert api.download_pretrained_weights.__name__ == "download_pretrained_weights"  # guard removed
    assert "TotalSegmentator" in output(result)["engine"] and "--fast" in output(result)["engine"]
    config = json.loads((tmp_path / "totalseg_home" / "config.json").read_text())
    assert config["send_usage_stats"] is False
