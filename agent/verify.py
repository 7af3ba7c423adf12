"""Verify an answer against its sources: no evidence, no claim.

The answer body is everything except the exact source list the system appended itself; text after a
look-alike ``出典:`` line is checked like any other. Each sentence is read as claims and each claim is
checked against the sources the sentence cites:

1. every ``[n]`` names an existing source, and a sentence with a claim cites at least one;
2. numbers (Arabic or kanji numerals) with their unit and the item they follow (HbA1c 6.8 %) must be a
   fact of a cited source: a value from its output JSON (flattened to label → value / unit) or a
   number in its summary; a bound item must carry that value, a stated unit must match the source's;
3. grades (判定 A–E) must be a cited grade, of the same item when the item is named;
4. finding terms (a curated JA/EN vocabulary) must appear in a cited source with the same polarity
   (「気胸は認めません」 does not support 「気胸があります」);
5. the answer is Japanese: no simplified-only Chinese characters, not mostly another language.

Device-stored values (an ECG file's own annotations) and the planner's search query are not evidence,
unless the sentence itself says it reports unverified device data. Letters followed by digits are values
(HbA1c12.5 % is 12.5) except known identifiers (L3, V1–V6, Th12, HL7, aVR …). Signs are ignored.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from dokuei.agent.compose import NOTE_PREFIX, Source, source_list, split_sentences
from dokuei.knowledge import load_json

_CITE = re.compile(r"\[(\d+)\]")
_IDENTIFIER = re.compile(
    r"(?<![A-Za-z0-9])(?:HbA1c|HL7|ICD-?1[01]|Th(?:1[0-2]|[1-9])|T(?:1[0-2]|[1-9])|L[1-5]|S[1-8]|C[1-7]"
    r"|V[1-6]|aV[RLF]|SpO2|CO2|O2|B12|B6|CA19-9|CA125|IgG4|CYFRA21-1|COVID-19|T1WI|T2WI|ST2)(?![A-Za-z0-9])")
_SQUARED = re.compile(r"(?<![A-Za-z])((?:c|m)?m)([23])(?![0-9.])")
_PATH = re.compile(r"(?<!\S)(?:~|\.{1,2})?/\S+")  # a file path shown to the reader is no value
_NUMBER = re.compile(r"(?<![0-9.])\d+(?:\.\d+)?")
_UNITS = ["cm²/m²", "kg/m²", "mg/dL", "mmol/L", "g/dL", "IU/L", "U/L", "mmHg", "/μL", "回/分", "拍/分", "/分",
          "bpm", "cm²", "cm³", "mL", "ml", "mm", "cm", "kg", "ms", "HU", "%", "歳", "才", "拍", "°", "度", "秒", "s"]
_UNIT_AFTER = re.compile(r"\s*(" + "|".join(re.escape(u) for u in _UNITS) + r")(?![A-Za-z])")
_UNIT_SAME = {"ml": "mL", "才": "歳", "回/分": "bpm", "拍/分": "bpm", "/分": "bpm", "度": "°", "秒": "s"}
_KEY_UNITS = {"_ms": "ms", "_pct": "%", "_percent": "%", "_mm": "mm", "_cm": "cm", "_cm2": "cm²", "_hu": "HU",
              "_bpm": "bpm", "_kg": "kg", "_deg": "°", "_years": "歳", "_ml": "mL", "_s": "s",
              "_cm2_per_m2": "cm²/m²", "_mg_dl": "mg/dL", "_mmhg": "mmHg"}
_LABEL_KEYS = ("item", "name", "name_ja", "label", "label_ja", "key", "lead", "code", "finding")
_GRADE = re.compile(r"(?:判定(?:区分)?\s*[はがを:：]?\s*|区分\s*)([A-E][12]?)(?![A-Za-z0-9])"
                    r"|(?<![A-Za-z0-9])([A-E][12]?)\s*(?:判定|（)")
_KANJI_DIGITS = "〇一二三四五六七八九"
_KANJI_NUMBER = re.compile(r"[〇一二三四五六七八九十百千]+(?:[・点][〇一二三四五六七八九]+)?")
#: words written with kanji numerals that are not quantities
_KANJI_WORDS = ("十二指腸", "一過性", "一部", "一般", "一時", "同一", "単一", "唯一", "一方", "一致", "一度", "一側",
                "一定", "一貫", "一覧", "一連", "一緒", "一番", "統一", "万一", "一見", "二次", "三尖弁", "一次")
_NEGATION = re.compile(
    r"(認め(?:ません|ない|られません|られない|ず)|ありません|なし|無し|ない|否定|見られ(?:ません|ない)|みられ(?:ません|ない)"
    r"|検出されま?せん|検出されない|検出されず|指摘(?:でき)?(?:ません|ない)|該当しません|該当しない|満たしません|満たさない|消失)"
    r"|(認め|あり|ある|疑|示唆|見られ|みられ|検出され|指摘|合致|該当|満た|です|がある)")
_NEGATED_GRADE = re.compile(r"(?<![A-Za-z0-9])[A-E][12]?\s*判定\s*(?:では|で|じゃ)(?:は)?(?:ありません|ない|なく)")
_EN_NEGATION = re.compile(r"(?:\bno\b|\bwithout\b|negative for|ruled out|\bnot\b)[^.;]{0,24}$", re.IGNORECASE)
#: a sentence that says it reports the device's own annotations may rest on them
_DEVICE_WORDS = re.compile(r"機器|装置|未検証|記録装置")
_DEVICE_NOTE = re.compile(r"（参考: 記録装置.*?）|（未検証の機器データ.*?）")
#: the words a search was run with, quoted back: what was asked, not what was found
_SEARCH_WORDS = re.compile(r"検索(?:語)?\s*[:：]?\s*「[^」\n]*」")
_EXCLUDED_KEYS = ("device_reported", "device_statements", "query", "input")


@dataclass
class VerifyReport:
    ok: bool
    issues: list[str] = field(default_factory=list)
    checked_sentences: int = 0


@dataclass(frozen=True)
class Claim:
    value: float
    unit: str | None
    label: str | None  # the item the number follows, as one of the evidence labels (casefolded)


@dataclass
class Evidence:
    """What one cited source supports: its facts, grades, finding polarities and flat text."""

    text: str
    claims: list[Claim]
    grades: dict[str | None, set[str]]
    polarity: dict[str, set[bool]]
    labels: set[str]


# --- vocabulary ----------------------------------------------------------------------------------
@cache
def _terms() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Japanese terms (substring match) and ASCII terms (word match) of every finding vocabulary."""
    data = load_json("finding_terms_ja.json")
    ja, ascii_terms = set(data["terms"]), set(data["ascii_terms"])
    for name in ("finding_vocabulary.json", "radiology_terms.json"):
        for entry in load_json(name)["terms"]:
            for term in entry.get("ja", []) + entry.get("en", []):
                (ascii_terms if term.isascii() else ja).add(term)
    return tuple(sorted(ja)), tuple(sorted(ascii_terms))


@cache
def _equivalents() -> dict[str, frozenset[str]]:
    """term → the terms that state exactly the same thing (``finding_terms_ja.json`` "equivalents")."""
    out: dict[str, frozenset[str]] = {}
    for group in load_json("finding_terms_ja.json").get("equivalents", []):
        for term in group:
            out[term] = frozenset(group)
    return out


@cache
def _simplified_only() -> frozenset[str]:
    return frozenset(load_json("simplified_only_hanzi.json")["chars"])


# --- numbers -------------------------------------------------------------------------------------
def _kanji_value(text: str) -> float:
    parts = re.split(r"[・点]", text, maxsplit=1)
    whole = parts[0]
    if any(c in "十百千" for c in whole):
        total, digit = 0, 0
        for c in whole:
            if c in _KANJI_DIGITS:
                digit = _KANJI_DIGITS.index(c)
            else:
                total += (digit or 1) * {"十": 10, "百": 100, "千": 1000}[c]
                digit = 0
        value = float(total + digit)
    else:
        value = float("".join(str(_KANJI_DIGITS.index(c)) for c in whole) or 0)
    if len(parts) > 1:
        value += float("0." + "".join(str(_KANJI_DIGITS.index(c)) for c in parts[1]))
    return value


def _normalise(text: str) -> tuple[str, str]:
    """(plain, masked): NFKC, no thousands separators or citation markers, kanji numerals as digits;
    ``masked`` also blanks identifiers (L3, HbA1c) and squared units (cm2), keeping every position."""
    text = unicodedata.normalize("NFKC", _CITE.sub(" ", text)).replace(",", "")
    text = _CITE.sub(" ", text)  # full-width ［3］ neutralised by compose: not a citation and not a value
    for word in _KANJI_WORDS:
        text = text.replace(word, "#" * len(word))

    def kanji(match: re.Match[str]) -> str:
        s = match.group(0)
        after = text[match.end():match.end() + 6]
        if len(s) < 2 and not _UNIT_AFTER.match(after):
            return s
        return f" {_kanji_value(s):g} "

    plain = _KANJI_NUMBER.sub(kanji, text)
    masked = _IDENTIFIER.sub(lambda m: "#" * len(m.group(0)), _PATH.sub(lambda m: "#" * len(m.group(0)), plain))
    masked = _SQUARED.sub(lambda m: m.group(1) + "²³"[int(m.group(2)) - 2], masked)  # cm2 is a unit, not 2
    return plain, masked


def _unit(raw: str | None) -> str | None:
    if not raw:
        return None
    raw = _SQUARED.sub(lambda m: m.group(1) + "²³"[int(m.group(2)) - 2], unicodedata.normalize("NFKC", raw).strip())
    for u in _UNITS:
        if raw.lower() == u.lower():
            return _UNIT_SAME.get(u, u)
    return raw


def numbers_in(text: str) -> set[float]:
    return {c.value for c in _claims(text, set())}


def _label_positions(text: str, labels: set[str]) -> list[tuple[int, str]]:
    folded = text.casefold()
    found = []
    for label in labels:
        start = folded.find(label)
        while start >= 0:
            found.append((start + len(label), label))
            start = folded.find(label, start + 1)
    return sorted(found)


def _claims(text: str, labels: set[str]) -> list[Claim]:
    """Numbers with their unit and the evidence label written before them (since the previous number)."""
    plain, norm = _normalise(text)
    positions = _label_positions(plain, labels)
    claims, previous_end = [], 0
    for match in _NUMBER.finditer(norm):
        unit_match = _UNIT_AFTER.match(norm, match.end())
        bound = [label for end, label in positions if previous_end <= end <= match.start()]
        label = max(bound, key=len) if bound and len(bound) == 1 else (bound[-1] if bound else None)
        claims.append(Claim(round(float(match.group(0)), 6), _unit(unit_match.group(1)) if unit_match else None,
                            label))
        previous_end = match.end()
    return claims


def _grades(text: str, labels: set[str]) -> list[tuple[str | None, str]]:
    norm = unicodedata.normalize("NFKC", text)
    positions = _label_positions(norm, labels)
    found, previous_end = [], 0
    for match in _GRADE.finditer(norm):
        bound = [label for end, label in positions if previous_end <= end <= match.start() + 4]
        found.append((bound[-1] if bound else None, match.group(1) or match.group(2)))
        previous_end = match.end()
    return found


# --- findings ------------------------------------------------------------------------------------
#: everyday words that contain a vocabulary term (レポート ⊃ ポート) and are no finding
_COMMON_WORDS = re.compile(r"レポート|サポート|インポート|エクスポート")


def _terms_in(text: str) -> set[str]:
    ja, ascii_terms = _terms()
    text = _COMMON_WORDS.sub("＿", text)
    found = {t for t in ja if t in text}
    found |= {t for t in ascii_terms
              if re.search(rf"(?<![A-Za-z]){re.escape(t)}(?![A-Za-z])", text, flags=re.IGNORECASE)}
    # a longer term contains the shorter ones it is made of (心室期外収縮 ⊃ 期外収縮)
    return {t for t in found if not any(t != o and t.casefold() in o.casefold() for o in found)}


def _polarities(text: str) -> dict[str, set[bool]]:
    """term → {True: stated as present, False: stated as absent}, read from the predicate that follows it."""
    out: dict[str, set[bool]] = {}
    for chunk in re.split(r"[。；;\n]|が、|ですが|けれど", text):
        for term in _terms_in(chunk):
            for start in _occurrences(chunk, term):
                rest = chunk[start + len(term):]
                predicate = _NEGATION.search(rest)
                present = not (predicate and predicate.group(1))
                if _EN_NEGATION.search(chunk[:start]):
                    present = False
                out.setdefault(term, set()).add(present)
    return out


def _occurrences(text: str, term: str) -> Iterator[int]:
    folded, needle = text.casefold(), term.casefold()
    start = folded.find(needle)
    while start >= 0:
        yield start
        start = folded.find(needle, start + 1)


# --- evidence ------------------------------------------------------------------------------------
def _flatten(node: Any, labels: list[str], units: dict[str, str], out: list[tuple[list[str], str, float, str | None]],
             grades: list[tuple[list[str], str]], key: str = "") -> None:
    if isinstance(node, dict):
        own = [str(node[k]) for k in _LABEL_KEYS if isinstance(node.get(k), str) and node.get(k)]
        own_units = {k: str(v) for k, v in node.items() if k.startswith("unit") and isinstance(v, str)}
        for k, v in node.items():
            if k in _EXCLUDED_KEYS:
                continue
            _flatten(v, labels + own, own_units or units, out, grades, k)
    elif isinstance(node, list):
        for v in node:
            _flatten(v, labels, units, out, grades, key)
    elif isinstance(node, bool):
        return
    elif isinstance(node, int | float):
        out.append((labels, key, float(node), _unit_for_key(key, units)))
    elif isinstance(node, str) and "grade" in key and re.fullmatch(r"[A-E][12]?", node):
        grades.append((labels + (["総合"] if "overall" in key else []), node))


def _unit_for_key(key: str, units: dict[str, str]) -> str | None:
    for suffix, unit in sorted(_KEY_UNITS.items(), key=lambda kv: -len(kv[0])):
        if key.endswith(suffix):
            return unit
    stem = key.split("_")[-1] if "_" in key else ""
    if f"unit_{stem}" in units:
        return _unit(units[f"unit_{stem}"])
    if len(units) == 1:
        return _unit(next(iter(units.values())))
    return None


def _evidence(source: Source, with_device: bool) -> Evidence:
    result, citation = source.result, source.citation
    if citation.kind != "tool_result":
        text = citation.text + " " + citation.label_ja
        facts: list[tuple[list[str], str, float, str | None]] = []
        json_grades: list[tuple[list[str], str]] = []
    else:
        output = dict(result.output or {})
        if with_device:  # the sentence says it reports the device's own values
            output = {**output, "device": {"reported": output.get("device_reported"),
                                           "statements": output.get("device_statements")}}
        facts, json_grades = [], []
        _flatten(output, [], {}, facts, json_grades)
        summary = result.summary_ja if with_device else _DEVICE_NOTE.sub("", result.summary_ja)
        citation_text = citation.text if with_device else _DEVICE_NOTE.sub("", citation.text)
        query = output.get("query")
        if isinstance(query, str) and query.strip():  # the planner's own words are no evidence
            summary, citation_text = summary.replace(query, " "), citation_text.replace(query, " ")
        summary, citation_text = _SEARCH_WORDS.sub(" ", summary), _SEARCH_WORDS.sub(" ", citation_text)
        kept = {k: v for k, v in output.items() if k not in _EXCLUDED_KEYS}
        text = " ".join([summary, json.dumps(kept, ensure_ascii=False, default=str), citation_text])
    labels = {label.casefold() for ls, _, _, _ in facts for label in ls}
    labels |= {label.casefold() for ls, _ in json_grades for label in ls}
    labels |= {"総合判定", "総合"}
    labels = {label for label in labels if len(label) >= 2}
    claims = [Claim(round(v, 6), u, None) for ls, _, v, u in facts]
    claims += [Claim(round(v, 6), u, label.casefold()) for ls, _, v, u in facts for label in ls if len(label) >= 2]
    prose = text if citation.kind != "tool_result" else " ".join([summary, citation_text])
    for sentence in split_sentences(prose):  # numbers of the JSON come from its fields, with their units
        claims += _claims(sentence, labels)
    grades: dict[str | None, set[str]] = {}
    for ls, grade in json_grades:
        grades.setdefault(None, set()).add(grade)
        for label in ls:
            grades.setdefault(label.casefold(), set()).add(grade)
    for sentence in split_sentences(prose):
        for bound, grade in _grades(sentence, labels):
            grades.setdefault(None, set()).add(grade)
            if bound:
                grades.setdefault(bound, set()).add(grade)
    return Evidence(text=text, claims=claims, grades=grades, polarity=_polarities(text), labels=labels)


def _merge(parts: list[Evidence]) -> Evidence:
    grades: dict[str | None, set[str]] = {}
    polarity: dict[str, set[bool]] = {}
    for p in parts:
        for k, g in p.grades.items():
            grades.setdefault(k, set()).update(g)
        for k, b in p.polarity.items():
            polarity.setdefault(k, set()).update(b)
    return Evidence(text=" ".join(p.text for p in parts), claims=[c for p in parts for c in p.claims],
                    grades=grades, polarity=polarity, labels=set().union(*(p.labels for p in parts)))


# --- the check -----------------------------------------------------------------------------------
def body_of(answer: str, sources: list[Source] | None = None) -> str:
    """The answer without the source list the system appended; anything else is checked."""
    if sources:
        tail = "\n\n" + source_list(sources)
        if answer.rstrip().endswith(tail):
            return answer.rstrip()[: -len(tail)]
    return answer


#: a decode that ran away: 「総合判定 D [1] [1] [1] [1] …」 up to max_tokens, every marker valid (live 12-04)
_CITE_RUN = re.compile(r"(?:\[\d+\]\s*){4,}")
_REPEAT_RUN = re.compile(r"(.{1,12}?)\1{7,}")  # counted only when the unit has a letter: 100000000 is a number
_UNIT_WORDS = frozenset({"bpm", "ms", "mm", "cm", "mg", "dl", "ml", "kg", "mmhg", "hu", "mv", "hz", "min"})


def script_issues(body: str) -> list[str]:
    """Simplified-only Chinese characters, or a body that is mostly not Japanese."""
    text = re.sub(r"\S*/\S*", " ", _CITE.sub(" ", body))  # paths and units are no language
    simplified = sorted({c for c in text if c in _simplified_only()})
    issues = []
    if simplified:
        issues.append(f"日本語にない簡体字 {''.join(simplified[:10])} が含まれています")
    text = re.sub(r"「[^」\n]*」", " ", text)  # a quoted (English) report is a quote, not the answer's language
    kana = sum(1 for c in text if "\u3040" <= c <= "\u30ff")
    han = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    letters = sum(1 for c in text if c.isalpha() and c.isascii())
    # a short English sentence has too few letters for the ratio: 「The heart rate is 61 bpm [1].」 (live 12-04)
    english_words = [w for w in re.findall(r"\b[a-z]{2,}\b", text) if w not in _UNIT_WORDS]
    if (kana == 0 and (han >= 12 or letters >= 20)) or (letters > 2 * (kana + han) and letters >= 20) \
            or (kana == 0 and han == 0 and len(english_words) >= 3):
        issues.append("回答の大部分が日本語ではありません")
    if _CITE_RUN.search(body) or any(any(c.isalpha() for c in m.group(1)) for m in _REPEAT_RUN.finditer(body)):
        issues.append("同じ記号・語句の繰り返しが続いています（生成の暴走）")
    return issues


def _check_sentence(sentence: str, evidence: Evidence) -> list[str]:
    issues: list[str] = []
    short = sentence[:60]
    claims = _claims(sentence, evidence.labels)
    missing, swapped, unit_changed = [], [], []
    for claim in claims:
        same_value = [c for c in evidence.claims if c.value == claim.value]
        if not same_value:
            missing.append(claim.value)
            continue
        if claim.label and any(c.label == claim.label for c in evidence.claims):
            same_value = [c for c in same_value if c.label == claim.label]
            if not same_value:
                swapped.append(f"{claim.label} {claim.value:g}")
                continue
        if claim.unit and not any(c.unit in (None, claim.unit) for c in same_value):
            unit_changed.append(f"{claim.value:g} {claim.unit}")
    if missing:
        issues.append(f"出典にない数値 {sorted(missing)}: 「{short}」")
    if swapped:
        issues.append(f"項目と数値の組み合わせが出典と異なります {swapped}: 「{short}」")
    if unit_changed:
        issues.append(f"単位が出典と異なります {unit_changed}: 「{short}」")
    bad_grades = []
    for label, grade in _grades(sentence, evidence.labels):
        allowed = evidence.grades.get(label) if label in evidence.grades else evidence.grades.get(None, set())
        if grade not in (allowed or set()):
            bad_grades.append(f"{label or ''} {grade}".strip())
    if bad_grades:
        issues.append(f"出典と異なる判定 {bad_grades}: 「{short}」")
    if _NEGATED_GRADE.search(sentence):  # 「D 判定ではありません」 flips the cited grade while naming it
        issues.append(f"判定を否定する記述は出典で裏付けられません: 「{short}」")
    unsupported, flipped = [], []
    for term, stated in _polarities(sentence).items():
        same = _equivalents().get(term, frozenset({term}))
        polarities = [evidence.polarity[t] for t in same if t in evidence.polarity]
        backed = set().union(*polarities) if polarities else None
        if backed is None and not any(t.casefold() in evidence.text.casefold() for t in same):
            unsupported.append(term)
        elif backed is not None and not (stated & backed):
            flipped.append(term)
    if unsupported:
        issues.append(f"出典にない所見 {sorted(unsupported)}: 「{short}」")
    if flipped:
        issues.append(f"所見の有無が出典と逆です {sorted(flipped)}: 「{short}」")
    return issues


def verify_answer(answer: str, sources: list[Source], *, trust_notes: bool = False) -> VerifyReport:
    """Check an answer; ``trust_notes`` skips '※' lines written by the deterministic composer."""
    by_number = {s.number: s for s in sources}
    body = body_of(answer, sources)
    if sources and not body.strip():
        return VerifyReport(ok=False, issues=["回答が空です"])
    issues = script_issues("\n".join(line for line in body.splitlines()
                                     if not (trust_notes and line.startswith(NOTE_PREFIX))))
    cache_: dict[tuple[int, bool], Evidence] = {}
    checked = 0
    for raw in split_sentences(body):
        sentence = raw.strip()
        if not sentence or (trust_notes and sentence.startswith(NOTE_PREFIX)):
            continue
        checked += 1
        cited = [int(n) for n in _CITE.findall(sentence)]
        sentence = _SEARCH_WORDS.sub("検索「…」", sentence)
        unknown = [n for n in cited if n not in by_number]
        if unknown:
            issues.append(f"存在しない出典番号 {unknown}: 「{sentence[:60]}」")
        cited_sources = [by_number[n] for n in cited if n in by_number]
        has_claim = bool(numbers_in(sentence) or _terms_in(sentence) or _grades(sentence, set()))
        if has_claim and not cited_sources:
            issues.append(f"出典のない臨床記述: 「{sentence[:60]}」")
            continue
        if not cited_sources:
            continue
        with_device = bool(_DEVICE_WORDS.search(sentence))
        parts = []
        for s in cited_sources:
            key = (s.number, with_device)
            if key not in cache_:
                cache_[key] = _evidence(s, with_device)
            parts.append(cache_[key])
        issues += _check_sentence(sentence, _merge(parts))
    return VerifyReport(ok=not issues, issues=issues, checked_sentences=checked)
