"""Files written whole or not at all: a reader in another thread or process never loads half a file."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write into a temporary file beside ``path`` (named per process and thread), renamed over ``path``
    when the block ends without error; on an error ``path`` keeps its old content."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["atomic_file"]
