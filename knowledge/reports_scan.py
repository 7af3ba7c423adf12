"""Screen many reports for critical findings and write a worklist (見落とし防止).

Reads the archive's SQLite store (optionally a date range) or a CSV / JSONL export in the import format,
runs :func:`dokuei.reports.critical.detect` on each report and writes one row per flagged category:
report id, date, category, status, score, evidence. Rows that cannot be read are listed, never skipped
silently. CSV is written as UTF-8 with BOM (Excel on Japanese Windows opens it); ``.parquet`` uses pyarrow.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from dokuei.knowledge.records import ReportRecord, batched
from dokuei.reports.critical import detect
from dokuei.reports.text import ReportTextError

log = logging.getLogger(__name__)

#: reports per batch handed to a worker process (large enough that pickling is a small share)
BATCH_SIZE = 500

WORKLIST_COLUMNS = ("report_id", "study_date", "modality", "body_part", "department", "category", "name_ja",
                    "status", "score", "evidence", "section")


@dataclass(frozen=True)
class WorklistRow:
    report_id: str
    study_date: str
    modality: str
    body_part: str
    department: str
    category: str
    name_ja: str
    status: str
    score: float
    evidence: str
    section: str


@dataclass
class ScanResult:
    n_reports: int = 0
    n_flagged_reports: int = 0
    rows: list[WorklistRow] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (row or report id, reason, Japanese)
    seconds: float = 0.0

    @property
    def reports_per_s(self) -> float:
        return self.n_reports / self.seconds if self.seconds > 0 else 0.0

    def summary_ja(self) -> str:
        text = (f"{self.n_reports} 件のレポートを確認し、{self.n_flagged_reports} 件に重大所見の可能性があります"
                f"（{len(self.rows)} 行）。")
        if self.unreadable:
            text += f"読めなかった行 {len(self.unreadable)} 件: " + "、".join(
                f"{where}（{why}）" for where, why in self.unreadable[:10])
            text += " ほか。" if len(self.unreadable) > 10 else "。"
        return text


def _scan_batch(records: list[ReportRecord], include_unchanged: bool) -> ScanResult:
    result = ScanResult()
    for rec in records:
        result.n_reports += 1
        try:
            det = detect(rec.findings, rec.diagnosis, indication=rec.clinical_info, department=rec.department)
        except ReportTextError as exc:
            result.unreadable.append((rec.report_id, exc.message_ja))
            continue
        keep = [c for c in det.categories if c.flagged or (include_unchanged and c.status == "unchanged_known")]
        if any(c.flagged for c in keep):
            result.n_flagged_reports += 1
        result.rows += [WorklistRow(rec.report_id, rec.study_date.isoformat(), rec.modality, rec.body_part,
                                    rec.department, c.category.id, c.category.name_ja, c.status, c.score,
                                    c.evidence.sentence, c.evidence.section) for c in keep]
    return result


def scan_records(records: Iterable[ReportRecord], include_unchanged: bool = False, workers: int = 1,
                 batch_size: int = BATCH_SIZE) -> ScanResult:
    """Worklist rows for every flagged category (and unchanged_known ones when asked).

    ``workers > 1`` screens batches of ``batch_size`` reports in that many worker processes while this
    process keeps reading; the rows are the same as with one worker (sorted the same way).
    """
    result = ScanResult()
    t0 = time.perf_counter()
    if workers <= 1:
        parts: Iterable[ScanResult] = (_scan_batch(b, include_unchanged) for b in batched(records, batch_size))
        _merge(result, parts)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from functools import partial

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            _merge(result, pool.map(partial(_scan_batch, include_unchanged=include_unchanged),
                                    batched(records, batch_size)))
    result.seconds = time.perf_counter() - t0
    result.rows.sort(key=lambda r: (-r.score, r.study_date, r.report_id))
    return result


def _merge(result: ScanResult, parts: Iterable[ScanResult]) -> None:
    for part in parts:
        result.n_reports += part.n_reports
        result.n_flagged_reports += part.n_flagged_reports
        result.rows += part.rows
        result.unreadable += part.unreadable


def archive_records(store_path: Path, date_from: date | None = None,
                    date_to: date | None = None) -> Iterator[ReportRecord]:
    """Reports of the archive's SQLite store, optionally within [date_from, date_to] (selected in SQL)."""
    from dokuei.knowledge.normalize import date_to_int
    from dokuei.knowledge.store import ReportStore

    store = ReportStore(store_path)
    try:
        yield from store.iter_reports(date_from=date_to_int(date_from) if date_from else None,
                                      date_to=date_to_int(date_to) if date_to else None)
    finally:
        store.close()


def archive_span(store_path: Path) -> tuple[int, date, date] | None:
    """(number of reports, first and last study date) of the archive; None when it is empty or absent."""
    import sqlite3
    from contextlib import closing

    from dokuei.knowledge.normalize import int_to_date

    if not store_path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)) as db:
            n, lo, hi = db.execute("SELECT COUNT(*), MIN(study_date), MAX(study_date) FROM reports").fetchone()
    except sqlite3.Error as exc:
        log.warning("cannot read %s: %s", store_path, exc)
        return None
    return (int(n), int_to_date(lo), int_to_date(hi)) if n else None


def file_records(path: Path, unreadable: list[tuple[str, str]]) -> Iterator[ReportRecord]:
    """Records of a CSV / JSONL export (import format); bad rows are appended to ``unreadable``."""
    from dokuei.knowledge.importers import RowError, parse_row, read_csv_rows, read_jsonl_rows

    reader = read_jsonl_rows if path.suffix.lower() in (".jsonl", ".ndjson") else read_csv_rows
    _, rows = reader(path)
    for row, raw in rows:
        rec = RowError(row, raw) if isinstance(raw, str) else parse_row(row, raw, "", str(path))
        if isinstance(rec, RowError):
            unreadable.append((f"{row} 行目", rec.reason_ja))
            continue
        yield rec


def write_worklist(rows: list[WorklistRow], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([asdict(r) for r in rows],
                                     schema=pa.schema([(c, pa.float64() if c == "score" else pa.string())
                                                       for c in WORKLIST_COLUMNS]))
        pq.write_table(table, path)
        return path
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=WORKLIST_COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    return path
