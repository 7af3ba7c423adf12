"""Shared fixtures. The whole suite runs offline: pytest-socket (configured in pyproject's addopts)
blocks every connection except to loopback, so a test that tries to reach a hub fails loudly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dokuei.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings rooted in a temporary home, so tests never touch ~/.dokuei."""
    monkeypatch.setenv("DOKUEI_HOME", str(tmp_path / "home"))
    for key in [k for k in os.environ if k.startswith("DOKUEI_") and k not in ("DOKUEI_HOME", "DOKUEI_TESTDATA_DIR")]:
        monkeypatch.delenv(key, raising=False)
    yield Settings.load(home=tmp_path / "home")
