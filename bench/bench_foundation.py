"""Foundation figures: `dokuei tools` cold start and `dokuei ask` latency for the checkup question on
the default CPU backend (deterministic planner with the bundled e5 embedder, no LLM).

Targets (issue #2): tools listing ≤ 2 s (it must not import torch or monai), ask ≤ 5 s.
Run: .venv/bin/python bench/bench_foundation.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

log = logging.getLogger("bench")

QUESTION = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"


def _time_command(args: list[str], env: dict[str, str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dokuei.cli", *args], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DOKUEI_HOME": home}
        tools = _time_command(["tools"], env, args.repeats)
        ask = _time_command(["ask", QUESTION, "--json"], env, args.repeats)
        sys.path.insert(0, ".")
        from dokuei.agent.graph import Agent
        from dokuei.settings import Settings

        agent = Agent(Settings.load(home=home))
        agent.ask(QUESTION)  # warm: the embedder and tool descriptions are loaded once per process
        warm = []
        for _ in range(args.repeats * 4):
            t0 = time.perf_counter()
            agent.ask(QUESTION)
            warm.append(time.perf_counter() - t0)
    log.info("machine: %s cores, python %s", os.cpu_count(), sys.version.split()[0])
    log.info("dokuei tools (cold process)      median %.2f s  min %.2f  max %.2f  (n=%d, target ≤ 2 s)",
             statistics.median(tools), min(tools), max(tools), len(tools))
    log.info("dokuei ask checkup (cold process) median %.2f s  min %.2f  max %.2f  (n=%d, target ≤ 5 s)",
             statistics.median(ask), min(ask), max(ask), len(ask))
    log.info("agent.ask checkup (warm process)  median %.3f s  p95 %.3f s  (n=%d)",
             statistics.median(warm), sorted(warm)[int(0.95 * (len(warm) - 1))], len(warm))


if __name__ == "__main__":
    main()
