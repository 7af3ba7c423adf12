"""Verified streaming in the UI: the chat bubble shows the LLM's sentences as they pass the verifier.

``submit`` runs ``agent.ask`` on the UI's pool with a sink bound to that one request (a context
variable, so parallel sessions never see each other's text); the polling loop asks
:func:`pending_markdown` for the bubble text. Only verified sentences are shown (see
``agent/verified_stream.py``), under a heading that says the answer is not final yet; the final,
verified answer then replaces the bubble as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from dokuei.agent.verified_stream import StreamEvent, streaming_to
from dokuei.ui import present

HEADING_JA = "（検証を通った文から表示しています。確定した回答に置き換わります）"
WITHDRAWN_JA = "（下書きの続きが検証に通らなかったため、書き直しています…）"


class UiDraft:
    """The verified sentences of the current draft, shared between the worker and the poll loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sentences: list[str] = []
        self._withdrawn = False

    def __call__(self, event: StreamEvent) -> None:
        with self._lock:
            if event.kind == "sentence":
                if self._withdrawn:  # a rewrite starts streaming: the old draft's sentences go
                    self._sentences, self._withdrawn = [], False
                self._sentences.append(event.text)
            elif event.kind == "withdrawn":
                self._withdrawn = True

    def snapshot(self) -> tuple[list[str], bool]:
        with self._lock:
            return list(self._sentences), self._withdrawn


def bound(ask: Callable[..., Any]) -> tuple[Callable[..., Any], UiDraft]:
    """``ask`` wrapped so that, wherever it runs (the UI's turn queue), its stream lands in one draft."""
    draft = UiDraft()

    def run(*args: Any, **kwargs: Any) -> Any:
        with streaming_to(draft):
            return ask(*args, **kwargs)

    return run, draft


def submit(pool: Executor, ask: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Future[Any], UiDraft]:
    run, draft = bound(ask)
    return pool.submit(run, *args, **kwargs), draft


def pending_markdown(draft: UiDraft, waiting: str) -> str:
    """The bubble while the turn runs: ``waiting`` until a sentence passed, then those sentences."""
    sentences, withdrawn = draft.snapshot()
    if not sentences:
        return WITHDRAWN_JA if withdrawn else waiting
    body = present.escape_markdown("".join(sentences))
    return f"{HEADING_JA}\n\n{body}" + (f"\n\n{WITHDRAWN_JA}" if withdrawn else "")
