"""``dokuei reports scan``: screen the archive or an export for critical findings and write a worklist.

Wired into ``dokuei`` through ``dokuei.cli.CLI_EXTENSIONS``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path

from dokuei.settings import Settings

log = logging.getLogger(__name__)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"日付「{text}」を YYYY-MM-DD として読めません。") from exc


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reports`` command group (scan) to a parent parser's subparsers."""
    reports = subparsers.add_parser("reports", help="レポート本文の一括処理（重大所見の見落とし確認）")
    sub = reports.add_subparsers(dest="reports_command", required=True)
    p = sub.add_parser("scan", help="アーカイブまたは取り込みファイルの重大所見を確認し、ワークリストを書き出す")
    p.add_argument("--input", type=Path, default=None,
                   help="CSV/JSONL export to scan (import format); default: the report archive")
    p.add_argument("--from", dest="date_from", type=_date, default=None, help="検査日 YYYY-MM-DD 以降")
    p.add_argument("--to", dest="date_to", type=_date, default=None, help="検査日 YYYY-MM-DD 以前")
    p.add_argument("--out", type=Path, default=None,
                   help="worklist path (.csv or .parquet); default: $DOKUEI_HOME/worklists/critical_findings.csv")
    p.add_argument("--include-unchanged", action="store_true", help="既知・著変なしの所見も載せる")
    p.add_argument("--workers", type=int, default=1, help="worker processes (e.g. the number of cores)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_scan)


def _cmd_scan(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from dokuei.knowledge.location import archive_root
    from dokuei.knowledge.reports_scan import archive_records, file_records, scan_records, write_worklist

    settings = settings or Settings.load()
    unreadable: list[tuple[str, str]] = []
    if args.input is not None:
        if not args.input.exists():
            sys.stderr.write(f"ファイルが見つかりません: {args.input}\n")
            return 2
        records = file_records(args.input, unreadable)
        source = str(args.input)
    else:
        store = archive_root(settings) / "reports.sqlite"
        if not store.exists():
            sys.stderr.write("レポート索引がありません。`dokuei index demo` または `dokuei index import FILE` で"
                             "作成するか、--input FILE.csv を指定してください。\n")
            return 2
        records = archive_records(store, args.date_from, args.date_to)
        source = str(store)
    if args.input is not None and (args.date_from or args.date_to):
        lo, hi = args.date_from, args.date_to
        records = (r for r in records if not ((lo and r.study_date < lo) or (hi and r.study_date > hi)))
    result = scan_records(records, include_unchanged=args.include_unchanged, workers=max(1, args.workers))
    result.unreadable = unreadable + result.unreadable
    out = args.out or settings.home / "worklists" / "critical_findings.csv"
    write_worklist(result.rows, out)
    log.info("scanned %d reports from %s in %.2f s", result.n_reports, source, result.seconds)
    if args.json:
        sys.stdout.write(json.dumps({
            "source": source, "worklist": str(out), "n_reports": result.n_reports,
            "n_flagged_reports": result.n_flagged_reports, "n_rows": len(result.rows),
            "unreadable": [{"where": w, "reason_ja": r} for w, r in result.unreadable],
            "reports_per_s": round(result.reports_per_s, 1), "summary_ja": result.summary_ja(),
        }, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(f"{result.summary_ja()}\nワークリスト: {out}\n")
    return 0
