"""One study's lymph nodes: open the study folder, get node masks (mask, clicks or model), measure them.

Study folder layout (written by ``python -m dokuei.phantoms.nodes``; hospitals can build the same)::

    <study>/ct.nii.gz          the CT in HU (or image.nii.gz, or any single CT NIfTI, or a DICOM series)
    <study>/nodes.nii.gz       optional node label mask on the CT grid (or nodes_seg.dcm, a DICOM SEG)
    <study>/totalseg.nii.gz    optional TotalSegmentator 'total' multilabel map (for side and region)
    <study>/study.json         optional {"study_date": "YYYY-MM-DD", "nodes": {"<label>": {"station",
                               "name_ja"}}}

A label mask with one label and several separate blobs is split into one node per blob; with several
labels, each label is one node.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dokuei.errors import InputError as ToolInputError
from dokuei.io.masks import load_label_mask
from dokuei.io.volume import Volume, load_volume
from dokuei.lymph.axes import NodeAxes, measure_node
from dokuei.lymph.grow import GrowParams, grow_from_click
from dokuei.lymph.location import Location, Locator, node_name_ja
from dokuei.lymph.recist import RecistClass, RecistRules, classify, load_rules, select_targets

log = logging.getLogger(__name__)

CT_NAMES = ("ct.nii.gz", "ct.nii", "image.nii.gz", "image.nii")
MASK_NAMES = ("nodes.nii.gz", "nodes.nii", "lymph_nodes.nii.gz", "nodes_seg.dcm", "seg.dcm")
TS_NAMES = ("totalseg.nii.gz", "totalsegmentator.nii.gz", "segmentations.nii.gz")
MaskSource = Literal["auto", "mask", "click", "model"]
CoordinateSystem = Literal["voxel", "ras_mm", "lps_mm"]
NodeSource = Literal["mask", "click", "model"]


@dataclass(frozen=True)
class Seed:
    point: tuple[float, float, float]
    system: CoordinateSystem = "voxel"
    name_ja: str | None = None


@dataclass
class Study:
    path: Path
    ct: Volume
    mask_path: Path | None
    labels: Volume | None
    meta: dict[str, Any]
    study_date: date | None


@dataclass
class NodeRecord:
    label: int
    name_ja: str
    station: str | None
    axes: NodeAxes  # slice_index and endpoints in the study's canonical voxel grid
    centroid_mm: tuple[float, float, float]
    location: Location
    recist_class: RecistClass
    source: NodeSource
    slice_z_mm: float


@dataclass
class StudyNodes:
    study: Study
    nodes: list[NodeRecord]
    targets: list[int]
    non_targets: list[int]
    source: str
    warnings_ja: list[str] = field(default_factory=list)
    masks: dict[int, tuple[np.ndarray, tuple[int, int, int]]] = field(default_factory=dict)  # label -> crop

    @property
    def target_sum_mm(self) -> float:
        by_label = {n.label: n for n in self.nodes}
        return round(sum(round(by_label[t].axes.short_axis_mm, 1) for t in self.targets), 1)


def _parse_date(text: object) -> date | None:
    if not text:
        return None
    raw = str(text).strip().replace("/", "-")
    if len(raw) == 8 and raw.isdigit():  # DICOM StudyDate
        raw = f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
    try:
        return date.fromisoformat(raw)
    except ValueError:
        log.warning("unreadable study date %r", text)
        return None


def open_study(path: Path, mask_path: Path | None = None) -> Study:
    """Open a study folder, a CT NIfTI or a DICOM series; find its mask, labels and study date."""
    if not path.exists():
        raise ToolInputError(f"検査 {path.name} が見つかりません。", f"missing study {path}")
    folder = path if path.is_dir() else path.parent
    ct_path = path
    if path.is_dir():
        named = [folder / n for n in CT_NAMES if (folder / n).exists()]
        others = sorted(
            p
            for p in folder.glob("*.nii*")
            if p.name not in MASK_NAMES + TS_NAMES and p.name.endswith((".nii", ".nii.gz"))
        )
        ct_path = named[0] if named else others[0] if len(others) == 1 else path
    ct = load_volume(ct_path)
    meta: dict[str, Any] = {}
    if path.is_dir() and (folder / "study.json").exists():
        meta = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    if mask_path is None and path.is_dir():
        mask_path = next((folder / n for n in MASK_NAMES if (folder / n).exists()), None)
    labels = None
    ts_path = next((folder / n for n in TS_NAMES if (folder / n).exists()), None) if path.is_dir() else None
    if ts_path is not None:
        labels = load_volume(ts_path, labels=True)
        if labels.shape != ct.shape or not np.allclose(labels.affine, ct.affine, atol=0.01):
            log.warning("TotalSegmentator labels %s not on the CT grid: ignored", ts_path)
            labels = None
    return Study(path, ct, mask_path, labels, meta, _parse_date(meta.get("study_date")))


def seed_to_voxel(seed: Seed, ct: Volume) -> tuple[int, int, int]:
    p = np.asarray(seed.point, dtype=float)
    if seed.system == "voxel":
        ijk = p
    else:
        ras = p * np.array([-1.0, -1.0, 1.0]) if seed.system == "lps_mm" else p
        inv = np.linalg.inv(ct.affine)
        ijk = inv[:3, :3] @ ras + inv[:3, 3]
    r = np.rint(ijk).astype(int)
    return int(r[0]), int(r[1]), int(r[2])


def _mask_components(mask: np.ndarray) -> dict[int, tuple[np.ndarray, tuple[int, int, int]]]:
    """label -> (boolean crop, crop offset); one label with separate blobs becomes one node per blob."""
    from scipy import ndimage as ndi

    labels = np.asarray(mask, dtype=np.int32)
    values = [int(v) for v in np.unique(labels[labels > 0])]
    if len(values) == 1:
        labels, _ = ndi.label(labels > 0)
    out = {}
    for value, box in enumerate(ndi.find_objects(labels), start=1):
        if box is not None:
            out[value] = (labels[box] == value, (box[0].start, box[1].start, box[2].start))
    return out


def measure_study(
    study: Study,
    seeds: list[Seed] | None = None,
    source: MaskSource = "auto",
    weights_root: Path | None = None,
    device: str = "cpu",
    rules: RecistRules | None = None,
    grow: GrowParams | None = None,
) -> StudyNodes:
    """Measure every node of a study from the chosen mask source."""

    rules = rules or load_rules()
    seeds = seeds or []
    ct = study.ct
    warnings: list[str] = []
    sz = ct.spacing_mm[2]
    if sz > rules.max_slice_thickness_mm + 1e-6:
        warnings.append(
            f"スライス間隔 {sz:.1f} mm は RECIST 1.1 の上限 {rules.max_slice_thickness_mm:g} mm を"
            "超えています。計測値の信頼性が下がります。"
        )
    crops: dict[int, tuple[np.ndarray, tuple[int, int, int], NodeSource]] = {}
    use_mask = source in ("auto", "mask") and study.mask_path is not None
    if source == "mask" and study.mask_path is None:
        raise ToolInputError("リンパ節のマスクが指定されていません。", "mask_source=mask without a mask")
    if use_mask and study.mask_path is not None:
        mask = load_label_mask(study.mask_path, ct).array
        for label, (m, off) in _mask_components(mask).items():
            crops[label] = (m, off, "mask")
    if source in ("auto", "click") and seeds:
        next_label = max(crops, default=0) + 1
        for seed in seeds:
            ijk = seed_to_voxel(seed, ct)
            covered = next((lab for lab, (m, off, _) in crops.items() if _contains(m, off, ijk)), None)
            if covered is not None:
                log.info("click %s falls in mask node %d: the mask is used", ijk, covered)
                continue
            res = grow_from_click(ct, ijk, grow)
            crops[next_label] = (res.mask, res.offset, "click")
            next_label += 1
    if source == "click" and not seeds:
        raise ToolInputError("クリック位置（座標）が指定されていません。", "mask_source=click without seeds")
    if source == "model" or (source == "auto" and not crops):
        from dokuei.lymph.model_backend import segment_nodes

        model_mask = segment_nodes(ct, weights_root or Path("."), device)
        for label, (m, off) in _mask_components(model_mask.astype(np.int32)).items():
            crops[label] = (m, off, "model")
    locator = Locator(ct, study.labels)
    node_meta = study.meta.get("nodes", {}) if isinstance(study.meta.get("nodes"), dict) else {}
    nodes: list[NodeRecord] = []
    for label, (m, off, how) in sorted(crops.items()):
        axes = measure_node(m, ct.spacing_mm)
        if axes is None:
            continue
        axes = _shift_axes(axes, off)
        idx = np.argwhere(m).mean(axis=0) + np.asarray(off)
        centroid = ct.affine[:3, :3] @ idx + ct.affine[:3, 3]
        loc = locator.locate(centroid, axes.slice_index, axes.short_axis_mm)
        info = node_meta.get(str(label), {})
        station = info.get("station")
        name = info.get("name_ja") or node_name_ja(loc, label)
        if station and not info.get("name_ja"):
            name = f"{name}（#{station}）"
        z_mm = float((ct.affine @ np.array([0, 0, axes.slice_index, 1.0]))[2])
        nodes.append(
            NodeRecord(
                label,
                name,
                station,
                axes,
                (float(centroid[0]), float(centroid[1]), float(centroid[2])),
                loc,
                classify(axes.short_axis_mm, rules),
                how,
                z_mm,
            )
        )
    if not nodes:
        raise ToolInputError("計測できるリンパ節がありません。", f"no node found in {study.path}")
    targets, non_targets = select_targets(
        [(n.label, round(n.axes.short_axis_mm, 1), n.axes.volume_ml) for n in nodes], rules
    )
    used = sorted({how for _, _, how in crops.values()})
    return StudyNodes(
        study,
        nodes,
        targets,
        non_targets,
        "+".join(used),
        warnings,
        {lab: (m, off) for lab, (m, off, _) in crops.items()},
    )


def _contains(m: np.ndarray, off: tuple[int, int, int], ijk: tuple[int, int, int]) -> bool:
    rel = [ijk[a] - off[a] for a in range(3)]
    return all(0 <= rel[a] < m.shape[a] for a in range(3)) and bool(m[rel[0], rel[1], rel[2]])


def _shift_axes(axes: NodeAxes, off: tuple[int, int, int]) -> NodeAxes:
    from dataclasses import replace

    def sh(
        pts: tuple[tuple[float, float], tuple[float, float]],
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        return ((pts[0][0] + off[0], pts[0][1] + off[1]), (pts[1][0] + off[0], pts[1][1] + off[1]))

    return replace(
        axes,
        slice_index=axes.slice_index + off[2],
        long_ends_ij=sh(axes.long_ends_ij),
        short_ends_ij=sh(axes.short_ends_ij),
    )
