"""The shared front half of every CT tool: study → CT volume → segmentations (precomputed or run).

TotalSegmentator outputs are cached per CT content under ``settings.cache_dir/totalseg/<hash>/`` so
two tools in one turn (organ volumes and body composition) segment the CT once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from dokuei.errors import UnavailableError
from dokuei.io import totalseg
from dokuei.io.ctstudy import find_study, load_segmentations
from dokuei.io.totalseg import Segmentation, TaskName
from dokuei.io.volume import Volume, check_hu_plausible, load_volume
from dokuei.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class PreparedStudy:
    ct: Volume
    segs: dict[str, Segmentation]
    engine: dict[str, str]  # task -> where its labels came from
    notes_ja: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def ct_hash(ct: Volume) -> str:
    digest = hashlib.sha256(ct.array.tobytes())
    digest.update(ct.affine.round(4).tobytes())
    return digest.hexdigest()[:20]


def prepare(
    study_path: Path,
    *,
    settings: Settings,
    device: str,
    required: tuple[TaskName, ...],
    optional: tuple[TaskName, ...] = (),
    segmentation_paths: list[Path] | None = None,
    fast: bool | None = None,
    run_missing: bool = True,
) -> PreparedStudy:
    """Load the CT and gather segmentations: ``required`` tasks (else unavailable), then ``optional`` ones."""
    t0 = time.perf_counter()
    study = find_study(study_path)
    ct = load_volume(study.image)
    check_hu_plausible(ct)
    segs = load_segmentations(study, ct, segmentation_paths, tasks=(*required, *optional))
    timings = {"load_s": time.perf_counter() - t0}
    engine = {task: f"precomputed:{Path(seg.source).name}" for task, seg in segs.items()}
    notes = list(ct.notes_ja)
    use_fast = (device != "cuda") if fast is None else fast
    t1 = time.perf_counter()
    for task in (*required, *optional):
        if task in segs:
            continue
        task_fast = use_fast and task == "total"
        weights = totalseg.find_weights(task, task_fast, settings) if run_missing else None
        if weights is None:
            if task in required:
                raise UnavailableError(
                    totalseg.install_ja(task, task_fast, settings)
                    + " 事前に TotalSegmentator で作ったセグメンテーション"
                    "（segmentations/ フォルダ）を添付しても使えます。",
                    f"no precomputed {task} and no weights",
                )
            notes.append(f"{task} のセグメンテーションはありません（重みも未インストール）。")
            continue
        cache = settings.cache_dir / "totalseg" / ct_hash(ct) / ("fast" if task_fast else "full")
        out = cache / f"{task}.nii.gz"
        if not out.exists():
            totalseg.run_totalsegmentator(
                ct, task, fast=task_fast, device=device, out_dir=cache, settings=settings
            )
        seg = totalseg.load_segmentation(out, task=task)
        totalseg.check_aligned(seg, ct)
        segs[task] = seg
        engine[task] = (
            f"TotalSegmentator {totalseg.totalseg_version()} {task}"
            f"{' --fast' if task_fast else ''} ({device})"
        )
    timings["segment_s"] = time.perf_counter() - t1
    return PreparedStudy(ct, segs, engine, notes, timings)

