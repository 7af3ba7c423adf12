"""Append-only audit trail: one JSON line per turn, chained by sha256 within a day and across days.

Files are ``$DOKUEI_HOME/audit/audit-YYYYMMDD.jsonl``. Every record carries ``seq`` (1, 2, … within its
file), ``prev_sha256`` (the previous record's hash; the first record of a day links to the last record
of the previous day's file, the very first to ``GENESIS``), its own ``sha256`` and, when an
``audit_hmac_key`` is configured, an ``hmac`` that an editor without the key cannot recompute.
``HEAD.json`` beside the files names the last record written, so a truncated tail is noticed too.

Writing never fails a turn: a torn or garbage line (a crash mid-write, an editor) is skipped and the next
record links to the last good one; ``verify_dir`` then names the exact broken line. Records are bounded
(``MAX_FIELD_CHARS`` per string, ``MAX_RECORD_BYTES`` per line): long texts are cut and carry their sha256.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dokuei.atomic import atomic_file

log = logging.getLogger(__name__)

GENESIS = "0" * 64
HEAD_NAME = "HEAD.json"
#: a string longer than this is stored cut, with the sha256 and length of the whole
MAX_FIELD_CHARS = 2000
#: a record line never exceeds this; a record that would is reduced to hashes of its large parts
MAX_RECORD_BYTES = 32 * 1024
#: how much of a file's end is read to find its last good record (records are bounded, so this suffices)
TAIL_BYTES = 4 * MAX_RECORD_BYTES


@dataclass(frozen=True)
class Problem:
    """One break in the trail: the file, the 1-based line (0 when the whole file is concerned), why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return f"{where}: {self.reason}"


def text_digest(text: str) -> dict[str, Any]:
    """What the audit keeps of a text it must not store: its hash and length."""
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text)}


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return {"truncated": value[:MAX_FIELD_CHARS], **text_digest(value)}
    if isinstance(value, dict):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value]
    return value


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str, sort_keys=True)


def bound_record(record: dict[str, Any]) -> dict[str, Any]:
    """Cut long strings; if the record is still too large, replace its largest fields by their hashes."""
    bounded: dict[str, Any] = _bounded(record)
    budget = MAX_RECORD_BYTES - 1024  # room for the chain fields added afterwards
    while len(_dumps(bounded).encode()) > budget:
        sizes = {k: len(_dumps({"v": v})) for k, v in bounded.items() if not isinstance(v, int | float | bool)}
        largest = max(sizes, key=sizes.__getitem__)
        if sizes[largest] < 200:
            break  # nothing left worth hashing (cannot happen with sane keys)
        bounded[largest] = {"omitted": True, **text_digest(_dumps({"v": bounded[largest]}))}
    return bounded


def _record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("sha256", "hmac")}
    return hashlib.sha256(_dumps(body).encode()).hexdigest()


def _mac(key: str, digest: str) -> str:
    return hmac.new(key.encode(), digest.encode(), hashlib.sha256).hexdigest()


def _parse(line: bytes | str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return None
    return record


def _last_good(path: Path) -> dict[str, Any] | None:
    """The last line of a file that parses as a record, ignoring torn or garbage lines."""
    if not path.exists():
        return None
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - TAIL_BYTES))
        tail = fh.read().splitlines()
    for line in reversed(tail):
        record = _parse(line) if line.strip() else None
        if record is not None:
            return record
    last = None  # the tail holds no whole record (e.g. one huge planted line): read the file line by line
    with path.open("rb") as fh:
        for line in fh:
            last = _parse(line) or last
    return last


def _day_files(audit_dir: Path) -> list[Path]:
    return sorted(audit_dir.glob("audit-*.jsonl"))


def _previous_link(audit_dir: Path, path: Path) -> str:
    """The hash a new file's first record links to: the last record of the newest earlier file."""
    earlier = [p for p in _day_files(audit_dir) if p.name < path.name]
    for prev in reversed(earlier):
        record = _last_good(prev)
        if record is not None:
            return str(record["sha256"])
    return GENESIS


def _private_open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)


def append(audit_dir: Path, record: dict[str, Any], hmac_key: str | None = None,
           now: datetime | None = None) -> dict[str, Any]:
    """Append one bounded record under an exclusive lock and return it with its chain fields.

    ``now`` (UTC) picks the day file; tests pass it to build a trail over several days.
    """
    audit_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = now or datetime.now(UTC)
    path = audit_dir / f"audit-{now:%Y%m%d}.jsonl"
    with os.fdopen(_private_open(path), "r+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            last = _last_good(path)
            prefix = b""
            if fh.seek(0, os.SEEK_END) > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a torn last line: start the new record on its own line
                    log.error("audit file %s ends in a torn line; appending after it", path)
                    prefix = b"\n"
            full = {"time_utc": now.isoformat(), **bound_record(record),
                    "seq": int(last.get("seq", 0)) + 1 if last else 1,
                    "prev_sha256": str(last["sha256"]) if last else _previous_link(audit_dir, path)}
            full["sha256"] = _record_hash(full)
            if hmac_key:
                full["hmac"] = _mac(hmac_key, full["sha256"])
            fh.write(prefix + (_dumps(full) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
            _write_head(audit_dir, path.name, full, hmac_key)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return full


def _write_head(audit_dir: Path, file_name: str, record: dict[str, Any], hmac_key: str | None) -> None:
    head: dict[str, Any] = {"file": file_name, "seq": record["seq"], "sha256": record["sha256"]}
    if hmac_key:
        head["hmac"] = _mac(hmac_key, f"{file_name}:{record['seq']}:{record['sha256']}")
    with atomic_file(audit_dir / HEAD_NAME, mode=0o600) as out:
        out.write(json.dumps(head).encode("utf-8"))


def _check_file(path: Path, prev: str, hmac_key: str | None) -> tuple[list[Problem], dict[str, Any] | None]:
    """Problems of one file given the hash its first record must link to, and its last good record."""
    problems: list[Problem] = []
    expected_seq, last = 1, None
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        problems.append(Problem(path.name, data.count(b"\n") + 1, "torn last line (no newline)"))
    for lineno, raw in enumerate(data.splitlines(), start=1):
        record = _parse(raw)
        if len(raw) > MAX_RECORD_BYTES:
            problems.append(Problem(path.name, lineno, f"record of {len(raw):,} bytes, over the "
                                    f"{MAX_RECORD_BYTES:,}-byte bound (not written by dokuei)"))
        if record is None:
            if lineno != data.count(b"\n") + 1 or data.endswith(b"\n"):
                problems.append(Problem(path.name, lineno, "not a valid record (garbage or torn line)"))
            continue
        if _record_hash(record) != record["sha256"]:
            problems.append(Problem(path.name, lineno, "record edited: its sha256 does not match its content"))
        elif hmac_key and not hmac.compare_digest(str(record.get("hmac", "")), _mac(hmac_key, record["sha256"])):
            problems.append(Problem(path.name, lineno, "record rewritten: its HMAC does not match the key"))
        if record.get("prev_sha256") != prev:
            reason = ("first record does not link to the previous day's last record (a day file deleted or "
                      "its tail truncated?)" if lineno == 1 else "link to the previous record broken (a line "
                      "deleted or reordered?)")
            problems.append(Problem(path.name, lineno, reason))
        if record.get("seq") != expected_seq:
            problems.append(Problem(path.name, lineno, f"sequence number {record.get('seq')} where "
                                    f"{expected_seq} was expected (a record missing?)"))
        expected_seq = int(record.get("seq") or expected_seq) + 1
        prev, last = str(record["sha256"]), record
    return problems, last


def verify_dir(audit_dir: Path, hmac_key: str | None = None) -> list[Problem]:
    """Every break in the whole trail, in file and line order; an empty list means intact."""
    problems: list[Problem] = []
    prev, last, last_file = GENESIS, None, ""
    for path in _day_files(audit_dir):
        found, file_last = _check_file(path, prev, hmac_key)
        problems.extend(found)
        if file_last is not None:
            prev, last, last_file = str(file_last["sha256"]), file_last, path.name
    problems.extend(_check_head(audit_dir, last, last_file, hmac_key))
    return problems


def _check_head(audit_dir: Path, last: dict[str, Any] | None, last_file: str,
                hmac_key: str | None) -> list[Problem]:
    head_path = audit_dir / HEAD_NAME
    if not head_path.exists():
        return [Problem(HEAD_NAME, 0, "missing although records exist")] if last else []
    try:
        head = json.loads(head_path.read_text(encoding="utf-8"))
    except ValueError:
        return [Problem(HEAD_NAME, 1, "not valid JSON")]
    if hmac_key:
        mac = _mac(hmac_key, f"{head.get('file')}:{head.get('seq')}:{head.get('sha256')}")
        if not hmac.compare_digest(str(head.get("hmac", "")), mac):
            return [Problem(HEAD_NAME, 1, "HMAC does not match the key")]
    if last is None or (head.get("file"), head.get("sha256")) != (last_file, last["sha256"]):
        return [Problem(str(head.get("file")), int(head.get("seq") or 0),
                        f"the last record written (seq {head.get('seq')} in {head.get('file')}) is missing: "
                        "the tail was truncated or the file deleted")]
    return []


def verify_chain(path: Path, hmac_key: str | None = None) -> tuple[bool, int | None]:
    """One file on its own: (True, None) if intact, else (False, first broken line).

    The first record's link to the previous day is not checked here; :func:`verify_dir` checks it.
    """
    first = _parse(path.read_bytes().split(b"\n", 1)[0])
    problems, _ = _check_file(path, str(first.get("prev_sha256")) if first else GENESIS, hmac_key)
    return (False, problems[0].line) if problems else (True, None)
