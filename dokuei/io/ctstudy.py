"""A CT *study*: the CT image plus any TotalSegmentator outputs that lie beside it.

Layout (what ``python -m dokuei.phantoms.ct`` writes, and what hospitals' batch jobs produce)::

    STUDY/
      ct.nii.gz                    the CT in HU (or image.nii.gz, or one other NIfTI) — or DICOM files
                                   anywhere under STUDY/ (a series folder, several series: the best
                                   axial CT series is chosen)
      segmentations/               TotalSegmentator outputs, any of:
        total.nii.gz               multilabel file (``TotalSegmentator --ml -o segmentations/total.nii.gz``)
        tissue_types.nii.gz
        abdominal_muscles/         a folder of per-structure masks (``TotalSegmentator -o …``)
        liver.nii.gz, spleen.nii.gz …   or the masks of one task directly (TotalSegmentator's default)

``segmentations/`` may also be called ``totalseg/`` or ``seg/``. The task of a file or folder is its
name when that is a task name, else it is read from the file's label table or the mask names.
A folder is a CT study when it holds a CT NIfTI or DICOM files (:func:`is_ct_study`).
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from dokuei.errors import InputError
from dokuei.io import dicom
from dokuei.io.totalseg import (
    TASKS,
    Segmentation,
    check_aligned,
    class_map,
    load_segmentation,
    task_of_file,
    tasks_of_masks,
)
from dokuei.io.volume import CT_NIFTI_NAMES, Volume, is_nifti

log = logging.getLogger(__name__)

SEG_DIR_NAMES = ("segmentations", "totalseg", "seg")
_SEG_STEMS = ("seg", "mask", "label")


@dataclass
class CtStudy:
    root: Path
    image: Path  # a NIfTI file, a DICOM file, a DICOM folder or a zip
    segmentations: dict[str, Path] = field(default_factory=dict)  # task -> multilabel file or mask folder


def _stem(p: Path) -> str:
    return p.name.split(".")[0]


def _is_seg_name(p: Path) -> bool:
    stem = _stem(p).lower()
    return stem in TASKS or stem.startswith(_SEG_STEMS) or stem.endswith(("_seg", "_mask", "_labels"))


def _image_in(folder: Path) -> Path | None:
    for name in CT_NIFTI_NAMES:
        if (folder / name).is_file():
            return folder / name
    images = [p for p in folder.iterdir() if p.is_file() and is_nifti(p) and not _is_seg_name(p)]
    if len(images) == 1:
        return images[0]
    if len(images) > 1:
        raise InputError(
            f"フォルダ {folder.name} に CT 候補の NIfTI が複数あります"
            f"（{', '.join(p.name for p in images)}）。"
            "CT を ct.nii.gz という名前にしてください。",
            f"ambiguous CT NIfTI in {folder}",
        )
    if dicom.has_dicom_files(folder):
        return folder
    return None


def is_ct_study(path: Path) -> bool:
    """True for a folder holding a CT NIfTI or DICOM files (the attachment kind ``ct_series``)."""
    try:
        return path.is_dir() and _image_in(path) is not None
    except InputError:
        return False


def _segmentations_in(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    places = [root / n for n in SEG_DIR_NAMES if (root / n).is_dir()]
    for place in places:
        entries = sorted(place.iterdir())
        loose_masks = [p for p in entries if p.is_file() and is_nifti(p) and _stem(p) not in TASKS]
        for p in entries:
            if _stem(p) in TASKS and (p.is_dir() or is_nifti(p)):
                found.setdefault(_stem(p), p)
        if len(loose_masks) > 1:  # TotalSegmentator's default output: one mask per structure, per task
            for task in tasks_of_masks({_stem(p) for p in loose_masks}):
                found.setdefault(task, place)
        elif len(loose_masks) == 1:  # one multilabel file with its own name
            found.setdefault(task_of_file(loose_masks[0]), loose_masks[0])
    for p in root.iterdir():  # multilabel files beside the CT: total.nii.gz, seg.nii.gz
        if p.is_file() and is_nifti(p) and _is_seg_name(p):
            found.setdefault(task_of_file(p), p)
    return found


def find_study(path: Path) -> CtStudy:
    """Where the CT and its segmentations are, for a study folder, a DICOM folder/zip or a NIfTI file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path.name} が見つかりません。", f"missing: {path}")
    if path.is_file():
        if is_nifti(path) or zipfile.is_zipfile(path) or dicom.is_dicom_file(path):
            return CtStudy(path.parent, path)
        raise InputError(
            f"{path.name} は CT として読めない形式です（NIfTI・DICOM・zip を指定してください）。",
            f"unsupported: {path}",
        )
    image = _image_in(path)
    if image is None:
        raise InputError(
            f"フォルダ {path.name} に CT（ct.nii.gz または DICOM）が見つかりません。",
            f"no CT image in {path}",
        )
    return CtStudy(path, image, _segmentations_in(path))


def is_mask_folder(path: Path) -> bool:
    """A folder of TotalSegmentator masks with no CT of its own (``segmentations/`` attached on its own)."""
    if not path.is_dir() or any((path / n).is_file() for n in CT_NIFTI_NAMES) or dicom.has_dicom_files(path):
        return False
    names = {_stem(p) for p in path.iterdir() if p.is_file() and is_nifti(p)}
    known = {n for t in TASKS for n in class_map(t).values()}
    return bool(names) and (names <= known or names <= set(TASKS))


def _segmentations_of(path: Path) -> list[Segmentation]:
    """One segmentation per task in a mask folder (it may hold several tasks' masks), else the file's."""
    if path.is_dir():
        loose = {_stem(p) for p in path.iterdir() if p.is_file() and is_nifti(p)}
        if loose <= set(TASKS):  # total.nii.gz, tissue_types.nii.gz … (--ml outputs in one folder)
            return [load_segmentation(p, task=_stem(p)) for p in sorted(path.iterdir()) if _stem(p) in TASKS]
        return [load_segmentation(path, task=task) for task in sorted(tasks_of_masks(loose))]
    return [load_segmentation(path)]


def load_segmentations(
    study: CtStudy, ct: Volume, extra: list[Path] | None = None, tasks: tuple[str, ...] | None = None
) -> dict[str, Segmentation]:
    """Segmentations of ``tasks`` (default: all) plus ``extra`` ones, checked to lie on the CT grid."""
    segs: dict[str, Segmentation] = {}
    for task, p in study.segmentations.items():
        if tasks is None or task in tasks:
            segs[task] = load_segmentation(p, task=task)
    for p in extra or []:
        for seg in _segmentations_of(Path(p)):
            segs[seg.task] = seg
    for seg in segs.values():
        check_aligned(seg, ct)
    return segs
