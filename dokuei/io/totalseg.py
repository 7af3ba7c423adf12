"""TotalSegmentator as dokuei's CT segmentation engine, and reader of its precomputed outputs.

Tasks (class maps and weight folders are data: ``knowledge/data/totalseg_classes.json``):

| task | what | weights (``Dataset…`` folders) |
|---|---|---|
| ``total`` | 117 structures, 1.5 mm, five models | 291–295 |
| ``total`` fast | the same classes, one 3 mm model | 297 |
| ``abdominal_muscles`` | 22 trunk muscles incl. psoas major | 952 (+ 300 for the body crop) |
| ``tissue_types`` | subcutaneous fat, torso fat, skeletal muscle (licence) | 481 |

Weights are looked up, in order, under ``$TOTALSEG_WEIGHTS_PATH``, ``$DOKUEI_WEIGHTS_DIR/totalsegmentator``
and ``$TOTALSEG_HOME_DIR/nnunet/results`` (TotalSegmentator's documented places). Nothing is ever
downloaded: the folders are checked before TotalSegmentator is imported, its download function is
replaced by a guard for the duration of a run, and its usage statistics are switched off
(``send_usage_stats: false``) before import. A licence key is never sent anywhere: a licensed task runs
when its weights folder is present (the licence was needed to download it).

Precomputed outputs, as hospitals batch-produce them, are read too: a multilabel NIfTI (``--ml``;
label names from its header extension, or from the task's class map) or a folder of per-structure masks.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dokuei.errors import InputError, UnavailableError
from dokuei.io.volume import Volume, is_nifti, load_nifti
from dokuei.knowledge import load_json
from dokuei.settings import Settings

log = logging.getLogger(__name__)

TaskName = Literal["total", "abdominal_muscles", "tissue_types"]
TASKS: tuple[TaskName, ...] = ("total", "abdominal_muscles", "tissue_types")


def class_data() -> dict[str, Any]:
    return load_json("totalseg_classes.json")  # cached by load_json


def class_map(task: str) -> dict[int, str]:
    """label id → English (TotalSegmentator) name."""
    return {int(k): v["en"] for k, v in class_data()["tasks"][task]["classes"].items()}


@cache
def japanese_names() -> dict[str, str]:
    """English structure name → Japanese, over every task."""
    names: dict[str, str] = {}
    for task in class_data()["tasks"].values():
        names.update({v["en"]: v["ja"] for v in task["classes"].values()})
    return names


def name_ja(name: str) -> str:
    return japanese_names().get(name, name)


def totalseg_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("TotalSegmentator")
    except PackageNotFoundError:
        return "not installed"


# --- weights ---------------------------------------------------------------------------------------


def required_datasets(task: str, fast: bool) -> list[str]:
    spec = class_data()["tasks"][task]
    ids = spec["datasets_fast"] if fast and spec["datasets_fast"] else spec["datasets"]
    return [spec["dataset_folders"][str(i)] for i in ids]


def weight_roots(settings: Settings | None = None) -> list[Path]:
    settings = settings or Settings.load()
    roots = []
    if "TOTALSEG_WEIGHTS_PATH" in os.environ:
        roots.append(Path(os.environ["TOTALSEG_WEIGHTS_PATH"]))
    roots.append(settings.weights_root / "totalsegmentator")
    from dokuei.offline import totalseg_home

    roots.append(totalseg_home() / "nnunet" / "results")
    return roots


def _dataset_complete(folder: Path) -> bool:
    """A Dataset folder holds at least one trained fold (``…/fold_N/checkpoint_final.pth``)."""
    return folder.is_dir() and any(folder.glob("*/fold_*/checkpoint_final.pth"))


def find_weights(task: str, fast: bool, settings: Settings | None = None) -> Path | None:
    """The first weights root holding every Dataset folder the task needs, or None."""
    needed = required_datasets(task, fast)
    for root in weight_roots(settings):
        if all(_dataset_complete(root / name) for name in needed):
            return root
    return None


def install_ja(task: str, fast: bool, settings: Settings | None = None) -> str:
    needed = required_datasets(task, fast)
    settings = settings or Settings.load()
    target = settings.weights_root / "totalsegmentator"
    licence = class_data()["tasks"][task]["licence_required"]
    cmd = f"TotalSegmentator -i 任意のCT.nii.gz -o out --task {task}" + (" --fast" if fast else "")
    text = (
        f"TotalSegmentator の重み（{', '.join(needed)}）が見つかりません。インターネットに接続できる端末で "
        f"`{cmd}`（または totalseg_download_weights -t {task}）を一度実行し、"
        f"~/.totalsegmentator/nnunet/results/ にできた Dataset フォルダを、この端末の {target} "
        "（または $TOTALSEG_WEIGHTS_PATH、~/.totalsegmentator/nnunet/results）へコピーしてください。"
    )
    if licence:
        text += (
            " このタスクはライセンスキー（非商用は無償）が必要です: "
            "totalseg_set_license -l <キー> の後にダウンロードします。"
        )
    return text


_TOTALSEG_LOCK = threading.Lock()

# --- running --------------------------------------------------------------------------------------


def run_totalsegmentator(
    ct: Volume, task: TaskName, *, fast: bool, device: str, out_dir: Path, settings: Settings | None = None
) -> Path:
    """Segment ``ct`` with TotalSegmentator; returns the multilabel NIfTI it wrote. Never downloads."""
    root = find_weights(task, fast, settings)
    if root is None:
        raise UnavailableError(
            install_ja(task, fast, settings), f"weights missing for {task} fast={fast}"
        )
    with _TOTALSEG_LOCK:  # the patches below are process-wide: one TotalSegmentator call at a time
        return _run_locked(ct, out_dir, task, fast, device, settings, root)


def _run_locked(ct: Volume, out_dir: Path, task: TaskName, fast: bool, device: str, settings: Settings | None,
                root: Path) -> Path:
    from dokuei.io.volume import save_nifti
    from dokuei.offline import totalseg_home, write_totalseg_config

    config_path = write_totalseg_config()
    _quiet_config(config_path)
    previous_weights_path = os.environ.get("TOTALSEG_WEIGHTS_PATH")
    os.environ["TOTALSEG_WEIGHTS_PATH"] = str(root)  # TotalSegmentator reads it inside the call
    os.environ.setdefault("TOTALSEG_HOME_DIR", str(totalseg_home()))

    import totalsegmentator.python_api as api

    def no_download(task_id: int | str) -> None:
        folder = class_data()["tasks"][task]["dataset_folders"].get(str(task_id))
        if folder is None or not _dataset_complete(root / folder):
            raise UnavailableError(
                install_ja(task, fast, settings),
                f"TotalSegmentator asked for weights {task_id}; downloads are disabled",
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    ct_path = save_nifti(ct, out_dir / "ct.nii.gz")
    out_path = out_dir / f"{task}.nii.gz"
    saved = api.download_pretrained_weights, api.send_usage_stats
    api.download_pretrained_weights = no_download
    api.send_usage_stats = lambda *a, **k: None
    stdout = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(stdout):
            api.totalsegmentator(
                ct_path,
                out_path,
                ml=True,
                task=task,
                fast=fast,
                quiet=True,
                device="gpu" if device == "cuda" else "cpu",
                nr_thr_saving=1,
            )
    finally:
        api.download_pretrained_weights, api.send_usage_stats = saved
        if previous_weights_path is None:
            os.environ.pop("TOTALSEG_WEIGHTS_PATH", None)
        else:
            os.environ["TOTALSEG_WEIGHTS_PATH"] = previous_weights_path
        log.debug("TotalSegmentator output: %s", stdout.getvalue())
    log.info("TotalSegmentator %s (fast=%s, %s) took %.1f s", task, fast, device, time.perf_counter() - t0)
    return out_path


def _quiet_config(config_path: Path) -> None:
    """Mark TotalSegmentator's statistics disclaimer as shown so it prints nothing into our output."""
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    if not config.get("statistics_disclaimer_shown"):
        config["statistics_disclaimer_shown"] = True
        config_path.write_text(json.dumps(config, indent=2))


# --- reading outputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segmentation:
    """A label map aligned voxel for voxel with its CT (RAS+), with the name of every label."""

    labels: np.ndarray  # int32, same shape as the CT
    affine: np.ndarray
    names: dict[int, str]  # label id -> TotalSegmentator name
    task: str
    source: str

    def mask(self, *names: str) -> np.ndarray:
        ids = [i for i, n in self.names.items() if n in names]
        return np.isin(self.labels, ids)

    def slice_mask(self, k: int, *names: str) -> np.ndarray:
        """``mask(*names)[:, :, k]`` without touching the rest of the volume."""
        ids = [i for i, n in self.names.items() if n in names]
        return np.isin(self.labels[:, :, k], ids)

    def ids_of(self, predicate: Any) -> list[int]:
        return [i for i, n in self.names.items() if predicate(n)]


def infer_task(names: set[str]) -> str:
    """The task whose class set holds these names (a folder of masks does not say which task made it)."""
    best, best_hits = "total", 0
    for task in TASKS:
        hits = len(names & set(class_map(task).values()))
        if hits > best_hits:
            best, best_hits = task, hits
    return best


def tasks_of_masks(names: set[str]) -> dict[str, set[str]]:
    """Each mask name to the task that makes it: users write several tasks into one output folder.

    The tasks' class sets do not overlap, so a name belongs to at most one task; a name no task knows
    goes with the task holding most of the others, ties to the first task in ``TASKS`` (it keeps its own
    label, see load_segmentation).
    """
    groups: dict[str, set[str]] = {}
    unknown: set[str] = set()
    for name in names:
        task = next((t for t in TASKS if name in class_map(t).values()), None)
        if task is None:
            unknown.add(name)
        else:
            groups.setdefault(task, set()).add(name)
    if unknown:
        order: list[str] = list(TASKS)  # a tie goes to the task listed first (total), never to set iteration order
        biggest = max(groups, key=lambda t: (len(groups[t]), -order.index(t)), default="total")
        groups.setdefault(biggest, set()).update(unknown)
    return groups


def task_of_file(path: Path) -> str:
    """The task of a multilabel file: its name when that is a task, else read from its label table."""
    import nibabel as nib

    stem = path.name.split(".")[0]
    if stem in TASKS:
        return stem
    try:
        header_img: Any = nib.load(str(path))
        table = _caret_label_table(header_img)
    except Exception:
        return "total"
    return infer_task(set(table.values())) if table else "total"


def _caret_label_table(img: Any) -> dict[int, str]:
    """TotalSegmentator's multilabel files carry a CaretExtension XML with ``<Label Key=…>name``."""
    for ext in img.header.extensions:
        try:
            text = ext.get_content().decode("utf-8", errors="replace")
        except Exception:
            continue
        if "<LabelTable>" not in text:
            continue
        try:
            root = ET.fromstring(text.strip())
        except ET.ParseError:
            pairs = re.findall(r'<Label Key="(\d+)"[^>]*><!\[CDATA\[([^\]]+)\]\]>', text)
            return {int(k): v for k, v in pairs}
        return {int(el.attrib["Key"]): (el.text or "").strip() for el in root.iter("Label")}
    return {}


def load_segmentation(path: Path, *, task: str | None = None) -> Segmentation:
    """Read a multilabel NIfTI or a folder of binary masks, in the canonical frame."""
    import nibabel as nib

    path = Path(path)
    if path.is_file() and is_nifti(path):
        vol = load_nifti(path, labels=True, dtype=np.int16)
        header_img: Any = nib.load(str(path))
        table = _caret_label_table(header_img)
        stem = path.name.split(".")[0]
        if task is None:
            task = stem if stem in TASKS else (infer_task(set(table.values())) if table else "total")
        names = table or class_map(task)
        known = np.zeros(1 << 16, dtype=bool)
        known[[0, *(i for i in names if 0 <= i < 1 << 16)]] = True
        flat = vol.array.ravel(order="F")
        stray = ~known[flat.view(np.uint16)]  # a lookup, not a sort: one pass over the volume
        unknown = {int(v) for v in np.unique(flat[stray])} if stray.any() else set()
        if unknown:
            raise InputError(
                f"セグメンテーション {path.name} に {task} の分類にないラベル番号 "
                f"{sorted(unknown)[:5]} があります。",
                f"{path}: unknown labels {sorted(unknown)}",
            )
        return Segmentation(vol.array, vol.affine, names, task, str(path))
    if path.is_dir():
        masks = sorted(p for p in path.iterdir() if p.is_file() and is_nifti(p))
        if not masks:
            raise InputError(
                f"フォルダ {path.name} にマスク（NIfTI）がありません。", f"no masks in {path}"
            )
        by_task = tasks_of_masks({p.name.split(".")[0] for p in masks})
        task = task or infer_task(set().union(*by_task.values()))
        if task in by_task:  # a folder holding several tasks' masks: this task's only
            masks = [p for p in masks if p.name.split(".")[0] in by_task[task]]
        else:
            raise InputError(
                f"フォルダ {path.name} に {task} タスクのマスクがありません"
                f"（あるのは {', '.join(sorted(by_task))} のマスクです）。",
                f"no {task} masks in {path}: {sorted(by_task)}",
            )
        ids = {v: k for k, v in class_map(task).items()}
        next_id = max(ids.values(), default=0) + 1
        labels: np.ndarray | None = None
        affine = np.eye(4)
        mask_ids: dict[int, str] = {}
        for p in masks:
            name = p.name.split(".")[0]
            vol = load_nifti(p, labels=True, dtype=np.uint8)
            if labels is None:
                labels, affine = np.zeros(vol.shape, dtype=np.int16, order="F"), vol.affine
            elif vol.shape != labels.shape or not np.allclose(vol.affine, affine, atol=1e-3):
                raise InputError(
                    f"マスク {p.name} の画像サイズ・位置が他のマスクと一致しません。",
                    f"{p}: shape {vol.shape} affine mismatch",
                )
            label_id = ids.get(name)
            if label_id is None:
                label_id, next_id = next_id, next_id + 1
            mask_ids[label_id] = name
            labels[vol.array > 0] = label_id
        assert labels is not None
        return Segmentation(labels, affine, mask_ids, task, str(path))
    raise InputError(
        f"{path.name} はセグメンテーション（NIfTI またはマスクのフォルダ）ではありません。",
        f"not a segmentation: {path}",
    )


def check_aligned(seg: Segmentation, ct: Volume) -> None:
    """A segmentation must lie on the CT's own voxel grid; we never guess a registration."""
    if seg.labels.shape != ct.array.shape or not np.allclose(seg.affine, ct.affine, atol=1e-2):
        raise InputError(
            f"セグメンテーション（{Path(seg.source).name}）が CT と同じ画像格子にありません"
            f"（CT {ct.shape}、セグメンテーション {tuple(seg.labels.shape)}）。"
            "同じ CT から作った結果を指定してください。",
            f"misaligned: ct {ct.shape} {ct.affine.tolist()} seg {seg.labels.shape} {seg.affine.tolist()}",
        )
