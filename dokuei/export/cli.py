"""``dokuei mcp`` (tools over MCP) and ``dokuei export`` (a question's result as FHIR / text files)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from dokuei.export import ExportError
from dokuei.settings import Settings

log = logging.getLogger(__name__)

FORMATS = ("fhir", "txt", "pdf")


def write_exports(turn: dict[str, Any], formats: list[str], out_dir: Path, question: str = "") -> list[Path]:
    """Write the requested formats for one turn (``TurnResult.to_json()``) into ``out_dir``."""
    from dokuei.export.fhir import turn_bundle
    from dokuei.export.text import turn_text

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"未対応の出力形式: {', '.join(unknown)}（対応: {', '.join(FORMATS)}）")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"dokuei-{str(turn.get('session_id', 'turn'))[:12]}"
    written = []
    if "fhir" in formats:
        path = out_dir / f"{stem}.fhir.json"
        path.write_text(json.dumps(turn_bundle(turn), ensure_ascii=False, indent=2), encoding="utf-8")
        written.append(path)
    if "pdf" in formats:
        from dokuei.export.pdf import turn_pdf

        written.append(turn_pdf(turn, out_dir / f"{stem}.pdf", question))
    if "txt" in formats:
        path = out_dir / f"{stem}.txt"
        path.write_text(turn_text(turn, question), encoding="utf-8")
        written.append(path)
    return written


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
    from dokuei.agent.graph import Agent

    settings = Settings.load()
    agent = Agent(settings)
    turn = agent.ask(args.question, attachments=args.attach, patient=_patient(args.patient))
    payload = turn.to_json()
    try:
        paths = write_exports(payload, [f.strip() for f in args.formats.split(",") if f.strip()], args.out,
                              args.question)
    except (ValueError, ExportError) as exc:
        sys.stdout.write(f"エラー: {exc}\n")
        return 2
    sys.stdout.write(turn.answer_ja + "\n\n" + "\n".join(f"書き出し: {p}" for p in paths) + "\n")
    from dokuei.export.push import push_written

    return push_written(args.push, paths, settings)


def _patient(text: str | None) -> dict[str, Any]:
    from dokuei.patient import parse_patient
    result: dict[str, Any] = parse_patient(text)
    return result


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    mcp = subparsers.add_parser("mcp", help="serve every tool over the Model Context Protocol (stdio or HTTP)")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="loopback only")
    mcp.add_argument("--port", type=int, default=8765)
    mcp.add_argument("--allow", action="append", default=[], metavar="DIR",
                     help="folder whose files the tools may read (repeatable; default: the current folder)")
    mcp.set_defaults(func=_cli_mcp)

    export = subparsers.add_parser("export", help="ask a question and write its result as FHIR R4 / text")
    export.add_argument("question")
    export.add_argument("--attach", action="append", default=[], metavar="PATH")
    export.add_argument("--patient", help="age=55,sex=M,height_cm=170")
    export.add_argument("--formats", default="fhir,txt", help=f"comma-separated: {','.join(FORMATS)}")
    export.add_argument("--out", type=Path, required=True, help="output folder")
    from dokuei.export.push import add_push_argument

    add_push_argument(export)
    export.set_defaults(func=_cli_export)
