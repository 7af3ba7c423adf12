"""Draft a 診断 (impression) from 所見 (findings), each sentence resting on a findings sentence or an exemplar.

Deterministic, retrieval-based: the positive findings sentences (negated ones such as 「胸水は認めない」 are
left out, as radiologists leave them out of the impression) become impression phrases. For each, the most
similar findings sentence among the exemplars (similar archived reports) is looked up; when it is close
and its report's impression holds a phrase for it, that phrase's wording is adopted with the numbers of the
report being drafted, but only when the adopted phrase's content is still in the findings sentence
(≥ 90 % of its letters occur in the sentence); otherwise the findings sentence itself is compressed (its predicate
「を認める」「あり」 removed). The report being drafted is never its own exemplar: exemplars with the same id
or near-identical findings (character-3-gram Jaccard ≥ 0.9) are dropped first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from dokuei.reports.critical import detect
from dokuei.reports.text import ReportTextError, is_japanese, norm, split_sentences

NEAR_DUPLICATE_JACCARD = 0.9
ADOPT_MIN_SIMILARITY = 0.5  # Dice of character bigrams, findings sentence vs exemplar findings sentence
ADOPT_MIN_CONTAINMENT = 0.9  # share of the adopted phrase's letters (digits aside) found in our sentence
CONSENSUS_MIN_AGREEMENT = 0.5  # mean ROUGE-L F1 of an exemplar impression against the other exemplars'

_NEG_JA = re.compile(r"(認め(られ)?(ない|ません|ず)|指摘(でき|され)(ない|ません)|(?<!少)ない|なし|ありません|否定的"
                     r"|明らかでない)[。.]?$")
_NEG_EN = re.compile(r"^(no|without|negative for|there is no|there are no)\b|\b(not seen|not identified|"
                     r"are normal|is normal|within normal limits|are clear|is clear|unremarkable)\b")
_PRED_JA = re.compile(r"(を|が)?(認め(ます|る|られる|られます)?|あり(ます)?|見られる|みられる|を伴う|を呈する"
                      r"|の所見|である|です)[。.]?$|[。.]$")
_NUM = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Exemplar:
    report_id: str
    findings: str
    impression: str


@dataclass(frozen=True)
class DraftSentence:
    text: str
    findings_sentence: str  # the sentence of the findings it rests on (quoted)
    findings_index: int
    exemplar_id: str | None = None  # the archived report whose wording was adopted
    exemplar_phrase: str | None = None


@dataclass
class Draft:
    sentences: list[DraftSentence]
    exemplars_used: list[str]
    excluded_exemplars: list[str]
    mode: str  # "retrieval" or "extractive"
    notes_ja: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.sentences)


def _grams(text: str, n: int) -> set[str]:
    t = re.sub(r"\s+", "", norm(text))
    return {t[i:i + n] for i in range(max(0, len(t) - n + 1))}


def jaccard3(a: str, b: str) -> float:
    ga, gb = _grams(a, 3), _grams(b, 3)
    return len(ga & gb) / len(ga | gb) if ga and gb else 0.0


def dice2(a: str, b: str) -> float:
    ga, gb = _grams(a, 2), _grams(b, 2)
    return 2 * len(ga & gb) / (len(ga) + len(gb)) if ga and gb else 0.0


def is_negative(sentence: str) -> bool:
    s = norm(sentence).strip()
    return bool(_NEG_JA.search(s)) if is_japanese(s) else bool(_NEG_EN.search(s))


def usable_exemplars(exemplars: list[Exemplar], findings: str, report_id: str | None) -> tuple[list[Exemplar],
                                                                                                  list[str]]:
    """Exemplars minus the report itself (same id, or near-identical findings)."""
    keep: list[Exemplar] = []
    dropped: list[str] = []
    for ex in exemplars:
        if (report_id is not None and ex.report_id == report_id) or \
                jaccard3(ex.findings, findings) >= NEAR_DUPLICATE_JACCARD:
            dropped.append(ex.report_id)
        else:
            keep.append(ex)
    return keep, dropped


def compress(sentence: str) -> str:
    s = sentence.strip()
    if is_japanese(s):
        s = _PRED_JA.sub("", s).rstrip("、")
        s = re.sub(r"^(前回（[^）]*）と比較して、|前回と比較して、?)", "", s)
        return s + "。"
    s = s.rstrip(". ")
    return (s[:1].upper() + s[1:] + ".") if s else s


def _exemplar_pairs(ex: Exemplar) -> list[tuple[str, str]]:
    """(exemplar findings sentence, the impression phrase most like it) for one exemplar."""
    phrases = [p for p in re.split(r"[。\n]|(?<=\.)\s", ex.impression) if p.strip()]
    pairs = []
    for fs in split_sentences(ex.findings):
        if is_negative(fs) or not phrases:
            continue
        best = max(phrases, key=lambda p: dice2(p, fs))
        if dice2(best, fs) > 0.2:
            pairs.append((fs, best.strip()))
    return pairs


def _adapt(phrase: str, ex_sentence: str, sentence: str) -> str | None:
    """The exemplar's phrase with our numbers; None unless its content is in our sentence."""
    ours, theirs = _NUM.findall(sentence), _NUM.findall(ex_sentence)
    phrase_nums = _NUM.findall(phrase)
    if phrase_nums:
        if len(ours) != len(theirs):
            return None
        mapping = dict(zip(theirs, ours, strict=True))
        if any(n not in mapping for n in phrase_nums):
            return None
        phrase = _NUM.sub(lambda m: mapping[m.group(0)], phrase)
    body = [c for c in norm(phrase) if c.isalpha()]
    target = set(norm(sentence))
    if not body or sum(c in target for c in body) / len(body) < ADOPT_MIN_CONTAINMENT:
        return None
    return phrase


def _tokens(text: str) -> list[str]:
    """ROUGE's units: characters for Japanese, words for English."""
    t = norm(text)
    return [c for c in t if not c.isspace()] if is_japanese(t) else re.findall(r"[a-z0-9]+", t)


def lcs_f1(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1: twice the longest common subsequence over the two lengths (0 when one is empty)."""
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return 2 * prev[-1] / (len(a) + len(b))


def _content(text: str) -> set[str]:
    """What a sentence says, for the support check: kanji/kana for Japanese, word stems for English."""
    t = norm(text)
    if is_japanese(t):
        return {c for c in t if re.match(r"[\u3040-\u30ff\u4e00-\u9fff]", c)} - set("のはをがにでとやもへする")
    return {w[:5] for w in re.findall(r"[a-z]+", t) if len(w) >= 4 and w not in _EN_STOP}


_EN_STOP = frozenset({"with", "there", "this", "that", "which", "from", "have", "been", "were", "when", "than",
                      "compared", "prior", "study", "exam", "examination", "since", "again", "also", "both",
                      "likely", "probably", "possible", "consistent", "findings", "suggest", "suggests"})


def _supported(impression: str, findings: str) -> bool:
    """An exemplar's whole impression may stand for ours only when it says nothing our findings do not:
    no category or number the findings lack (``unsupported_in_draft``); each positive sentence's content
    ≥ ``ADOPT_MIN_CONTAINMENT`` in the findings; a negative one (「No acute abnormality」) only when the
    findings assert no critical finding."""
    if unsupported_in_draft(impression, findings):
        return False
    critical = any(c.status in ("present", "suspected") for c in detect(findings).categories)
    ours = _content(findings)
    for sentence in re.split(r"(?<=[。.])\s*|\n", impression):
        if not sentence.strip():
            continue
        if is_negative(sentence):
            if critical:
                return False
            continue
        words = _content(sentence)
        if words and len(words & ours) / len(words) < ADOPT_MIN_CONTAINMENT:
            return False
    return True


def consensus(findings: str, usable: list[Exemplar]) -> tuple[Exemplar, float] | None:
    """The exemplar impression the others agree with most (mean ROUGE-L F1 against the rest ≥
    ``CONSENSUS_MIN_AGREEMENT``) among those ``_supported`` by our findings: the hospital's own wording
    for this kind of findings. None when the exemplars disagree or none is supported."""
    if len(usable) < 2:
        return None
    tokens = [_tokens(e.impression) for e in usable]
    agreement = [sum(lcs_f1(t, o) for j, o in enumerate(tokens) if j != i) / (len(tokens) - 1)
                 for i, t in enumerate(tokens)]
    for i in sorted(range(len(usable)), key=lambda i: -agreement[i]):
        if agreement[i] < CONSENSUS_MIN_AGREEMENT:
            return None
        if _supported(usable[i].impression, findings):
            return usable[i], agreement[i]
    return None


def draft_impression(findings: str, exemplars: list[Exemplar] | None = None,
                     report_id: str | None = None) -> Draft:
    findings_sentences = split_sentences(findings)
    if not findings_sentences:
        raise ReportTextError("所見の本文がありません。所見欄を貼り付けてください。", "empty findings")
    usable, dropped = usable_exemplars(exemplars or [], findings, report_id)
    agreed = consensus(findings, usable)
    if agreed is not None:
        exemplar, score = agreed
        lines = [p.strip() for p in re.split(r"(?<=[。.])\s*|\n", exemplar.impression) if p.strip()]
        sentences = []
        for line in lines:
            at = max(range(len(findings_sentences)), key=lambda i: dice2(findings_sentences[i], line))
            sentences.append(DraftSentence(line, findings_sentences[at], at, exemplar.report_id, line))
        return Draft(sentences, [exemplar.report_id], dropped, "consensus",
                     [f"類似レポート {len(usable)} 件の診断欄の書き方が一致しているため（一致度 {score:.2f}）、"
                      f"最も代表的な用例 {exemplar.report_id} の診断欄を、所見と照合したうえで採用しました。"])
    pairs = [(ex.report_id, fs, ph) for ex in usable for fs, ph in _exemplar_pairs(ex)]
    japanese = is_japanese(findings)
    # the critical-finding rules catch negations the end-of-sentence rule misses (「気胸、胸水は認めない」)
    draft: list[DraftSentence] = []
    used: list[str] = []
    for i, sentence in enumerate(findings_sentences):
        if is_negative(sentence):
            continue
        det = detect(sentence)
        if det.categories and all(c.status == "negated" for c in det.categories):
            continue
        best = max(pairs, key=lambda p: dice2(p[1], sentence), default=None)
        text: str | None = None
        if best is not None and dice2(best[1], sentence) >= ADOPT_MIN_SIMILARITY:
            text = _adapt(best[2], best[1], sentence)
        if text is not None and best is not None:
            text = text.rstrip("。. ") + ("。" if japanese else ".")
            draft.append(DraftSentence(text, sentence, i, best[0], best[2]))
            used.append(best[0])
        else:
            draft.append(DraftSentence(compress(sentence), sentence, i))
    notes = []
    if not draft:
        text = "有意な異常所見なし。" if japanese else "No acute abnormality."
        draft.append(DraftSentence(text, findings_sentences[0], 0))
        notes.append("所見欄に陽性所見の記載がないため、異常なしとしました。")
    mode = "retrieval" if usable else "extractive"
    if not usable:
        notes.append("類似の過去レポート（用例）が使えないため、所見の文だけから抽出的に下書きしました。")
    return Draft(draft, list(dict.fromkeys(used)), dropped, mode, notes)


# --- LLM slot ------------------------------------------------------------------------------------------
#: what the LLM path needs: chat messages in, the reply's text out (the agent wraps its ChatBackend in one)
Complete = Callable[[list[dict[str, str]]], str]

_FEW_SHOT_SYSTEM = ("あなたは放射線科の読影補助です。所見から診断欄（インプレッション）の下書きを、用例の病院の"
                    "書き方に合わせて簡潔な日本語で書きます。所見に書かれていない所見・数値は書きません。"
                    "下書きの本文だけを返してください。")


def few_shot_messages(findings: str, exemplars: list[Exemplar]) -> list[dict[str, str]]:
    """System rules, then each exemplar as a (所見 → 診断) pair, then the findings to draft."""
    messages = [{"role": "system", "content": _FEW_SHOT_SYSTEM}]
    for ex in exemplars:
        messages += [{"role": "user", "content": f"所見: {ex.findings.strip()}"},
                     {"role": "assistant", "content": ex.impression.strip()}]
    messages.append({"role": "user", "content": f"所見: {findings.strip()}"})
    return messages


def unsupported_in_draft(draft: str, findings: str) -> list[str]:
    """Findings named in the draft (critical-finding categories, numbers) that the findings text lacks.

    A category the draft names must be mentioned, not negated, in the findings; every number in the draft
    must occur in the findings (so 「12mm」 cannot become 「15mm」)."""
    issues: list[str] = []
    try:
        named = {c.category.id: c for c in detect(draft).categories if c.status != "negated"}
    except ReportTextError:
        return ["下書きが空です。"]
    source = {c.category.id: c for c in detect(findings).categories if c.status != "negated"}
    issues += [f"所見にない所見「{c.evidence.term}」" for cid, c in named.items() if cid not in source]
    ours = set(_NUM.findall(norm(findings)))
    issues += [f"所見にない数値「{n}」" for n in _NUM.findall(norm(draft)) if n not in ours]
    return issues


def draft_with_llm(findings: str, exemplars: list[Exemplar], report_id: str | None,
                   complete: Complete) -> Draft:
    """The retrieved exemplars as few-shot context for an LLM; its draft is kept only when every finding it
    names is in the findings text, otherwise the deterministic draft is returned with the reason."""
    usable, dropped = usable_exemplars(exemplars, findings, report_id)
    fallback = draft_impression(findings, exemplars, report_id)
    try:
        text = complete(few_shot_messages(findings, usable)).strip()
    except Exception as exc:  # the LLM is optional: the deterministic draft stands
        fallback.notes_ja.append(f"LLM が応答しなかったため、用例からの下書きにしました（{type(exc).__name__}）。")
        return fallback
    issues = unsupported_in_draft(text, findings) if text else ["下書きが空です。"]
    if issues:
        fallback.notes_ja.append("LLM の下書きを採用しませんでした（" + "、".join(issues) + "）。")
        return fallback
    source = split_sentences(findings)
    sentences = []
    for line in [p for p in re.split(r"(?<=[。.])\s*", text) if p.strip()]:
        best = max(range(len(source)), key=lambda i: dice2(source[i], line))
        sentences.append(DraftSentence(line.strip(), source[best], best))
    return Draft(sentences, [], dropped, "llm",
                 [f"LLM の下書き（用例 {len(usable)} 件を文脈に使用、所見との照合済み）。"])
