"""``dokuei index …``: build and inspect the report archive. The lead's CLI calls :func:`register_cli`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from dokuei.settings import Settings

log = logging.getLogger(__name__)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``index`` command group (import, iu, demo, stats) to a parent parser's subparsers."""
    index = subparsers.add_parser("index", help="レポート索引の作成と確認 (report archive)")
    sub = index.add_subparsers(dest="index_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--chroma-url",
            default=None,
            help="chromadb server URL (e.g. http://127.0.0.1:8000); default: embedded store",
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("import", help="CSV/JSONL のレポートを取り込む (CP932/UTF-8 自動判定)")
    p.add_argument("file", type=Path)
    common(p)
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("iu", help="実データ: Indiana University 胸部 X 線レポート 3,955 件を取り込む")
    p.add_argument("--limit", type=int, default=None)
    common(p)
    p.set_defaults(func=_cmd_iu)

    p = sub.add_parser("demo", help="デモ索引: IU 実レポート＋合成日本語レポート")
    p.add_argument("--n", type=int, default=10_000, help="number of synthetic reports (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-iu", action="store_true", help="synthetic reports only")
    p.add_argument(
        "--export", type=Path, default=None, help="also write the synthetic rows (with labels) as JSONL"
    )
    common(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("stats", help="索引の統計")
    common(p)
    p.set_defaults(func=_cmd_stats)


def _print(args: argparse.Namespace, payload: dict[str, object], text: str) -> None:
    out = json.dumps(payload, ensure_ascii=False, indent=2, default=str) if args.json else text
    sys.stdout.write(out + "\n")


def _archive(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dokuei.knowledge.archive import ReportArchive

    return ReportArchive(Settings.load(), chroma_url=args.chroma_url)


def _cmd_import(args: argparse.Namespace) -> int:
    from dokuei.knowledge.importers import import_file

    if not args.file.exists():
        sys.stderr.write(f"ファイルがありません: {args.file}\n")
        return 2
    res = import_file(_archive(args), args.file, progress=not args.no_progress)
    _print(args, asdict(res), res.summary_ja())
    return 0 if not res.errors else 1


def _cmd_iu(args: argparse.Namespace) -> int:
    from dokuei.knowledge.iu import import_iu

    res = import_iu(_archive(args), limit=args.limit, progress=not args.no_progress)
    _print(args, asdict(res), res.summary_ja())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dokuei.knowledge.demo import build_demo_index
    from dokuei.knowledge.synthetic import write_jsonl

    if args.export:
        write_jsonl(args.export, args.n, args.seed)
    stats = build_demo_index(
        Settings.load(),
        n_synthetic=args.n,
        chroma_url=args.chroma_url,
        include_iu=not args.no_iu,
        seed=args.seed,
        progress=not args.no_progress,
    )
    _print(args, asdict(stats), _stats_text(stats))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    stats = _archive(args).stats()
    _print(args, asdict(stats), _stats_text(stats))
    return 0


def _stats_text(stats) -> str:  # type: ignore[no-untyped-def]
    d = stats.details
    lines = [
        f"レポート {stats.reports} 件、チャンク {stats.chunks}、ベクトル {stats.vectors}（{stats.backend}: "
        f"{stats.location}）",
        f"埋め込み: {stats.embedder_id}（{stats.dim} 次元）、語彙索引: {stats.lexical_tokenizer}",
    ]
    if d.get("reports"):
        lines.append(
            f"合成 {d['synthetic']} 件、患者 {d['patients']} 人、検査日 {' 〜 '.join(d['date_range'])}"
        )
        lines.append(f"モダリティ: {d['by_modality']}  部位: {d['by_body_part']}")
    for imp in d.get("imports", []):
        lines.append(
            f"取り込み {imp['source']}: 新規 {imp['inserted']}、変更なし {imp['unchanged']}、"
            f"エラー {imp['errors']}（{imp['seconds']} 秒）"
        )
    if stats.seconds:
        lines.append(f"所要時間 {stats.seconds:.0f} 秒")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m dokuei.knowledge.cli index …``) until the lead wires ``dokuei``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="dokuei")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
