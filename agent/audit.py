"""Append-only audit trail: one JSON line per turn, each chained to the previous by sha256.

Files are ``$DOKUEI_HOME/audit/audit-YYYYMMDD.jsonl``. A record holds the question, attachments with
their hashes, the plan, every tool call (input hash, status, result hash, runtime), the answer, the
backend and timings. ``verify_chain`` re-reads a file and says where it was altered, if anywhere.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GENESIS = "0" * 64


def _record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _last_hash(path: Path) -> str:
    if not path.exists() or path.stat().st_size == 0:
        return GENESIS
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 65536))
        tail = fh.read().splitlines()
    for line in reversed(tail):
        if line.strip():
            return str(json.loads(line)["sha256"])
    return GENESIS


def append(audit_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one record under an exclusive lock and return it with its chain fields."""
    audit_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    path = audit_dir / f"audit-{now:%Y%m%d}.jsonl"
    with path.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            full = {"time_utc": now.isoformat(), **record, "prev_sha256": _last_hash(path)}
            full["sha256"] = _record_hash(full)
            fh.write(json.dumps(full, ensure_ascii=False, default=str) + "\n")
            fh.flush()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return full


def verify_chain(path: Path) -> tuple[bool, int | None]:
    """(True, None) if every record's hash and link hold; else (False, 1-based line of the first break)."""
    prev = GENESIS
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        record = json.loads(line)
        if record.get("prev_sha256") != prev or _record_hash(record) != record.get("sha256"):
            return False, lineno
        prev = record["sha256"]
    return True, None
