"""The Japanese–English radiology glossary (``data/radiology_terms.json``): organs and finding terms.

Used for three things: the organ context of chunks, cross-lingual expansion of lexical queries
(心拡大 also searches "cardiomegaly"), and the MeSH-built evaluation queries of the benchmark.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from dokuei.knowledge.normalize import nfkc


@dataclass(frozen=True)
class Term:
    id: str
    ja: tuple[str, ...]
    en: tuple[str, ...]
    mesh: tuple[str, ...]


@cache
def _data() -> dict[str, Any]:
    text = resources.files("dokuei.knowledge").joinpath("data/radiology_terms.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def terms() -> tuple[Term, ...]:
    return tuple(Term(t["id"], tuple(t["ja"]), tuple(t["en"]), tuple(t["mesh"])) for t in _data()["terms"])


def edition() -> str:
    return str(_data()["edition"])


def _alternation(words: list[str]) -> str:
    parts = []
    for w in sorted(set(words), key=len, reverse=True):
        esc = re.escape(w)
        parts.append(rf"(?<![A-Za-z0-9]){esc}(?![A-Za-z0-9])" if w.isascii() else esc)
    return "|".join(parts)


@cache
def _organ_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    alias_to_organ: dict[str, str] = {}
    for organ, aliases in _data()["organs"].items():
        for alias in aliases:
            alias_to_organ[alias.lower()] = organ
    return re.compile(_alternation(list(alias_to_organ)), re.IGNORECASE), alias_to_organ


def organ_of(text: str) -> str | None:
    """The organ first named in ``text`` (canonical Japanese name), or None."""
    pattern, aliases = _organ_pattern()
    m = pattern.search(text)
    return aliases[m.group(0).lower()] if m else None


def organs_in(text: str) -> list[str]:
    """Every organ named in ``text`` (canonical Japanese names, in order, without repeats)."""
    pattern, aliases = _organ_pattern()
    return list(dict.fromkeys(aliases[m.group(0).lower()] for m in pattern.finditer(nfkc(text))))


@cache
def _term_pattern() -> tuple[re.Pattern[str], dict[str, Term]]:
    alias_to_term: dict[str, Term] = {}
    for t in terms():
        for alias in (*t.ja, *t.en):
            alias_to_term.setdefault(nfkc(alias).lower(), t)
    return re.compile(_alternation(list(alias_to_term)), re.IGNORECASE), alias_to_term


def find_terms(text: str) -> list[tuple[str, Term]]:
    """Glossary terms named in ``text``: (the matched surface form, the term), in order."""
    pattern, aliases = _term_pattern()
    return [(m.group(0), aliases[m.group(0).lower()]) for m in pattern.finditer(nfkc(text))]


def expand_query(text: str) -> list[str]:
    """Synonyms in both languages of every glossary term in ``text`` (not the text's own words)."""
    found = find_terms(text)
    own = {surface.lower() for surface, _ in found}
    extra: list[str] = []
    for _, term in found:
        for alias in (*term.ja, *term.en):
            if alias.lower() not in own and alias not in extra:
                extra.append(alias)
    return extra


def term_by_mesh(mesh_head: str) -> Term | None:
    for t in terms():
        if mesh_head in t.mesh:
            return t
    return None
