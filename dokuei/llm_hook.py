"""The configured LLM, for tools below the agent layer (report tools: draft_impression, the
critical-finding judge). Tools may not import the agent; the agent registers its chat backend here
when it is a real LLM, and a tool asks :func:`generate_ja`. With no LLM configured, or when the model
fails, the tool gets ``None`` and keeps its deterministic path: a tool must never depend on this.

Whatever a tool does with the text, its result still goes through the agent's verifier like any other
evidence; the hook adds no trust.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: OpenAI-style messages in, the model's text out
TextGenerator = Callable[[list[dict[str, str]]], str]


@dataclass(frozen=True)
class RegisteredLlm:
    name: str
    generate: TextGenerator


_lock = threading.Lock()
_current: RegisteredLlm | None = None


def register(name: str, generate: TextGenerator | None) -> None:
    """Make ``generate`` the LLM report tools use (``None`` unregisters)."""
    global _current
    with _lock:
        _current = RegisteredLlm(name, generate) if generate is not None else None


def current() -> RegisteredLlm | None:
    with _lock:
        return _current


def generate_ja(system: str, user: str) -> tuple[str, str] | None:
    """(backend name, text) from the configured LLM, or ``None`` (none configured, failed, empty)."""
    llm = current()
    if llm is None:
        return None
    try:
        text = llm.generate([{"role": "system", "content": system}, {"role": "user", "content": user}])
    except Exception as exc:  # a model failure leaves the tool on its deterministic path
        log.warning("LLM hook (%s) failed: %s", llm.name, exc)
        return None
    return (llm.name, text) if text.strip() else None
