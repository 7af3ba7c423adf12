"""The verifier on the embedded model's own drafts (saved by bench/bench_llm_real.py from real runs).

Each transcript holds the model file's sha256, the prompt, the tool results the model was given and
the draft it wrote. Replaying the verifier on the same draft and results must give the recorded
verdict: a draft it rejected (an unsupported number, simplified Chinese such as 血红蛋白, a finding
not in the evidence, a changed unit) must stay rejected, and its unsupported numbers must be ones
that really appear in no tool result.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dokuei.agent.compose import number_sources
from dokuei.agent.verify import body_of, numbers_in, verify_answer
from dokuei.tools.base import ToolResult

DIR = Path(__file__).parent / "data" / "llm_transcripts"
TRANSCRIPTS = sorted(DIR.glob("*.json"))
PINNED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"  # the issue's joined GGUF


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_real_transcripts_from_the_pinned_model() -> None:
    assert TRANSCRIPTS, f"no transcripts under {DIR}; run bench/bench_llm_real.py"
    for path in TRANSCRIPTS:
        record = _load(path)
        assert record["model"]["sha256"] == PINNED_SHA256, path.name
        assert record["draft"].strip() and record["results"], path.name


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_verifier_gives_the_recorded_verdict_on_the_real_draft(path: Path) -> None:
    record = _load(path)
    sources = number_sources([ToolResult.model_validate(r) for r in record["results"]])
    report = verify_answer(record["draft"], sources)
    assert report.ok == record["verified"], (report.issues, record["draft"])
    assert report.issues == record["issues"]
    for issue in report.issues:  # an "unsupported number" claim must be true of the evidence
        match = re.match(r"出典にない数値 \[([^\]]*)\]", issue)
        if match:
            evidence = set().union(*(numbers_in(s.text_for_check()) for s in sources))
            claimed = {float(x) for x in match.group(1).split(",")}
            assert not claimed & evidence, issue
    if not report.ok:
        assert body_of(record["draft"], sources).strip()  # a real, non-empty draft was rejected
