"""Free-text report → findings by organ with attributes (the J-CaseMap idea), for export and worklists.

Each 所見 / 診断 sentence is searched for finding terms (``radiology_terms.json`` plus the critical
categories); each term becomes a finding with: organ (the organ named in the sentence, else
"unspecified"), size in mm (「12mm」「1.2cm」「短径15mm」; the last size when a change 10mm→12mm is given),
location (the phrase before 「に」, or lobe / segment words), laterality, certainty and negation (the
critical-finding cue rules), change vs prior and the recommendation sentence that follows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

from dokuei.knowledge import load_json
from dokuei.reports.critical import load_categories, status_at
from dokuei.reports.text import FINDING_SECTIONS, ReportTextError, Sentence, sentences, split_sections

Change = Literal["new", "increased", "decreased", "unchanged", "resolved", "not_stated"]
Laterality = Literal["right", "left", "bilateral", "not_stated"]

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(mm|cm|ミリ|センチ)", re.I)
_CHANGE: tuple[tuple[Change, re.Pattern[str]], ...] = (
    ("resolved", re.compile(r"消失|resolved")),
    ("new", re.compile(r"新(た|規)に?|出現|\bnew\b")),
    ("increased", re.compile(r"増大|増悪|拡大傾向|increas|enlarg|worse")),
    ("decreased", re.compile(r"縮小|減少|改善|decreas|smaller|improv")),
    ("unchanged", re.compile(r"著変(なし|ない|ありません)|変化(なし|ない)|不変|同様|unchanged|stable"
                             r"|no (significant |interval )?change")),
)
_RECOMMEND = re.compile(r"推奨|勧め|経過観察|フォロー|精査|再検|要す|必要|recommend|follow-?up|suggest|advis")
_LOCATION_JA = re.compile(r"([^、。，,に]{1,20}?)に")
_LOCATION_WORDS = re.compile(r"(右|左|両)?(肺)?(上葉|中葉|下葉|肺尖|肺底)|s\d{1,2}|(頭部|体部|尾部)|"
                             r"(upper|middle|lower) lobe|apex|apical|base|basilar|lingula", re.I)


@dataclass(frozen=True)
class StructuredFinding:
    organ: str
    finding: str  # finding id (radiology_terms / critical category)
    term: str
    size_mm: float | None
    location: str
    laterality: Laterality
    certainty: Literal["present", "suspected", "unchanged_known", "negated"]
    negated: bool
    change_vs_prior: Change
    recommendation: str
    sentence: str
    section: str


@cache
def _lexicon() -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """((term, finding id), …) longest first, and ((organ term, organ), …) longest first."""
    data = load_json("radiology_terms.json")
    terms = {t.lower(): item["id"] for item in data["terms"] for t in [*item["ja"], *item["en"]]}
    for cat in load_categories()[2]:
        for term, _ in cat.patterns:
            terms.setdefault(term.lower(), cat.id)
    organs = {t.lower(): organ for organ, words in data["organs"].items() for t in words}
    by_len = lambda d: tuple(sorted(d.items(), key=lambda kv: -len(kv[0])))  # noqa: E731
    return by_len(terms), by_len(organs)


def _find(text: str, term: str) -> list[tuple[int, int]]:
    if term.isascii():
        return [(m.start(), m.end()) for m in re.finditer(rf"(?<![a-z]){re.escape(term)}(?![a-z])", text)]
    return [(m.start(), m.end()) for m in re.finditer(re.escape(term), text)]


def _size_mm(text: str) -> float | None:
    sizes = [float(v) * (10.0 if u.lower() in ("cm", "センチ") else 1.0) for v, u in _SIZE.findall(text)]
    return sizes[-1] if sizes else None


def _laterality(text: str) -> Laterality:
    if re.search(r"両側|両肺|bilateral|both", text):
        return "bilateral"
    right, left = re.search(r"右|right", text), re.search(r"左|left", text)
    if right and left:
        return "bilateral"
    return "right" if right else "left" if left else "not_stated"


def _location(s: Sentence, start: int) -> str:
    before = s.norm[:start]
    if m := list(_LOCATION_JA.finditer(before)):
        return m[-1].group(1).strip()
    if m2 := _LOCATION_WORDS.search(s.norm):
        return m2.group(0)
    return ""


def _change(text: str) -> Change:
    return next((c for c, pat in _CHANGE if pat.search(text)), "not_stated")


def structure(text: str, impression: str = "") -> list[StructuredFinding]:
    parts = [*split_sections(text, "findings"), *split_sections(impression, "impression")]
    sents = [s for s in sentences(parts) if s.section in FINDING_SECTIONS]
    if not sents:
        raise ReportTextError("所見または診断の本文がありません。", "no findings/impression text")
    terms, organs = _lexicon()
    out: list[StructuredFinding] = []
    for i, s in enumerate(sents):
        organ = next((o for t, o in organs if _find(s.norm, t)), "unspecified")
        nxt = sents[i + 1].text if i + 1 < len(sents) and _RECOMMEND.search(sents[i + 1].norm) else ""
        recommendation = s.text if _RECOMMEND.search(s.norm) else nxt
        claimed: list[tuple[int, int]] = []
        for term, finding in terms:
            for start, end in _find(s.norm, term):
                if any(start < e and end > b for b, e in claimed):
                    continue
                claimed.append((start, end))
                status, _ = status_at(s, start, end)
                out.append(StructuredFinding(
                    organ=organ, finding=finding, term=term, size_mm=_size_mm(s.norm),
                    location=_location(s, start), laterality=_laterality(s.norm), certainty=status,
                    negated=status == "negated", change_vs_prior=_change(s.norm), recommendation=recommendation,
                    sentence=s.text, section=s.section))
    return out
