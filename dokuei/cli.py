"""The ``dokuei`` command: ask, tools, weights, doctor, serve, demo (and the areas' own commands).

Listing commands import no torch: ``dokuei tools`` must start in well under two seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

from dokuei import __version__
from dokuei.patient import parse_patient
from dokuei.settings import Settings

log = logging.getLogger("dokuei")

#: modules that add their own sub-commands through ``register_cli(subparsers)``
CLI_EXTENSIONS = ("dokuei.knowledge.cli", "dokuei.batch", "dokuei.export.cli", "dokuei.knowledge.reports_cli",
                  "dokuei.llm_cli")


def _out(text: str) -> None:
    sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    sys.stdout.flush()


def _setup_logging(settings: Settings, verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(_NoTracebackFormatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(console)
    try:
        log_dir = settings.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(log_dir / "dokuei.log", maxBytes=10_000_000,
                                                            backupCount=5, encoding="utf-8")
        file_handler.setLevel(logging.INFO)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(file_handler)
    except OSError:
        log.warning("cannot write the log file under %s", settings.home)


class _NoTracebackFormatter(logging.Formatter):
    """The terminal gets one line per problem; the traceback goes to the log file only."""

    def format(self, record: logging.LogRecord) -> str:
        plain = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return super().format(plain)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from dokuei.agent.graph import Agent, sqlite_checkpointer
    from dokuei.agent.session import patient_ja_errors

    try:
        patient = parse_patient(args.patient)
    except ValidationError as exc:  # PatientContext's own check: Japanese per field, never pydantic's English
        _out(f"エラー: {patient_ja_errors(exc)}")
        return 2
    except ValueError as exc:
        log.info("bad --patient value: %s", type(exc).__name__)  # the value itself may hold an id
        message = str(exc) if any("\u3040" <= ch <= "\u9fff" for ch in str(exc)) else (
            "患者情報の値を解釈できません。年齢は 0〜130 の整数、身長（cm）・体重（kg）は数値、性別は M/F で"
            "指定してください（例: age=55,sex=M,height_cm=170）")
        _out(f"エラー: {message}")
        return 2
    missing = [a for a in args.attach if not Path(a).exists()]
    if missing:
        _out(f"エラー: 添付ファイルが見つかりません: {', '.join(missing)}")
        return 2
    if args.push and not args.export:  # refused before the question runs: nothing is done half
        _out("エラー: --push は --export と一緒に指定してください（書き出したファイルを送信します）。")
        return 2
    formats: list[str] = []
    if args.export:
        from dokuei.export import ExportError, parse_formats

        try:
            formats = parse_formats(args.export[0])
        except ExportError as exc:
            _out(f"エラー: {exc}")
            return 2
    agent = Agent(settings, checkpointer=sqlite_checkpointer(settings.checkpoint_db))
    from dokuei.agent.verified_stream import TerminalSink, streaming_to  # llm: verified sentences → stderr

    with streaming_to(TerminalSink(sys.stderr)) if agent.backend.is_llm else contextlib.nullcontext():
        turn = agent.ask(args.question, attachments=args.attach, patient=patient, session_id=args.session)
    payload = turn.to_json()
    from dokuei.export.turns import store_turn

    turn_id = store_turn(settings, payload, args.question, [r.sha256() for r in turn.results])
    if args.json:
        _out(json.dumps({**payload, "turn_id": turn_id}, ensure_ascii=False, indent=2, default=str))
    else:
        _out(turn.answer_ja)
        if not turn.verified:
            _out("（注意: この回答の一部は根拠の検証に通りませんでした）")
        if turn_id:
            _out(f"ターン ID: {turn_id}（dokuei export {turn_id} --formats … --out DIR で書き出せます）")
    if formats:
        from dokuei.export import turn_stem
        from dokuei.export.cli import print_export
        from dokuei.export.push import push_written

        turn_payload = {**payload, "turn_id": turn_id}
        out_dir = Path(args.export[1])
        code = print_export(turn_payload, formats, out_dir, args.question)
        return max(code, push_written(args.push, sorted(out_dir.glob(f"{turn_stem(turn_payload)}.*")), settings))
    return 0


def cmd_tools(args: argparse.Namespace, settings: Settings) -> int:
    from dokuei.tools.registry import ToolRegistry

    registry = ToolRegistry(settings)
    if args.tools_cmd == "run":
        return _run_tool(registry, args)
    rows = []
    for tool in registry.tools():
        availability = tool.availability()
        rows.append({"name": tool.name, "version": tool.version, "status": availability.status.value,
                     "reason_ja": availability.reason_ja, "origin": registry.entry(tool.name).origin,
                     "device": tool.requires.device, "description_ja": tool.description_ja})
    for name, error in registry.load_errors.items():
        rows.append({"name": name, "version": "?", "status": "unavailable", "reason_ja":
                     f"読み込めません: {error}", "origin": registry.entry(name).origin, "device": "?",
                     "description_ja": ""})
    if args.json:
        _out(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        _out(f"{row['name']:<28} {row['status']:<12} {row['device']:<15} {row['origin']:<12} {row['reason_ja']}")
    return 0


def _run_tool(registry: Any, args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.json_input)
    except json.JSONDecodeError as exc:
        _out(json.dumps({"status": "failed", "summary_ja": f"--json-input が JSON として読めません: {exc}"},
                        ensure_ascii=False))
        return 2
    try:
        tool = registry.get(args.name)
    except KeyError:
        _out(json.dumps({"status": "failed", "summary_ja": f"ツール {args.name} は登録されていません。"},
                        ensure_ascii=False))
        return 2
    result = tool(payload)
    _out(result.model_dump_json(indent=2, exclude={"error_detail"}))
    return 0 if result.status.value == "ok" else 1


def cmd_weights(args: argparse.Namespace, settings: Settings) -> int:
    from dokuei.doctor import weight_rows

    rows = weight_rows(settings)
    if args.json:
        _out(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    _out(f"weights dir: {settings.weights_root}")
    for row in rows:
        state = "OK" if row["present"] else "MISSING"
        _out(f"{row['tool']:<24} {row['id']:<32} {state:<8} {row['path']}\n    {row['status_ja']}")
    return 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from dokuei.doctor import doctor_report

    report = doctor_report(settings)
    _out(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    if not report["ok"]:
        for name, state in report["audit_chain"].items():
            if state != "ok":
                log.error("audit trail broken: %s %s", name, state)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from dokuei.ui.app import launch

    launch(settings, host=args.host, port=args.port)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from dokuei.demo import run_demo

    run_demo(settings, serve=not args.no_serve, n_synthetic=args.n_synthetic, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dokuei", description="dokuei (読影): on-premises clinical assistant")
    parser.add_argument("--version", action="version", version=f"dokuei {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="ask a question in Japanese")
    ask.add_argument("question")
    ask.add_argument("--attach", action="append", default=[], metavar="PATH", help="a study, ECG, image or report")
    ask.add_argument("--patient", help="age=55,sex=M,height_cm=170,weight_kg=60,id=P001")
    ask.add_argument("--session", help="session id: continue a conversation")
    ask.add_argument("--json", action="store_true", help="answer, citations and full tool outputs as JSON")
    ask.add_argument("--export", nargs=2, metavar=("FORMATS", "DIR"),
                     help="also write the result: comma-separated sr,seg,fhir,pdf,txt into folder DIR")
    from dokuei.export.push import add_push_argument

    add_push_argument(ask)
    ask.set_defaults(func=cmd_ask)

    tools = sub.add_parser("tools", help="list tools with availability, or run one")
    tools.add_argument("--json", action="store_true")
    tools_sub = tools.add_subparsers(dest="tools_cmd")
    run = tools_sub.add_parser("run", help="run one tool on a JSON input; prints the ToolResult")
    run.add_argument("name")
    run.add_argument("--json-input", required=True)
    tools.set_defaults(func=cmd_tools)

    weights = sub.add_parser("weights", help="model weights: expected location, presence, sha256")
    weights.add_argument("--json", action="store_true")
    weights.set_defaults(func=cmd_weights)

    doctor = sub.add_parser("doctor", help="GPU, weights, index, telemetry switches, audit chain")
    doctor.set_defaults(func=cmd_doctor)

    serve = sub.add_parser("serve", help="Gradio chat on this machine only")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="build the demo data and index, answer sample questions, start the UI")
    demo.add_argument("--no-serve", action="store_true", help="do not start the UI afterwards")
    demo.add_argument("--n-synthetic", type=int, default=10_000, help="synthetic reports in the demo index")
    demo.add_argument("--port", type=int, default=7860, help="the UI's port on 127.0.0.1")
    demo.set_defaults(func=cmd_demo)

    for module_name in CLI_EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        module.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.load()
    _setup_logging(settings, args.verbose)
    try:
        # extension commands (index, batch) take only the parsed arguments and read settings themselves
        takes_settings = len(inspect.signature(args.func).parameters) >= 2
        code: int = args.func(args, settings) if takes_settings else args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a stack trace for a clinician; the log has the detail
        log.exception("command %s failed", args.command)
        _out(f"エラー: {type(exc).__name__}: {exc}（詳細は {settings.home / 'logs' / 'dokuei.log'}）")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
