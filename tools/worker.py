"""Heavy tools run in worker processes, where a timeout really stops them.

A thread cannot be stopped: a CT segmentation that overran its timeout kept its thread and its CPU (a
5 s timeout still took 46 s to exit). A tool that declares ``heavy = True`` therefore runs in a child
process started with the ``spawn`` method (no fork of a parent that may hold CUDA or threads). The child
builds the tool from its class's import path, calls it with the validated input and sends back the
:class:`ToolResult` as JSON; past the deadline the parent kills the child and answers
「ツール X は N 秒で打ち切りました」 as a failed result with provenance.

Processes are reused: a :class:`WorkerPool` keeps up to ``size`` idle workers (a tool's ``setup()`` —
model loading — then happens once per worker, not per call). A killed or crashed worker is replaced
by a fresh one on the next call. Waiting for a free worker counts toward the call's deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.util  # registers its exit handler before ours: ours (LIFO) then runs first
import os
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from pydantic import BaseModel, ValidationError

from dokuei import cancel
from dokuei.settings import Settings
from dokuei.tools.base import Provenance, Tool, ToolResult, ToolStatus, _sha256_json

log = logging.getLogger(__name__)

#: environment variables a worker takes from the parent at every call (tools read their model folders
#: from them, and a test or a deployment may change them after the worker started)
ENV_PREFIXES = ("DOKUEI_", "TOTALSEG_", "nnUNet_", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")
#: how long a killed worker gets to disappear before it is left to the OS
_KILL_JOIN_S = 5.0
#: how often a waiting call looks whether its turn was stopped (s)
_STOP_POLL_S = 0.2

_CONTEXT = multiprocessing.get_context("spawn")


def timeout_summary_ja(name: str, timeout_s: float) -> str:
    return (f"ツール {name} は {timeout_s:g} 秒で打ち切りました"
            f"（制限時間 {timeout_s:g} 秒を超えたため処理を停止しました）。")


def tool_target(tool: Tool[Any]) -> str:
    """``module:QualName`` of the tool's class: what a worker imports to build the same tool."""
    cls = type(tool)
    return f"{cls.__module__}:{cls.__qualname__}"


def _env_snapshot() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}


# --- the child ---------------------------------------------------------------------------------------
def _build_tool(target: str, settings: Settings) -> Tool[Any]:
    import importlib

    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Tool)):
        raise TypeError(f"{target} is not a dokuei Tool")
    tool: Tool[Any] = obj(settings)
    return tool


def _apply_env(env: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith(ENV_PREFIXES) and k not in env]:
        del os.environ[key]
    os.environ.update(env)


def worker_main(conn: Connection) -> None:
    """A worker's loop: one job at a time, until the parent closes the pipe (or sends None)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(process)d %(name)s: %(message)s")
    tools: dict[tuple[str, Settings], Tool[Any]] = {}
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if job is None:
            return
        target, settings, input_json, parameters, env = job
        try:
            _apply_env(env)
            key = (target, settings)
            if key not in tools:
                tools[key] = _build_tool(target, settings)
            reply = ("ok", tools[key](input_json, **parameters).model_dump_json())
        except BaseException as exc:  # reported to the parent, which makes it a failed result
            log.exception("worker job %s failed", target)
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


# --- the parent --------------------------------------------------------------------------------------
@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(_KILL_JOIN_S)

    def stop(self) -> None:
        """Ask an idle worker to leave; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(1.0)
        self.kill()


def _start_worker() -> _Worker:
    parent_end, child_end = _CONTEXT.Pipe(duplex=True)
    # not daemonic: a daemonic process may not start children, and nnU-Net preprocesses in child processes
    process = _CONTEXT.Process(target=worker_main, args=(child_end,), name="dokuei-tool-worker", daemon=False)
    process.start()
    child_end.close()
    return _Worker(process, parent_end)


class WorkerPool:
    """Worker processes for heavy tools, reused across calls; at most ``size`` run at once."""

    def __init__(self, size: int = 2) -> None:
        self.size = max(1, size)
        self._idle: list[_Worker] = []
        self._busy = 0
        self._all: dict[int, _Worker] = {}
        self._cond = threading.Condition()
        self._closed = False
        #: pid of the worker that took the latest call (for tests and logs)
        self.last_pid: int | None = None
        _POOLS.add(self)

    # --- workers ---------------------------------------------------------------------------------
    def _acquire(self, deadline: float) -> _Worker | None:
        """An idle worker, or a new one while fewer than ``size`` are busy; None past the deadline."""
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("worker pool closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        self._busy += 1
                        return worker
                    self._all.pop(id(worker), None)
                if self._busy < self.size:
                    self._busy += 1  # the slot is held while the process starts (outside the lock)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
        try:
            worker = _start_worker()
        except BaseException:
            with self._cond:
                self._busy -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all[id(worker)] = worker
        return worker

    def _release(self, worker: _Worker, reusable: bool) -> None:
        if not reusable:
            worker.kill()
        with self._cond:
            self._busy -= 1
            keep = reusable and not self._closed and worker.alive()
            if keep:
                self._idle.append(worker)
            else:
                self._all.pop(id(worker), None)
            self._cond.notify()
        if reusable and not keep:
            worker.stop()

    def close(self) -> None:
        """Stop every worker (idle ones politely, busy ones killed)."""
        with self._cond:
            self._closed = True
            workers = list(self._all.values())
            self._idle.clear()
            self._all.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.stop()

    # --- calls -----------------------------------------------------------------------------------
    def run(self, tool: Tool[Any], raw: BaseModel | dict[str, Any], timeout_s: float,
            **parameters: Any) -> ToolResult:
        """Run ``tool`` on ``raw`` in a worker; past ``timeout_s`` (waiting for a worker included) the
        worker is killed and a failed result says so. Never raises."""
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        started = datetime.now(UTC)
        try:
            inp = raw if isinstance(raw, tool.Input) else tool.Input.model_validate(raw)
        except ValidationError:
            return tool(raw, **parameters)  # the in-process call builds the same failed result, no process needed
        input_json = inp.model_dump(mode="json")
        job = (tool_target(tool), tool.settings, input_json, parameters, _env_snapshot())

        def failed(summary_ja: str, detail: str) -> ToolResult:
            prov = Provenance(tool=tool.name, tool_version=tool.version, started_utc=started, parameters=parameters,
                              input_sha256=_sha256_json(input_json), device="worker process",
                              runtime_s=round(time.perf_counter() - t0, 4))
            return ToolResult(tool=tool.name, status=ToolStatus.FAILED, input=input_json, summary_ja=summary_ja,
                              error_detail=detail, provenance=prov)

        try:
            worker = self._acquire(deadline)
        except Exception as exc:  # a worker that cannot start is a failed step, not a crashed turn
            log.exception("tool %s: no worker process could be started", tool.name)
            return failed(f"ツール {tool.name} の実行プロセスを起動できませんでした。詳細はログを確認してください。",
                          f"worker start: {type(exc).__name__}: {exc}")
        if worker is None:
            log.warning("tool %s: no free worker within %.1f s", tool.name, timeout_s)
            return failed(timeout_summary_ja(tool.name, timeout_s), f"timeout {timeout_s:g} s waiting for a worker")
        self.last_pid = worker.pid
        reusable = False
        try:
            worker.conn.send(job)
            stop = cancel.current()  # the UI's 停止: the worker is killed like at a timeout
            while not worker.conn.poll(max(0.0, min(_STOP_POLL_S, deadline - time.monotonic()))):
                if stop is not None and stop.is_set():
                    log.info("tool %s: stopped by the user; worker %s killed", tool.name, worker.pid)
                    return failed(f"ツール {tool.name} は停止しました。", f"stopped; worker pid {worker.pid} killed")
                if time.monotonic() >= deadline:
                    log.warning("tool %s: timeout after %.1f s; worker %s killed", tool.name, timeout_s,
                                worker.pid)
                    return failed(timeout_summary_ja(tool.name, timeout_s),
                                  f"timeout {timeout_s:g} s; worker pid {worker.pid} killed")
            kind, payload = worker.conn.recv()
            reusable = True
        except (EOFError, OSError) as exc:
            worker.process.join(_KILL_JOIN_S)  # the exit code is known once the process is reaped
            code = worker.process.exitcode
            log.error("tool %s: worker %s died (exit code %s)", tool.name, worker.pid, code)
            return failed(f"ツール {tool.name} の実行プロセスが異常終了しました（終了コード {code}）。"
                          "詳細はログを確認してください。", f"worker died: {type(exc).__name__}: {exc}")
        finally:
            self._release(worker, reusable)
        if kind != "ok":
            return failed(f"{tool.name} の実行中にエラーが発生しました。詳細はログを確認してください。", str(payload))
        return ToolResult.model_validate_json(payload)


#: every live pool, closed at interpreter exit (before multiprocessing joins its non-daemonic children)
_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()
