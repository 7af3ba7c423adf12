"""Importing report exports (CSV or JSONL) into the archive.

A hospital export has one report per row: report_id, patient_id, study_date, modality, body_part,
department, 依頼/臨床情報, 所見, 診断 (English or Japanese headers, see :data:`COLUMN_ALIASES`). The
encoding is detected (UTF-8, CP932/Shift_JIS, EUC-JP); identifiers and coded fields are NFKC-normalised
(full-width digits become ASCII) while report texts are stored as written and normalised when indexed.
Patient ids are stored only as salted hashes. A malformed row (no id, no text, bad date, duplicate id,
wrong column count, unreadable JSON) is reported by its row number and skipped; every good row lands.
Rows are numbered as a spreadsheet shows them: the CSV header is row 1; a JSONL row is its line number.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dokuei.knowledge.archive import ReportArchive
from dokuei.knowledge.normalize import detect_encoding, nfkc, parse_date
from dokuei.knowledge.records import ReportRecord, hash_patient_id, normalize_body_part, normalize_modality

log = logging.getLogger(__name__)

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "report_id": ("report_id", "レポートid", "レポート番号", "報告書id", "accession_number", "検査番号"),
    "patient_id": ("patient_id", "患者id", "患者番号", "カルテ番号"),
    "study_date": ("study_date", "検査日", "撮影日", "実施日"),
    "modality": ("modality", "モダリティ", "検査種別"),
    "body_part": ("body_part", "部位", "検査部位", "撮影部位"),
    "department": ("department", "診療科", "依頼科"),
    "clinical_info": ("clinical_info", "依頼/臨床情報", "臨床情報", "依頼内容", "依頼", "indication"),
    "findings": ("findings", "所見"),
    "diagnosis": ("diagnosis", "診断", "結論", "impression"),
    "labels": ("labels",),
}
_ALIAS_TO_FIELD = {nfkc(a).lower(): f for f, aliases in COLUMN_ALIASES.items() for a in aliases}


@dataclass(frozen=True)
class RowError:
    row: int
    reason_ja: str
    report_id: str | None = None


@dataclass
class ImportResult:
    source: str
    encoding: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def imported(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def summary_ja(self) -> str:
        text = (
            f"{self.source}: {self.rows} 行中 {self.imported} 件を取り込みました（新規 {self.inserted}、"
            f"更新 {self.updated}、変更なし {self.unchanged}、エラー {len(self.errors)}）。"
        )
        for err in self.errors[:20]:
            text += f"\n  行 {err.row}: {err.reason_ja}"
        if len(self.errors) > 20:
            text += f"\n  …ほか {len(self.errors) - 20} 行"
        return text


def _canonical(raw: dict[str, Any]) -> dict[str, Any]:
    return {_ALIAS_TO_FIELD.get(nfkc(str(k)).lower(), str(k)): v for k, v in raw.items() if k is not None}


def _flag(value: Any, default: bool) -> bool | None:
    """A yes/no cell: bools, 0/1 and true/false spellings; None when it is something else.

    ``bool("false")`` is True, so strings are never passed to ``bool``.
    """
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = nfkc(str(value)).strip().lower()
    if text in ("true", "1", "yes", "y", "t"):
        return True
    if text in ("false", "0", "no", "n", "f"):
        return False
    return None


def parse_row(
    row: int, raw: dict[str, Any], salt: str, source: str, language: str = "ja", synthetic: bool = False
) -> ReportRecord | RowError:
    """One export row -> a record, or the reason (Japanese) it cannot be imported."""
    values = _canonical(raw)
    text = {k: "" if values.get(k) is None else str(values.get(k)) for k in COLUMN_ALIASES if k != "labels"}
    report_id = nfkc(text["report_id"])
    if not report_id:
        return RowError(row, "レポートID（report_id）がありません。")
    if not (text["findings"].strip() or text["diagnosis"].strip()):
        return RowError(row, "所見・診断がどちらも空です。", report_id)
    if not text["study_date"].strip():
        return RowError(row, "検査日（study_date）がありません。", report_id)
    study_date = parse_date(text["study_date"])
    if study_date is None:
        return RowError(row, f"検査日「{text['study_date']}」を日付として読めません。", report_id)
    labels = values.get("labels") or []
    if isinstance(labels, str):
        labels = [x for x in labels.split("|") if x]
    if not isinstance(labels, list) or not all(isinstance(x, str | int | float) for x in labels):
        return RowError(row, f"labels は文字列の配列か「|」区切りの文字列にしてください（値: {str(labels)[:40]}）。",
                        report_id)
    meta = values.get("meta")
    if meta is None or meta == "":
        meta = {}
    if not isinstance(meta, dict):
        return RowError(row, f"meta は JSON オブジェクトにしてください（値: {str(meta)[:40]}）。", report_id)
    synthetic_flag = _flag(values.get("synthetic"), synthetic)
    if synthetic_flag is None:
        return RowError(row, f"synthetic は true/false にしてください（値: {values.get('synthetic')!r}）。",
                        report_id)
    pid = nfkc(text["patient_id"])
    return ReportRecord(
        report_id=report_id,
        study_date=study_date,
        findings=text["findings"].strip(),
        diagnosis=text["diagnosis"].strip(),
        clinical_info=text["clinical_info"].strip(),
        patient_hash=hash_patient_id(pid, salt) if pid else "",
        modality=normalize_modality(text["modality"]),
        body_part=normalize_body_part(text["body_part"]),
        department=nfkc(text["department"]),
        source=source,
        synthetic=synthetic_flag,
        language=str(values.get("language") or language),
        labels=[str(x) for x in labels],
        meta=dict(meta or {}),
    )


def read_csv_rows(path: Path) -> tuple[str, Iterator[tuple[int, dict[str, Any] | str]]]:
    """(encoding, (row number, row dict or an error reason)) of a CSV file; the header is row 1."""
    with path.open("rb") as fh:
        sample = fh.read(1 << 20)
    encoding = detect_encoding(sample, partial=True)

    def rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
        with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return
            for i, cells in enumerate(reader, start=2):
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    yield i, f"列数がヘッダーと一致しません（{len(cells)} 列、ヘッダーは {len(header)} 列）。"
                    continue
                yield i, dict(zip(header, cells, strict=True))

    return encoding, rows()


def read_jsonl_rows(path: Path) -> tuple[str, Iterator[tuple[int, dict[str, Any] | str]]]:
    with path.open("rb") as fh:
        encoding = detect_encoding(fh.read(1 << 20), partial=True)

    def rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
        with path.open("r", encoding=encoding, errors="replace") as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield i, f"JSON として読めません（{exc.msg}）。"
                    continue
                yield (i, obj) if isinstance(obj, dict) else (i, "JSON オブジェクトではありません。")

    return encoding, rows()


def import_rows(
    archive: ReportArchive,
    rows: Iterable[tuple[int, dict[str, Any] | str]],
    source: str,
    encoding: str = "utf-8",
    language: str = "ja",
    synthetic: bool = False,
    progress: bool = True,
    total: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ImportResult:
    """Validate rows, stream the good ones into ``archive.upsert``, and collect the bad ones."""
    result = ImportResult(source=source, encoding=encoding)
    seen: dict[str, int] = {}
    t0 = time.perf_counter()

    def _parse_safely(row: int, raw: dict[str, Any]) -> ReportRecord | RowError:
        try:
            return parse_row(row, raw, archive.salt, source, language, synthetic)
        except (TypeError, ValueError, AttributeError) as exc:  # a value of a type no check foresaw
            log.warning("%s row %d: %s", source, row, exc)
            return RowError(row, f"値の型が正しくありません（{type(exc).__name__}）。")

    def good() -> Iterator[ReportRecord]:
        for row, raw in rows:
            result.rows += 1
            rec = RowError(row, raw) if isinstance(raw, str) else _parse_safely(row, raw)
            if isinstance(rec, ReportRecord) and rec.report_id in seen:
                rec = RowError(
                    row,
                    f"レポートID {rec.report_id} が {seen[rec.report_id]} 行目と重複しています。",
                    rec.report_id,
                )
            if isinstance(rec, RowError):
                log.info("%s row %d skipped: %s", source, rec.row, rec.reason_ja)
                result.errors.append(rec)
                continue
            seen[rec.report_id] = row
            yield rec

    up = archive.upsert(
        good(), progress=progress, total=total, desc=Path(source).name or source, on_batch=on_batch
    )
    result.inserted, result.updated, result.unchanged = up.inserted, up.updated, up.unchanged
    result.seconds = time.perf_counter() - t0
    return result


def import_file(archive: ReportArchive, path: Path, progress: bool = True) -> ImportResult:
    """Import a CSV or JSONL export (by suffix: .jsonl/.ndjson/.json are JSON lines, else CSV)."""
    reader = read_jsonl_rows if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else read_csv_rows
    encoding, rows = reader(path)
    log.info("importing %s (%s)", path, encoding)
    return import_rows(archive, rows, source=f"file:{path.name}", encoding=encoding, progress=progress)
