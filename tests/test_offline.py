"""The suite's network guard and the telemetry switches."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from pytest_socket import SocketConnectBlockedError

from dokuei.offline import TELEMETRY_ENV, switch_in_force, telemetry_report, write_totalseg_config


def test_non_loopback_connection_is_refused_by_the_guard() -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): reserved for documentation. pytest-socket raises before
    # the real connect() runs, so no packet leaves the machine either way.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(SocketConnectBlockedError):
            sock.connect(("192.0.2.1", 80))
    finally:
        sock.close()


def test_importing_dokuei_switches_telemetry_off() -> None:
    import dokuei  # noqa: F401 - the import is the action under test

    # exact value, or another boolean spelling of it (Gradio rewrites HF_HUB_DISABLE_TELEMETRY to "True")
    for key, value in TELEMETRY_ENV.items():
        assert os.environ[key] == value or switch_in_force(key), (key, os.environ[key])
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "0"
    try:
        assert not switch_in_force("HF_HUB_DISABLE_TELEMETRY")  # a user who turned it back on is reported
    finally:
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


def test_totalsegmentator_usage_stats_are_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"send_usage_stats": True, "totalseg_id": "x"}))
    path = write_totalseg_config()
    config = json.loads(path.read_text())
    assert config["send_usage_stats"] is False
    assert config["totalseg_id"] == "x"  # the rest of the user's config is kept
    assert telemetry_report()["totalsegmentator send_usage_stats=false"] is True
