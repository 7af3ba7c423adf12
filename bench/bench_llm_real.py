"""The embedded real LLM (Qwen2.5-Coder-1.5B GGUF, llama.cpp) through the whole agent, on 20 fixed questions.

Per question: the tools the constrained LLM planner led to vs the deterministic router (routing
accuracy against the labels below); whether the LLM answer was accepted first time / after one
rewrite / replaced by the deterministic composer; numbers in the final answer found in no tool
result (target 0); time to the first raw token and to the first *verified* sentence shown (the CLI
streams only verified sentences, see agent/verified_stream.py); total answer time.

Every composed draft is saved with its prompt, the tool results it was given, the model's sha256 and
the verifier's verdict under ``--transcripts`` (tests/test_llm_transcripts.py replays them). One JSON
line per question goes to ``--jsonl`` as soon as it is done, so a run cut short still counts.

Needs ``dokuei llm install``. Run (slow: minutes per question on 2 busy cores):
    nohup python bench/bench_llm_real.py --threads 1 > /tmp/bench_llm_real.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")

ECG = "ecg:waveform_ecg.dcm"
REPORT = ("report:所見: 右肺上葉に 12 mm の結節を認める。縦隔リンパ節の腫大はない。胸水なし。"
          "肝 S8 に 8 mm の低吸収域あり。")
#: (question, attachments, patient, the tools a correct plan runs) — checkup, ECG, report tools, out of scope
QUESTIONS: list[tuple[str, list[str], dict[str, Any], set[str]]] = [
    ("55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？", [], {"age_years": 55, "sex": "M"},
     {"judge_checkup"}),
    ("この心電図の所見は？", [ECG], {}, {"analyze_ecg"}),
    ("この所見から診断欄の下書きを書いて", [REPORT], {}, {"draft_impression"}),
    ("今日の天気は？", [], {}, set()),
    ("LDLコレステロール 165 mg/dL、中性脂肪 180 mg/dL の健診判定は？", [], {"age_years": 48, "sex": "F"},
     {"judge_checkup"}),
    ("QTc は？", [ECG], {}, {"analyze_ecg"}),
    ("このレポートに重大所見はありますか？", [REPORT], {}, {"detect_critical_findings"}),
    ("Python のコードを書いて", [], {}, set()),
    ("血圧 148/92 mmHg は健診で何判定ですか？", [], {"age_years": 60, "sex": "M"}, {"judge_checkup"}),
    ("心拍数は？", [ECG], {}, {"analyze_ecg"}),
    ("このレポートを臓器ごとに構造化して", [REPORT], {}, {"structure_report"}),
    ("ALT 52 U/L、γ-GTP 110 U/L の判定を教えてください。", [], {"age_years": 45, "sex": "M"}, {"judge_checkup"}),
    ("電気軸は？", [ECG], {}, {"analyze_ecg"}),
    ("What's for dinner?", [], {}, set()),
    ("HbA1c 6.8% は要受診ですか？", [], {"age_years": 62, "sex": "F"}, {"judge_checkup"}),
    ("期外収縮は何回？", [ECG], {}, {"analyze_ecg"}),
    ("健診結果: AST 45 U/L, ALT 60 U/L", [], {"age_years": 50, "sex": "M"}, {"judge_checkup"}),
    ("What is the heart rate?", [ECG], {}, {"analyze_ecg"}),
    ("血圧 150/95 の健診判定は？", [], {"age_years": 58, "sex": "F"}, {"judge_checkup"}),
    ("明日の天気を教えてください。", [], {}, set()),
]

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _numbers(text: str) -> set[str]:
    body = re.sub(r"\[\d+\]", "", text.split("出典")[0])
    return {n.rstrip("0").rstrip(".") if "." in n else n for n in _NUMBER.findall(body)}


def _attachments(specs: list[str], workdir: Path) -> list[str]:
    from dokuei.testdata import pydicom_file

    files = []
    for i, spec in enumerate(specs):
        kind, value = spec.split(":", 1)
        if kind == "ecg":
            files.append(str(pydicom_file(value)))
        else:
            path = workdir / f"report_{i}.txt"
            path.write_text(value, encoding="utf-8")
            files.append(str(path))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=len(QUESTIONS), help="how many of the fixed questions")
    parser.add_argument("--jsonl", type=Path, default=Path("/tmp/bench_llm_real.jsonl"))
    parser.add_argument("--transcripts", type=Path, default=Path("tests/data/llm_transcripts"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    from dokuei.agent.compose import llm_messages, number_sources
    from dokuei.agent.graph import Agent, _context, _patient_ja
    from dokuei.agent.llm import LlamaCppBackend
    from dokuei.agent.router import plan_deterministic
    from dokuei.agent.verified_stream import StreamEvent, streaming_to
    from dokuei.agent.verify import verify_answer
    from dokuei.llm_install import default_model_path, model_card
    from dokuei.settings import Settings

    class Recording(LlamaCppBackend):
        """Keeps every plan reply and every streamed draft with the time of its first piece."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.plans: list[str] = []
            self.drafts: list[str] = []
            self.first_piece_at: float | None = None

        def chat(self, messages: Any, tools: Any = None, json_schema: Any = None) -> Any:
            reply = super().chat(messages, tools, json_schema)
            (self.plans if json_schema is not None else self.drafts).append(reply.text)
            return reply

        def stream(self, messages: Any) -> Iterator[str]:
            pieces = []
            for piece in super().stream(messages):
                if self.first_piece_at is None:
                    self.first_piece_at = time.perf_counter()
                pieces.append(piece)
                yield piece
            self.drafts.append("".join(pieces))

    workdir = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    os.environ["DOKUEI_HOME"] = str(workdir / "home")
    settings = Settings.load(home=workdir / "home")
    t0 = time.perf_counter()
    backend = Recording(default_model_path(settings), n_threads=args.threads, max_tokens=384, port=0)
    load_s = time.perf_counter() - t0
    agent = Agent(settings, backend=backend)
    card = model_card()
    args.transcripts.mkdir(parents=True, exist_ok=True)
    log.info("model load %.1f s, threads %d, load average %s", load_s, args.threads, os.getloadavg())

    for index, (question, specs, patient, expected) in enumerate(QUESTIONS[:args.n], 1):
        files = _attachments(specs, workdir)
        backend.plans.clear()
        backend.drafts.clear()
        backend.first_piece_at = None
        shown: list[float] = []

        def sink(event: StreamEvent, _shown: list[float] = shown) -> None:
            if event.kind == "sentence":
                _shown.append(time.perf_counter())

        t = time.perf_counter()
        with streaming_to(sink):
            turn = agent.ask(question, attachments=files, patient=patient)
        total_s = time.perf_counter() - t
        data = turn.to_json()
        drafts = list(backend.drafts)
        if data["composer"] == "deterministic":
            outcome = "fallback" if drafts else "deterministic (no results)"
        else:
            outcome = "first time" if len(drafts) == 1 else "after rewrite"
        evidence = _numbers(json.dumps(data["tool_calls"], ensure_ascii=False, default=str) + " " + question)
        unsupported = sorted(n for n in _numbers(data["answer_ja"]) if n not in evidence)
        chosen = {r.tool for r in turn.results}
        state: Any = {"question": question, "patient": patient, "results": [],
                      "turn_attachments": data.get("attachments", [])}
        routed = {c.name for c in plan_deterministic(_context(state), list(agent.tools.values()),
                                                     agent.semantic).calls}
        sources = number_sources(turn.results)
        prompt = llm_messages(question, sources, _patient_ja(patient))
        for attempt, draft in enumerate(drafts, 1):
            report = verify_answer(draft, sources)
            record = {"question": question, "patient": patient, "attempt": attempt,
                      "model": {"file": card["file"], "sha256": card["sha256"], "backend": backend.name,
                                "temperature": backend.temperature},
                      "prompt": prompt if attempt == 1 else "(prompt above + the rewrite request with the issues)",
                      "draft": draft, "verified": report.ok, "issues": report.issues,
                      "results": [r.model_dump(mode="json") for r in turn.results]}
            name = f"q{index:02d}_attempt{attempt}.json"
            (args.transcripts / name).write_text(json.dumps(record, ensure_ascii=False, indent=1), "utf-8")
        row = {"i": index, "q": question, "expected": sorted(expected), "llm_tools": sorted(chosen),
               "router_tools": sorted(routed), "llm_routing_ok": chosen == expected,
               "router_routing_ok": routed == expected, "plans": backend.plans, "outcome": outcome,
               "unsupported": unsupported, "composer": data["composer"], "verified": data["verified"],
               "first_token_s": (backend.first_piece_at - t) if backend.first_piece_at else None,
               "first_verified_sentence_s": (shown[0] - t) if shown else None, "total_s": total_s,
               "answer_ja": data["answer_ja"]}
        with args.jsonl.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        log.info("%02d %s | llm %s router %s | %s | unsupported=%s | first token %s s, first verified %s s, "
                 "total %.1f s", index, question[:20], sorted(chosen), sorted(routed), outcome, unsupported,
                 row["first_token_s"] and round(row["first_token_s"], 1),
                 row["first_verified_sentence_s"] and round(row["first_verified_sentence_s"], 1), total_s)
    summarise(args.jsonl)
    return 0


def summarise(path: Path) -> None:
    """Print the shares and medians over every row of ``path`` (also usable on a run cut short)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    n = len(rows)
    for key in ("first time", "after rewrite", "fallback", "deterministic (no results)"):
        log.info("%s: %d/%d", key, sum(r["outcome"] == key for r in rows), n)
    log.info("routing correct: LLM planner %d/%d, deterministic router %d/%d",
             sum(r["llm_routing_ok"] for r in rows), n, sum(r["router_routing_ok"] for r in rows), n)
    log.info("unsupported numbers reaching the user: %d", sum(len(r["unsupported"]) for r in rows))
    for key in ("first_token_s", "first_verified_sentence_s", "total_s"):
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            log.info("median %s %.1f (n=%d)", key, statistics.median(values), len(values))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--summarise":
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        summarise(Path(sys.argv[2]))
        raise SystemExit(0)
    raise SystemExit(main())
