"""Where a node lies: patient side from the midline, region from nearby TotalSegmentator structures.

Side: RAS+ x grows towards the patient's right, so a node right of the midline has a larger x. The
midline is the spine (or trachea) from TotalSegmentator labels near the node's height when present,
else the centre of the body outline on the node's slice. Region: the nearest landmark structure of
``knowledge/data/lymph_node_regions.json`` within its distance, else the broad region of the nearest
vertebra by height, else unknown. A nodal station is never guessed; it comes from the user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from dokuei.io.volume import Volume
from dokuei.knowledge import load_json

log = logging.getLogger(__name__)

Side = Literal["right", "left", "midline", "unknown"]
SIDE_JA = {"right": "右", "left": "左", "midline": "正中", "unknown": ""}


@lru_cache(maxsize=1)
def region_table() -> dict[str, Any]:
    return dict(load_json("lymph_node_regions.json"))


@lru_cache(maxsize=1)
def _ts_names() -> dict[int, str]:
    """TotalSegmentator 'total' label id -> class name, from the installed package (pure data, no torch)."""
    try:
        from totalsegmentator.map_to_binary import class_map
    except ImportError:
        log.info("totalsegmentator not installed: anatomical regions from labels are unavailable")
        return {}
    return {int(k): str(v) for k, v in class_map["total"].items()}


@dataclass(frozen=True)
class Location:
    side: Side
    region_ja: str | None
    region_sided: bool  # whether the region takes a side prefix (右気管傍) or not (食道傍)
    level: str | None  # nearest vertebra, e.g. "T4"
    basis: str  # how the location was found


class Locator:
    """Locates nodes in one study; builds its landmark lookups once."""

    def __init__(self, ct: Volume, labels: Volume | None) -> None:
        from scipy.spatial import cKDTree

        self.ct = ct
        self.table = region_table()
        self.trees: dict[str, Any] = {}
        self.spine_z: list[tuple[float, str, float]] = []  # (z mm, level, x mm) per vertebra
        self.has_labels = labels is not None and bool(_ts_names())
        if labels is None or not self.has_labels:
            return
        names = _ts_names()
        wanted = {lm["structure"] for lm in self.table["landmarks"]}
        # landmarks need ~2 mm detail only: subsample in-plane, then one pass over the labelled voxels
        step = max(1, round(2.0 / min(labels.spacing_mm[:2])))
        sub = labels.array[::step, ::step, :]
        flat = np.flatnonzero(sub)
        values = sub.ravel()[flat]
        order = np.argsort(values, kind="stable")
        flat, values = flat[order], values[order]
        bounds = np.flatnonzero(np.diff(values)) + 1
        affine = labels.affine[:3, :3] @ np.diag([step, step, 1])
        for chunk, lab in zip(
            np.split(flat, bounds), values[np.r_[0, bounds]] if values.size else [], strict=False
        ):
            name = names.get(int(lab), "")
            if name not in wanted and not name.startswith("vertebrae_"):
                continue
            ijk = np.stack(np.unravel_index(chunk, sub.shape), axis=1)
            xyz = ijk @ affine.T + labels.affine[:3, 3]
            if name.startswith("vertebrae_"):
                self.spine_z.append(
                    (float(xyz[:, 2].mean()), name.removeprefix("vertebrae_"), float(xyz[:, 0].mean()))
                )
            else:
                self.trees[name] = cKDTree(xyz)

    def _midline_x(self, centroid_mm: np.ndarray, k: int) -> tuple[float | None, str]:
        if self.spine_z:
            _, _, x = min(self.spine_z, key=lambda v: abs(v[0] - centroid_mm[2]))
            return x, "脊椎（TotalSegmentator）"
        if "trachea" in self.trees:
            pts = self.trees["trachea"].data
            return float(pts[:, 0].mean()), "気管（TotalSegmentator）"
        from scipy import ndimage as ndi

        body, n = ndi.label(self.ct.array[:, :, k] > -500)
        if n == 0:
            return None, "なし"
        sizes = ndi.sum_labels(np.ones_like(body), body, index=np.arange(1, n + 1))
        ii = np.argwhere(body == int(np.argmax(sizes)) + 1)
        i_mean = float(ii[:, 0].mean())
        x = float(self.ct.affine[0, 0] * i_mean + self.ct.affine[0, 3])
        return x, "体輪郭の中心"

    def locate(self, centroid_mm: np.ndarray, k: int, short_axis_mm: float) -> Location:
        x_mid, basis = self._midline_x(centroid_mm, k)
        tol = float(self.table["side_midline_tolerance_mm"])
        side: Side = "unknown"
        if x_mid is not None:
            dx = float(centroid_mm[0]) - x_mid
            side = "right" if dx > tol else "left" if dx < -tol else "midline"
        region: str | None = None
        sided = True
        best = float(self.table["max_distance_mm"]) + short_axis_mm / 2.0
        for lm in self.table["landmarks"]:
            tree = self.trees.get(lm["structure"])
            if tree is None:
                continue
            d, _ = tree.query(centroid_mm)
            if d < best:
                best, region, sided = float(d), str(lm["region_ja"]), bool(lm["sided"])
        level = None
        if self.spine_z:
            level = min(self.spine_z, key=lambda v: abs(v[0] - centroid_mm[2]))[1]
            if region is None:
                broad = self.table["vertebral_levels"].get(level[0])
                region = str(broad) if broad else None
        return Location(side, region, sided, level, basis)


def node_name_ja(loc: Location, label: int) -> str:
    """'右気管傍リンパ節', '食道傍リンパ節' (unsided region), or 'リンパ節 #3（右）' without a region."""
    side = SIDE_JA[loc.side] if loc.side in ("right", "left") and loc.region_sided else ""
    if loc.region_ja is None:
        return f"リンパ節 #{label}（{SIDE_JA[loc.side] or '部位不明'}）"
    return f"{side}{loc.region_ja}リンパ節"
