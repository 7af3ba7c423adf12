"""Where a report archive lives, and how many reports it holds — cheap enough for tool listings
(imports neither numpy nor chromadb)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse

from dokuei.settings import Settings


def archive_root(settings: Settings, chroma_url: str | None = None) -> Path:
    """Where the SQLite store and lexical index live (beside the caller also for a chromadb server)."""
    url = chroma_url if chroma_url is not None else settings.chroma_url
    if url:
        u = urlparse(url)
        return settings.index_dir / f"reports-remote-{u.hostname}-{u.port or 8000}"
    return settings.index_dir / "reports"


def indexed_report_count(settings: Settings, chroma_url: str | None = None) -> int:
    """Reports in the archive, read without opening chromadb or loading a model (0 if none)."""
    path = archive_root(settings, chroma_url) / "reports.sqlite"
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM reports").fetchone()[0])
    except sqlite3.Error:
        return 0


__all__ = ["archive_root", "indexed_report_count"]
