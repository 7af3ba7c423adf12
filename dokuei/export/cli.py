"""``dokuei mcp`` (tools over MCP) and ``dokuei export TURN_ID`` (a stored turn as SR/SEG/FHIR/PDF/text)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from dokuei.export.errors import ExportError
from dokuei.settings import Settings

log = logging.getLogger(__name__)


def write_exports(turn: dict[str, Any], formats: list[str], out_dir: Path, question: str = "") -> list[Path]:
    """Write the requested formats for one turn (``TurnResult.to_json()``) into ``out_dir``.

    Unknown formats raise ValueError; a format that cannot be written raises ExportError (Japanese).
    """
    from dokuei.export import FORMATS, export_turn

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"未対応の出力形式: {', '.join(unknown)}（対応: {', '.join(FORMATS)}）")
    report = export_turn(turn, formats, out_dir, question)
    if report.refused_ja:
        raise ExportError(" / ".join(f"{fmt}: {why}" for fmt, why in report.refused_ja.items()))
    return report.written


def print_export(turn: dict[str, Any], formats: list[str], out_dir: Path, question: str = "") -> int:
    """Write the formats, print one line per file written and per format refused; 0 when all were written."""
    from dokuei.export import export_turn

    report = export_turn(turn, formats, out_dir, question)
    lines = [f"書き出し: {p}" for p in report.written]
    lines += [f"書き出せませんでした（{fmt}）: {why}" for fmt, why in report.refused_ja.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if report.refused_ja else 0


def _cli_mcp(args: argparse.Namespace) -> int:
    from dokuei.mcp_server import serve_http, serve_stdio

    settings = Settings.load()
    roots = [Path(r) for r in args.allow] or [Path.cwd()]
    if args.http:
        serve_http(settings, roots, host=args.host, port=args.port)
    else:
        serve_stdio(settings, roots)
    return 0


def _cli_export(args: argparse.Namespace) -> int:
    from dokuei.export import parse_formats
    from dokuei.export.turns import load_turn, needs_source, point_to_source

    settings = Settings.load()
    try:
        formats = parse_formats(args.formats)
        turn = load_turn(settings, args.turn_id)
        if args.source is not None:
            turn = point_to_source(turn, args.source)
        elif needs_source(turn) and {"sr", "seg"} & set(formats):
            sys.stdout.write("注意: 元画像のパスは個人情報保護のため保存していません。DICOM SR/SEG には "
                             "--source で元の DICOM フォルダを指定してください。\n")
    except ExportError as exc:
        sys.stdout.write(f"エラー: {exc}\n")
        return 2
    question = turn.get("question") if isinstance(turn.get("question"), str) else ""
    code = print_export(turn, formats, args.out, str(question or ""))
    from dokuei.export import turn_stem
    from dokuei.export.push import push_written

    return max(code, push_written(args.push, sorted(args.out.glob(f"{turn_stem(turn)}.*")), settings))


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    mcp = subparsers.add_parser("mcp", help="serve every tool over the Model Context Protocol (stdio or HTTP)")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="loopback only")
    mcp.add_argument("--port", type=int, default=8765)
    mcp.add_argument("--allow", action="append", default=[], metavar="DIR",
                     help="folder whose files the tools may read (repeatable; default: the current folder)")
    mcp.set_defaults(func=_cli_mcp)

    export = subparsers.add_parser(
        "export", help="write a stored turn (dokuei ask prints its id) as SR/SEG/FHIR/PDF/text")
    export.add_argument("turn_id", help="the turn id that `dokuei ask` printed")
    export.add_argument("--formats", default="fhir,txt", help="comma-separated: sr,seg,fhir,pdf,txt")
    export.add_argument("--out", type=Path, required=True, help="output folder")
    export.add_argument("--source", type=Path, help="the DICOM study measured (SR/SEG reference it; checked by hash)")
    from dokuei.export.push import add_push_argument

    add_push_argument(export)
    export.set_defaults(func=_cli_export)
