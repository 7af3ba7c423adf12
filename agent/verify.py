"""Verify an answer against its sources: no evidence, no claim.

Rules, per sentence of the answer body (the source list is not checked):
1. every ``[n]`` names an existing source;
2. a sentence holding a number or a clinical finding term cites at least one source;
3. every number in it appears among the numbers of the sources it cites;
4. every finding term in it appears in the text of the sources it cites.
Numbers glued to a preceding letter (L3, V1, HbA1c, HL7) are identifiers, not values; signs are
ignored (a change of -5 mm and 5 mm are the same number to check).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache

from dokuei.agent.compose import NOTE_PREFIX, SOURCES_HEADER, Source, split_sentences
from dokuei.knowledge import load_json

_CITE = re.compile(r"\[(\d+)\]")
_NUMBER = re.compile(r"(?<![A-Za-z0-9.])\d+(?:\.\d+)?")


@dataclass
class VerifyReport:
    ok: bool
    issues: list[str] = field(default_factory=list)
    checked_sentences: int = 0


@cache
def _terms() -> tuple[tuple[str, ...], tuple[str, ...]]:
    data = load_json("finding_terms_ja.json")
    return tuple(data["terms"]), tuple(data["ascii_terms"])


def numbers_in(text: str) -> set[float]:
    text = unicodedata.normalize("NFKC", _CITE.sub(" ", text)).replace(",", "")
    found = set()
    for match in _NUMBER.finditer(text):
        found.add(round(float(match.group(0)), 6))
    return found


def _terms_in(text: str) -> set[str]:
    ja, ascii_terms = _terms()
    found = {t for t in ja if t in text}
    found |= {t for t in ascii_terms if re.search(rf"(?<![A-Za-z]){t}(?![A-Za-z])", text)}
    # a longer term contains the shorter ones it is made of (心室期外収縮 ⊃ 期外収縮)
    return {t for t in found if not any(t != o and t in o for o in found)}


def body_of(answer: str) -> str:
    head, _, _ = answer.partition("\n" + SOURCES_HEADER)
    return head


def verify_answer(answer: str, sources: list[Source], *, trust_notes: bool = False) -> VerifyReport:
    """Check an answer; ``trust_notes`` skips '※' lines written by the deterministic composer."""
    by_number = {s.number: s for s in sources}
    evidence_of = {s.number: s.text_for_check() for s in sources}
    numbers_of = {n: numbers_in(text) for n, text in evidence_of.items()}
    issues: list[str] = []
    if sources and not body_of(answer).strip():
        return VerifyReport(ok=False, issues=["回答が空です"])
    checked = 0
    for raw in split_sentences(body_of(answer)):
        sentence = raw.strip()
        if not sentence or (trust_notes and sentence.startswith(NOTE_PREFIX)):
            continue
        checked += 1
        cited = [int(n) for n in _CITE.findall(sentence)]
        unknown = [n for n in cited if n not in by_number]
        if unknown:
            issues.append(f"存在しない出典番号 {unknown}: 「{sentence[:60]}」")
        cited_sources = [by_number[n] for n in cited if n in by_number]
        nums = numbers_in(sentence)
        terms = _terms_in(sentence)
        if (nums or terms) and not cited_sources:
            issues.append(f"出典のない臨床記述: 「{sentence[:60]}」")
            continue
        evidence = " ".join(evidence_of[s.number] for s in cited_sources)
        evidence_numbers = set().union(*(numbers_of[s.number] for s in cited_sources))
        missing = sorted(n for n in nums if n not in evidence_numbers)
        if missing:
            issues.append(f"出典にない数値 {missing}: 「{sentence[:60]}」")
        unsupported = sorted(t for t in terms if t not in evidence)
        if unsupported:
            issues.append(f"出典にない所見 {unsupported}: 「{sentence[:60]}」")
    return VerifyReport(ok=not issues, issues=issues, checked_sentences=checked)
