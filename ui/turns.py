"""Turns run on a fixed number of worker threads; a turn that has to wait knows its place in line, so the
page can say 「順番待ち（前に N 件）」 instead of looking stuck, and no question is ever dropped."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from dokuei import cancel


class Ticket:
    """One submitted turn: its future and, while it waits, how many turns are ahead of it."""

    def __init__(self, queue: TurnQueue) -> None:
        self._queue = queue
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.stop_event = threading.Event()

    def stop(self) -> None:
        """停止: a waiting turn ends at once and never runs; a running one stops waiting for its tools
        (dokuei.cancel) and ends as stopped."""
        self.stop_event.set()
        if self._queue.drop_waiting(self):
            self.future.set_exception(cancel.TurnCancelled(cancel.STOPPED_JA))

    def position(self) -> int:
        """0 once the turn is running (or done); otherwise 1 + the number of waiting turns ahead of it."""
        return self._queue.position(self)

    def done(self) -> bool:
        return self.future.done()

    def result(self) -> Any:
        return self.future.result()


class TurnQueue:
    def __init__(self, workers: int) -> None:
        self.workers = max(1, int(workers))
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ui-turn")
        self._lock = threading.Lock()
        self._waiting: list[Ticket] = []

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Ticket:
        ticket = Ticket(self)
        with self._lock:
            self._waiting.append(ticket)

        def run() -> None:
            if not self.drop_waiting(ticket):
                return  # stopped while it waited: its future already says so, and it never runs
            try:
                with cancel.cancellable(ticket.stop_event):
                    ticket.future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the page, which names it in Japanese
                ticket.future.set_exception(exc)

        self._pool.submit(run)
        return ticket

    def drop_waiting(self, ticket: Ticket) -> bool:
        """Take ``ticket`` out of the line; False when it was no longer waiting."""
        with self._lock:
            if ticket not in self._waiting:
                return False
            self._waiting.remove(ticket)
            return True

    def position(self, ticket: Ticket) -> int:
        with self._lock:
            return self._waiting.index(ticket) + 1 if ticket in self._waiting else 0

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)
