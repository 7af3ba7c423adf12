"""Progress of an archive build, readable from any process, and the background build the demo starts.

The demo starts the UI first and embeds the report archive behind it. Every batch is searchable as soon
as it is stored (vectors, then the SQLite rows the lexical index is rebuilt from), so a search during the
build answers from the reports indexed so far and says how far the build is (「作成中です（N/M 件）」).
The state lives in a small JSON file beside the store, so a CLI ``ask`` in another process sees it too;
a build whose process died is reported as interrupted, not as running.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from dokuei.atomic import atomic_file

log = logging.getLogger(__name__)

FILE_NAME = "build-progress.json"
BuildState = Literal["building", "done", "failed", "interrupted"]


@dataclass
class BuildProgress:
    state: BuildState
    total_reports: int
    done_reports: int = 0
    started_utc: str = field(default_factory=lambda: _now())
    updated_utc: str = field(default_factory=lambda: _now())
    pid: int = field(default_factory=os.getpid)
    error: str = ""

    @property
    def building(self) -> bool:
        return self.state == "building"

    def progress_ja(self) -> str:
        return f"レポート索引は作成中です（{self.done_reports}/{self.total_reports} 件）。"

    def note_ja(self) -> str:
        """One line for an answer: how far the archive is built."""
        if self.state == "building":
            return self.progress_ja() + "結果は作成済みの分からの検索です。"
        if self.state == "interrupted":
            return (f"レポート索引の作成が途中で止まっています（{self.done_reports}/{self.total_reports} 件）。"
                    "`dokuei index demo` で再開できます。")
        if self.state == "failed":
            return "レポート索引の作成に失敗しました（詳細はログを参照してください）。"
        return ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def progress_path(root: Path) -> Path:
    return root / FILE_NAME


def write_progress(root: Path, progress: BuildProgress) -> None:
    """Atomically replace the progress file (a reader never sees half a file)."""
    root.mkdir(parents=True, exist_ok=True)
    progress.updated_utc = _now()
    with atomic_file(progress_path(root)) as fh:
        fh.write(json.dumps(asdict(progress), ensure_ascii=False).encode("utf-8"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def read_progress(root: Path) -> BuildProgress | None:
    """The last build's progress; a "building" state whose process is gone reads as "interrupted"."""
    path = progress_path(root)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        progress = BuildProgress(**raw)
    except (OSError, ValueError, TypeError) as exc:
        log.warning("unreadable build progress %s: %s", path, exc)
        return None
    if progress.state == "building" and not _alive(progress.pid):
        progress.state = "interrupted"
    return progress


class ProgressCounter:
    """Counts reports as the importers store them and writes the file at most every ``every_s``."""

    def __init__(self, root: Path, total_reports: int, every_s: float = 1.0) -> None:
        self.root = root
        self.progress = BuildProgress(state="building", total_reports=total_reports)
        self.every_s = every_s
        self._last = 0.0
        write_progress(root, self.progress)

    def add(self, n_reports: int) -> None:
        self.progress.done_reports += n_reports
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            write_progress(self.root, self.progress)

    def finish(self, state: BuildState, error: str = "") -> None:
        self.progress.state = state
        self.progress.error = error
        write_progress(self.root, self.progress)


def start_background(name: str, build: Callable[[], object]) -> threading.Thread:
    """Run ``build`` in a daemon thread; its failure is logged (the progress file says "failed")."""

    def body() -> None:
        t0 = time.perf_counter()
        try:
            build()
        except Exception:
            log.exception("background %s failed", name)
            return
        log.info("background %s finished in %.0f s", name, time.perf_counter() - t0)

    thread = threading.Thread(target=body, name=f"dokuei-{name}", daemon=True)
    thread.start()
    return thread


__all__ = ["BuildProgress", "ProgressCounter", "progress_path", "read_progress", "start_background",
           "write_progress"]
