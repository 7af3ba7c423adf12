"""Tokens and seconds of one constrained plan (step 1) on the embedded LLM, per question.

Runs against whichever ``dokuei`` package is first on ``PYTHONPATH``, so the plan format of two trees
can be compared on the same model and machine (stop 16: main's long form vs the compact form):
    PYTHONPATH=/work/main python bench/bench_llm_plan.py --n 3     # before
    PYTHONPATH=$PWD      python bench/bench_llm_plan.py --n 3     # after
Needs ``dokuei llm install``. Reports llama.cpp's own counts: completion tokens, prompt tokens, ms.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")

QUESTIONS: list[tuple[str, dict[str, Any]]] = [
    ("55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？", {"age_years": 55, "sex": "M"}),
    ("LDLコレステロール 165 mg/dL、中性脂肪 180 mg/dL の健診判定は？", {"age_years": 48, "sex": "F"}),
    ("血圧 148/92 mmHg は健診で何判定ですか？", {"age_years": 60, "sex": "M"}),
    ("ALT 52 U/L、γ-GTP 110 U/L の判定を教えてください。", {"age_years": 45, "sex": "M"}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=len(QUESTIONS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    from dokuei.agent import graph
    from dokuei.agent.llm import LlamaCppBackend, plan_with_llm
    from dokuei.agent.router import plan_deterministic
    from dokuei.llm_install import default_model_path
    from dokuei.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    os.environ["DOKUEI_HOME"] = str(home)
    settings = Settings.load(home=home)
    backend = LlamaCppBackend(default_model_path(settings), n_threads=args.threads, max_tokens=384, port=0)
    agent = graph.Agent(settings, backend=backend)
    tools = [graph._tool_schema(t) for t in agent.tools.values()]
    rows = []
    for question, patient in QUESTIONS[:args.n]:
        state: Any = {"question": question, "patient": patient, "turn_attachments": [], "results": []}
        routed = plan_deterministic(graph._context(state), list(agent.tools.values()), agent.semantic)
        t = time.perf_counter()
        plan = plan_with_llm(backend, agent._plan_messages(state), tools,
                             candidates=[(c.name, c.input, c.reason) for c in routed.calls],
                             validators={n: tl.Input.model_validate for n, tl in agent.tools.items()})
        seconds = time.perf_counter() - t
        usage, timings = backend.last_usage.get("usage", {}), backend.last_usage.get("timings", {})
        rows.append((usage.get("completion_tokens", 0), usage.get("prompt_tokens", 0), seconds))
        log.info("%s | tokens out %s in %s | %.1f s (prompt %.1f s, decode %.1f s) | %s | %s", question[:20],
                 usage.get("completion_tokens"), usage.get("prompt_tokens"), seconds,
                 timings.get("prompt_ms", 0) / 1000, timings.get("predicted_ms", 0) / 1000,
                 [c.name for c in plan.calls] or plan.error, plan.raw[:200])
    log.info("median plan: %s tokens out, %s tokens in, %.1f s; load average %s",
             statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
             statistics.median(r[2] for r in rows), os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
