"""CT slice viewer: one axial slice of a study with a window preset, zoom and overlay layers (organs,
L3 muscle/fat, lymph nodes with their RECIST long/short axes). Pure numpy, so scrolling costs one
windowing of one slice (no plotting library); display pixels map back to voxels for click seeds."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: (window centre, window width) in HU, the usual reading presets
WINDOWS_HU: dict[str, tuple[float, float]] = {"肺野": (-600.0, 1500.0), "縦隔": (40.0, 400.0),
                                              "腹部": (50.0, 350.0), "骨": (500.0, 2000.0)}
#: overlay layers a reader toggles, Japanese label → layer key
LAYERS_JA: dict[str, str] = {"臓器": "organs", "筋・脂肪（L3）": "tissue", "リンパ節（長径・短径）": "nodes"}
ZOOMS = (1.0, 1.5, 2.0, 3.0)
_OVERLAY_ALPHA = 0.4
_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], dtype=np.float32)
#: tissue_types colours as the body-composition overlay draws them: muscle red, fat yellow / green
TISSUE_RGB: dict[str, tuple[int, int, int]] = {"skeletal_muscle": (220, 40, 40), "subcutaneous_fat": (250, 220, 40),
                                               "torso_fat": (60, 200, 90)}
NODE_OUTLINE_RGB = (0, 200, 255)
LONG_AXIS_RGB = (255, 60, 60)
SHORT_AXIS_RGB = (60, 255, 60)


def window(hu: np.ndarray, preset: str) -> np.ndarray:
    """HU → 0..255 grey with the preset's centre and width (values outside clip to black/white)."""
    centre, width = WINDOWS_HU[preset]
    low = centre - width / 2.0
    scaled = (hu.astype(np.float32) - low) / width * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


@dataclass
class LoadedStudy:
    hu: np.ndarray
    affine: np.ndarray
    #: layer key → label map on the CT grid (organs: class ids, tissue: RGB index, nodes: one label per node)
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    #: tissue label value → RGB
    tissue_rgb: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[2])

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        sx, sy, sz = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(sx), float(sy), float(sz))

    def z_mm(self, k: int) -> float:
        """Height (RAS mm) of axial slice k through the slice centre."""
        ci, cj = (self.hu.shape[0] - 1) / 2.0, (self.hu.shape[1] - 1) / 2.0
        return float(self.affine[2, :3] @ np.array([ci, cj, k]) + self.affine[2, 3])

    def slice_at_z(self, z_mm: float) -> int:
        """The slice nearest a height, for a side-by-side study on another grid."""
        heights = np.array([self.z_mm(k) for k in range(self.n_slices)])
        return int(np.argmin(np.abs(heights - z_mm)))


@dataclass(frozen=True)
class View:
    """One rendered slice and where its top-left display pixel lies in the full rotated slice."""

    image: np.ndarray
    row0: int
    col0: int
    index: int
    rows: int  # rows of the full rotated slice (= ny)


def _blend(rgb: np.ndarray, mask: np.ndarray, colour: np.ndarray | tuple[int, int, int]) -> None:
    rgb[mask] = (1 - _OVERLAY_ALPHA) * rgb[mask] + _OVERLAY_ALPHA * np.asarray(colour, dtype=np.float32)


def _draw_line(rgb: np.ndarray, a_ij: tuple[float, float], b_ij: tuple[float, float], ny: int,
               colour: tuple[int, int, int]) -> None:
    """A caliper line between two (i, j) voxel points, in the rotated display (row = ny-1-j, col = i)."""
    from skimage.draw import line

    rr, cc = line(round(ny - 1 - a_ij[1]), round(a_ij[0]), round(ny - 1 - b_ij[1]), round(b_ij[0]))
    keep = (rr >= 0) & (rr < rgb.shape[0]) & (cc >= 0) & (cc < rgb.shape[1])
    rgb[rr[keep], cc[keep]] = colour


def _draw_nodes(rgb: np.ndarray, nodes_k: np.ndarray, spacing_ij: tuple[float, float]) -> None:
    """Each node cut by this slice: its outline and its long (red) / short (green) axis on this slice."""
    from scipy.ndimage import binary_erosion

    from dokuei.lymph.axes import slice_axes

    ny = nodes_k.shape[1]
    for value in np.unique(nodes_k[nodes_k > 0]):
        mask = nodes_k == value
        edge = np.rot90(mask & ~binary_erosion(mask))
        rgb[edge] = NODE_OUTLINE_RGB
        axes = slice_axes(mask, spacing_ij)
        if axes is not None:
            _draw_line(rgb, *axes.long_ends_ij, ny, LONG_AXIS_RGB)
            _draw_line(rgb, *axes.short_ends_ij, ny, SHORT_AXIS_RGB)


def render_view(study: LoadedStudy, index: int, preset: str, layers: list[str] | None = None,
                zoom: float = 1.0, centre_rc: tuple[int, int] | None = None) -> View:
    """Axial slice ``index`` (anterior up, patient's right on the left) with the chosen overlay layers,
    cropped around ``centre_rc`` (display row, col; default the middle) by ``zoom``."""
    k = int(np.clip(index, 0, study.n_slices - 1))
    grey = window(np.rot90(study.hu[:, :, k]), preset)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    chosen = set(layers or [])
    if "organs" in chosen and "organs" in study.layers:
        lab = np.rot90(study.layers["organs"][:, :, k])
        for value in np.unique(lab[lab > 0]):
            _blend(rgb, lab == value, _PALETTE[(int(value) - 1) % len(_PALETTE)])
    if "tissue" in chosen and "tissue" in study.layers:
        lab = np.rot90(study.layers["tissue"][:, :, k])
        for value, colour in study.tissue_rgb.items():
            _blend(rgb, lab == value, colour)
    if "nodes" in chosen and "nodes" in study.layers:
        sx, sy, _ = study.spacing_mm
        _draw_nodes(rgb, study.layers["nodes"][:, :, k], (sx, sy))
    image = rgb.astype(np.uint8)
    rows, cols = image.shape[:2]
    zoom = max(1.0, float(zoom))
    h, w = max(1, round(rows / zoom)), max(1, round(cols / zoom))
    cr, cc = centre_rc if centre_rc is not None else (rows // 2, cols // 2)
    row0 = int(np.clip(cr - h // 2, 0, rows - h))
    col0 = int(np.clip(cc - w // 2, 0, cols - w))
    return View(image[row0:row0 + h, col0:col0 + w], row0, col0, k, rows)


def render_axial(volume_hu: np.ndarray, index: int, preset: str, labels: np.ndarray | None = None) -> np.ndarray:
    """One slice with every label of ``labels`` coloured (kept for callers that have only arrays)."""
    study = LoadedStudy(volume_hu, np.eye(4), {"organs": labels} if labels is not None else {})
    return render_view(study, index, preset, ["organs"]).image


def voxel_of_click(view: View, x: int, y: int) -> tuple[int, int, int]:
    """Display pixel (x right, y down) of a rendered view → voxel (i, j, k) of the RAS+ array, the
    ``voxel`` click point ``measure_lymph_nodes`` takes."""
    row, col = view.row0 + int(y), view.col0 + int(x)
    return col, view.rows - 1 - row, view.index


def _load_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    from dokuei.io.volume import load_nifti

    try:
        mask = load_nifti(path, labels=True).array
    except Exception:  # a damaged mask is named in the log and left out of the overlay
        log.warning("overlay mask unreadable: %s", path, exc_info=True)
        return None
    if mask.shape != shape:
        log.warning("overlay mask %s has shape %s, CT %s: left out", path, mask.shape, shape)
        return None
    return np.asarray(mask)


def _tissue_layer(mask: np.ndarray) -> tuple[np.ndarray, dict[int, tuple[int, int, int]]]:
    from dokuei.io.totalseg import class_map

    colours = {value: TISSUE_RGB[name] for value, name in class_map("tissue_types").items() if name in TISSUE_RGB}
    return mask.astype(np.uint8), colours


def load_for_viewing(folder: Path) -> LoadedStudy:
    """The CT of a study folder (DICOM series or ct.nii.gz) and its masks as overlay layers:
    ``segmentations/total`` (or ``totalseg.nii.gz``) as organs, ``segmentations/tissue_types`` as
    muscle/fat, ``nodes.nii.gz`` as lymph nodes; other masks in ``segmentations/`` join the organs."""
    from dokuei.io.volume import load_volume

    volume = load_volume(folder)
    study = LoadedStudy(np.asarray(volume.array), np.asarray(volume.affine))
    shape = study.hu.shape
    seg_dir = folder / "segmentations"
    organs: np.ndarray | None = None
    total = next((p for p in (seg_dir / "total.nii.gz", folder / "totalseg.nii.gz") if p.is_file()), None)
    if total is not None:
        organs = _load_mask(total, shape)
    extra = [p for p in sorted(seg_dir.glob("*.nii*")) if p.name.split(".")[0] not in ("total", "tissue_types")] \
        if seg_dir.is_dir() else []
    for offset, path in enumerate(extra, start=1):  # single-organ masks (liver.nii.gz …) after the class ids
        mask = _load_mask(path, shape)
        if mask is not None:
            organs = np.zeros(shape, dtype=np.int32) if organs is None else organs
            organs[mask > 0] = 200 + offset
    if organs is not None:
        study.layers["organs"] = organs
    tissue = seg_dir / "tissue_types.nii.gz"
    if tissue.is_file():
        mask = _load_mask(tissue, shape)
        if mask is not None:
            study.layers["tissue"], study.tissue_rgb = _tissue_layer(mask)
    nodes = next((folder / n for n in ("nodes.nii.gz", "nodes.nii", "lymph_nodes.nii.gz") if (folder / n).is_file()),
                 None)
    if nodes is not None:
        mask = _load_mask(nodes, shape)
        if mask is not None:
            study.layers["nodes"] = mask
    return study


class ViewerCache:
    """The last few studies opened, so scrolling (and the side-by-side study) does not reread a volume."""

    def __init__(self, size: int = 3) -> None:
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
