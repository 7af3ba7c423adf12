"""Files written whole or not at all: a reader in another thread or process never loads half a file."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path, mode: int = 0o666) -> Iterator[BinaryIO]:
    """Write into a temporary file beside ``path`` (named per process and thread), renamed over ``path``
    when the block ends without error; on an error ``path`` keeps its old content. ``mode`` is the new
    file's permission (``0o600`` for patient data and audit heads; the umask may only narrow it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as fh:
            yield fh
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["atomic_file"]
