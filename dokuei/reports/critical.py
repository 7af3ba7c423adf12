"""Rule-based critical-finding detection in report text (Japanese and English).

For every category of ``knowledge/data/critical_findings.json`` each mention in a 所見 / 診断 sentence gets a
status from the cue words around it:

* Japanese: the cue that follows the term in its clause decides (「気胸を認める」 present,
  「気胸は認めません」「指摘できません」 negated, 「否定できない」「疑い」「可能性」 suspected,
  「前回と著変なし」「既知の」「陳旧性」 unchanged_known); 「r/o」 before the term → suspected.
* English, NegEx-style: a negation cue ("no", "without", "negative for", "no evidence of") in the words before
  the term, not across "but/however", or after it ("is not seen", "has resolved") → negated; "possible",
  "suspicious for", "cannot be excluded" → suspected; "unchanged", "stable", "chronic", "healed", "known" →
  unchanged_known.

A category's status is the strongest over its mentions (present > suspected > unchanged_known > negated).
Mentions in 既往歴 / 依頼 / 臨床診断 text are kept as context, never flagged. :class:`Judge` is the slot
for a fine-tuned classifier or an LLM judge: it receives the text and the rule result and may rescore.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, Protocol

from dokuei.knowledge import load_json
from dokuei.reports.text import FINDING_SECTIONS, ReportTextError, SectionKind, Sentence, sentences, split_sections

Status = Literal["present", "suspected", "unchanged_known", "negated"]
FLAGGED: frozenset[str] = frozenset({"present", "suspected"})
_RANK: dict[str, int] = {"present": 3, "suspected": 2, "unchanged_known": 1, "negated": 0}
DATA_FILE = "critical_findings.json"

# --- Japanese cues (matched on NFKC lower-case text; alternation order matters at equal positions) -----------
_JA_CUES: list[tuple[str, str]] = [
    ("temporal", r"著変(は)?(なし|ない|ありません|を認めない|を認めません)|変化(は)?(なし|ない|ありません)|不変"
                 r"|前回(と)?同様|既知|以前から|残存"),
    ("uncertain", r"否定(でき|し得|しえ)(ない|ません|ず)|除外(でき|し得)(ない|ません)|除外を要|除外が必要"
                  r"|鑑別を要|疑(い|う|わ|われ)|可能性|示唆|考えられ|思われ|懸念|r/o|\?"),
    ("negative", r"認め(られ)?(ない|ません|ず)|指摘(でき|され)(ない|ません|ず)|(見|み)られ(ない|ません|ず)"
                 r"|明らかでない|(?<!少)ない|ありません|なし|無し|否定的|消失|陰性"),
    ("positive", r"認め|あり|見られ|みられ|指摘|伴う|描出|出現|増大|増悪|新たに|拡大|存在"),
]
_JA_CUE = re.compile("|".join(f"(?P<{k}>{p})" for k, p in _JA_CUES))
_JA_TEMPORAL = re.compile(_JA_CUES[0][1])
_JA_BOUNDARY = re.compile(r"[。]|が、|ものの|けれど|一方")
_JA_PRE_UNCERTAIN = re.compile(r"r/o|疑いの")
_JA_PRE_KNOWN = re.compile(r"既知の|陳旧性|以前からの|既存の")
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
_WORSENING = re.compile(r"増大|増悪|新たに|新規|出現|拡大|increas|new |worse|enlarg")

# --- English cues (NegEx-like) ---------------------------------------------------------------------------------
_EN_PRE_NEG = re.compile(r"\b(no|not|without|negative for|free of|clear of|no evidence of|no sign of|absence of|"
                         r"resolution of|resolved|rule[sd]? out for|denies)\b")
_EN_PRE_UNC = re.compile(r"\b(possible|possibly|probable|probably|questionable|suspicious for|suspected|"
                         r"suspect|concern for|concerning for|may represent|could represent|likely|rule out|r/o|"
                         r"cannot exclude|can not exclude|differential|versus|vs)\b")
_EN_PRE_KNOWN = re.compile(r"\b(known|old|healed|healing|chronic|prior|previous|remote|stable|unchanged|"
                           r"again seen|redemonstrated|persistent)\b")
_EN_POST_NEG = re.compile(r"^[^.;]{0,30}?\b(is|are|was|were)?\s*(not (seen|identified|present|visualized|"
                          r"demonstrated|evident)|absent|resolved|has resolved|have resolved)\b")
_EN_POST_UNC = re.compile(r"^[^.;]{0,40}?\b(cannot be (excluded|ruled out)|can not be excluded|not excluded|"
                          r"is suspected|is possible|is questioned|\?)")
_EN_POST_KNOWN = re.compile(r"^[^.;]{0,40}?\b(unchanged|stable|again (seen|noted)|redemonstrated|"
                            r"not significantly changed|chronic|healed|old)\b")
_EN_NO_CHANGE = re.compile(r"\bno (significant |interval |appreciable )?change\b")
_EN_CONJ = re.compile(r"\b(but|however|although|though|except|which|aside from)\b|[;:]")
_EN_WINDOW_WORDS = 15  # a NegEx cue covers a whole list ("No consolidation, ..., or X"); stops at but/however


@dataclass(frozen=True)
class Category:
    id: str
    name_ja: str
    name_en: str
    source: str
    patterns: tuple[tuple[str, re.Pattern[str]], ...]  # (term, compiled pattern), longest term first
    literals: tuple[str, ...] = ()  # each pattern's lower-case term: ``lit in text`` is a cheap pre-check


@dataclass(frozen=True)
class Mention:
    category: str
    term: str
    status: Status
    section: SectionKind
    sentence: str  # quoted verbatim from the report
    sentence_index: int
    cue: str  # the cue word that decided the status ("" when none: a bare noun phrase reads as present)


@dataclass
class CategoryResult:
    category: Category
    status: Status
    score: float
    evidence: Mention
    mentions: list[Mention]
    #: a judge's own reading of this category ("present" / "suspected" / "absent"), None without a judge
    judge_status: str | None = None

    @property
    def flagged(self) -> bool:
        return self.status in FLAGGED


@dataclass
class Detection:
    version: str
    categories: list[CategoryResult]
    context_mentions: list[Mention]  # mentions in 既往歴 / 依頼 / 臨床診断: shown, never flagged
    sections_read: list[str]
    n_sentences: int
    method: str = "rules"
    notes_ja: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[CategoryResult]:
        return [c for c in self.categories if c.flagged]

    @property
    def score(self) -> float:
        """Report-level score: the highest category score (0 when no category is mentioned)."""
        return max((c.score for c in self.categories), default=0.0)


class Judge(Protocol):
    """Slot for a fine-tuned classifier or an LLM judge (the seed's best input: 所見 + 依頼科)."""

    name: str

    def rescore(self, findings: str, department: str, rules: Detection) -> Detection: ...


def _term_pattern(term: str) -> re.Pattern[str]:
    t = re.escape(term.lower())
    if term.isascii():
        return re.compile(rf"(?<![a-z]){t}(?:s|es)?(?![a-z])")
    return re.compile(t)


@cache
def load_categories() -> tuple[str, dict[str, float], tuple[Category, ...]]:
    data: dict[str, Any] = load_json(DATA_FILE)
    cats = []
    for c in data["categories"]:
        terms = sorted({*c.get("terms_ja", []), *c.get("terms_en", [])}, key=len, reverse=True)
        cats.append(Category(c["id"], c["name_ja"], c["name_en"], c["source"],
                             tuple((t, _term_pattern(t)) for t in terms), tuple(t.lower() for t in terms)))
    return str(data["version"]), {k: float(v) for k, v in data["scores"].items()}, tuple(cats)


def _status_ja(s: Sentence, start: int, end: int) -> tuple[Status, str]:
    text = s.norm
    clause_start = max((m.end() for m in _JA_BOUNDARY.finditer(text, 0, start)), default=0)
    before = text[clause_start:start]
    scope_end = next((m.start() for m in _JA_BOUNDARY.finditer(text, end)), len(text))
    scope = text[end:scope_end]
    cues = list(_JA_CUE.finditer(scope))
    if cues:  # the clause of the first cue: up to the next 、 after it
        comma = scope.find("、", cues[0].end())
        cues = [c for c in cues if comma < 0 or c.start() < comma]
    kinds = [c.lastgroup or "" for c in cues]
    worsening = _WORSENING.search(text) is not None
    if _JA_PRE_UNCERTAIN.search(before):
        return "suspected", _JA_PRE_UNCERTAIN.search(before).group(0)  # type: ignore[union-attr]
    if kinds and kinds[-1] == "negative":
        return "negated", cues[-1].group(0)
    if "uncertain" in kinds:
        return "suspected", cues[kinds.index("uncertain")].group(0)
    known = _JA_PRE_KNOWN.search(before)
    if known and not worsening:
        return "unchanged_known", known.group(0)
    if "temporal" in kinds and not worsening:
        return "unchanged_known", cues[kinds.index("temporal")].group(0)
    if kinds and kinds[0] == "negative":
        return "negated", cues[0].group(0)
    if not worsening and (later := _JA_TEMPORAL.search(text)):  # 「…（10mm→10mm、著変なし）」 later on
        return "unchanged_known", later.group(0)
    return "present", cues[0].group(0) if cues else ""


def _status_en(s: Sentence, start: int, end: int) -> tuple[Status, str]:
    text = s.norm
    before = text[:start]
    if conj := list(_EN_CONJ.finditer(before)):
        before = before[conj[-1].end():]
    before = " ".join(before.split()[-_EN_WINDOW_WORDS:])
    after = text[end:]
    if conj_after := _EN_CONJ.search(after):
        after = after[:conj_after.start()]
    worsening = _WORSENING.search(text) is not None
    if not worsening and (m := _EN_NO_CHANGE.search(before)):  # "no significant change in X" is not "no X"
        return "unchanged_known", m.group(0)
    for pattern, status in ((_EN_PRE_NEG, "negated"), (_EN_PRE_UNC, "suspected")):
        if m := pattern.search(before):
            return status, m.group(0)  # type: ignore[return-value]
    for pattern, status in ((_EN_POST_NEG, "negated"), (_EN_POST_UNC, "suspected")):
        if m := pattern.search(after):
            return status, m.group(0).strip()  # type: ignore[return-value]
    if not worsening and (m := _EN_PRE_KNOWN.search(before) or _EN_POST_KNOWN.search(after)):
        return "unchanged_known", m.group(0).strip()
    return "present", ""


@cache
def _flat_terms(categories: tuple[Category, ...]) -> tuple[tuple[str, str, re.Pattern[str], Category], ...]:
    return tuple((lit, term, pat, cat) for cat in categories
                 for (term, pat), lit in zip(cat.patterns, cat.literals, strict=True))


def mentions_in(s: Sentence, categories: tuple[Category, ...]) -> list[Mention]:
    """Every category term in one sentence (longest term wins an overlap), each with its status."""
    claimed: list[tuple[int, int]] = []
    found: list[Mention] = []
    text = s.norm
    # a term's pattern matches its literal only, so a substring test (C speed) skips ~95 % of the regex work
    spans = [(m.start(), m.end(), cat, term) for lit, term, pat, cat in _flat_terms(categories) if lit in text
             for m in pat.finditer(text)]
    if not spans:
        return found
    japanese = _JAPANESE.search(text) is not None
    spans.sort(key=lambda x: (-(x[1] - x[0]), x[0]))
    for start, end, cat, term in spans:
        if any(start < e and end > b for b, e in claimed):
            continue
        claimed.append((start, end))
        status, cue = (_status_ja if japanese else _status_en)(s, start, end)
        found.append(Mention(cat.id, term, status, s.section, s.text, s.index, cue))
    return found


def detect(findings: str, impression: str = "", history: str = "", indication: str = "",
           clinical_diagnosis: str = "", *, judge: Judge | None = None, department: str = "") -> Detection:
    """Screen one report. ``findings`` may carry its own headings (【所見】【診断】【既往歴】…)."""
    parts = [*split_sections(findings, "findings"), *split_sections(impression, "impression")]
    context: tuple[tuple[SectionKind, str], ...] = (
        ("history", history), ("indication", indication), ("clinical_diagnosis", clinical_diagnosis))
    parts += [(kind, text) for kind, text in context if text.strip()]
    if not any(kind in FINDING_SECTIONS and body.strip() for kind, body in parts):
        raise ReportTextError("所見または診断の本文がありません。レポートの所見欄を貼り付けてください。",
                              "no findings/impression text")
    version, scores, categories = load_categories()
    sents = sentences(parts)
    screened: list[Mention] = []
    aside: list[Mention] = []
    for s in sents:
        for m in mentions_in(s, categories):
            (screened if s.section in FINDING_SECTIONS else aside).append(m)
    results: list[CategoryResult] = []
    for cat in categories:
        ms = [m for m in screened if m.category == cat.id]
        if not ms:
            continue
        best = max(ms, key=lambda m: (_RANK[m.status], m.section == "findings", -m.sentence_index))
        results.append(CategoryResult(cat, best.status, scores[best.status], best, ms))
    results.sort(key=lambda r: -r.score)
    det = Detection(version, results, aside, list(dict.fromkeys(k for k, _ in parts)), len(sents))
    if judge is not None:
        det = judge.rescore(findings, department, det)
        det.method = f"rules+{judge.name}"
    return det


def category_by_id(category_id: str) -> Category:
    return next(c for c in load_categories()[2] if c.id == category_id)


def status_at(s: Sentence, start: int, end: int) -> tuple[Status, str]:
    """Status (and the cue that decided it) of the term at ``s.norm[start:end]``: the same rules as above."""
    japanese = re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", s.norm) is not None
    return (_status_ja if japanese else _status_en)(s, start, end)
