"""DICOM CT series → :class:`~dokuei.io.volume.Volume` in RAS+, with every geometric fact from the header.

What happens, in order:

1. Files are gathered from a folder (recursively), a zip (read in memory, never extracted) or one file;
   non-DICOM files are skipped.
2. Headers are grouped by SeriesInstanceUID. A series is rejected, with a Japanese reason, when it is not
   CT, is a localiser/scout, is multi-frame (Enhanced CT), lacks position/orientation/spacing, mixes
   orientations or matrix sizes, or is not axial (a coronal/sagittal reformat).
3. Of the acceptable series, those covering at least 90 % of the longest extent are preferred, then the
   thinnest slice spacing, then the most slices ("prefer thin slices and full coverage").
4. The chosen series' slices are sorted along the slice normal. Duplicated positions, missing slices
   (a gap that is a multiple of the usual spacing) and irregular spacing are refused with the positions
   involved; a gantry tilt (slice positions sheared against the normal) is corrected by shifting each
   slice in-plane, as dcm2niix does, and noted.
5. Pixels become HU through RescaleSlope/RescaleIntercept of each slice; padding values become -1024.

Nothing identifying is kept: the volume carries only the pixel grid, the affine and a whitelist of
technical facts (slice thickness, kernel, kVp) plus patient sex/age/height/weight, the characteristics
that DICOM PS3.15 Annex E's "Retain Patient Characteristics Option" keeps in a de-identified set.
Names, IDs, dates, UIDs and institution never leave this module, so nothing written later can hold them.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from dokuei.errors import InputError as ToolInputError
from dokuei.io.grid import MAX_VOXELS, Volume, refuse_non_finite

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LOCALISER_TYPES = {"LOCALIZER", "SCOUT", "SCANOGRAM", "TOPOGRAM", "SURVIEW", "SCOUTVIEW"}
AIR_HU = -1024.0
#: zip guards, checked on the declared sizes before any member is decompressed (a zip bomb declares them
#: honestly or zipfile stops at the declared size): total, one member, number of members
MAX_ZIP_BYTES = 3 << 30
MAX_ZIP_MEMBER_BYTES = 64 << 20  # one CT slice is ~0.5 MB; multi-frame objects are refused anyway
MAX_ZIP_MEMBERS = 10000
#: files looked at in one study folder (a 0.5 mm CT over 1 m is 2000 slices; a few series fit)
MAX_STUDY_FILES = 10000
#: tolerated deviation of one slice step from the series' median step
SPACING_TOLERANCE = 0.02  # fraction of the median step
SPACING_TOLERANCE_MM = 0.05
TILT_TOLERANCE_DEG = 0.5
MAX_TILT_DEG = 30.0


@dataclass
class _Slice:
    name: str
    header: Any  # the whole pydicom Dataset, read once (pixels decoded only for the chosen series)
    read_error: str | None = None  # the header was readable but the rest of the file was not


@dataclass
class _Candidate:
    uid_short: str
    slices: list[_Slice]
    modality: str
    rejected_ja: str | None = None
    spacing_mm: float = 0.0
    coverage_mm: float = 0.0

    @property
    def label_ja(self) -> str:
        number = self.slices[0].header.get("SeriesNumber", "?")
        return f"系列 {number}（{self.modality}、{len(self.slices)} 枚）"


def is_dicom_bytes(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def is_dicom_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return is_dicom_bytes(fh.read(132))
    except OSError:
        return False


def has_dicom_files(folder: Path) -> bool:
    return any(is_dicom_file(p) for p in walk_study_files(folder))


def walk_study_files(folder: Path) -> Iterator[Path]:
    """Regular, non-hidden files under ``folder``, sorted; refuses a folder with over MAX_STUDY_FILES."""
    files: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for n in names:
            p = Path(root) / n
            if n.startswith(".") or not p.is_file():  # is_file: FIFOs and devices would block a read
                continue
            files.append(p)
            if len(files) > MAX_STUDY_FILES:
                raise ToolInputError(
                    f"フォルダ {folder.name} のファイルが多すぎます（{MAX_STUDY_FILES:,} 個超）。"
                    "1 検査分のフォルダを指定してください。",
                    f"{folder}: over MAX_STUDY_FILES {MAX_STUDY_FILES}",
                )
    yield from sorted(files)


def _gather(path: Path) -> list[_Slice]:
    """Read every DICOM file in a folder, a zip or one file (each file once; pixels stay encoded)."""
    import pydicom

    def read(name: str, opener: Callable[[], BinaryIO]) -> _Slice | None:
        try:
            with opener() as fh:
                return _Slice(name, pydicom.dcmread(fh))
        except Exception as exc:  # a file cut short: keep its header so the refusal can name it
            try:
                with opener() as fh:
                    return _Slice(
                        name, pydicom.dcmread(fh, stop_before_pixels=True), f"{type(exc).__name__}: {exc}"
                    )
            except Exception as exc2:  # not DICOM at all
                log.info("skipping %s: %s", name, exc2)
                return None

    slices: list[_Slice] = []
    if path.is_dir():
        for p in walk_study_files(path):
            if is_dicom_file(p):
                s = read(p.name, lambda p=p: p.open("rb"))  # type: ignore[misc]
                if s is not None:
                    slices.append(s)
    elif zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                for m in zip_members(zf, path.name):
                    with zf.open(m) as fh:
                        if not is_dicom_bytes(fh.read(132)):
                            continue
                    data = zf.read(m)
                    s = read(m.filename, lambda data=data: io.BytesIO(data))  # type: ignore[misc]
                    if s is not None:
                        slices.append(s)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:  # truncated, encrypted
            raise ToolInputError(
                f"zip {path.name} が途中で切れているか壊れています。", f"{path}: {type(exc).__name__}: {exc}"
            ) from exc
    else:
        s = read(path.name, lambda: path.open("rb"))
        if s is not None:
            slices.append(s)
    if not slices:
        raise ToolInputError(f"{path.name} に読み込める DICOM 画像がありません。", f"no DICOM in {path}")
    return slices


def zip_members(zf: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    """The file members of a zip, after checking their count and declared sizes (zip-bomb guard)."""
    members = [m for m in zf.infolist() if not m.is_dir() and "__MACOSX" not in m.filename]
    if len(members) > MAX_ZIP_MEMBERS:
        raise ToolInputError(
            f"zip {name} のファイル数が多すぎます（{len(members):,} 個、上限 {MAX_ZIP_MEMBERS:,}）。",
            f"{name}: {len(members)} members over MAX_ZIP_MEMBERS",
        )
    big = [m for m in members if m.file_size > MAX_ZIP_MEMBER_BYTES]
    if big:
        raise ToolInputError(
            f"zip {name} に展開後が大きすぎるファイルがあります（{big[0].file_size / 2**20:,.0f} MB、"
            f"1 ファイルの上限 {MAX_ZIP_MEMBER_BYTES >> 20} MB）。",
            f"{name}: member {big[0].filename!r} declares {big[0].file_size} bytes",
        )
    total = sum(m.file_size for m in members)
    if total > MAX_ZIP_BYTES:
        raise ToolInputError(
            f"zip {name} が大きすぎます（展開後 {total / 2**30:.1f} GB、上限 {MAX_ZIP_BYTES / 2**30:.0f} GB）。",
            f"{name}: uncompressed size {total} over {MAX_ZIP_BYTES}",
        )
    return members


def _floats(ds: Any, keyword: str) -> list[float] | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        seq = [value] if isinstance(value, str | bytes | int | float) else list(value)
        return [float(v) for v in seq]
    except (TypeError, ValueError):
        return None


def _classify(uid: str, slices: list[_Slice]) -> _Candidate:
    """Reject what is not an axial CT image stack, with the reason in Japanese."""
    first = slices[0].header
    modality = str(first.get("Modality", "?"))
    cand = _Candidate(uid[-8:], slices, modality)
    image_types = {str(t).strip().upper() for s in slices for t in (s.header.get("ImageType") or [])}
    sop_classes = {str(s.header.get("SOPClassUID", "")) for s in slices}
    if modality != "CT":
        cand.rejected_ja = f"CT ではなく {modality} の画像です"
    elif image_types & LOCALISER_TYPES:
        cand.rejected_ja = "位置決め画像（スカウト／ローカライザ）です"
    elif ENHANCED_CT_STORAGE in sop_classes or any(
        int(s.header.get("NumberOfFrames", 1) or 1) > 1 for s in slices
    ):
        cand.rejected_ja = (
            "マルチフレーム（Enhanced CT）形式は未対応です。通常の CT 画像として出力してください"
        )
    elif sop_classes - {CT_IMAGE_STORAGE}:
        cand.rejected_ja = f"CT 画像ではない SOP クラスです（{', '.join(sorted(sop_classes))}）"
    if cand.rejected_ja:
        return cand
    geometry = set()
    for s in slices:
        iop, ipp, ps = (
            _floats(s.header, k) for k in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing")
        )
        if iop is None or ipp is None or ps is None or len(iop) != 6 or len(ipp) != 3 or len(ps) != 2:
            cand.rejected_ja = "画像の位置・向き・画素間隔（ImagePositionPatient など）がありません"
            return cand
        if not all(np.isfinite(v) and v > 0 for v in ps):
            cand.rejected_ja = (
                f"画像 {s.name} の画素間隔（PixelSpacing {ps[0]:g}, {ps[1]:g} mm）が 0 以下か不正です"
            )
            return cand
        if not all(np.isfinite(v) for v in (*iop, *ipp)) or np.linalg.norm(np.cross(iop[:3], iop[3:])) < 0.5:
            cand.rejected_ja = f"画像 {s.name} の位置・向き（ImageOrientationPatient）が壊れています"
            return cand
        geometry.add(
            (
                tuple(round(v, 3) for v in iop),
                tuple(round(v, 4) for v in ps),
                int(s.header.get("Rows", 0)),
                int(s.header.get("Columns", 0)),
            )
        )
    if len(geometry) > 1:
        cand.rejected_ja = "1 つの系列に向き・画素間隔・マトリクスの異なる画像が混在しています"
        return cand
    cosines = np.array(next(iter(geometry))[0], dtype=float)
    normal = np.cross(cosines[:3], cosines[3:])
    if abs(normal[2]) < np.cos(np.deg2rad(45)):
        cand.rejected_ja = "軸位断（アキシャル）ではありません（冠状断・矢状断の再構成画像）"
        return cand
    positions = sorted(
        float(np.dot(_floats(s.header, "ImagePositionPatient") or [0.0] * 3, normal)) for s in slices
    )
    cand.coverage_mm = positions[-1] - positions[0]
    steps = np.diff(positions)
    steps = steps[steps > 1e-3]
    cand.spacing_mm = float(np.median(steps)) if steps.size else float(first.get("SliceThickness") or 0.0)
    return cand


def _choose(candidates: list[_Candidate]) -> list[_Candidate]:
    """Acceptable series, best first: full coverage, then thin slices, then more slices."""
    ok = [c for c in candidates if c.rejected_ja is None]
    if not ok:
        return []
    longest = max(c.coverage_mm for c in ok)
    return sorted(ok, key=lambda c: (c.coverage_mm < 0.9 * longest, c.spacing_mm or 1e9, -len(c.slices)))


def load_dicom_series(path: Path) -> Volume:
    """Load the best axial CT series under ``path`` (folder, zip or single file) as HU in RAS+."""
    slices = _gather(path)
    by_series: dict[str, list[_Slice]] = defaultdict(list)
    for s in slices:
        by_series[str(s.header.get("SeriesInstanceUID", "unknown"))].append(s)
    candidates = [_classify(uid, group) for uid, group in by_series.items()]
    ranked = _choose(candidates)
    if not ranked:
        reasons = "、".join(f"{c.label_ja}: {c.rejected_ja}" for c in candidates)
        raise ToolInputError(
            f"{path.name} に使える CT 系列がありません（{reasons}）。",
            f"{path}: no acceptable series: {[(c.uid_short, c.rejected_ja) for c in candidates]}",
        )
    failures: list[ToolInputError] = []
    for cand in ranked:
        try:
            volume = _build(cand, path)
        except ToolInputError as exc:
            failures.append(exc)
            log.warning("series %s refused: %s", cand.uid_short, exc.detail)
            continue
        notes = list(volume.notes_ja)
        others = [c for c in candidates if c is not cand]
        if others:
            notes.insert(
                0,
                f"{len(candidates)} 系列のうち {cand.label_ja} を使用しました"
                f"（他: {'、'.join(_describe(c) for c in others)}）。",
            )
        if failures:
            notes.insert(0, "より適した系列は使えませんでした: " + " / ".join(f.message_ja for f in failures))
        return Volume(
            volume.array, volume.affine, volume.source, volume.modality, tuple(notes), volume.header
        )
    raise failures[0]


def _describe(c: _Candidate) -> str:
    return c.label_ja + (f"＝{c.rejected_ja}" if c.rejected_ja else "")


def _build(cand: _Candidate, path: Path) -> Volume:
    first = cand.slices[0].header
    iop = np.array(_floats(first, "ImageOrientationPatient"), dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    spacing_rows, spacing_cols = (float(v) for v in _floats(first, "PixelSpacing") or [])
    items = sorted(
        ((np.array(_floats(s.header, "ImagePositionPatient"), dtype=float), s) for s in cand.slices),
        key=lambda t: float(np.dot(t[0], normal)),
    )
    # duplicates: the same position twice is a repeated file or a second phase/echo
    unique: list[tuple[np.ndarray, _Slice]] = []
    for ipp, s in items:
        if unique and abs(float(np.dot(ipp - unique[-1][0], normal))) < 1e-2:
            if s.header.get("SOPInstanceUID") == unique[-1][1].header.get("SOPInstanceUID"):
                continue
            raise ToolInputError(
                f"{cand.label_ja} の同じ位置（{float(np.dot(ipp, normal)):.1f} mm）に複数の画像があります"
                "（複数時相の混在か重複）。1 時相だけの系列を指定してください。",
                f"duplicate position {ipp.tolist()} in {cand.uid_short}",
            )
        unique.append((ipp, s))
    positions = np.array([float(np.dot(ipp, normal)) for ipp, _ in unique])
    notes: list[str] = []
    n = len(unique)
    if n == 1:
        dz = (_floats(first, "SliceThickness") or _floats(first, "SpacingBetweenSlices") or [0.0])[0]
        if not (np.isfinite(dz) and dz > 0):
            raise ToolInputError(
                f"1 枚だけの画像 {cand.slices[0].name} のスライス厚が 0 以下か記載がないため、"
                "体積を計算できません。",
                f"single slice, thickness {dz}",
            )
        notes.append(f"1 枚だけの画像です（スライス厚 {dz:g} mm を奥行きとしました）。")
    else:
        dz = _check_steps(positions, cand)
    voxels = n * int(first.Rows) * int(first.Columns)
    if voxels > MAX_VOXELS:
        raise ToolInputError(
            f"{cand.label_ja} は大きすぎます（{voxels:,} ボクセル、上限 {MAX_VOXELS:,}）。"
            "範囲を絞るか、スライスを間引いた系列を指定してください。",
            f"{cand.uid_short}: {voxels} voxels over MAX_VOXELS",
        )
    tilt_deg, shifts = _tilt(unique, normal, row_dir, col_dir, spacing_cols, spacing_rows)
    if tilt_deg > MAX_TILT_DEG:
        raise ToolInputError(
            f"ガントリ傾斜が {tilt_deg:.1f}° と大きすぎるため補正できません。",
            f"tilt {tilt_deg:.2f} deg in {cand.uid_short}",
        )
    if tilt_deg > TILT_TOLERANCE_DEG:
        notes.append(f"ガントリ傾斜 {tilt_deg:.1f}° を補正しました（各スライスを面内で平行移動）。")
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * spacing_cols
    affine_lps[:3, 1] = col_dir * spacing_rows
    affine_lps[:3, 2] = normal * dz
    affine_lps[:3, 3] = unique[0][0]
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    volume, affine = _canonical_stack(unique, shifts, cand, affine_ras, (int(first.Columns), int(first.Rows)))
    return Volume(volume, affine, str(path.name), "CT", tuple(notes), _safe_header(first, n))


def _canonical_stack(
    unique: list[tuple[np.ndarray, _Slice]],
    shifts: list[tuple[float, float]],
    cand: _Candidate,
    affine_ras: np.ndarray,
    plane: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Decode each slice into HU and place it straight into the RAS+ canonical grid.

    The result is [i, j, k] with i varying fastest in memory (as NIfTI stores it), built slice by slice
    so that no full-volume transpose or flip is ever copied.
    """
    from nibabel import orientations as orient

    n = len(unique)
    ornt = orient.io_orientation(affine_ras)
    if ornt[2, 0] != 2:
        raise ToolInputError(
            f"{cand.label_ja} は斜めに傾いた断面で、軸位断として並べられません。",
            f"orientation {ornt.tolist()}",
        )
    affine = affine_ras @ orient.inv_ornt_aff(ornt, (*plane, n))
    order = range(n - 1, -1, -1) if ornt[2, 1] < 0 else range(n)
    out: np.ndarray | None = None
    for kk, k in enumerate(order):
        _, s = unique[k]
        if s.read_error is not None:
            raise ToolInputError(
                f"{cand.label_ja} の画像 {s.name} が途中で切れています。転送し直してください。",
                f"{s.name}: {s.read_error}",
            )
        try:
            pixels = s.header.pixel_array
        except Exception as exc:
            raise ToolInputError(
                f"{cand.label_ja} の画像 {s.name} の画素データを読めません"
                "（ファイルが途中で切れているか、未対応の圧縮形式です）。",
                f"{s.name}: {type(exc).__name__}: {exc}",
            ) from exc
        if pixels.shape != (plane[1], plane[0]):
            raise ToolInputError(
                f"{s.name} の画素数がヘッダと一致しません。", f"{s.name}: shape {pixels.shape}"
            )
        hu = orient.apply_orientation(_to_hu(s.header, pixels, s.name, shifts[k]), ornt[:2])
        if out is None:
            out = np.empty((n, hu.shape[1], hu.shape[0]), dtype=np.float32)
        out[kk] = hu.T
    assert out is not None
    return out.transpose(2, 1, 0), affine


def _check_steps(positions: np.ndarray, cand: _Candidate) -> float:
    steps = np.diff(positions)
    median = float(np.median(steps))
    tolerance = max(SPACING_TOLERANCE * median, SPACING_TOLERANCE_MM)
    bad = np.abs(steps - median) > tolerance
    if not bad.any():
        return float(np.mean(steps))
    ratios = steps / median
    multiples = np.round(ratios)
    if np.all(np.abs(ratios - multiples) * median <= tolerance) and np.all(multiples >= 1):
        missing = int(np.sum(multiples - 1))
        where = "、".join(
            f"{positions[i]:.1f}〜{positions[i + 1]:.1f} mm" for i in np.flatnonzero(multiples > 1)[:3]
        )
        raise ToolInputError(
            f"{cand.label_ja} はスライスが {missing} 枚欠けています（{where} の間）。"
            "転送が途中で切れていないか確認し、全スライスを指定してください。",
            f"missing {missing} slices; steps {np.unique(np.round(steps, 3)).tolist()}",
        )
    raise ToolInputError(
        f"{cand.label_ja} のスライス間隔が不均一です（{steps.min():.2f}〜{steps.max():.2f} mm）。"
        "等間隔で再構成した系列を指定してください。",
        f"irregular spacing; steps {np.unique(np.round(steps, 3)).tolist()}",
    )


def _tilt(
    unique: list[tuple[np.ndarray, _Slice]],
    normal: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    spacing_cols: float,
    spacing_rows: float,
) -> tuple[float, list[tuple[float, float]]]:
    """Gantry tilt from the shear of slice positions; per-slice in-plane shifts (voxels) that undo it."""
    origin = unique[0][0]
    shifts: list[tuple[float, float]] = []
    for ipp, _ in unique:
        offset = ipp - origin
        in_plane = offset - np.dot(offset, normal) * normal
        shifts.append(
            (float(np.dot(in_plane, row_dir) / spacing_cols), float(np.dot(in_plane, col_dir) / spacing_rows))
        )
    if len(unique) < 2:
        return 0.0, shifts
    total = unique[-1][0] - origin
    along = float(np.dot(total, normal))
    across = float(np.linalg.norm(total - along * normal))
    tilt = float(np.degrees(np.arctan2(across, abs(along)))) if along else 0.0
    if tilt <= TILT_TOLERANCE_DEG:
        shifts = [(0.0, 0.0)] * len(unique)
    return tilt, shifts


def _to_hu(ds: Any, pixels: np.ndarray, name: str, shift: tuple[float, float]) -> np.ndarray:
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None or intercept is None:
        raise ToolInputError(
            f"CT 画像 {name} に RescaleSlope/RescaleIntercept がないため HU に変換できません。",
            f"{name}: no rescale",
        )
    try:
        slope_f, intercept_f = float(slope), float(intercept)
    except (TypeError, ValueError):
        slope_f, intercept_f = float("nan"), float("nan")
    if not (np.isfinite(slope_f) and np.isfinite(intercept_f)) or slope_f == 0:
        raise ToolInputError(
            f"CT 画像 {name} の RescaleSlope/RescaleIntercept（{slope}, {intercept}）が不正なため"
            "（傾き 0 や数値でない値）、HU に変換できません。",
            f"{name}: rescale slope {slope!r} intercept {intercept!r}",
        )
    raw = pixels.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow becomes inf, refused just below
        hu = raw * slope_f + intercept_f
    refuse_non_finite(hu, name)  # float pixel data may hold NaN/inf; np.maximum below would keep them
    padding = ds.get("PixelPaddingValue")
    if padding is not None:
        hu[pixels == padding] = AIR_HU
    hu = np.maximum(hu, AIR_HU).T  # [row, col] -> [col i, row j]
    if shift != (0.0, 0.0):
        from scipy import ndimage

        hu = ndimage.shift(hu, shift, order=1, mode="constant", cval=AIR_HU)  # new[x] = old[x - shift]
    return hu


def _age_years(value: str | None) -> int | None:
    if not value or len(value) < 2 or not value[:-1].isdigit():
        return None
    number, unit = int(value[:-1]), value[-1].upper()
    years = {"Y": number, "M": number // 12, "W": number // 52, "D": number // 365}.get(unit)
    return years if number > 0 else None  # "000Y" is a placeholder, not an age


def _safe_header(ds: Any, n_slices: int) -> dict[str, Any]:
    """A whitelist of technical facts and patient characteristics; identifiers never enter it."""

    def num(keyword: str) -> float | None:
        value = ds.get(keyword)
        try:
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    size_m, weight = num("PatientSize"), num("PatientWeight")
    header: dict[str, Any] = {
        "n_slices": n_slices,
        "slice_thickness_mm": num("SliceThickness"),
        "kvp": num("KVP"),
        "convolution_kernel": str(ds.get("ConvolutionKernel", "") or "") or None,
        "manufacturer": str(ds.get("Manufacturer", "") or "") or None,
        "contrast_agent_given": bool(ds.get("ContrastBolusAgent")),
        "patient_sex": str(ds.get("PatientSex", "") or "") or None,
        "patient_age_years": _age_years(str(ds.get("PatientAge", "") or "")),
        "patient_height_cm": round(size_m * 100, 1) if size_m and 0.3 < size_m < 2.6 else None,
        "patient_weight_kg": weight if weight and weight > 0 else None,
    }
    return {k: v for k, v in header.items() if v is not None}
