"""One upload action → one study folder under ``$DOKUEI_HOME/uploads/<session>/<study_id>/``.

Gradio gives every uploaded file its own temporary folder and keeps only its base name, so a CT loses its
``segmentations/`` and 104 DICOM slices become 104 unrelated files. Here the files of one upload are
copied together (zips unpacked with member and size caps, no path escaping the study folder), DICOM
is split into one folder per SeriesInstanceUID, and a NIfTI study keeps ``ct.nii.gz`` beside
``segmentations/``. The role of each study (ベースライン / 前回 / 今回) is written to
``<study_dir>/.dokuei-study.json`` so RECIST compares by role, never by upload order.

The DICOM kept for the session is de-identified (:mod:`dokuei.deid`, PS3.15 Annex E basic profile with the
patient-characteristics and modified-dates options) and renamed ``00000.dcm…``: what the upload's headers
said (StudyDate for the roles, descriptions, patient facts) is read first and lives only in memory; the role
file holds the role alone, never a date.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from dokuei import deid

log = logging.getLogger(__name__)

Role = Literal["baseline", "prior", "current"]
ROLE_JA: dict[Role, str] = {"baseline": "ベースライン", "prior": "前回", "current": "今回"}
ROLE_ORDER: tuple[Role, ...] = ("baseline", "prior", "current")
STUDY_FILE = ".dokuei-study.json"

#: zip bombs and runaway folders are refused, not half-unpacked
MAX_ZIP_MEMBERS = 5000
MAX_UNPACKED_BYTES = 8 * 1024**3
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: NIfTI files that stay beside ct.nii.gz (the lymph-node study layout), never moved into segmentations/
_STUDY_LEVEL_NIFTI = frozenset({"ct.nii.gz", "ct.nii", "nodes.nii.gz", "nodes.nii", "lymph_nodes.nii.gz",
                                "totalseg.nii.gz", "totalsegmentator.nii.gz"})
#: modalities whose series is one volume (read as a folder); anything else is passed file by file
_VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})


class UploadError(ValueError):
    """An upload that cannot become a study; the message is Japanese and names the file."""


@dataclass
class Series:
    uid: str
    folder: Path
    modality: str
    description: str
    n_files: int


@dataclass
class Study:
    study_id: str
    folder: Path
    uploaded_at: float
    study_date: date | None = None
    description: str = ""
    series: list[Series] = field(default_factory=list)
    other_files: list[Path] = field(default_factory=list)  # ECG, images, reports, NIfTI volumes
    nifti_study: Path | None = None  # the folder holding ct.nii.gz (+ segmentations/)
    segmentations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # Japanese, each naming the file
    header_patient: dict[str, Any] = field(default_factory=dict)
    role: Role | None = None

    @property
    def modality(self) -> str:
        kinds = sorted({s.modality for s in self.series if s.modality})
        if self.nifti_study is not None:
            kinds.append("CT (NIfTI)")
        if not kinds and self.other_files:
            kinds.append("ファイル")
        return "・".join(kinds) or "不明"

    @property
    def n_slices(self) -> int:
        return sum(s.n_files for s in self.series)

    @property
    def ct_folder(self) -> Path | None:
        """The folder a CT viewer opens: the NIfTI study, else the first CT series."""
        if self.nifti_study is not None:
            return self.nifti_study
        return next((s.folder for s in self.series if s.modality == "CT"), None)

    def attachments(self) -> list[Path]:
        """What the agent is given for this study: one folder per series, the NIfTI study folder, loose files."""
        paths: list[Path] = []
        for series in self.series:  # an image series is read as a folder; an ECG or a radiograph file by file
            if series.modality in _VOLUME_MODALITIES:
                paths.append(series.folder)
            else:
                paths += sorted(p for p in series.folder.iterdir() if p.is_file() and p.name != STUDY_FILE)
        if self.nifti_study is not None:
            paths.append(self.nifti_study)
        inside = self.nifti_study
        paths += [f for f in self.other_files if inside is None or inside not in f.parents]
        return paths

    def summary_row(self) -> list[Any]:
        """[日付, 役割, モダリティ, 説明, シリーズ数, スライス数, セグメンテーション, ID] for the studies table."""
        return [self.study_date.isoformat() if self.study_date else "不明", ROLE_JA[self.role] if self.role else "",
                self.modality, self.description, len(self.series), self.n_slices,
                "、".join(self.segmentations) or "なし", self.study_id]

    def write_role(self) -> None:
        """The role file RECIST reads, in the study folder and in each folder handed to the agent."""
        record = {"role": self.role}  # the date stays in memory: the kept copies hold shifted dates only
        folders = {self.folder, *(p for p in self.attachments() if p.is_dir())}
        for folder in folders:
            (folder / STUDY_FILE).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")


def uploads_root(home: Path) -> Path:
    return home / "uploads"


def _safe_relative(name: str) -> PurePosixPath | None:
    """A member or original name as a relative path inside the study, or None when it would escape it."""
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or any(part in ("..", "") for part in rel.parts) or ":" in rel.parts[0]:
        return None
    parts = [p for p in rel.parts if p != "."]
    return PurePosixPath(*parts) if parts else None


def _unpack_zip(path: Path, display: str, dest: Path) -> list[Path]:
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadError(f"「{display}」のファイル数が多すぎます（{len(members)} 件、上限 {MAX_ZIP_MEMBERS}）")
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise UploadError(f"「{display}」は展開後の容量が上限（{MAX_UNPACKED_BYTES // 1024**3} GB）を超えます")
            out: list[Path] = []
            for member in members:
                rel = _safe_relative(member.filename)
                if rel is None or (member.external_attr >> 16) & 0o170000 == 0o120000:  # path escape or symlink
                    raise UploadError(f"「{display}」に安全でないパス「{member.filename}」が含まれるため展開しません")
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                out.append(target)
            return out
    except zipfile.BadZipFile as exc:
        raise UploadError(f"「{display}」は壊れた zip のため読み込めません") from exc


def _starts_like_zip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _header_patient(ds: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    age = str(getattr(ds, "PatientAge", "") or "")
    if len(age) == 4 and age[:3].isdigit() and age[3] == "Y":
        facts["age_years"] = int(age[:3])
    sex = str(getattr(ds, "PatientSex", "") or "")
    if sex in ("M", "F"):
        facts["sex"] = sex
    for name, keyword, scale in (("height_cm", "PatientSize", 100.0), ("weight_kg", "PatientWeight", 1.0)):
        value = getattr(ds, keyword, None)
        if value not in (None, ""):
            facts[name] = round(float(value) * scale, 1)
    return facts


def _study_date(raw: str) -> date | None:
    try:
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:8])) if len(raw) >= 8 else None
    except ValueError:
        return None


def _split_dicom(study: Study, files: list[tuple[Path, str]], deid_key: str) -> None:
    """Move DICOM files into series-<n>/ folders, one per SeriesInstanceUID, in first-seen order, each
    de-identified and named by its position (``00000.dcm``); a file that cannot be de-identified is dropped."""
    import pydicom

    folders: dict[str, Series] = {}
    for path, display in files:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            if "SOPClassUID" not in ds and not getattr(ds, "Modality", ""):
                raise ValueError("no SOPClassUID and no Modality: the header is not DICOM")
        except Exception as exc:  # pydicom raises many types for damaged files
            log.warning("unreadable DICOM %s: %s", path, exc)
            study.problems.append(f"「{display}」を DICOM として読み込めませんでした")
            path.unlink(missing_ok=True)
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "no-uid")
        if uid not in folders:
            folder = study.folder / f"series-{len(folders) + 1}"
            folder.mkdir()
            folders[uid] = Series(uid, folder, str(getattr(ds, "Modality", "") or ""),
                                  str(getattr(ds, "SeriesDescription", "") or ""), 0)
            if study.study_date is None:
                study.study_date = _study_date(str(getattr(ds, "StudyDate", "") or ""))
            study.description = study.description or str(getattr(ds, "StudyDescription", "") or "")
            study.header_patient = study.header_patient or _header_patient(ds)
        series = folders[uid]
        target = series.folder / f"{series.n_files:05d}.dcm"
        try:
            deid.deidentify_file(path, deid_key, target)
        except Exception as exc:  # never keep a copy that still identifies the patient
            log.warning("could not de-identify %s: %s", path, exc)
            study.problems.append(f"「{display}」を匿名化できなかったため取り込みませんでした")
            target.unlink(missing_ok=True)
            continue
        finally:
            path.unlink(missing_ok=True)
        series.n_files += 1
    study.series = [s for s in folders.values() if s.n_files]


def _find_nifti_study(study: Study) -> None:
    volumes = sorted(p for p in study.other_files if p.name.lower().endswith(_NIFTI_SUFFIXES)
                     and "segmentations" not in p.relative_to(study.folder).parts)
    if not volumes:
        return
    ct = next((p for p in volumes if p.name.lower().startswith("ct.")), volumes[0])
    study.nifti_study = ct.parent
    _read_study_json(study, ct.parent / "study.json")
    seg_dir = ct.parent / "segmentations"
    if seg_dir.is_dir():
        study.segmentations = sorted(p.name.split(".")[0] for p in seg_dir.iterdir()
                                     if p.name.lower().endswith(_NIFTI_SUFFIXES))
    study.segmentations += sorted(p.name.split(".")[0] for p in ct.parent.iterdir()
                                  if p.name.lower() in _STUDY_LEVEL_NIFTI and not p.name.lower().startswith("ct."))


def _read_study_json(study: Study, path: Path) -> None:
    """A NIfTI study has no DICOM header: its date and description come from ``study.json`` when present."""
    if not path.is_file():
        return
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s: %s", path, exc)
        study.problems.append(f"「{path.name}」を読み込めませんでした（検査日は不明として扱います）")
        return
    if not isinstance(meta, dict):
        return
    raw = str(meta.get("study_date") or "").replace("-", "")
    study.study_date = study.study_date or _study_date(raw)
    study.description = study.description or str(meta.get("description_ja") or meta.get("description") or "")


def _flat_nifti_layout(staged: list[tuple[Path, str]], dest: Path) -> None:
    """Gradio drops folder names: ct.nii.gz picked with liver.nii.gz etc. → those go back into segmentations/."""
    names = {p.name.lower() for p, _ in staged if p.parent == dest}
    if not ({"ct.nii.gz", "ct.nii"} & names):
        return
    seg_dir = dest / "segmentations"
    for i, (path, display) in enumerate(staged):
        lower = path.name.lower()
        if path.parent == dest and lower.endswith(_NIFTI_SUFFIXES) and lower not in _STUDY_LEVEL_NIFTI:
            seg_dir.mkdir(exist_ok=True)
            target = seg_dir / path.name
            path.rename(target)
            staged[i] = (target, display)


def _drop_empty_folders(root: Path) -> None:
    """Folders left empty once their DICOM moved into series-<n>/ (their names may be a patient's)."""
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def ingest_upload(files: list[tuple[Path, str]], session_dir: Path, *, remove_sources: bool = True,
                  deid_key: str | None = None) -> Study:
    """Copy one upload action (``(temporary path, original relative name)`` pairs) into a new study folder.

    Zips are unpacked in place; DICOM is split by series and de-identified (key: ``deid_key``, else the
    installation's key file beside the session folders); the temporary copies are deleted afterwards
    (Gradio's cache must not keep patient data). Raises UploadError when nothing usable was uploaded."""
    key = deid_key or deid.key_for(session_dir.parent)
    study_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    folder = session_dir / study_id
    folder.mkdir(parents=True)
    study = Study(study_id=study_id, folder=folder, uploaded_at=time.time())
    staged: list[tuple[Path, str]] = []
    try:
        for source, original in files:
            display = PurePosixPath(original.replace("\\", "/")).name or source.name
            rel = _safe_relative(original) or PurePosixPath(source.name)
            if not source.is_file() or source.stat().st_size == 0:
                study.problems.append(f"「{display}」は空のファイルのため読み込めませんでした")
                continue
            if not zipfile.is_zipfile(source) and (source.suffix.lower() == ".zip" or _starts_like_zip(source)):
                study.problems.append(f"「{display}」は壊れた zip のため読み込めませんでした")
                continue
            if zipfile.is_zipfile(source):
                unpacked = _unpack_zip(source, display, folder / rel.name.rsplit(".", 1)[0])
                staged += [(p, f"{display}/{p.name}") for p in unpacked]
                continue
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            staged.append((target, display))
        _flat_nifti_layout(staged, folder)
        dicom = [(p, d) for p, d in staged if p.stat().st_size > 0 and _is_dicom(p)]
        dicom_paths = {p for p, _ in dicom}
        for path, display in staged:
            if path in dicom_paths:
                continue
            if path.stat().st_size == 0:
                study.problems.append(f"「{display}」は空のファイルのため読み込めませんでした")
                path.unlink()
            elif path.suffix.lower() == ".dcm":
                study.problems.append(f"「{display}」は DICOM ファイルではないため読み込めませんでした")
                path.unlink()
            else:
                study.other_files.append(path)
        _split_dicom(study, dicom, key)
        _drop_empty_folders(folder)
        _find_nifti_study(study)
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        if remove_sources:
            _remove_sources(files)
    if not study.series and not study.other_files:
        shutil.rmtree(folder, ignore_errors=True)
        reasons = "、".join(study.problems or ["（空のアップロード）"])
        raise UploadError(f"読み込めるファイルがありませんでした: {reasons}")
    return study


def _remove_sources(files: list[tuple[Path, str]]) -> None:
    for source, _ in files:
        try:
            source.unlink(missing_ok=True)
            source.parent.rmdir()  # Gradio's one-file temporary folder; left alone when not empty
        except OSError:
            pass


def assign_roles(studies: list[Study]) -> None:
    """Roles from StudyDate: the earliest is ベースライン, the latest 今回, any in between 前回.
    A study without a date gets no role (the user sets it); roles are written to the role file."""
    dated = sorted((s for s in studies if s.study_date is not None), key=lambda s: s.study_date or date.min)
    for study in studies:
        study.role = None
    if len(dated) == 1:
        dated[0].role = "current"
    elif dated:
        dated[0].role = "baseline"
        dated[-1].role = "current"
        for study in dated[1:-1]:
            study.role = "prior"
    for study in studies:
        study.write_role()


def set_role(study: Study, role: Role | None) -> None:
    study.role = role
    study.write_role()


def attachments_in_role_order(studies: list[Study]) -> list[str]:
    """Attachments baseline → prior → current, then studies without a role in upload order."""
    rank = {role: i for i, role in enumerate(ROLE_ORDER)}
    ordered = sorted(studies, key=lambda s: (rank.get(s.role, len(rank)) if s.role else len(rank), s.uploaded_at))
    return [str(p) for s in ordered for p in s.attachments()]


def remove_study(study: Study) -> None:
    shutil.rmtree(study.folder, ignore_errors=True)


def remove_session(home: Path, session_id: str) -> None:
    shutil.rmtree(uploads_root(home) / session_id, ignore_errors=True)


def purge_expired(home: Path, retention_hours: float) -> list[Path]:
    """Delete session upload folders untouched for longer than the retention time; returns what went."""
    root = uploads_root(home)
    if not root.is_dir():
        return []
    cutoff = time.time() - retention_hours * 3600
    gone = []
    for session_dir in root.iterdir():
        if session_dir.is_dir() and session_dir.stat().st_mtime < cutoff:
            shutil.rmtree(session_dir, ignore_errors=True)
            gone.append(session_dir)
    return gone
