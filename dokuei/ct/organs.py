"""Per-structure volume and HU statistics from a label map, in one pass over the voxels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dokuei.io.totalseg import Segmentation, name_ja
from dokuei.io.volume import Volume, refuse_non_finite

#: a structure smaller than this is reported absent (isolated voxels are not an organ)
MIN_PRESENT_ML = 0.1


@dataclass(frozen=True)
class StructureStats:
    name: str
    name_ja: str
    label_id: int
    present: bool
    voxel_count: int
    volume_ml: float
    hu_mean: float | None
    hu_sd: float | None
    touches_scan_edge: bool  # cut by the first or last slice: the volume is a lower bound


def structure_stats(ct: Volume, seg: Segmentation, names: list[str] | None = None) -> list[StructureStats]:
    """Statistics for every label of ``seg`` (or only ``names``), absent ones included."""
    labels = seg.labels.ravel(order="F")  # volumes are stored i-fastest: no copy
    n_bins = max(max(seg.names, default=0), int(labels.max()) if labels.size else 0) + 1
    inside = np.flatnonzero(labels)  # statistics over labelled voxels only (a fraction of the volume)
    lab = labels[inside]
    hu = ct.array.ravel(order="F")[inside].astype(np.float64)
    refuse_non_finite(hu, Path(ct.source).name)  # one NaN/inf voxel would poison a structure's mean
    counts = np.bincount(lab, minlength=n_bins)
    sums = np.bincount(lab, weights=hu, minlength=n_bins)
    squares = np.bincount(lab, weights=hu * hu, minlength=n_bins)
    edge = np.zeros(n_bins, dtype=bool)
    for k in (0, seg.labels.shape[2] - 1):
        edge[np.unique(seg.labels[:, :, k])] = True
    wanted = set(names) if names else None
    stats = []
    for label_id, name in sorted(seg.names.items()):
        if wanted is not None and name not in wanted:
            continue
        n = int(counts[label_id])
        volume = n * ct.voxel_volume_ml
        present = volume >= MIN_PRESENT_ML
        mean = float(sums[label_id] / n) if n else None
        sd = float(np.sqrt(max(squares[label_id] / n - (mean or 0.0) ** 2, 0.0))) if n else None
        stats.append(
            StructureStats(
                name,
                name_ja(name),
                label_id,
                present,
                n,
                round(volume, 1),
                None if mean is None else round(mean, 1),
                None if sd is None else round(sd, 1),
                bool(edge[label_id]) and present,
            )
        )
    return stats
