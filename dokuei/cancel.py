"""Stopping a turn that is running: the UI's 停止 button sets the turn's event; the agent stops waiting
for its tools, a tool in a worker process is killed, and the turn ends with :class:`TurnCancelled`.

The event travels with the turn as a context variable (set by whoever runs the turn); threads the agent
starts for its tools take it along by running in a copy of the context. A tool running in-process
cannot be interrupted: its result is discarded when it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CURRENT: ContextVar[threading.Event | None] = ContextVar("dokuei_turn_cancel", default=None)

STOPPED_JA = "停止しました（実行中のツールを中止し、この質問には回答していません）。"


class TurnCancelled(Exception):
    """The user stopped the turn; nothing of it is shown as an answer."""


@contextmanager
def cancellable(event: threading.Event) -> Iterator[threading.Event]:
    token = _CURRENT.set(event)
    try:
        yield event
    finally:
        _CURRENT.reset(token)


def current() -> threading.Event | None:
    return _CURRENT.get()


def requested() -> bool:
    event = _CURRENT.get()
    return event is not None and event.is_set()


def check() -> None:
    """Raise :class:`TurnCancelled` when this turn was stopped."""
    if requested():
        raise TurnCancelled(STOPPED_JA)


__all__ = ["STOPPED_JA", "TurnCancelled", "cancellable", "check", "current", "requested"]
