"""Domain errors: what the readers, measurements and models raise when they cannot go on.

They live at the bottom of the package so that ``dokuei.io``, ``dokuei.ct``, ``dokuei.lymph`` and
``dokuei.models`` need not import the tool layer. ``dokuei.tools.base`` names the same classes
``ToolInputError`` and ``ToolUnavailableError``; a tool turns them into failed/unavailable results.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input a clinician can fix: ``message_ja`` is Japanese and shown as is, ``detail`` goes to the log."""

    def __init__(self, message_ja: str, detail: str = "") -> None:
        super().__init__(message_ja)
        self.message_ja = message_ja
        self.detail = detail or message_ja


class UnavailableError(Exception):
    """The computation cannot run here (weights, GPU, licence): ``message_ja`` says how to fix it."""

    def __init__(self, message_ja: str, detail: str = "") -> None:
        super().__init__(message_ja)
        self.message_ja = message_ja
        self.detail = detail or message_ja
