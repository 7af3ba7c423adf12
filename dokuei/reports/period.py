"""Read a date range (検査日の期間) from a question: 今日・昨日・今週・先週・今月・先月・過去7日・11月1日から11月30日.

All ranges are closed [date_from, date_to] and relative to ``today`` (passed in, so the rules are testable):

* 今日/本日 → today; 昨日 → today − 1; 一昨日 → today − 2;
* 今週 → Monday of this week … today; 先週 → the previous Monday … Sunday;
* 今月 → the 1st … today; 先月 → the whole previous month;
* 過去N日 / 直近N日 / ここN日 / last N days → the N days ending today (today included);
  過去N週間 → 7·N days;
* explicit dates: 2026年11月1日から11月30日, 11月1日〜11月30日, 2026-11-01〜2026-11-30, 11/1-11/30, a single
  day (11月5日), or a month (11月, 2026年11月). A date without a year is the latest such date not after
  today (in early January, 「12月20日」 is last December); a range's end without a month takes the start's.

English equivalents (today, yesterday, this week, last week, this month, last month, last N days) are read
the same way. No period in the question → ``None`` (the caller scans the whole archive and says so).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Period:
    date_from: date
    date_to: date
    label_ja: str  # how the question named it (「今日」「過去7日」「11月1日〜11月30日」)

    @property
    def range_ja(self) -> str:
        if self.date_from == self.date_to:
            return self.date_from.isoformat()
        return f"{self.date_from.isoformat()}〜{self.date_to.isoformat()}"


_KANJI = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_NUM = r"(\d{1,3}|[一二三四五六七八九十]{1,3})"
_SEP = r"\s*(?:から|より|〜|~|-|–|—|ー|to)\s*"
_Y = r"(?:(\d{4})\s*年\s*)?"
_JA_RANGE = re.compile(rf"{_Y}(\d{{1,2}})\s*月\s*(\d{{1,2}})\s*日{_SEP}{_Y}(?:(\d{{1,2}})\s*月\s*)?(\d{{1,2}})\s*日")
_ISO = r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
_ISO_RANGE = re.compile(rf"{_ISO}{_SEP}{_ISO}")
_MD = r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])"
_MD_RANGE = re.compile(rf"{_MD}{_SEP}{_MD}")
_ISO_DAY = re.compile(_ISO)
_JA_DAY = re.compile(rf"{_Y}(\d{{1,2}})\s*月\s*(\d{{1,2}})\s*日")
_JA_MONTH = re.compile(rf"{_Y}(\d{{1,2}})\s*月(?!\s*\d)")
_LAST_DAYS = re.compile(rf"(?:過去|直近|ここ|最近)\s*{_NUM}\s*日|{_NUM}\s*日間|last\s+(\d{{1,3}})\s+days")
_LAST_WEEKS = re.compile(rf"(?:過去|直近|ここ|最近)\s*{_NUM}\s*週|last\s+(\d{{1,2}})\s+weeks")

_RELATIVE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"一昨日|おととい"), "day-2"),
    (re.compile(r"今日|本日|きょう|\btoday\b"), "day-0"),
    (re.compile(r"昨日|きのう|\byesterday\b"), "day-1"),
    (re.compile(r"今週|\bthis week\b"), "this-week"),
    (re.compile(r"先週|\blast week\b"), "last-week"),
    (re.compile(r"今月|\bthis month\b"), "this-month"),
    (re.compile(r"先月|\blast month\b"), "last-month"),
)


def _int(text: str) -> int:
    if text.isdigit():
        return int(text)
    if text.startswith("十"):  # 十, 十五
        return 10 + (_KANJI[text[1]] if len(text) > 1 else 0)
    if "十" in text:  # 二十, 二十一
        head, _, tail = text.partition("十")
        return _KANJI[head] * 10 + (_KANJI[tail] if tail else 0)
    return _KANJI[text]


def _latest(month: int, day: int, today: date) -> date | None:
    """The latest (month, day) not after today; None if no such calendar date."""
    for year in (today.year, today.year - 1):
        try:
            d = date(year, month, day)
        except ValueError:
            continue
        if d <= today:
            return d
    return None


def _make(year: str | None, month: int, day: int, today: date) -> date | None:
    if year:
        try:
            return date(int(year), month, day)
        except ValueError:
            return None
    return _latest(month, day, today)


def _range_end(start: date, year: str | None, month: int, day: int) -> date | None:
    try:
        end = date(int(year) if year else start.year, month, day)
    except ValueError:
        return None
    if end < start and not year:
        try:
            end = date(start.year + 1, month, day)
        except ValueError:
            return None
    return end


def _explicit(q: str, today: date) -> Period | None:
    if m := _ISO_RANGE.search(q):
        try:
            a = date(int(m[1]), int(m[2]), int(m[3]))
            b = date(int(m[4]), int(m[5]), int(m[6]))
        except ValueError:
            return None
        return Period(min(a, b), max(a, b), m.group(0).strip())
    if m := _JA_RANGE.search(q):
        start = _make(m[1], int(m[2]), int(m[3]), today)
        if start is None:
            return None
        end = _range_end(start, m[4], int(m[5] or m[2]), int(m[6]))
        return Period(start, end, m.group(0).strip()) if end else None
    if m := _MD_RANGE.search(q):
        start = _make(None, int(m[1]), int(m[2]), today)
        end = _range_end(start, None, int(m[3]), int(m[4])) if start else None
        return Period(start, end, m.group(0).strip()) if start and end else None
    if m := _ISO_DAY.search(q):
        try:
            d = date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return None
        return Period(d, d, m.group(0))
    if m := _JA_DAY.search(q):
        day = _make(m[1], int(m[2]), int(m[3]), today)
        return Period(day, day, m.group(0).strip()) if day else None
    if (m := _JA_MONTH.search(q)) and 1 <= int(m[2]) <= 12:
        month = int(m[2])
        year = int(m[1]) if m[1] else (today.year if month <= today.month else today.year - 1)
        last = date(year, month, calendar.monthrange(year, month)[1])
        return Period(date(year, month, 1), min(last, today) if not m[1] else last, m.group(0).strip())
    return None


def _relative(q: str, today: date) -> Period | None:
    if m := _LAST_DAYS.search(q):
        n = _int(next(g for g in m.groups() if g))
        if n >= 1:
            return Period(today - timedelta(days=n - 1), today, m.group(0).strip())
    if m := _LAST_WEEKS.search(q):
        n = _int(next(g for g in m.groups() if g))
        if n >= 1:
            return Period(today - timedelta(days=7 * n - 1), today, m.group(0).strip())
    for pattern, kind in _RELATIVE:
        if not (m := pattern.search(q)):
            continue
        monday = today - timedelta(days=today.weekday())
        first = today.replace(day=1)
        if kind.startswith("day-"):
            d = today - timedelta(days=int(kind[4:]))
            return Period(d, d, m.group(0))
        if kind == "this-week":
            return Period(monday, today, m.group(0))
        if kind == "last-week":
            return Period(monday - timedelta(days=7), monday - timedelta(days=1), m.group(0))
        if kind == "this-month":
            return Period(first, today, m.group(0))
        prev_last = first - timedelta(days=1)
        return Period(prev_last.replace(day=1), prev_last, m.group(0))
    return None


def parse_period(question: str, today: date) -> Period | None:
    """The date range a question names, or None when it names none."""
    q = unicodedata.normalize("NFKC", question).lower()
    return _explicit(q, today) or _relative(q, today)
