"""Split a report into sections (所見 / 診断 / 既往歴 / 依頼 …) and sentences, keeping the original text.

Section awareness is what stops 「既往歴: 気胸」 or 「依頼: 気胸疑い」 from being read as a finding: only
``findings`` and ``impression`` text (and text before any heading, taken as findings) is screened.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

SectionKind = Literal["findings", "impression", "history", "indication", "clinical_diagnosis", "department",
                      "comparison"]

#: sections whose text describes the image; everything else is context, never a finding
FINDING_SECTIONS: frozenset[str] = frozenset({"findings", "impression"})

_HEADINGS: dict[str, SectionKind] = {
    "所見": "findings", "画像所見": "findings", "findings": "findings", "finding": "findings",
    "診断": "impression", "診断欄": "impression", "結論": "impression", "impression": "impression",
    "conclusion": "impression", "まとめ": "impression",
    "既往歴": "history", "既往": "history", "病歴": "history", "history": "history",
    "clinical history": "history", "past history": "history",
    "依頼": "indication", "依頼内容": "indication", "依頼目的": "indication", "検査目的": "indication",
    "臨床情報": "indication", "臨床経過": "indication", "依頼/臨床情報": "indication",
    "indication": "indication", "reason for exam": "indication", "clinical information": "indication",
    "臨床診断": "clinical_diagnosis", "clinical diagnosis": "clinical_diagnosis",
    "依頼科": "department", "department": "department",
    "比較": "comparison", "comparison": "comparison",
}
_NAMES = "|".join(re.escape(h) for h in sorted(_HEADINGS, key=len, reverse=True))
#: 【所見】 anywhere, or ``所見:`` at the start of the text, a line or after a sentence end
_HEADING = re.compile(rf"【\s*({_NAMES})\s*】\s*[:：]?|(?<![^\s。．.])({_NAMES})\s*[:：]", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[。．！？!?])|(?<=\.)(?=\s)|\n+")


class ReportTextError(ValueError):
    """A report text that cannot be screened (empty, no finding text). ``message_ja`` is for the clinician."""

    def __init__(self, message_ja: str, detail: str = "") -> None:
        super().__init__(detail or message_ja)
        self.message_ja = message_ja


@dataclass(frozen=True)
class Sentence:
    section: SectionKind
    text: str  # original text, stripped: what is quoted as evidence
    norm: str  # NFKC, lower case: what the rules match
    index: int  # position in the report, 0-based


def norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def split_sections(text: str, default: SectionKind = "findings") -> list[tuple[SectionKind, str]]:
    """(section, body) in order; text before the first heading belongs to ``default``."""
    parts: list[tuple[SectionKind, str]] = []
    pos, current = 0, default
    for m in _HEADING.finditer(text):
        if m.start() > pos and text[pos:m.start()].strip():
            parts.append((current, text[pos:m.start()]))
        current = _HEADINGS[norm(m.group(1) or m.group(2)).strip()]
        pos = m.end()
    if text[pos:].strip():
        parts.append((current, text[pos:]))
    return parts


def split_sentences(body: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(body) if s and s.strip()]


def sentences(sections: list[tuple[SectionKind, str]]) -> list[Sentence]:
    out: list[Sentence] = []
    for kind, body in sections:
        for s in split_sentences(body):
            out.append(Sentence(kind, s, norm(s), len(out)))
    return out


def is_japanese(text: str) -> bool:
    return re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", text) is not None
