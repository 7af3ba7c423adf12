"""The report archive and the versioned reference data (norms, criteria, thresholds, model cards).

Reference data lives in ``knowledge/data/*.json``, each file naming its edition and sources. Read it
through :func:`load_json` so every module finds it the same way, in a checkout and in a wheel.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"


def data_path(name: str) -> Path:
    """The path of a reference-data file, e.g. ``data_path("recist_1_1.json")``."""
    return DATA_DIR / name


@cache
def load_json(name: str) -> dict[str, Any]:
    """A reference-data file, parsed once per process. Treat the result as read-only."""
    data: dict[str, Any] = json.loads(data_path(name).read_text(encoding="utf-8"))
    return data
