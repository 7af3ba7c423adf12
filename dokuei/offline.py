"""Offline by construction: every library's telemetry and hub access is switched off on import."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Each variable is documented by its library; values are only set when the user has not chosen one.
TELEMETRY_ENV: dict[str, str] = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb
    "DO_NOT_TRACK": "1",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
}


def totalseg_home() -> Path:
    """TotalSegmentator's home folder: its config and (by default) its weights live here."""
    return Path(os.environ.get("TOTALSEG_HOME_DIR", Path.home() / ".totalsegmentator"))


def disable_telemetry() -> None:
    """Set the telemetry switches of every library dokuei may import. Idempotent."""
    for key, value in TELEMETRY_ENV.items():
        os.environ.setdefault(key, value)


def write_totalseg_config() -> Path:
    """Make TotalSegmentator's config say ``send_usage_stats: false`` before it is ever imported.

    TotalSegmentator reads ``$TOTALSEG_HOME_DIR/config.json`` and posts usage statistics unless that
    key is false; writing it ourselves is the only switch it offers.
    """
    home = totalseg_home()
    config_path = home / "config.json"
    config: dict[str, object] = {}
    if config_path.exists():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError:
            log.warning("unreadable TotalSegmentator config %s; rewriting it", config_path)
    if config.get("send_usage_stats") is not False:
        config["send_usage_stats"] = False
        config.setdefault("prediction_counter", 0)
        home.mkdir(parents=True, exist_ok=True)
        config_path.write_text(json.dumps(config, indent=2))
    return config_path


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def switch_in_force(key: str) -> bool:
    """Whether ``key`` says what :data:`TELEMETRY_ENV` wants, in any boolean spelling the libraries
    accept: Gradio itself writes ``HF_HUB_DISABLE_TELEMETRY=True`` when a Blocks app loads."""
    value = os.environ.get(key, "").strip().lower()
    wanted = TELEMETRY_ENV[key].lower()
    return value in (_TRUE if wanted in _TRUE else _FALSE)


def telemetry_report() -> dict[str, bool]:
    """For ``dokuei doctor``: which switches are in force right now."""
    report = {key: switch_in_force(key) for key in TELEMETRY_ENV}
    config_path = totalseg_home() / "config.json"
    stats_off = False
    if config_path.exists():
        try:
            stats_off = json.loads(config_path.read_text()).get("send_usage_stats") is False
        except json.JSONDecodeError:
            stats_off = False
    report["totalsegmentator send_usage_stats=false"] = stats_off
    return report
