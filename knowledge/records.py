"""One report as the archive holds it, patient-id hashing, and the vocabularies of the filter fields."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from dokuei.knowledge.normalize import date_to_int, nfkc

T = TypeVar("T")

#: The fixed, documented pepper used when no salt is configured. It is public (it is in this file), so
#: the hash only keeps raw ids out of the index and its logs; a hospital sets its own secret salt with
#: ``DOKUEI_PATIENT_ID_SALT`` (or a ``patient_id_salt`` setting), before the first import.
DEFAULT_PATIENT_PEPPER = "dokuei-patient-id-pepper-v1"


def patient_salt(settings: object | None = None) -> str:
    configured = getattr(settings, "patient_id_salt", None) if settings is not None else None
    return str(configured or os.environ.get("DOKUEI_PATIENT_ID_SALT") or DEFAULT_PATIENT_PEPPER)


def hash_patient_id(patient_id: str, salt: str) -> str:
    """HMAC-SHA256 of the NFKC-normalised id, 20 hex digits: stable, not reversible without the salt.

    An id that already is such a hash (the agent keeps only hashed ids in its session state) is returned
    as it is, so hashing twice gives the same key.
    """
    if re.fullmatch(r"p_[0-9a-f]{20}", patient_id):
        return patient_id
    digest = hmac.new(salt.encode(), nfkc(patient_id).encode(), hashlib.sha256).hexdigest()
    return "p_" + digest[:20]


def salt_fingerprint(salt: str) -> str:
    """Recorded in the index so that a changed salt (which would orphan every stored hash) is noticed."""
    return hashlib.sha256(("fingerprint:" + salt).encode()).hexdigest()[:12]


_MODALITY = {
    "CT": "CT",
    "MR": "MR",
    "MRI": "MR",
    "CR": "CR",
    "DX": "DX",
    "XR": "CR",
    "X線": "CR",
    "単純X線": "CR",
    "胸部X線": "CR",
    "レントゲン": "CR",
    "US": "US",
    "超音波": "US",
    "エコー": "US",
    "MG": "MG",
    "マンモグラフィ": "MG",
    "PT": "PT",
    "PET": "PT",
    "NM": "NM",
    "RI": "NM",
}
_BODY_PART = {
    "HEAD": "頭部",
    "BRAIN": "頭部",
    "頭": "頭部",
    "頭部": "頭部",
    "脳": "頭部",
    "CHEST": "胸部",
    "THORAX": "胸部",
    "LUNG": "胸部",
    "胸": "胸部",
    "胸部": "胸部",
    "ABDOMEN": "腹部",
    "腹": "腹部",
    "腹部": "腹部",
    "PELVIS": "骨盤部",
    "骨盤": "骨盤部",
    "骨盤部": "骨盤部",
    "CHEST-ABDOMEN": "胸腹部",
    "胸腹部": "胸腹部",
    "NECK": "頸部",
    "頸部": "頸部",
}


def normalize_modality(value: str) -> str:
    v = nfkc(value).upper().replace(" ", "")
    return _MODALITY.get(v, v)


def normalize_body_part(value: str) -> str:
    v = nfkc(value).replace(" ", "")
    return _BODY_PART.get(v.upper(), v)


@dataclass
class ReportRecord:
    """A report as imported: original texts for display; the index derives normalised forms from them."""

    report_id: str
    study_date: date
    findings: str
    diagnosis: str = ""
    clinical_info: str = ""
    patient_hash: str = ""
    modality: str = ""
    body_part: str = ""
    department: str = ""
    source: str = ""
    synthetic: bool = False
    language: str = "ja"
    #: ground truth kept beside the text for evaluation (synthetic finding codes, IU MeSH terms)
    labels: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def study_date_int(self) -> int:
        return date_to_int(self.study_date)

    def full_text(self) -> str:
        """The text that is chunked, embedded and shown: findings then diagnosis, under their headings.

        The clinical information (依頼/臨床情報) is stored and searched lexically but not embedded: it
        describes the question, not the image, and leaving it out keeps embedding cheap.
        """
        heads = ("【所見】", "【診断】") if self.language == "ja" else ("FINDINGS: ", "IMPRESSION: ")
        parts = [
            f"{head}{body.strip()}"
            for head, body in zip(heads, (self.findings, self.diagnosis), strict=True)
            if body.strip()
        ]
        return "\n".join(parts)

    def content_hash(self) -> str:
        """What decides whether a re-import changes anything (idempotent upsert)."""
        key = "\x1f".join(
            [
                self.clinical_info,
                self.full_text(),
                self.patient_hash,
                str(self.study_date_int),
                self.modality,
                self.body_part,
                self.department,
                ",".join(self.labels),
            ]
        )
        return hashlib.sha256(key.encode()).hexdigest()[:24]


def batched(records: Iterable[T], size: int, first: int | None = None) -> Iterator[list[T]]:
    """Lists of up to ``size`` records; with ``first``, the batches start at that size and double up to
    ``size`` (an import's first reports become searchable within seconds, later batches stay large)."""
    n = min(first or size, size)
    batch: list[T] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= n:
            yield batch
            batch = []
            n = min(2 * n, size)
    if batch:
        yield batch

