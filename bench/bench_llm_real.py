"""The embedded real LLM (Qwen2.5-Coder-1.5B GGUF, llama.cpp) through the whole agent, on a few fixed questions.

For each question: which tools the constrained LLM planner chose vs the deterministic router, whether
the LLM answer was accepted first time / after one rewrite / replaced by the deterministic composer,
numbers in the final answer found in no tool result (target 0), prompt-eval time of the first compose
call (≈ time to first token), total answer time and decode tokens/s as llama.cpp reports them.

Needs ``dokuei llm install``. Run (small, on a quiet machine):
    python bench/bench_llm_real.py --threads 2 [--n 6]
Until ``Agent.plan()`` carries the constrained planner, this uses the live test's ``PlanningAgent``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

log = logging.getLogger("bench")

#: (question, attachments, patient, the tools a correct plan starts with)
QUESTIONS: list[tuple[str, list[str], dict[str, Any], set[str]]] = [
    ("55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？", [], {"age_years": 55, "sex": "M"},
     {"judge_checkup"}),
    ("LDLコレステロール 165 mg/dL、中性脂肪 180 mg/dL の健診判定は？", [], {"age_years": 48, "sex": "F"},
     {"judge_checkup"}),
    ("血圧 148/92 mmHg は健診で何判定ですか？", [], {"age_years": 60, "sex": "M"}, {"judge_checkup"}),
    ("ALT 52 U/L、γ-GTP 110 U/L の判定を教えてください。", [], {"age_years": 45, "sex": "M"}, {"judge_checkup"}),
    ("この心電図の所見は？", ["ecg:waveform_ecg.dcm"], {}, {"analyze_ecg"}),
    ("明日の天気を教えてください。", [], {}, set()),
]

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _numbers(text: str) -> set[str]:
    body = re.sub(r"\[\d+\]", "", text.split("出典")[0])
    return {n.rstrip("0").rstrip(".") if "." in n else n for n in _NUMBER.findall(body)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=len(QUESTIONS), help="how many of the fixed questions")
    parser.add_argument("--model", type=Path, default=None, help="a verified GGUF (default: the installed one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from dokuei.agent.llm import LlamaCppBackend
    from dokuei.llm_install import default_model_path
    from dokuei.settings import Settings
    from dokuei.testdata import pydicom_file
    from tests.test_llm_live import PlanningAgent

    class Recording(LlamaCppBackend):
        """Keeps llama.cpp's own timings of every completion, labelled plan or compose."""

        calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

        def chat(self, messages: Any, tools: Any = None, json_schema: Any = None) -> Any:
            reply = super().chat(messages, tools, json_schema)
            if self.last_usage:
                self.calls.append(("plan" if json_schema is not None else "compose", dict(self.last_usage)))
            return reply

    home = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    os.environ["DOKUEI_HOME"] = str(home)
    settings = Settings.load(home=home)
    t0 = time.perf_counter()
    backend = Recording(args.model or default_model_path(settings), n_threads=args.threads, max_tokens=384, port=0)
    load_s = time.perf_counter() - t0
    load_avg = os.getloadavg()
    agent = PlanningAgent(settings, backend=backend)

    rows: list[dict[str, Any]] = []
    for question, attachments, patient, expected in QUESTIONS[:args.n]:
        files = [str(pydicom_file(a.split(":", 1)[1])) for a in attachments]
        backend.calls.clear()
        agent.plan_sources.clear()
        t = time.perf_counter()
        turn = agent.ask(question, attachments=files, patient=patient)
        total_s = time.perf_counter() - t
        data = turn.to_json()
        attempts = sum(1 for k in data["timings"] if k.startswith("compose_"))
        if data["composer"] == "deterministic":
            outcome = "fallback" if attempts > 1 else "deterministic (no results)"
        else:
            outcome = "first time" if attempts == 1 else "after rewrite"
        evidence = _numbers(" ".join(str(c) for c in data["tool_calls"]) + " " + question)
        unsupported = sorted(n for n in _numbers(data["answer_ja"]) if n not in evidence)
        composes = [u for label, u in backend.calls if label == "compose"]
        ttft_s = composes[0]["timings"].get("prompt_ms", 0.0) / 1000 if composes else float("nan")
        tps = [u["timings"].get("predicted_per_second", 0.0) for _, u in backend.calls]
        chosen = {c["name"] for c in data["tool_calls"]}
        rows.append({"q": question[:24], "plan": agent.plan_sources[0] if agent.plan_sources else "-",
                     "routing_ok": chosen == expected, "outcome": outcome, "unsupported": unsupported,
                     "ttft_s": ttft_s, "total_s": total_s, "tok_s": statistics.median(tps) if tps else 0.0})
        log.info("%s | plan=%s tools=%s | %s | unsupported=%s | ttft %.1f s total %.1f s %.1f tok/s",
                 question[:24], rows[-1]["plan"][:40], sorted(chosen), outcome, unsupported, ttft_s, total_s,
                 rows[-1]["tok_s"])

    print(f"model load {load_s:.1f} s, threads {args.threads}, load average at start {load_avg}")  # noqa: T201
    for key in ("first time", "after rewrite", "fallback", "deterministic (no results)"):
        print(f"{key}: {sum(r['outcome'] == key for r in rows)}/{len(rows)}")  # noqa: T201
    print(f"LLM plan accepted: {sum(r['plan'] == 'llm' for r in rows)}/{len(rows)}; "  # noqa: T201
          f"routing correct: {sum(r['routing_ok'] for r in rows)}/{len(rows)}")
    print(f"unsupported numbers reaching the user: {sum(len(r['unsupported']) for r in rows)}")  # noqa: T201
    print(f"median ttft {statistics.median(r['ttft_s'] for r in rows):.1f} s, median total "  # noqa: T201
          f"{statistics.median(r['total_s'] for r in rows):.1f} s, median decode "
          f"{statistics.median(r['tok_s'] for r in rows):.1f} tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
