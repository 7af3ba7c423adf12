"""Download buttons for the exports of the turn on screen: FHIR R4 JSON, PDF, plain text, and DICOM SR/SEG
where the SR/SEG writers are installed (``dokuei.export.sr`` / ``seg``; a format that cannot be written
for this turn, e.g. SR without a source DICOM series, is left out and logged).

The files are written under ``artifacts/exports/<session thread>/<checkpoint id>/`` (the only folder the
UI serves, see ``launch_options``) from the agent's checkpoint of that session thread, and only when that
checkpoint is the turn the chat shows (same question, the answer already in): a refused or failed turn,
a turn still running, or a new session offers nothing. Older turns' folders of the session are removed.

Mounting in ``ui/app.py`` (three lines)::

    from dokuei.ui.downloads import build_downloads
    downloads = build_downloads(settings, agent)                # where the buttons go
    chat.change(downloads.refresh, [state, chat], downloads.files)
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dokuei.export import ExportError
from dokuei.settings import Settings

log = logging.getLogger(__name__)

LABEL_JA = "この回答の書き出し（FHIR・PDF・テキスト・DICOM SR/SEG）"
_PENDING_PREFIX = "ツールを選んで実行しています"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def export_formats() -> list[str]:
    """The formats written for download: those dokuei can export, SR/SEG only when their writers exist."""
    import dokuei.export as export
    from dokuei.export import cli

    # the list moves to dokuei.export with the SR/SEG work
    listed: Any = getattr(export, "FORMATS", None) or getattr(cli, "FORMATS", ())
    known = tuple(str(f) for f in listed)
    extra = [f for f in ("sr", "seg") if f not in known]
    return [f for f in (*known, *extra)
            if f not in ("sr", "seg") or importlib.util.find_spec(f"dokuei.export.{f}") is not None]


def _text(content: Any) -> str:
    """A chat message's text (Gradio gives a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return ""


def _last_exchange(history: list[Any] | None) -> tuple[str, str] | None:
    """(question as shown, answer) of the chat's last completed exchange, or None while none is complete."""
    messages = [m for m in history or [] if isinstance(m, dict)]
    if len(messages) < 2 or messages[-1].get("role") != "assistant" or messages[-2].get("role") != "user":
        return None
    answer = _text(messages[-1].get("content"))
    if not answer or answer.startswith(_PENDING_PREFIX):
        return None
    return _text(messages[-2].get("content")), answer


def current_turn(agent: Any, thread: str, history: list[Any] | None) -> tuple[str, dict[str, Any], str] | None:
    """(checkpoint id, ``TurnResult.to_json()``, question) of the thread's last turn if it is the one on screen."""
    from dokuei.agent.graph import TurnResult
    from dokuei.ui.present import escape_markdown

    exchange = _last_exchange(history)
    graph = getattr(agent, "graph", None)
    if exchange is None or graph is None:
        return None
    snapshot = graph.get_state({"configurable": {"thread_id": thread}})
    values = dict(snapshot.values or {})
    question = str(values.get("question", ""))
    if not values.get("answer") or snapshot.next or escape_markdown(question) != exchange[0]:
        return None  # failed, still running, refused (the checkpoint is an older turn), or another session
    checkpoint = str((snapshot.config or {}).get("configurable", {}).get("checkpoint_id") or "")
    backend = getattr(getattr(agent, "backend", None), "name", "")
    turn = TurnResult(session_id=thread, answer_ja=str(values["answer"]), verified=bool(values.get("verified")),
                      backend=backend, citations=list(values.get("sources", [])),
                      results=list(values.get("results", [])), verify_issues=list(values.get("verify_issues", [])),
                      composer=str(values.get("composer", "")), attachments=list(values.get("turn_attachments", [])))
    return checkpoint, turn.to_json(), question


def write_turn_exports(settings: Settings, thread: str, checkpoint: str, turn: dict[str, Any],
                       question: str) -> list[Path]:
    """Write every available format for one turn into its own folder; a format that fails is skipped."""
    from dokuei.export.cli import write_exports

    session_dir = settings.artifacts_dir / "exports" / _SAFE.sub("_", thread)
    out_dir = session_dir / _SAFE.sub("_", checkpoint or "turn")
    if session_dir.is_dir():  # only the turn on screen is offered; older turns' files go
        for old in session_dir.iterdir():
            if old != out_dir:
                shutil.rmtree(old, ignore_errors=True)
    if out_dir.is_dir():
        existing = sorted(p for p in out_dir.iterdir() if p.is_file())
        if existing:
            return existing
    written: list[Path] = []
    for fmt in export_formats():
        try:
            written.extend(write_exports(turn, [fmt], out_dir, question))
        except (ExportError, ValueError, OSError) as exc:
            log.info("export %s not offered for thread %s: %s", fmt, thread, exc)
        except Exception:  # a writer's bug must not break the chat; the others are still offered
            log.exception("export %s failed for thread %s", fmt, thread)
    return written


@dataclass
class Downloads:
    files: Any  # gr.File
    refresh: Callable[[dict[str, Any], list[Any]], list[str]]


def build_downloads(settings: Settings, agent: Any) -> Downloads:
    """The download component (call inside the Blocks layout) and its refresh function."""
    import gradio as gr

    files = gr.File(label=LABEL_JA, file_count="multiple", interactive=False, value=None, elem_id="downloads")

    def refresh(state: dict[str, Any], history: list[Any]) -> list[str]:
        thread = str((state or {}).get("thread") or "")
        if not thread:
            return []
        try:
            found = current_turn(agent, thread, history)
            if found is None:
                return []
            return [str(p) for p in write_turn_exports(settings, thread, *found)]
        except Exception:  # downloads are a convenience: the chat must survive anything here
            log.exception("downloads for thread %s failed", thread)
            return []

    return Downloads(files=files, refresh=refresh)
