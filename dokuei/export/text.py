"""A turn as plain text for pasting into 電子カルテ: question, cited answer, measurement table, disclaimer."""

from __future__ import annotations

import re
from typing import Any

from dokuei.export.fhir import measurements

_SERVER_PATH = re.compile(r"(?:/[^\s/「」（）]+){2,}")

DISCLAIMER_JA = "本結果は AI による診療支援の参考情報です（未確定）。最終判断は担当医が行ってください。"


def without_paths(text: str) -> str:
    """Server file paths are never shown outside the server: the image itself travels instead."""
    return _SERVER_PATH.sub("（画像は別添）", text)


def turn_text(turn: dict[str, Any], question: str = "") -> str:
    lines = ["【dokuei 臨床支援結果】"]
    if question:
        lines += ["■ 質問", question, ""]
    lines += ["■ 回答", without_paths(str(turn.get("answer_ja", ""))).strip(), ""]
    rows = []
    for call in turn.get("tool_calls", []):
        if call.get("status") == "ok" and isinstance(call.get("output"), dict):
            rows += [f"{call['name']}\t{path}\t{value:g}\t{unit}" for path, value, _, unit in
                     measurements(call["output"])]
    if rows:
        lines += ["■ 計測値（ツール\t項目\t値\t単位）", *rows, ""]
    lines.append(f"※ 検証: {'OK' if turn.get('verified') else '未通過'}  バックエンド: {turn.get('backend', '?')}")
    lines.append(f"※ {DISCLAIMER_JA}")
    return "\n".join(lines) + "\n"
