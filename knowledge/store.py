"""The report store: one SQLite file holding every report (original texts, hashed patient, labels) and
its chunks. It is the source of truth for idempotent upserts, for the lexical index, and for building
hits; the vector store (chromadb) holds only chunk embeddings with filterable metadata.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dokuei.knowledge.chunking import Chunk
from dokuei.knowledge.normalize import int_to_date
from dokuei.knowledge.records import ReportRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY, content_hash TEXT NOT NULL, patient_hash TEXT, study_date INTEGER NOT NULL,
    modality TEXT, body_part TEXT, department TEXT, clinical_info TEXT, findings TEXT, diagnosis TEXT,
    language TEXT, source TEXT, synthetic INTEGER, labels TEXT, meta TEXT, n_chunks INTEGER,
    imported_utc TEXT);
CREATE INDEX IF NOT EXISTS reports_patient ON reports(patient_hash, study_date);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE NOT NULL, report_id TEXT NOT NULL, ord INTEGER,
    start INTEGER, "end" INTEGER, organ TEXT, context TEXT, text TEXT);
CREATE INDEX IF NOT EXISTS chunks_report ON chunks(report_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

REPORT_COLUMNS = (
    "report_id",
    "content_hash",
    "patient_hash",
    "study_date",
    "modality",
    "body_part",
    "department",
    "clinical_info",
    "findings",
    "diagnosis",
    "language",
    "source",
    "synthetic",
    "labels",
    "meta",
    "n_chunks",
    "imported_utc",
)


@dataclass(frozen=True)
class ChunkRow:
    rowid: int
    chunk_id: str
    report_id: str
    ord: int
    organ: str
    context: str
    text: str


def chunk_id(report_id: str, ord_: int) -> str:
    return f"{report_id}#{ord_}"


class ReportStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.executescript(SCHEMA)
        self.db.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        self.db.close()

    # --- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        """Bumped at every change; the lexical index remembers the generation it was built at."""
        return int(self.get_meta("generation") or 0)

    # --- reports ------------------------------------------------------------------------------
    def content_hashes(self, report_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        for i in range(0, len(report_ids), 500):
            part = list(report_ids[i : i + 500])
            marks = ",".join("?" * len(part))
            q = f"SELECT report_id, content_hash, n_chunks FROM reports WHERE report_id IN ({marks})"
            out.update({r[0]: (r[1], r[2]) for r in self.db.execute(q, part)})
        return out

    def upsert(self, items: Iterable[tuple[ReportRecord, list[Chunk]]]) -> None:
        """Write reports and their chunks in one transaction (after the vectors were stored)."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db:
            for rec, chunks in items:
                self.db.execute(
                    f"INSERT OR REPLACE INTO reports VALUES ({','.join('?' * len(REPORT_COLUMNS))})",
                    (
                        rec.report_id,
                        rec.content_hash(),
                        rec.patient_hash,
                        rec.study_date_int,
                        rec.modality,
                        rec.body_part,
                        rec.department,
                        rec.clinical_info,
                        rec.findings,
                        rec.diagnosis,
                        rec.language,
                        rec.source,
                        int(rec.synthetic),
                        json.dumps(rec.labels, ensure_ascii=False),
                        json.dumps(rec.meta, ensure_ascii=False),
                        len(chunks),
                        now,
                    ),
                )
                self.db.execute("DELETE FROM chunks WHERE report_id=?", (rec.report_id,))
                self.db.executemany(
                    'INSERT INTO chunks (chunk_id, report_id, ord, start, "end", organ, context, text) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            chunk_id(rec.report_id, c.ord),
                            rec.report_id,
                            c.ord,
                            c.start,
                            c.end,
                            c.organ,
                            c.context,
                            c.text,
                        )
                        for c in chunks
                    ],
                )
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(self.generation + 1),)
            )

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0])

    def count_chunks(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def reports(self, report_ids: Sequence[str]) -> dict[str, ReportRecord]:
        out: dict[str, ReportRecord] = {}
        for i in range(0, len(report_ids), 500):
            part = list(report_ids[i : i + 500])
            cols = ",".join(REPORT_COLUMNS)
            q = f"SELECT {cols} FROM reports WHERE report_id IN ({','.join('?' * len(part))})"
            for row in self.db.execute(q, part):
                out[row[0]] = _record(dict(zip(REPORT_COLUMNS, row, strict=True)))
        return out

    def iter_reports(self, batch: int = 2000, date_from: int | None = None,
                     date_to: int | None = None) -> Iterator[ReportRecord]:
        """Every report in id order; ``date_from``/``date_to`` (YYYYMMDD, inclusive) bound the study date."""
        cols = ",".join(REPORT_COLUMNS)
        lo, hi = date_from if date_from is not None else 0, date_to if date_to is not None else 99991231
        with closing(self.db.cursor()) as cur:
            cur.execute(f"SELECT {cols} FROM reports WHERE study_date BETWEEN ? AND ? ORDER BY report_id", (lo, hi))
            while rows := cur.fetchmany(batch):
                for row in rows:
                    yield _record(dict(zip(REPORT_COLUMNS, row, strict=True)))

    # --- chunks -------------------------------------------------------------------------------
    def chunks_by_rowid(self, rowids: Sequence[int]) -> dict[int, ChunkRow]:
        out: dict[int, ChunkRow] = {}
        for i in range(0, len(rowids), 500):
            part = [int(r) for r in rowids[i : i + 500]]
            q = (
                "SELECT rowid, chunk_id, report_id, ord, organ, context, text FROM chunks "
                f"WHERE rowid IN ({','.join('?' * len(part))})"
            )
            out.update({r[0]: ChunkRow(*r) for r in self.db.execute(q, part)})
        return out

    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, ChunkRow]:
        out: dict[str, ChunkRow] = {}
        for i in range(0, len(chunk_ids), 500):
            part = list(chunk_ids[i : i + 500])
            q = (
                "SELECT rowid, chunk_id, report_id, ord, organ, context, text FROM chunks "
                f"WHERE chunk_id IN ({','.join('?' * len(part))})"
            )
            out.update({r[1]: ChunkRow(*r) for r in self.db.execute(q, part)})
        return out

    def iter_chunk_table(self, batch: int = 5000) -> Iterator[tuple[int, str, str, str, int, str, str, str]]:
        """(rowid, lexical text, patient_hash, ...) of every chunk, joined with its report's filter fields.

        The first chunk of a report also carries the clinical information, searched lexically only."""
        q = (
            "SELECT c.rowid, "
            "CASE WHEN c.ord = 0 THEN r.clinical_info || ' ' ELSE '' END || c.context || c.text, "
            "r.patient_hash, r.modality, r.study_date, r.body_part, "
            "r.department, r.language FROM chunks c JOIN reports r USING (report_id) ORDER BY c.rowid"
        )
        with closing(self.db.cursor()) as cur:
            cur.execute(q)
            while rows := cur.fetchmany(batch):
                yield from rows

    def stats(self) -> dict[str, Any]:
        by = {}
        for col in ("modality", "body_part", "source", "language"):
            by[col] = dict(self.db.execute(f"SELECT {col}, COUNT(*) FROM reports GROUP BY {col}").fetchall())
        span = self.db.execute("SELECT MIN(study_date), MAX(study_date) FROM reports").fetchone()
        return {
            "reports": self.count(),
            "chunks": self.count_chunks(),
            "synthetic": int(self.db.execute("SELECT COUNT(*) FROM reports WHERE synthetic=1").fetchone()[0]),
            "patients": int(
                self.db.execute("SELECT COUNT(DISTINCT patient_hash) FROM reports").fetchone()[0]
            ),
            "date_range": [str(int_to_date(span[0])), str(int_to_date(span[1]))] if span[0] else [],
            **{f"by_{k}": v for k, v in by.items()},
        }


def _record(row: dict[str, Any]) -> ReportRecord:
    return ReportRecord(
        report_id=row["report_id"],
        study_date=int_to_date(row["study_date"]),
        findings=row["findings"] or "",
        diagnosis=row["diagnosis"] or "",
        clinical_info=row["clinical_info"] or "",
        patient_hash=row["patient_hash"] or "",
        modality=row["modality"] or "",
        body_part=row["body_part"] or "",
        department=row["department"] or "",
        source=row["source"] or "",
        synthetic=bool(row["synthetic"]),
        language=row["language"] or "ja",
        labels=json.loads(row["labels"] or "[]"),
        meta=json.loads(row["meta"] or "{}"),
    )
