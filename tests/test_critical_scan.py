"""``dokuei reports scan``: a JSONL export of synthetic Japanese reports (ground truth known) → worklist.

The synthetic generator writes a pneumothorax or a haemorrhage sentence only when the report's labels
carry that code, and 「…は認めない」 sentences only for codes ruled out, so every report whose labels
contain 'pneumothorax' must be on the worklist under that category, and no other report may be.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from dokuei.knowledge.reports_cli import register_cli
from dokuei.knowledge.synthetic import write_jsonl
from dokuei.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dokuei")
    register_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def test_scan_synthetic_export(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "syn.jsonl"
    write_jsonl(src, 400, seed=3)
    with src.open("a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    out = tmp_path / "worklist.csv"
    args = _parser().parse_args(["reports", "scan", "--input", str(src), "--out", str(out), "--json"])
    assert args.func(args, settings) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_reports"] == 400
    assert [u["where"] for u in summary["unreadable"]] == ["401 行目"]  # the broken line is named
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    truth = {r["report_id"] for r in map(json.loads, src.read_text().splitlines()[:400])
             if "pneumothorax" in r["labels"]}
    listed = {r["report_id"] for r in rows if r["category"] == "pneumothorax"}
    assert truth and listed == truth
    assert all(r["evidence"] and float(r["score"]) >= 0.6 for r in rows)


def test_scan_without_archive_is_a_clear_message(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["reports", "scan"])
    assert args.func(args, settings) == 2
    assert "レポート索引がありません" in capsys.readouterr().err


def test_parquet_worklist(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from datetime import date

    from dokuei.knowledge.records import ReportRecord
    from dokuei.knowledge.reports_scan import scan_records, write_worklist

    day = date(2026, 1, 5)
    recs = [ReportRecord("R1", day, "右気胸を認める。"), ReportRecord("R2", day, "気胸なし。")]
    res = scan_records(recs)
    path = write_worklist(res.rows, tmp_path / "w.parquet")
    table = pq.read_table(path).to_pylist()
    assert [(r["report_id"], r["category"], r["status"]) for r in table] == [("R1", "pneumothorax", "present")]


def test_scan_over_the_archive_with_a_date_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dokuei.knowledge.archive import ReportArchive
    from dokuei.knowledge.importers import import_rows
    from dokuei.knowledge.synthetic import generate
    from tests.reports_fixtures import HashEmbedder

    settings = Settings.load(home=tmp_path / "home")
    rows = list(generate(200, seed=7))
    import_rows(ReportArchive(settings, embedder=HashEmbedder()),
                enumerate(rows, start=1), source="syn", progress=False)
    day = sorted(r["study_date"] for r in rows)[100]
    out = tmp_path / "w.csv"
    args = _parser().parse_args(["reports", "scan", "--from", day, "--to", day, "--out", str(out), "--json"])
    assert args.func(args, settings) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_reports"] == sum(r["study_date"] == day for r in rows)  # only that day's reports
    listed = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert all(r["study_date"] == day for r in listed)
