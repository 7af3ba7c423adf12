"""CT slice viewer: one axial slice of a study with a window preset and, where the study has masks,
a coloured overlay. Pure numpy, so scrolling costs one windowing of one slice (no plotting library)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: (window centre, window width) in HU, the usual reading presets
WINDOWS_HU: dict[str, tuple[float, float]] = {"肺野": (-600.0, 1500.0), "縦隔": (40.0, 400.0),
                                              "腹部": (50.0, 350.0), "骨": (500.0, 2000.0)}
_OVERLAY_ALPHA = 0.4
_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], dtype=np.float32)


def window(hu: np.ndarray, preset: str) -> np.ndarray:
    """HU → 0..255 grey with the preset's centre and width (values outside clip to black/white)."""
    centre, width = WINDOWS_HU[preset]
    low = centre - width / 2.0
    scaled = (hu.astype(np.float32) - low) / width * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render_axial(volume_hu: np.ndarray, index: int, preset: str, labels: np.ndarray | None = None) -> np.ndarray:
    """Axial slice ``index`` of a RAS+ volume as an RGB image, anterior up and patient's right on the left."""
    k = int(np.clip(index, 0, volume_hu.shape[2] - 1))
    grey = window(np.rot90(volume_hu[:, :, k]), preset)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if labels is not None:
        lab = np.rot90(labels[:, :, k])
        for value in np.unique(lab[lab > 0]):
            colour = _PALETTE[(int(value) - 1) % len(_PALETTE)]
            mask = lab == value
            rgb[mask] = (1 - _OVERLAY_ALPHA) * rgb[mask] + _OVERLAY_ALPHA * colour
    return rgb.astype(np.uint8)


@dataclass
class LoadedStudy:
    hu: np.ndarray
    labels: np.ndarray | None
    label_names: list[str]


def load_for_viewing(folder: Path) -> LoadedStudy:
    """The CT of a study folder (DICOM series or ct.nii.gz) and its segmentations/ as one label map."""
    from dokuei.io.volume import load_nifti, load_volume

    volume = load_volume(folder)
    labels: np.ndarray | None = None
    names: list[str] = []
    seg_dir = folder / "segmentations"
    if seg_dir.is_dir():
        for i, mask_path in enumerate(sorted(seg_dir.glob("*.nii*")), start=1):
            try:
                mask = load_nifti(mask_path, labels=True).array
            except Exception:  # a damaged mask is named in the log and left out of the overlay
                log.warning("overlay mask unreadable: %s", mask_path, exc_info=True)
                continue
            if mask.shape != volume.array.shape:
                log.warning("overlay mask %s has shape %s, CT %s: left out", mask_path, mask.shape, volume.shape)
                continue
            labels = np.zeros(volume.array.shape, dtype=np.uint8) if labels is None else labels
            labels[mask > 0] = i
            names.append(mask_path.name.split(".")[0])
    return LoadedStudy(np.asarray(volume.array), labels, names)


class ViewerCache:
    """The last few studies opened, so scrolling does not reread the volume."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._items: OrderedDict[str, LoadedStudy] = OrderedDict()

    def get(self, folder: Path) -> LoadedStudy:
        key = str(folder)
        if key not in self._items:
            self._items[key] = load_for_viewing(folder)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return self._items[key]
