"""Text normalisation for Japanese hospital exports: encoding detection, NFKC with an offset map, dates.

Hospital systems export CSV as CP932 (Windows Shift_JIS) far more often than UTF-8, with full-width
digits (１５ｍｍ) and half-width katakana. We index the NFKC form (so ``15mm`` and ``１５ｍｍ`` match) and
keep the original text for display; :func:`nfkc_with_map` maps every normalised character back to its
original position so a match found in the normalised text can be highlighted in the original.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from datetime import date

#: tried in order; utf-8 first because it is strict (CP932 bytes almost never decode as UTF-8)
ENCODINGS: tuple[str, ...] = ("utf-8", "cp932", "euc_jp", "iso2022_jp")


def detect_encoding(raw: bytes, partial: bool = False) -> str:
    """The first encoding of :data:`ENCODINGS` that decodes ``raw`` without error ('utf-8-sig' on a BOM).

    ``partial``: ``raw`` is the head of a longer file, so a character cut at its very end is forgiven.
    """
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for enc in ENCODINGS:
        try:
            raw.decode(enc)
        except UnicodeDecodeError as exc:
            if (
                partial
                and exc.start >= len(raw) - 3
                and exc.reason.startswith(("unexpected end", "incomplete"))
            ):
                return enc
            continue
        return enc
    raise UnicodeDecodeError("unknown", raw[:16], 0, 1, f"none of {ENCODINGS} decodes the file")


def nfkc(text: str) -> str:
    """NFKC plus whitespace folding (full-width spaces, runs of blanks)."""
    return re.sub(r"[ \t\u3000]+", " ", unicodedata.normalize("NFKC", text)).strip()


def nfkc_with_map(text: str) -> tuple[str, list[int]]:
    """NFKC character by character, with ``offsets[i]`` = index in ``text`` of normalised char ``i``.

    Per-character NFKC equals whole-string NFKC except for combining sequences (a base letter followed
    by a combining mark), which hospital exports practically never contain; highlighting is the only user.
    """
    out: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(text):
        norm = unicodedata.normalize("NFKC", ch)
        out.append(norm)
        offsets.extend([i] * len(norm))
    return "".join(out), offsets


_DATE_PATTERNS = (
    re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T].*)?$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)
_ERAS = {"R": 2018, "令和": 2018, "H": 1988, "平成": 1988, "S": 1925, "昭和": 1925}
_ERA_PATTERN = re.compile(r"^(R|H|S|令和|平成|昭和)(\d{1,2}|元)[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")


def parse_date(text: str) -> date | None:
    """A study date from the usual export forms (2024-01-05, 2024/1/5, 20240105, 令和6年1月5日, R6.1.5).

    Returns None when the text is not a valid calendar date.
    """
    value = nfkc(text).replace(" ", "")
    if not value:
        return None
    try:
        for pattern in _DATE_PATTERNS:
            m = pattern.match(value)
            if m:
                return date(int(m[1]), int(m[2]), int(m[3]))
        m = _ERA_PATTERN.match(value)
        if m:
            year = 1 if m[2] == "元" else int(m[2])
            return date(_ERAS[m[1]] + year, int(m[3]), int(m[4]))
    except ValueError:
        return None
    return None


def date_to_int(d: date) -> int:
    """YYYYMMDD as an int: what the index stores so date ranges are numeric comparisons."""
    return d.year * 10000 + d.month * 100 + d.day


def int_to_date(value: int) -> date:
    return date(value // 10000, value // 100 % 100, value % 100)
