"""Heavy tools run in worker processes (tools/worker.py): a timeout kills the process, and a result that
crossed the process boundary is the same object the tool computes in-process.

The slow tool below sleeps 60 s in a worker with a 2 s timeout: the call must come back within 3 s of
wall time (2 s timeout + kill; the spawn start is paid before the deadline counts only once, by a
warm-up call) and the worker's pid must no longer exist. The CT phantom's SMI is 34.63 cm²/m² (SMA
80.01 cm² / 1.52², dokuei/phantoms/ct.py truth, as in tests/test_ct_layouts.py), in both paths.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field

from dokuei.agent.graph import Agent
from dokuei.agent.llm import ChatReply, ScriptedBackend, ToolCall
from dokuei.settings import Settings
from dokuei.tools.base import Outcome, Requirements, Tool, ToolStatus
from dokuei.tools.context import Attachment, PatientContext, ToolContext
from dokuei.tools.measure_body_composition import MeasureBodyComposition
from dokuei.tools.worker import WorkerPool
from tests.ct_helpers import ct_settings_fixture, output, phantom_study_fixture, truth_fixture

__all__ = ["ct_settings_fixture", "phantom_study_fixture", "truth_fixture"]


class SleepInput(BaseModel):
    sleep_s: float = Field(description="how long the tool sleeps, s")


class SleepOutput(BaseModel):
    pid: int = Field(description="the process the tool ran in")


class SlowTool(Tool[SleepInput]):
    """Sleeps as long as asked and reports its pid. Test only."""

    name = "slow_test_tool"
    version = "1.0.0"
    description_ja = "テスト用: 指定秒数だけ待つ。臨床では使わない。"
    description_en = "Test tool: sleeps. Never for clinical use."
    Input = SleepInput
    Output = SleepOutput
    requires = Requirements(device="cpu", licence="Apache-2.0")
    heavy: ClassVar[bool] = True

    def run(self, inp: SleepInput) -> Outcome:
        time.sleep(inp.sleep_s)
        return Outcome(output=SleepOutput(pid=os.getpid()), summary_ja=f"{inp.sleep_s:g} 秒待ちました")


class CrashTool(SlowTool):
    """Ends its process without a word, as a segfaulting native library would."""

    name = "crash_test_tool"

    def run(self, inp: SleepInput) -> Outcome:
        os._exit(3)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def pool() -> Any:
    p = WorkerPool(size=2)
    yield p
    p.close()


def test_a_timed_out_worker_is_killed_and_replaced(tmp_path: Path, pool: WorkerPool) -> None:
    tool = SlowTool(Settings.load(home=tmp_path))
    warm = pool.run(tool, {"sleep_s": 0}, timeout_s=120)  # pays the spawn start once
    assert warm.status is ToolStatus.OK, warm.summary_ja
    worker_pid = warm.output["pid"]  # type: ignore[index]
    assert worker_pid != os.getpid()  # it really ran in another process

    t0 = time.perf_counter()
    result = pool.run(tool, {"sleep_s": 60}, timeout_s=2)
    wall_s = time.perf_counter() - t0
    assert wall_s < 3.0, wall_s  # 2 s timeout + kill, not the 60 s sleep
    assert result.status is ToolStatus.FAILED
    assert "ツール slow_test_tool は 2 秒で打ち切りました" in result.summary_ja
    assert result.provenance.tool == "slow_test_tool" and result.provenance.input_sha256
    assert result.input == {"sleep_s": 60.0}
    assert pool.last_pid == worker_pid  # the warm worker took the slow call ...
    assert _gone(worker_pid)  # ... and was killed with it

    again = pool.run(tool, {"sleep_s": 0}, timeout_s=120)  # a fresh worker replaces it
    assert again.status is ToolStatus.OK
    assert again.output["pid"] not in (worker_pid, os.getpid())  # type: ignore[index]


def test_workers_are_reused_between_calls(tmp_path: Path, pool: WorkerPool) -> None:
    tool = SlowTool(Settings.load(home=tmp_path))
    pids = {pool.run(tool, {"sleep_s": 0}, timeout_s=120).output["pid"] for _ in range(3)}  # type: ignore[index]
    assert len(pids) == 1  # one call at a time: the same idle worker every time


def test_a_crashed_worker_is_a_failed_result(tmp_path: Path, pool: WorkerPool) -> None:
    result = pool.run(CrashTool(Settings.load(home=tmp_path)), {"sleep_s": 0}, timeout_s=120)
    assert result.status is ToolStatus.FAILED
    assert "異常終了" in result.summary_ja and "終了コード 3" in result.summary_ja
    ok = pool.run(SlowTool(Settings.load(home=tmp_path)), {"sleep_s": 0}, timeout_s=120)
    assert ok.status is ToolStatus.OK  # the pool replaced the dead worker


def test_invalid_input_fails_without_a_process(tmp_path: Path, pool: WorkerPool) -> None:
    result = pool.run(SlowTool(Settings.load(home=tmp_path)), {"sleep_s": "long"}, timeout_s=5)
    assert result.status is ToolStatus.FAILED and "sleep_s" in result.summary_ja
    assert pool.last_pid is None


def test_the_agent_kills_a_heavy_tool_at_its_timeout(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, tool_timeout_s=2)
    call = ToolCall(name="slow_test_tool", args={"sleep_s": 60})
    agent = Agent(settings, backend=ScriptedBackend([ChatReply(text="", tool_calls=[call]), ChatReply(text="")]))
    agent.tools["slow_test_tool"] = SlowTool(settings)
    try:
        t0 = time.perf_counter()
        turn = agent.ask("?")
        # 2 s timeout + a spawn start (~1–3 s on a loaded 2-core machine) + compose: far below the 60 s sleep
        assert time.perf_counter() - t0 < 20
        assert [r.status for r in turn.results] == [ToolStatus.FAILED]
        assert "2 秒で打ち切りました" in turn.results[0].summary_ja
        assert agent.workers.last_pid is not None and _gone(agent.workers.last_pid)
    finally:
        agent.workers.close()


def test_body_composition_through_a_worker_equals_in_process(phantom_study: Path, ct_settings: Settings,
                                                           pool: WorkerPool) -> None:
    tool = MeasureBodyComposition(ct_settings)
    assert tool.heavy
    ctx = ToolContext("L3 の骨格筋量は？", [Attachment(phantom_study, "ct_series")],
                      PatientContext(age_years=72, sex="F", height_cm=152))
    inp = tool.input_from_context(ctx)
    assert inp is not None
    in_process = output(tool(inp))
    in_worker_result = pool.run(tool, inp.model_dump(mode="json"), timeout_s=300)
    in_worker = output(in_worker_result)
    assert in_worker["smi_cm2_per_m2"] == pytest.approx(34.63, rel=0.01)  # 80.01 / 1.52²
    # the same numbers, not just close ones; only the overlay's folder differs (one folder per call)
    assert Path(in_worker.pop("overlay_path")).is_file() and Path(in_process.pop("overlay_path")).is_file()
    assert in_worker == in_process
    assert in_worker_result.provenance.input_sha256 and in_worker_result.provenance.file_sha256


def test_stop_kills_the_running_heavy_tool_and_ends_the_turn(tmp_path: Path) -> None:
    """The UI's 停止 on a turn whose tool sleeps 60 s in a worker (timeout 120 s): the turn ends within
    seconds as stopped, the worker process is gone, and the same session answers its next question."""
    from ui.turns import TurnQueue

    settings = Settings.load(home=tmp_path, tool_timeout_s=120)
    slow = ToolCall(name="slow_test_tool", args={"sleep_s": 60})
    quick = ToolCall(name="slow_test_tool", args={"sleep_s": 0})
    # the stopped turn consumes only its plan reply: it never reaches a second planning step or compose
    agent = Agent(settings, backend=ScriptedBackend([ChatReply(text="", tool_calls=[slow]),
                                                     ChatReply(text="", tool_calls=[quick]), ChatReply(text=""),
                                                     ChatReply(text="")]))
    agent.tools["slow_test_tool"] = SlowTool(settings)
    queue = TurnQueue(workers=1)
    try:
        ticket = queue.submit(agent.ask, "?", session_id="s1")
        end = time.monotonic() + 60
        while agent.workers.last_pid is None and time.monotonic() < end:  # the worker holds the call
            time.sleep(0.1)
        pid = agent.workers.last_pid
        assert pid is not None
        time.sleep(0.5)
        t0 = time.perf_counter()
        ticket.stop()
        turn = ticket.future.result(timeout=30)
        assert time.perf_counter() - t0 < 5  # 0.2 s polls + kill, not the 60 s sleep
        assert turn.stopped and not turn.verified and "停止しました" in turn.answer_ja
        assert _gone(pid)
        after = agent.ask("?", session_id="s1")
        assert [r.status for r in after.results] == [ToolStatus.OK] and not after.stopped
    finally:
        agent.workers.close()


def test_a_turn_stopped_while_it_waits_never_runs() -> None:
    import threading

    from dokuei.cancel import TurnCancelled
    from ui.turns import TurnQueue

    queue = TurnQueue(workers=1)
    release, ran = threading.Event(), list[str]()
    first = queue.submit(release.wait, 30)
    second = queue.submit(ran.append, "second")
    assert second.position() == 1
    second.stop()
    release.set()
    assert first.future.result(timeout=30) is True
    with pytest.raises(TurnCancelled):
        second.future.result(timeout=30)
    assert ran == []
