"""Stored turn results, so ``dokuei export TURN_ID`` can rebuild exports after the turn.

The audit record keeps hashes only (question, answer, each result's sha256), not the measurements an
export needs, so each `dokuei ask` also stores its ``TurnResult.to_json()`` as
``$DOKUEI_HOME/turns/<turn id>.json`` (file 0600, folder 0700), de-identified the way the audit and
the PHI-at-rest rules require (tests/safety/test_phi_at_rest.py):

- the question is kept only with ``question_retention = "full"``, otherwise as its sha256 and length;
- every attachment path, and every file or folder name in it, is replaced by ``[file:<sha256 prefix>]``
  wherever it appears (inputs, notes, citations, provenance keys): a file name may be a patient's name;
- patient ids are keyed hashes already (the agent hashes them before the graph).

The file also keeps the sha256 of each ToolResult (as the audit record has them), so an export first
finds the audited turn with the same results in the audit trail and refuses a stored turn that has none.
Because paths are not stored, SR/SEG from a stored turn need the source study again (``--source``);
its content must hash to the value the tool recorded (provenance ``file_sha256``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

from dokuei.export.errors import ExportError
from dokuei.settings import Settings

log = logging.getLogger(__name__)

TURN_ID = re.compile(r"^[0-9a-f]{16}$")
PLACEHOLDER = re.compile(r"^\[file:[0-9a-f]{12}\]$")


def turns_dir(settings: Settings) -> Path:
    return settings.home / "turns"


def _placeholder(text: str) -> str:
    return f"[file:{hashlib.sha256(text.encode()).hexdigest()[:12]}]"


def _sensitive(turn: dict[str, Any]) -> dict[str, str]:
    """Every attachment path and the file/folder names in it → its placeholder (longest first)."""
    paths: set[str] = {str(a.get("path")) for a in turn.get("attachments", []) if a.get("path")}
    for call in turn.get("tool_calls", []):
        for key, value in (call.get("input") or {}).items():
            if key.endswith(("_path", "_paths")):
                for v in value if isinstance(value, list) else [value]:
                    if v:
                        paths.add(str(v))
    found: dict[str, str] = {}
    home_parts = set(Path.home().parts)
    for p in paths:
        found[p] = _placeholder(p)
        path = Path(p)
        for part in (path.name, path.name.split(".")[0], path.parent.name):
            if len(part) >= 4 and part not in home_parts and part not in ("tmp", "home", "data", "study"):
                found.setdefault(part, _placeholder(part))
    return dict(sorted(found.items(), key=lambda kv: -len(kv[0])))


def _scrub(value: Any, table: dict[str, str]) -> Any:
    if isinstance(value, str):
        for needle, repl in table.items():
            value = value.replace(needle, repl)
        return value
    if isinstance(value, dict):
        return {_scrub(k, table): _scrub(v, table) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, table) for v in value]
    return value


def deidentify(turn: dict[str, Any], question: str, settings: Settings) -> dict[str, Any]:
    """The turn as stored: paths and file names replaced, the question kept per question_retention."""
    # artifacts live under $DOKUEI_HOME and are named by hashes: keep their paths (the PDF embeds them)
    artifacts = [[dict(a) for a in call.get("artifacts", [])] for call in turn.get("tool_calls", [])]
    stored: dict[str, Any] = _scrub(turn, _sensitive(turn))
    for call, kept in zip(stored.get("tool_calls", []), artifacts, strict=True):
        call["artifacts"] = [a for a in kept if str(a.get("path", "")).startswith(str(settings.home))]
    digest = {"sha256": hashlib.sha256(question.encode()).hexdigest(), "chars": len(question)}
    stored["question"] = question if settings.question_retention == "full" else digest
    return stored


def save_turn(settings: Settings, turn: dict[str, Any], question: str, result_sha256: list[str]) -> str:
    """Store one turn de-identified; returns its turn id (16 hex)."""
    turn_id = uuid.uuid4().hex[:16]
    folder = turns_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    record = {**deidentify(turn, question, settings), "turn_id": turn_id, "result_sha256": result_sha256}
    path = folder / f"{turn_id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, ensure_ascii=False, default=str)
    log.info("turn %s stored", turn_id)
    return turn_id


def store_turn(settings: Settings, turn: dict[str, Any], question: str, result_sha256: list[str]) -> str:
    """Keep a turn that ran tools for ``dokuei export TURN_ID`` (CLI, UI and MCP alike); "" when it ran
    none or cannot be stored (the answer is never lost for that: the failure is logged)."""
    if not turn.get("tool_calls"):
        return ""
    try:
        return save_turn(settings, turn, question, result_sha256)
    except OSError:
        log.exception("turn result could not be stored")
        return ""


def _audited(settings: Settings, turn: dict[str, Any]) -> bool:
    wanted = sorted(turn.get("result_sha256") or [])
    for path in sorted(settings.audit_dir.glob("audit-*.jsonl"), reverse=True):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("session_id") == turn.get("session_id") and sorted(
                    c.get("result_sha256", "") for c in record.get("tool_calls", [])) == wanted:
                return True
    return False


def load_turn(settings: Settings, turn_id: str) -> dict[str, Any]:
    """A stored turn, checked against the audit trail; ExportError (Japanese) otherwise."""
    if not TURN_ID.match(turn_id):
        raise ExportError(f"ターン ID「{turn_id[:40]}」の形式が正しくありません（16 桁の英数字）。")
    path = turns_dir(settings) / f"{turn_id}.json"
    if not path.is_file():
        raise ExportError(f"ターン {turn_id} の記録が {turns_dir(settings)} にありません。")
    try:
        turn: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ExportError(f"ターン {turn_id} の記録が壊れています。") from exc
    if not _audited(settings, turn):
        raise ExportError(f"ターン {turn_id} に対応する監査記録が見つからないため、書き出しません。")
    return turn


def point_to_source(turn: dict[str, Any], source: Path) -> dict[str, Any]:
    """The stored turn with its CT calls' study path set to ``source``, after checking its content hash."""
    from dokuei.export.sr import SR_TOOLS
    from dokuei.tools.base import sha256_path

    digest = sha256_path(source)
    turn = json.loads(json.dumps(turn))
    for call in turn.get("tool_calls", []):
        field = SR_TOOLS.get(call.get("name", ""))
        if not field:
            continue
        hashes = {k.split(":", 1)[0]: v for k, v in ((call.get("provenance") or {}).get("file_sha256") or {}).items()
                  if k.split(":", 1)[0] == field}
        if hashes and digest not in hashes.values():
            raise ExportError(f"指定された元画像 {source.name} は、このターンで計測した画像と内容が一致しません。")
        inp = call.setdefault("input", {})
        inp[field] = [*inp[field][:-1], str(source)] if isinstance(inp.get(field), list) else str(source)
        inp["segmentation_paths"] = []
    return turn


def needs_source(turn: dict[str, Any]) -> bool:
    """True when a CT call's study path was replaced by a placeholder (a stored turn)."""
    from dokuei.export.sr import SR_TOOLS

    for call in turn.get("tool_calls", []):
        value = (call.get("input") or {}).get(SR_TOOLS.get(call.get("name", ""), ""), "")
        values = value if isinstance(value, list) else [value]
        if any(PLACEHOLDER.match(str(v)) for v in values if v):
            return True
    return False
