"""Split a report into passages without separating a finding from the organ it is about.

Reports are split into sentences (。．！？, line breaks, English full stops); sentences are packed into
chunks of at most ``max_chars``, never cut inside a sentence, preferring to break where a new organ
starts. A chunk whose first sentence names no organ ("15mm 大。前回より増大。") carries the organ in
force before it as a context prefix (``［肝臓］``), which is embedded and indexed with it; the displayed
passage is the original text only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dokuei.knowledge.glossary import organ_of
from dokuei.knowledge.normalize import nfkc

_SENTENCE_END = re.compile(r"(?<=[。．！？!?])|\n+|(?<=[a-z0-9)\]]\.)\s+(?=[A-Z0-9])|(?<=\.)\s+(?=[A-Z])")


@dataclass(frozen=True)
class Chunk:
    ord: int
    start: int  # offsets into the report's original full text
    end: int
    text: str  # the original passage, for display
    organ: str  # organ in force at the chunk's start ('' if none)
    context: str  # prefix added for indexing when the chunk does not name its organ itself

    @property
    def index_text(self) -> str:
        return f"{self.context}{self.text}" if self.context else self.text

    @property
    def embed_text(self) -> str:
        """What is embedded: NFKC, without the section headings (constant tokens that cost time)."""
        return embed_text(self.index_text)


_HEADINGS = re.compile(r"【所見】|【診断】|FINDINGS: |IMPRESSION: ")


def embed_text(text: str) -> str:
    return nfkc(_HEADINGS.sub(" ", text))


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank sentence."""
    spans = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = max(pos, m.end())
    if pos < len(text):
        spans.append((pos, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def chunk_report(text: str, max_chars: int = 400, min_chars: int = 120) -> list[Chunk]:
    """Chunks of a report's full text; a single chunk when the report is short."""
    spans = sentences(text)
    if not spans:
        return []
    if spans[-1][1] - spans[0][0] <= max_chars:
        s, e = spans[0][0], spans[-1][1]
        return [Chunk(0, s, e, text[s:e], organ_of(text[s:e]) or "", "")]
    chunks: list[Chunk] = []
    current_organ = ""
    cur_start, cur_end = spans[0]
    cur_organ = organ_of(text[cur_start:cur_end]) or ""
    cur_named = bool(cur_organ)
    for s, e in spans[1:]:
        organ = organ_of(text[s:e])
        too_long = e - cur_start > max_chars
        new_organ = (
            organ is not None and organ != (current_organ or cur_organ) and cur_end - cur_start >= min_chars
        )
        if too_long or new_organ:
            chunks.append(_make(len(chunks), text, cur_start, cur_end, cur_organ, cur_named))
            cur_start, cur_organ, cur_named = s, organ or current_organ or cur_organ, organ is not None
        cur_end = e
        if organ:
            current_organ = organ
        elif not current_organ:
            current_organ = cur_organ
    chunks.append(_make(len(chunks), text, cur_start, cur_end, cur_organ, cur_named))
    return chunks


def _make(ord_: int, text: str, start: int, end: int, organ: str, named: bool) -> Chunk:
    context = f"［{organ}］" if organ and not named else ""
    return Chunk(ord_, start, end, text[start:end], organ, context)
