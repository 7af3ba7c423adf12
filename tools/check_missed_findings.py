"""Tool: screen the archive's reports of a date range for critical findings (見落とし防止), as a cited worklist.

「今日のレポートで見落としがないか確認して」「昨日」「今週」「11月1日から11月30日」「過去7日」: the period is
read from the question (:mod:`dokuei.reports.period`, relative to today's date); every report of the archive
whose study date lies in it is screened with the same rules as ``detect_critical_findings``
(:func:`dokuei.knowledge.reports_scan.scan_records`). The answer says how many reports were screened and over
which dates, cites each flagged report with its id, date, category and the quoted sentence, and writes the
whole worklist as CSV. An empty period says so and names the dates the archive holds.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from datetime import date
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from dokuei.reports.period import Period, parse_period
from dokuei.tools.base import Artifact, Citation, Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

log = logging.getLogger(__name__)

_STATUS_JA = {"present": "あり", "suspected": "疑い", "unchanged_known": "既知・著変なし"}
#: above this many reports the scan uses worker processes (one per core, at most 4)
PARALLEL_FROM_REPORTS = 5000


def today() -> date:
    """The reference date for 「今日」「昨日」…: the machine's local date."""
    return date.today()


class CheckMissedFindingsInput(BaseModel):
    date_from: date | None = Field(default=None, description="検査日の開始（YYYY-MM-DD、含む）。なければ最初から")
    date_to: date | None = Field(default=None, description="検査日の終了（YYYY-MM-DD、含む）。なければ最後まで")
    period_ja: str = Field(default="", max_length=100, description="質問での期間の言い方（「今日」「過去7日」など）")
    categories: list[str] = Field(default_factory=list, description="このカテゴリ ID だけを載せる（空なら全カテゴリ）")
    include_unchanged: bool = Field(default=False, description="既知・著変なしの所見もワークリストに載せる")
    n_reports_cited_max: int = Field(default=20, ge=1, le=200, description="回答で引用するレポート数の上限（件）")

    @model_validator(mode="after")
    def _ordered(self) -> CheckMissedFindingsInput:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from は date_to 以前の日付にしてください")
        return self


class WorklistItem(BaseModel):
    report_id: str = Field(description="レポート ID")
    study_date: str = Field(description="検査日 YYYY-MM-DD")
    modality: str = Field(description="モダリティ")
    body_part: str = Field(description="部位")
    category: str = Field(description="カテゴリ ID")
    name_ja: str = Field(description="カテゴリ名")
    status: Literal["present", "suspected", "unchanged_known"] = Field(description="判定")
    score: float = Field(description="rule score 0–1")
    evidence: str = Field(description="根拠の文（原文のまま引用）")
    section: str = Field(description="根拠の文がある欄（findings / impression）")


class CheckMissedFindingsOutput(BaseModel):
    period_ja: str = Field(description="期間（質問での言い方）")
    date_from: str | None = Field(description="確認した検査日の開始（null: アーカイブの最初から）")
    date_to: str | None = Field(description="確認した検査日の終了（null: アーカイブの最後まで）")
    archive_date_from: str = Field(description="アーカイブの最初の検査日")
    archive_date_to: str = Field(description="アーカイブの最後の検査日")
    n_reports_archive: int = Field(description="アーカイブのレポート数（件）")
    n_reports_scanned: int = Field(description="確認したレポート数（件）")
    n_flagged_reports: int = Field(description="重大所見の可能性があるレポート数（件）")
    n_rows: int = Field(description="ワークリストの行数（レポート×カテゴリ）")
    by_category: dict[str, int] = Field(description="カテゴリ名 → 該当レポート数（件）")
    rows: list[WorklistItem] = Field(description="ワークリスト（スコア順、最大 200 行）")
    unreadable: list[str] = Field(description="読めなかったレポート ID")
    worklist_csv: str = Field(description="ワークリスト全体の CSV（UTF-8 BOM 付き）")
    reports_per_s: float = Field(description="処理速度（件/秒）")


class CheckMissedFindings(Tool[CheckMissedFindingsInput]):
    name: ClassVar[str] = "check_missed_findings"
    title_ja: ClassVar[str] = "重大所見の見落とし確認"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "レポートアーカイブのうち指定期間（今日・昨日・今週・過去7日・11月1日から11月30日など）の全レポートについて、"
        "重大所見（気胸、遊離ガス、大動脈解離、肺塞栓、頭蓋内出血など）の見落としがないかを一括で確認し、レポート ID・"
        "検査日・カテゴリ・根拠の文の付いたワークリストを返します。貼り付けた 1 件のレポートの判定には "
        "detect_critical_findings を使います。"
    )
    description_en: ClassVar[str] = (
        "Screen every archived report of a date range (today, yesterday, this week, the last 7 days, an explicit "
        "range) for critical findings and return a worklist (report id, date, category, quoted evidence), saying "
        "how many reports were screened. For one pasted report use detect_critical_findings."
    )
    Input: ClassVar[type[BaseModel]] = CheckMissedFindingsInput
    Output: ClassVar[type[BaseModel]] = CheckMissedFindingsOutput
    requires: ClassVar[Requirements] = Requirements(device="cpu", licence="Apache-2.0 (rules and category data)")
    keywords_ja: ClassVar[tuple[str, ...]] = (
        "見落とし", "見落とし防止", "ワークリスト", "今日のレポート", "本日のレポート", "昨日のレポート",
        "今週のレポート", "先週のレポート", "今月のレポート", "先月のレポート", "期間のレポート", "一括確認",
        "一括チェック", "まとめて確認",
    )
    keywords_en: ClassVar[tuple[str, ...]] = ("worklist", "missed findings", "overlooked findings")
    needs_ja: ClassVar[str] = "確認する期間を質問に書いてください（例:「今日のレポートで見落としがないか確認して」）。"

    def run(self, inp: CheckMissedFindingsInput) -> Outcome:
        from dokuei.knowledge.location import archive_root
        from dokuei.knowledge.reports_scan import archive_records, archive_span, scan_records, write_worklist

        store = archive_root(self.settings) / "reports.sqlite"
        span = archive_span(store)
        if span is None:
            raise ToolInputError(
                "レポート索引がありません（または空です）。`dokuei index demo` または `dokuei index import FILE` で"
                "作成してから確認してください。", f"no reports in {store}")
        n_archive, first, last = span
        n_in_range = _count_in_range(n_archive, first, last, inp)
        workers = min(4, os.cpu_count() or 1) if n_in_range >= PARALLEL_FROM_REPORTS else 1
        result = scan_records(archive_records(store, inp.date_from, inp.date_to),
                              include_unchanged=inp.include_unchanged, workers=workers)
        rows = [r for r in result.rows if not inp.categories or r.category in inp.categories]
        csv_path = write_worklist(rows, self.artifact_dir(inp) / "critical_findings_worklist.csv")
        flagged_ids = list(dict.fromkeys(r.report_id for r in rows))
        by_category = Counter(r.name_ja for r in rows if r.status != "unchanged_known")
        out = CheckMissedFindingsOutput(
            period_ja=inp.period_ja, date_from=_iso(inp.date_from), date_to=_iso(inp.date_to),
            archive_date_from=first.isoformat(), archive_date_to=last.isoformat(), n_reports_archive=n_archive,
            n_reports_scanned=result.n_reports,
            n_flagged_reports=len({r.report_id for r in rows if r.status != "unchanged_known"}),
            n_rows=len(rows), by_category=dict(by_category.most_common()), unreadable=[w for w, _ in result.unreadable],
            rows=[WorklistItem(report_id=r.report_id, study_date=r.study_date, modality=r.modality,
                               body_part=r.body_part, category=r.category, name_ja=r.name_ja,
                               status=r.status, score=r.score, evidence=r.evidence,
                               section=r.section) for r in rows[:200]],
            worklist_csv=str(csv_path), reports_per_s=round(result.reports_per_s, 1))
        citations = []
        for rid in flagged_ids[: inp.n_reports_cited_max]:
            mine = [r for r in rows if r.report_id == rid]
            what = "、".join(f"{r.name_ja}・{_STATUS_JA[r.status]}" for r in mine)
            citations.append(Citation(id=f"report:{rid}", kind="report",
                                      label_ja=f"レポート {rid}（{mine[0].study_date}、{what}）",
                                      text=" ".join(dict.fromkeys(r.evidence for r in mine))))
        artifacts = [Artifact(path=str(csv_path), kind="table", caption_ja="見落とし防止ワークリスト（CSV）")]
        return Outcome(output=out, summary_ja=_summary(out, len(citations)), citations=citations,
                       artifacts=artifacts)

    def input_from_context(self, ctx: ToolContext) -> CheckMissedFindingsInput | None:
        period = parse_period(ctx.question, today())
        return _input(period)


def _input(period: Period | None) -> CheckMissedFindingsInput:
    if period is None:
        return CheckMissedFindingsInput(period_ja="アーカイブ全体")
    return CheckMissedFindingsInput(date_from=period.date_from, date_to=period.date_to, period_ja=period.label_ja)


def _count_in_range(n_archive: int, first: date, last: date, inp: CheckMissedFindingsInput) -> int:
    """An upper bound of the reports in range, enough to choose one or several worker processes."""
    if inp.date_from is None and inp.date_to is None:
        return n_archive
    lo, hi = max(first, inp.date_from or first), min(last, inp.date_to or last)
    days_total = max(1, (last - first).days + 1)
    return 0 if hi < lo else int(n_archive * min(1.0, ((hi - lo).days + 1) / days_total * 4))


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _range_ja(out: CheckMissedFindingsOutput) -> str:
    lo, hi = out.date_from or out.archive_date_from, out.date_to or out.archive_date_to
    span = lo if lo == hi else f"{lo}〜{hi}"
    return f"{span}（{out.period_ja}）" if out.period_ja else span


def _summary(out: CheckMissedFindingsOutput, n_cited: int) -> str:
    archive = f"アーカイブの検査日は {out.archive_date_from}〜{out.archive_date_to}（{out.n_reports_archive} 件）です。"
    if out.n_reports_scanned == 0:
        return (f"検査日 {_range_ja(out)} のレポートはアーカイブにありません（確認 0 件）。{archive}"
                "期間を指定し直してください。")
    text = f"検査日 {_range_ja(out)} のレポート {out.n_reports_scanned} 件を重大所見の規則で確認しました。"
    if out.n_flagged_reports == 0:
        text += "重大所見の可能性があるレポートはありませんでした。"
    else:
        text += (f"重大所見の可能性があるレポートは {out.n_flagged_reports} 件です（"
                 + "、".join(f"{name} {n} 件" for name, n in out.by_category.items()) + "）。")
        if n_cited < len({r.report_id for r in out.rows}) or out.n_rows > len(out.rows):
            text += f"回答では上位 {n_cited} 件を引用し、全件はワークリスト CSV にあります。"
    if out.unreadable:
        text += f"本文がなく確認できなかったレポート {len(out.unreadable)} 件: {'、'.join(out.unreadable[:5])}。"
    return text + archive + "最終判断は読影医が行ってください。"
