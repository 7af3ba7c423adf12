"""「今日のレポートで見落としがないか確認して」: the period read from the question, the archive scan, the cited answer.

Data: synthetic Japanese reports (knowledge/synthetic.py) imported into a test archive, with fixed sentences
added to five reports whose study dates are rewritten relative to today, so the expected worklist is known
by construction: R-TODAY-PTX (右気胸を認める → pneumothorax present) and R-TODAY-NEG (気胸は認めない → not
flagged) today, R-YEST-ICH (急性硬膜下血腫 → intracranial haemorrhage) yesterday, R-WEEK-PE (肺塞栓症の疑い)
five days ago, R-OLD-FREE (遊離ガス) 40 days ago. The other synthetic reports stay in 2015–2025.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from dokuei.reports.period import parse_period
from dokuei.settings import Settings
from dokuei.tools.check_missed_findings import CheckMissedFindings, today

TODAY = date(2026, 12, 3)  # a Thursday


@pytest.mark.parametrize(("question", "lo", "hi"), [
    ("今日のレポートで見落としがないか確認して", TODAY, TODAY),
    ("本日のレポートを確認", TODAY, TODAY),
    ("昨日のレポートで見落としがないか確認して", date(2026, 12, 2), date(2026, 12, 2)),
    ("一昨日の分", date(2026, 12, 1), date(2026, 12, 1)),
    ("今週のレポートで見落としがないか確認して", date(2026, 11, 30), TODAY),  # Monday 11/30 … today
    ("先週のレポート", date(2026, 11, 23), date(2026, 11, 29)),
    ("今月のレポート", date(2026, 12, 1), TODAY),
    ("先月のレポート", date(2026, 11, 1), date(2026, 11, 30)),
    ("過去7日のレポートで見落としがないか確認して", date(2026, 11, 27), TODAY),  # 7 days, today included
    ("直近３０日", date(2026, 11, 4), TODAY),  # full-width digits
    ("過去七日", date(2026, 11, 27), TODAY),
    ("過去2週間", date(2026, 11, 20), TODAY),
    ("11月1日から11月30日のレポートで見落としがないか確認して", date(2026, 11, 1), date(2026, 11, 30)),
    ("11月1日〜30日", date(2026, 11, 1), date(2026, 11, 30)),  # the end takes the start's month
    ("12月20日から1月5日", date(2025, 12, 20), date(2026, 1, 5)),  # 12/20 not after today → last year
    ("2025年3月1日から2025年3月31日", date(2025, 3, 1), date(2025, 3, 31)),
    ("2026-11-01〜2026-11-15", date(2026, 11, 1), date(2026, 11, 15)),
    ("11/1-11/30", date(2026, 11, 1), date(2026, 11, 30)),
    ("11月5日のレポート", date(2026, 11, 5), date(2026, 11, 5)),
    ("10月のレポート", date(2026, 10, 1), date(2026, 10, 31)),
    ("check the last 3 days", date(2026, 12, 1), TODAY),
    ("yesterday's reports", date(2026, 12, 2), date(2026, 12, 2)),
])
def test_period_from_question(question: str, lo: date, hi: date) -> None:
    period = parse_period(question, TODAY)
    assert period is not None and (period.date_from, period.date_to) == (lo, hi)


@pytest.mark.parametrize("question", ["見落としがないか確認して", "過去のレポートで心拡大の記載は？", "2月30日"])
def test_no_period(question: str) -> None:
    assert parse_period(question, TODAY) is None  # 過去 without a number is not a period; 2/30 is no date


ADDED = {  # report id -> (days before today, findings, diagnosis)
    "R-TODAY-PTX": (0, "右気胸を認める。縦隔の偏位はない。", "右気胸。"),
    "R-TODAY-NEG": (0, "気胸は認めない。胸水なし。", "有意な異常所見なし。"),
    "R-YEST-ICH": (1, "左前頭部に急性硬膜下血腫を認める。", "急性硬膜下血腫。"),
    "R-WEEK-PE": (5, "右肺動脈下葉枝に造影欠損があり、肺塞栓症の疑い。", "肺塞栓症疑い。"),
    "R-OLD-FREE": (40, "横隔膜下に遊離ガスを認める。", "消化管穿孔疑い。"),
}


@pytest.fixture(scope="module")
def archive_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from dokuei.knowledge.archive import ReportArchive
    from dokuei.knowledge.importers import import_rows
    from dokuei.knowledge.synthetic import generate
    from tests.reports_fixtures import HashEmbedder

    settings = Settings.load(home=Path(tmp_path_factory.mktemp("scan-home")))
    rows: list[dict[str, Any]] = list(generate(120, seed=5))
    for rid, (days, findings, dx) in ADDED.items():
        rows.append({"report_id": rid, "patient_id": rid, "study_date": (today() - timedelta(days=days)).isoformat(),
                     "modality": "CT", "body_part": "胸部", "findings": findings, "diagnosis": dx})
    archive = ReportArchive(settings, embedder=HashEmbedder())
    import_rows(archive, enumerate(rows, start=1), source="syn", progress=False)
    archive.store.close()
    return settings


def _ask(settings: Settings, question: str) -> Any:
    from dokuei.agent.graph import Agent

    return Agent(settings).ask(question)


@pytest.mark.parametrize(("question", "expected", "n_scanned"), [
    ("今日のレポートで見落としがないか確認して", {"R-TODAY-PTX": "pneumothorax"}, 2),
    ("昨日のレポートで見落としがないか確認して", {"R-YEST-ICH": "intracranial_hemorrhage"}, 1),
    ("過去7日のレポートで見落としがないか確認して",
     {"R-TODAY-PTX": "pneumothorax", "R-YEST-ICH": "intracranial_hemorrhage", "R-WEEK-PE": "pulmonary_embolism"}, 4),
])
def test_date_range_scan_through_the_agent(archive_settings: Settings, question: str, expected: dict[str, str],
                                           n_scanned: int) -> None:
    turn = _ask(archive_settings, question)
    assert [r.tool for r in turn.results] == ["check_missed_findings"]
    out = turn.results[0].output
    # only the added reports carry dates this recent, so the counts are known by construction
    assert out["n_reports_scanned"] == n_scanned
    assert {r["report_id"]: r["category"] for r in out["rows"]} == expected
    assert all(r["evidence"] in ADDED[r["report_id"]][1] for r in out["rows"])  # quoted verbatim
    cited = {c["id"].removeprefix("report:") for c in turn.citations if c["kind"] == "report"}
    assert cited == set(expected)
    last = today() - timedelta(days=1 if question.startswith("昨日") else 0)
    assert f"{n_scanned} 件" in turn.answer_ja and out["date_to"] == last.isoformat()
    assert turn.verified, turn.verify_issues
    assert Path(out["worklist_csv"]).read_text(encoding="utf-8-sig").count("\n") == len(expected) + 1


def test_empty_range_names_the_archive_dates(archive_settings: Settings) -> None:
    turn = _ask(archive_settings, "2010年1月1日から2010年1月31日のレポートで見落としがないか確認して")
    out = turn.results[0].output
    assert out["n_reports_scanned"] == 0 and out["rows"] == []
    first = out["archive_date_from"]
    assert first < "2016-01-01" and out["archive_date_to"] == today().isoformat()
    assert "ありません" in turn.answer_ja and first in turn.answer_ja
    assert turn.verified, turn.verify_issues


def test_a_pasted_report_goes_to_the_single_report_tool(archive_settings: Settings) -> None:
    # 「見落とし」 names both tools; the pasted report decides (detect supersedes the scan, declared as data)
    turn = _ask(archive_settings, "このレポートで見落としがないか確認して 所見: 右気胸を認めます。")
    assert [r.tool for r in turn.results] == ["detect_critical_findings"]


def test_no_archive_is_a_clear_failure(tmp_path: Path) -> None:
    res = CheckMissedFindings(Settings.load(home=tmp_path))({"period_ja": "今日"})
    assert res.status.value == "failed" and "レポート索引がありません" in res.summary_ja


def test_parallel_scan_gives_the_same_rows() -> None:
    from dokuei.knowledge.records import ReportRecord
    from dokuei.knowledge.reports_scan import scan_records
    from dokuei.knowledge.synthetic import generate

    recs = [ReportRecord(r["report_id"], date.fromisoformat(r["study_date"]), r["findings"], r["diagnosis"])
            for r in generate(300, seed=9)]
    one = scan_records(recs)
    two = scan_records(recs, workers=2, batch_size=50)
    assert two.n_reports == one.n_reports == 300 and two.rows == one.rows and one.rows


def test_worklist_tab_table(archive_settings: Settings) -> None:
    from dokuei.ui.worklist import worklist_table

    day = today().isoformat()
    week = (today() - timedelta(days=6)).isoformat()
    rows, summary, csv_path = worklist_table(archive_settings, week, day)
    assert {r[0] for r in rows} == {"R-TODAY-PTX", "R-YEST-ICH", "R-WEEK-PE"} and csv_path  # as the chat's 過去7日
    assert "4 件" in summary
    rows, _, _ = worklist_table(archive_settings, week, day, category="気胸・緊張性気胸")
    assert [(r[0], r[5], r[7]) for r in rows] == [("R-TODAY-PTX", "あり", "右気胸を認める。")]
    rows, summary, csv_path = worklist_table(archive_settings, "2026/13/01", day)
    assert rows == [] and "開始日" in summary and csv_path is None
