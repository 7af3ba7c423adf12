"""measure_lymph_nodes: masks, clicks on a real CT, the model slot, and bad input.

Data: the synthetic phantom pair (dokuei.phantoms.nodes, analytic truth, no licence needed) and the
real head CT ``ct_brain_atlas_1mm.nii.gz`` shipped in the TotalSegmentator wheel (Apache-2.0; a
skull-stripped 1 mm CT atlas whose outside is zero-filled), into which a node of known shape is
blended with partial volume and 10 HU Gaussian noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from dokuei.agent.router import keyword_hits
from dokuei.io.volume import Volume, load_volume
from dokuei.lymph.axes import measure_node
from dokuei.lymph.grow import grow_from_click
from dokuei.phantoms.nodes import EllipsoidNode, Grid, implant_node, pair_studies, write_pair, write_study
from dokuei.settings import Settings
from dokuei.testdata import package_file
from dokuei.tools.assess_recist_response import AssessRecistResponse
from dokuei.tools.base import ToolInputError, ToolResult, ToolStatus
from dokuei.tools.context import Attachment, ToolContext
from dokuei.tools.measure_lymph_nodes import MeasureLymphNodes

ATLAS = package_file("totalsegmentator", "resources", "ct_brain_atlas_1mm.nii.gz")


def _out(result: ToolResult) -> dict[str, Any]:
    assert result.output is not None, result.error_detail
    return result.output


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("lymph_pair"))


@pytest.fixture()
def tool(tmp_path) -> MeasureLymphNodes:
    return MeasureLymphNodes(Settings.load(home=tmp_path / "home", weights_dir=tmp_path / "weights"))


@pytest.fixture(scope="module")
def atlas() -> Volume:
    if not ATLAS.exists():
        pytest.skip("totalsegmentator is not installed (it ships the test CT)")
    return load_volume(ATLAS)


def test_mask_study_matches_the_analytic_truth(pair, tool):
    import json

    baseline, _ = pair
    truth = json.loads((baseline / "ground_truth.json").read_text())
    result = tool({"study_path": str(baseline)})
    assert result.ok, result.error_detail
    out = _out(result)
    by_id = {n["node_id"]: n for n in out["nodes"]}
    for label, t in truth.items():
        node = by_id[int(label)]
        assert node["short_axis_mm"] == pytest.approx(t["short_axis_mm"], abs=0.5), label
        assert node["long_axis_mm"] == pytest.approx(t["long_axis_mm"], abs=0.5), label
        assert node["volume_ml"] == pytest.approx(t["volume_ml"], rel=0.05), label
    # truth: #2 18.0 mm and #1 15.9 mm are measurable; #3 11.9 and #4 11.0 mm pathological; #5 5.7 normal
    assert out["target_node_ids"] == [2, 1]
    assert out["non_target_node_ids"] == [3, 4]
    assert by_id[5]["recist_class"] == "normal"
    assert by_id[1]["side"] == "right" and by_id[3]["side"] == "left"  # RAS+: +x is the patient's right
    assert by_id[1]["name_ja"].startswith("右気管傍リンパ節")  # nearest landmark: trachea (TotalSegmentator)
    assert by_id[1]["station"] == "4R"
    assert not out["slice_thickness_over_limit"]
    assert "標的病変の径和" in result.summary_ja
    assert result.artifacts and Path(result.artifacts[0].path).exists()


def _atlas_with_node(
    atlas: Volume, centre_ijk, semi, hu, seed=3
) -> tuple[Volume, np.ndarray, EllipsoidNode, Grid]:
    o = atlas.affine[:3, 3]
    grid = Grid(atlas.shape, atlas.spacing_mm, (float(o[0]), float(o[1]), float(o[2])))
    ct = atlas.array.copy()
    centre = tuple(
        float(v) for v in atlas.affine[:3, 3] + np.asarray(centre_ijk) * np.asarray(atlas.spacing_mm)
    )
    node = EllipsoidNode((centre[0], centre[1], centre[2]), semi, yaw_deg=30.0, tilt_deg=10.0, hu=hu)
    mask = implant_node(ct, grid, node, 10.0, np.random.default_rng(seed))
    return Volume(ct, atlas.affine, "atlas+node"), mask, node, grid


@pytest.mark.parametrize(
    ("centre_ijk", "semi", "hu"),
    [
        ((70, 100, 100), (11.0, 8.0, 9.0), 80.0),  # enhancing node inside brain parenchyma (~35 HU)
        ((101, 60, 80), (9.0, 7.0, 8.0), 75.0),  # smaller node next to the ventricles and the brain edge
    ],
)
def test_click_segments_a_node_in_real_ct_without_leakage(atlas, centre_ijk, semi, hu):
    vol, truth_mask, node, grid = _atlas_with_node(atlas, centre_ijk, semi, hu)
    res = grow_from_click(vol, centre_ijk)
    seg = res.full_mask(vol.shape)
    axes = measure_node(seg, vol.spacing_mm)
    assert axes is not None
    true_long, true_short = node.best_slice_axes_mm(grid.axis_mm(2))
    assert axes.short_axis_mm == pytest.approx(true_short, abs=1.0)
    assert axes.long_axis_mm == pytest.approx(true_long, abs=1.5)
    # no leakage: nothing segmented beyond one voxel around the true node
    leaked = int((seg & ~ndi.binary_dilation(truth_mask)).sum())
    assert leaked <= 0.01 * truth_mask.sum()
    assert (seg & truth_mask).sum() >= 0.9 * truth_mask.sum()


def test_click_in_tissue_of_the_same_hu_is_refused_not_leaked(atlas):
    # a 20 HU "node" in ~35 HU brain with 10 HU noise cannot be separated: the growth reaches the
    # search limit and the click is refused with a reason
    vol, _, _, _ = _atlas_with_node(atlas, (140, 120, 110), (13.0, 9.0, 10.0), 20.0)
    with pytest.raises(ToolInputError, match="広がり"):
        grow_from_click(vol, (140, 120, 110))


def test_click_outside_the_body_is_refused(atlas, tmp_path, tool):
    # restore air outside the head (the atlas is zero-filled there), as in any CT
    ct = atlas.array.copy()
    outside, _ = ndi.label(ct == 0)
    ct[outside == outside[0, 0, 0]] = -1000
    path = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(ct.astype(np.int16), atlas.affine), str(path))
    result = tool({"study_path": str(path), "clicks": [{"point": [5, 5, 90]}], "mask_source": "click"})
    assert result.status is ToolStatus.FAILED
    assert "体外" in result.summary_ja
    # a click off the volume, in patient mm
    result = tool(
        {
            "study_path": str(path),
            "clicks": [{"point": [0, 0, 5000], "coordinate_system": "ras_mm"}],
            "mask_source": "click",
        }
    )
    assert result.status is ToolStatus.FAILED and "範囲外" in result.summary_ja


def test_click_through_the_tool_in_lps_mm(atlas, tmp_path, tool):
    vol, _, node, grid = _atlas_with_node(atlas, (70, 100, 100), (11.0, 8.0, 9.0), 80.0)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.rint(vol.array).astype(np.int16), vol.affine), str(path))
    x, y, z = node.center_mm
    result = tool(
        {"study_path": str(path), "clicks": [{"point": [-x, -y, z], "coordinate_system": "lps_mm"}]}
    )
    assert result.ok, result.error_detail
    (measured,) = _out(result)["nodes"]
    assert measured["source"] == "click"
    assert measured["short_axis_mm"] == pytest.approx(node.best_slice_axes_mm(grid.axis_mm(2))[1], abs=1.0)


def test_mask_on_another_grid_is_refused(pair, tmp_path, tool):
    baseline, _ = pair
    mask: Any = nib.load(str(baseline / "nodes.nii.gz"))
    moved = mask.affine.copy()
    moved[0, 3] += 5.0  # the same labels 5 mm to the side
    bad = tmp_path / "nodes_moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj), moved), str(bad))
    result = tool({"study_path": str(baseline), "mask_path": str(bad)})
    assert result.status is ToolStatus.FAILED
    assert "一致しません" in result.summary_ja
    assert "geometry mismatch" in (result.error_detail or "")


def test_empty_mask_is_refused(pair, tmp_path, tool):
    baseline, _ = pair
    mask: Any = nib.load(str(baseline / "nodes.nii.gz"))
    empty = tmp_path / "nodes_empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(mask.shape, np.int16), mask.affine), str(empty))
    result = tool({"study_path": str(baseline), "mask_path": str(empty), "mask_source": "mask"})
    assert result.status is ToolStatus.FAILED
    assert "リンパ節の領域がありません" in result.summary_ja


def test_slices_thicker_than_5_mm_are_flagged(tmp_path, tool):
    baseline, _ = pair_studies(shape=(240, 200, 24), spacing_mm=(0.8, 0.8, 6.0))
    folder = write_study(baseline, tmp_path / "thick")
    result = tool({"study_path": str(folder), "render_overlay": False})
    assert result.ok, result.error_detail
    assert _out(result)["slice_thickness_over_limit"] is True
    assert _out(result)["slice_spacing_mm"] == 6.0
    assert "5 mm" in result.summary_ja and "6.0 mm" in result.summary_ja


def test_model_source_without_weights_is_unavailable_with_instructions(pair, tool):
    baseline, _ = pair
    result = tool({"study_path": str(baseline / "ct.nii.gz"), "mask_source": "model"})
    assert result.status is ToolStatus.UNAVAILABLE
    assert "lymph_nodes/nnunet" in result.summary_ja


def test_input_from_context_single_study_only(pair, tool):
    baseline, followup = pair
    q = "このCTのリンパ節の短径は？ (120, 88, 40)"
    inp = tool.input_from_context(ToolContext(q, [Attachment(baseline, "ct_series")]))
    assert inp is not None and inp.study_path == baseline
    assert [c.point for c in inp.clicks] == [(120.0, 88.0, 40.0)]
    # two studies: the first is measured; assess_recist_response, which supersedes this tool, compares them
    two = [Attachment(baseline, "ct_series"), Attachment(followup, "ct_series")]
    inp_two = tool.input_from_context(ToolContext(q, two))
    assert inp_two is not None and inp_two.study_path == baseline
    assert "measure_lymph_nodes" in AssessRecistResponse.supersedes
    # whether a question is about lymph nodes is the router's call, from the keywords
    assert keyword_hits("肺に結節は？", tool) == [] and keyword_hits(q, tool) == ["リンパ節", "短径"]
