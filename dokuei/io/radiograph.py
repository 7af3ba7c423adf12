"""Radiograph reader: DICOM CR/DX and PNG/JPEG into one display-ready greyscale image.

The returned pixels are float32 in [0, 1] with bright = dense (bone white), in the standard display
orientation (patient's right on the viewer's left, head up): MONOCHROME1 is inverted, the DICOM VOI
window (or the full stored range) is applied, and PatientOrientation is used to flip the image when it
is stored otherwise. The view position (PA/AP/lateral) comes from DICOM; a PNG/JPEG has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dokuei.errors import InputError as ToolInputError
from dokuei.io.grid import refuse_non_finite

log = logging.getLogger(__name__)

ViewPosition = Literal["PA", "AP", "LATERAL", "UNKNOWN"]
_LATERAL = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "XTABLE"}
MIN_SIDE_PX = 256  # a radiograph is never this small; a thumbnail or icon is refused
SCREENSHOT_FLAT_FRACTION = 0.30  # ≥ 30 % of pixels on one grey level = a flat UI background
MIN_GREY_LEVELS = 48  # fewer distinct levels = drawing/text, not a projection radiograph
MAX_COLOUR_CHROMA = 8.0  # mean |R−G|+|G−B| of a greyscale picture saved as RGB stays near 0


@dataclass(frozen=True)
class Radiograph:
    pixels: np.ndarray  # (rows, cols) float32 in [0, 1], bright = dense, standard display orientation
    source: str
    format: Literal["dicom", "png", "jpeg"]
    view_position: ViewPosition
    photometric: str
    inverted: bool
    flips: tuple[str, ...]
    modality: str
    body_part: str
    pixel_spacing_mm: tuple[float, float] | None


def looks_like_chest_xray(path: Path) -> bool:
    """True for a DICOM CR/DX/DR image (chest or unstated body part) or a PNG/JPEG that looks radiographic."""
    try:
        kind = _sniff(path)
        if kind == "dicom":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            body = str(ds.get("BodyPartExamined", "")).upper()
            return str(ds.get("Modality", "")) in ("CR", "DX", "DR") and body in (
                "",
                "CHEST",
                "THORAX",
                "LUNG",
            )
        if kind in ("png", "jpeg"):
            _check_picture(_read_picture(path), path)
            return True
    except (OSError, ToolInputError, ValueError):
        return False
    return False


def load_radiograph(path: Path) -> Radiograph:
    if not path.exists():
        raise ToolInputError(f"画像ファイル {path.name} が見つかりません。", f"missing: {path}")
    if not path.is_file():  # a named pipe would block the first read
        raise ToolInputError(f"{path.name} は通常の画像ファイルではありません。", f"not a regular file: {path}")
    kind = _sniff(path)
    if kind == "dicom":
        return _load_dicom(path)
    if kind in ("png", "jpeg"):
        grey = _read_picture(path)
        _check_picture(grey, path)
        lo, hi = np.percentile(grey, [0.5, 99.5])
        pixels = np.clip((grey - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
        return Radiograph(
            pixels=pixels,
            source=str(path),
            format=kind,
            view_position="UNKNOWN",
            photometric="MONOCHROME2",
            inverted=False,
            flips=(),
            modality="",
            body_part="",
            pixel_spacing_mm=None,
        )
    raise ToolInputError(
        f"{path.name} は画像として読めません（DICOM・PNG・JPEG に対応）。", f"unknown format: {path}"
    )


def _sniff(path: Path) -> Literal["dicom", "png", "jpeg"] | None:
    with path.open("rb") as fh:
        head = fh.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


def _load_dicom(path: Path) -> Radiograph:
    import pydicom
    from pydicom.pixels import apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
        raw = ds.pixel_array
    except Exception as exc:
        raise ToolInputError(f"DICOM 画像 {path.name} を読み込めません。", f"{path}: {exc}") from exc
    modality = str(ds.get("Modality", ""))
    if modality not in ("CR", "DX", "DR"):
        raise ToolInputError(
            f"{path.name} は単純 X 線写真ではありません（モダリティ {modality or '不明'}）。",
            f"{path}: modality {modality}",
        )
    if raw.ndim != 2:
        raise ToolInputError(
            f"{path.name} は 1 枚の単純写真ではありません（配列形状 {raw.shape}）。", f"{path}: {raw.shape}"
        )
    img = (
        np.asarray(apply_voi_lut(raw, ds), dtype=np.float64)
        if "WindowCenter" in ds or "VOILUTSequence" in ds
        else raw.astype(np.float64)
    )
    refuse_non_finite(img, path.name)  # float pixel data: one NaN would make the whole image NaN below
    lo, hi = float(img.min()), float(img.max())
    pixels = (img - lo) / max(hi - lo, 1e-6)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    inverted = photometric == "MONOCHROME1"
    if inverted:
        pixels = 1.0 - pixels
    flips: list[str] = []
    orientation = [str(v).upper() for v in ds.get("PatientOrientation", [])]
    if len(orientation) == 2:
        if orientation[0].startswith("R"):
            pixels, flips = pixels[:, ::-1], [*flips, "horizontal"]
        if orientation[1].startswith("H"):
            pixels, flips = pixels[::-1, :], [*flips, "vertical"]
    spacing = _spacing(ds, path)
    return Radiograph(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        source=str(path),
        format="dicom",
        view_position=_view_position(ds),
        photometric=photometric,
        inverted=inverted,
        flips=tuple(flips),
        modality=modality,
        body_part=str(ds.get("BodyPartExamined", "")),
        pixel_spacing_mm=spacing,
    )


def _spacing(ds: object, path: Path) -> tuple[float, float] | None:
    """Pixel spacing from the header, or None (unknown) when absent, zero, negative or not a number."""
    raw = getattr(ds, "ImagerPixelSpacing", None) or getattr(ds, "PixelSpacing", None)
    if not raw:
        return None
    try:
        values = (float(raw[0]), float(raw[1]))
    except (TypeError, ValueError, IndexError):
        values = (float("nan"), float("nan"))
    if not all(np.isfinite(v) and v > 0 for v in values):
        log.warning("%s: unusable pixel spacing %r; treated as unknown", path.name, raw)
        return None
    return values


def _view_position(ds: object) -> ViewPosition:
    value = str(getattr(ds, "ViewPosition", "") or "").upper().strip()
    if not value and getattr(ds, "ViewCodeSequence", None):
        value = str(ds.ViewCodeSequence[0].get("CodeMeaning", "")).upper()  # type: ignore[attr-defined]
    if value.startswith("PA") or "POSTERO-ANTERIOR" in value:
        return "PA"
    if value.startswith("AP") or "ANTERO-POSTERIOR" in value:
        return "AP"
    if value in _LATERAL or "LATERAL" in value:
        return "LATERAL"
    return "UNKNOWN"


def _read_picture(path: Path) -> np.ndarray:
    """A PNG/JPEG as float greyscale; refuses colour pictures (a radiograph has no colour)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGB", "RGBA", "P", "LA"):
            rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
            chroma = float(np.mean(np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])))
            if chroma > MAX_COLOUR_CHROMA:
                raise ToolInputError(
                    f"{path.name} はカラー画像で、X 線写真ではないようです。", f"{path}: chroma {chroma:.1f}"
                )
            return np.asarray(rgb.mean(axis=2))
        return np.asarray(im.convert("F") if im.mode not in ("I;16", "I") else im, dtype=np.float64)


def _check_picture(grey: np.ndarray, path: Path) -> None:
    """Refuse screenshots, drawings and thumbnails: small, few grey levels, or a large flat background."""
    if min(grey.shape) < MIN_SIDE_PX:
        raise ToolInputError(
            f"{path.name} は小さすぎます（{grey.shape[1]}×{grey.shape[0]} 画素）。"
            "元の X 線画像を添付してください。",
            f"{path}: shape {grey.shape}",
        )
    values, counts = np.unique(np.round(grey), return_counts=True)
    flat = counts.max() / grey.size
    if values.size < MIN_GREY_LEVELS or flat >= SCREENSHOT_FLAT_FRACTION:
        raise ToolInputError(
            f"{path.name} は X 線写真ではなく、文字や図を含む画面の画像（スクリーンショット）のようです。"
            "元の DICOM または X 線画像そのものを添付してください。",
            f"{path}: {values.size} grey levels, {flat:.0%} of pixels on one level",
        )
