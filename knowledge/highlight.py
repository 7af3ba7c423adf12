"""Marking the query's words in a passage, and collapsing near-duplicate hits."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, TypeVar

from dokuei.knowledge.normalize import nfkc, nfkc_with_map

_CONTENT = re.compile(
    r"[a-z0-9][a-z0-9.\-]*[a-z0-9]|[\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff々ー]{2,}", re.IGNORECASE
)
_EN_STOP = frozenset(
    [
        "the",
        "and",
        "with",
        "any",
        "for",
        "are",
        "was",
        "were",
        "there",
        "this",
        "that",
        "from",
        "have",
        "has",
        "report",
        "reports",
    ]
)
MARK_OPEN, MARK_CLOSE = "**", "**"


def query_terms(query: str, extra: Sequence[str] = ()) -> list[str]:
    """Words worth marking: Latin words and kanji/katakana runs of the query, plus expansion terms."""
    found = [m.group(0) for m in _CONTENT.finditer(nfkc(query)) if m.group(0).lower() not in _EN_STOP]
    return list(dict.fromkeys([*found, *(nfkc(e) for e in extra)]))


def highlight(text: str, terms: Sequence[str], window: int = 240) -> tuple[str, str]:
    """(passage, passage with ``**marks**``): the original text, trimmed to ``window`` chars around the
    first match; matching is done on the NFKC form and mapped back to the original characters."""
    norm, offsets = nfkc_with_map(text)
    low = norm.lower()
    spans: list[tuple[int, int]] = []
    for term in terms:
        t = term.lower()
        if not t:
            continue
        pat = re.compile(rf"(?<![a-z0-9]){re.escape(t)}(?![a-z0-9])" if t.isascii() else re.escape(t))
        for m in pat.finditer(low):
            spans.append((offsets[m.start()], offsets[m.end() - 1] + 1))
    spans = _merge(spans)
    start = 0
    if len(text) > window:
        first = spans[0][0] if spans else 0
        start = max(0, min(first - window // 4, len(text) - window))
    end = min(len(text), start + window)
    out, pos = [], start
    for s, e in spans:
        if e <= start or s >= end:
            continue
        s, e = max(s, start), min(e, end)
        out.append(text[pos:s] + MARK_OPEN + text[s:e] + MARK_CLOSE)
        pos = e
    out.append(text[pos:end])
    prefix, suffix = ("…" if start > 0 else ""), ("…" if end < len(text) else "")
    return prefix + text[start:end] + suffix, prefix + "".join(out) + suffix


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


class _HasPassage(Protocol):
    report_id: str
    passage: str
    duplicates: list[str]


H = TypeVar("H", bound=_HasPassage)


def shingles(text: str, n: int = 3) -> set[str]:
    t = re.sub(r"\s+", "", nfkc(text).lower())
    return {t[i : i + n] for i in range(max(1, len(t) - n + 1))}


def collapse_near_duplicates(hits: list[H], threshold: float = 0.9) -> list[H]:
    """Keep the best of each group of passages whose character-3-gram Jaccard similarity ≥ threshold;
    the collapsed report ids are listed in the kept hit's ``duplicates``."""
    kept: list[tuple[H, set[str]]] = []
    for hit in hits:
        sh = shingles(hit.passage)
        for other, osh in kept:
            if len(sh & osh) / max(1, len(sh | osh)) >= threshold:
                other.duplicates.append(hit.report_id)
                break
        else:
            kept.append((hit, sh))
    return [h for h, _ in kept]
