"""Metadata filters (patient, modality, body part, department, date range) for both retrievers.

The dense side turns them into a chromadb ``where`` clause; the lexical side into a boolean mask over
categorical columns kept beside the BM25 matrix, so a filtered lexical query stays a vector operation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.atomic import atomic_file
from dokuei.knowledge.normalize import date_to_int, nfkc
from dokuei.knowledge.records import hash_patient_id, normalize_body_part, normalize_modality


@dataclass(frozen=True)
class Filters:
    patient_id: str | None = None
    modality: str | None = None
    body_part: str | None = None
    department: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    language: str | None = None  # "ja" / "en": e.g. only the English IU reports, for evaluation

    def is_empty(self) -> bool:
        fields = (self.patient_id, self.modality, self.body_part, self.department, self.language)
        return not any((*fields, self.date_from, self.date_to))

    def equalities(self, salt: str) -> dict[str, str]:
        eq: dict[str, str] = {}
        if self.patient_id:
            eq["patient_hash"] = hash_patient_id(self.patient_id, salt)
        if self.modality:
            eq["modality"] = normalize_modality(self.modality)
        if self.body_part:
            eq["body_part"] = normalize_body_part(self.body_part)
        if self.department:
            eq["department"] = nfkc(self.department)
        if self.language:
            eq["language"] = self.language
        return eq

    def matches(self, meta: Mapping[str, Any] | None, salt: str) -> bool:
        """The same test as :meth:`chroma_where`, on one chunk's metadata (for post-filtering)."""
        if meta is None:
            return False
        if any(meta.get(k) != v for k, v in self.equalities(salt).items()):
            return False
        day = int(meta.get("study_date", 0) or 0)
        if self.date_from and day < date_to_int(self.date_from):
            return False
        return not (self.date_to and day > date_to_int(self.date_to))

    def chroma_where(self, salt: str) -> dict[str, Any] | None:
        conds: list[dict[str, Any]] = [{k: v} for k, v in self.equalities(salt).items()]
        if self.date_from:
            conds.append({"study_date": {"$gte": date_to_int(self.date_from)}})
        if self.date_to:
            conds.append({"study_date": {"$lte": date_to_int(self.date_to)}})
        if not conds:
            return None
        return conds[0] if len(conds) == 1 else {"$and": conds}


_CATEGORICAL = ("patient_hash", "modality", "body_part", "department", "language")


@dataclass
class FilterColumns:
    """Per-chunk filter fields in BM25 row order: categorical codes plus the study date as YYYYMMDD."""

    codes: dict[str, np.ndarray]
    categories: dict[str, list[str]]
    study_date: np.ndarray

    @classmethod
    def build(cls, rows: Sequence[Sequence[Any]]) -> FilterColumns:
        """``rows``: (patient_hash, modality, study_date, body_part, department, language) per chunk."""
        columns = {"patient_hash": 0, "modality": 1, "body_part": 3, "department": 4, "language": 5}
        codes: dict[str, np.ndarray] = {}
        cats: dict[str, list[str]] = {}
        for name, i in columns.items():
            values = np.asarray([str(r[i] or "") for r in rows], dtype=object)
            uniq, inv = (
                np.unique(values, return_inverse=True) if len(values) else (np.array([]), np.array([]))
            )
            codes[name] = inv.astype(np.int32)
            cats[name] = [str(u) for u in uniq]
        return cls(codes, cats, np.asarray([int(r[2]) for r in rows], dtype=np.int32))

    def mask(self, filters: Filters, salt: str) -> np.ndarray | None:
        if filters.is_empty():
            return None
        m = np.ones(len(self.study_date), dtype=bool)
        for name, value in filters.equalities(salt).items():
            cats = self.categories[name]
            if value not in cats:
                return np.zeros_like(m)
            m &= self.codes[name] == cats.index(value)
        if filters.date_from:
            m &= self.study_date >= date_to_int(filters.date_from)
        if filters.date_to:
            m &= self.study_date <= date_to_int(filters.date_to)
        return m

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"study_date": self.study_date}
        for name in _CATEGORICAL:
            arrays[f"codes_{name}"] = self.codes[name]
            arrays[f"cats_{name}"] = np.asarray(self.categories[name], dtype=str)
        with atomic_file(path) as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> FilterColumns:
        a = np.load(path)
        return cls(
            {n: a[f"codes_{n}"] for n in _CATEGORICAL},
            {n: [str(x) for x in a[f"cats_{n}"]] for n in _CATEGORICAL},
            a["study_date"],
        )
