"""`dokuei demo`: start the UI, build the demo data and index on the embedded defaults, and answer one
sample question per capability. Everything it uses ships in packages or is generated here.

The UI comes first: the phantoms take seconds, the archive's embedding minutes, so the index is built in
a background thread while the UI already answers (a report search meanwhile answers from the reports
stored so far and says 「作成中（N/M 件）」). With ``--no-serve`` the index is built before the questions.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dokuei.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoCase:
    question: str
    attachments: tuple[Path, ...] = ()
    patient: str = ""


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _optional(step: str, fn: Callable[[], object]) -> object | None:
    """Run a demo-data step; a capability not installed is skipped with a reason, not fatal."""
    t0 = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:
        log.warning("demo step %s skipped: %s", step, exc)
        _say(f"[demo] {step}: スキップ（{type(exc).__name__}: {exc}）")
        return None
    _say(f"[demo] {step}: {time.perf_counter() - t0:.1f} s")
    return value


def prepare(settings: Settings) -> list[DemoCase]:
    """The demo's studies (written here, seconds) and one question per capability."""
    from dokuei import testdata

    demo_dir = settings.home / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    cases = [DemoCase("55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？")]
    ecg = testdata.pydicom_file("waveform_ecg.dcm")
    if ecg.exists():
        cases.append(DemoCase("この心電図の所見は？", (ecg,)))
    cxr = testdata.path("RG1_UNCI.dcm")
    if cxr.exists() and ecg.exists():
        cases.append(DemoCase("この心電図と胸部 X 線から何が疑われる？", (ecg, cxr)))

    def ct_phantom() -> Path:
        module = importlib.import_module("dokuei.phantoms.ct")
        return Path(module.write_study(demo_dir / "ct_phantom"))

    study = _optional("CT ファントム（L3 ラベル付き）", ct_phantom)
    if isinstance(study, Path):
        cases.append(DemoCase("この CT で L3 の骨格筋量とサルコペニアの判定は？", (study,),
                              "age=72,sex=F,height_cm=152"))

    def node_pair() -> tuple[Path, Path]:
        module = importlib.import_module("dokuei.phantoms.nodes")
        baseline, followup = module.write_pair(demo_dir / "node_phantom")
        return Path(baseline), Path(followup)

    pair = _optional("リンパ節ファントム（前回・今回）", node_pair)
    if isinstance(pair, tuple):
        cases.append(DemoCase("前回と比べてリンパ節は？RECIST で評価して", pair))
    cases.append(DemoCase(SEARCH_QUESTION))
    return cases


SEARCH_QUESTION = "過去のレポートで心拡大の記載があるものは？"


def _index_step(settings: Settings, n_synthetic: int) -> Callable[[], object]:
    def build_index() -> object:
        module = importlib.import_module("dokuei.knowledge.demo")
        return module.build_demo_index(settings, n_synthetic=n_synthetic, progress=False)

    return lambda: _optional(f"レポートアーカイブの索引（実レポート + 合成 {n_synthetic} 件）", build_index)


def run_demo(settings: Settings, *, serve: bool = True, n_synthetic: int = 10_000,
             port: int = 7860) -> None:
    from dokuei.agent.graph import Agent, sqlite_checkpointer
    from dokuei.patient import parse_patient

    t0 = time.perf_counter()
    cases = prepare(settings)
    index = _index_step(settings, n_synthetic)
    app = None
    if serve:
        from dokuei.knowledge.progress import start_background
        from dokuei.ui.app import launch

        app = launch(settings, port=port, block=False)
        _say(f"\nUI: http://127.0.0.1:{port} （{time.perf_counter() - t0:.1f} s で起動、Ctrl+C で終了）。"
             "レポート索引はバックグラウンドで作成中です。")
        start_background("demo-index", index)
    else:
        index()
    agent = Agent(settings, checkpointer=sqlite_checkpointer(settings.checkpoint_db))
    for case in cases:
        attach = " ".join(f"--attach {p}" for p in case.attachments)
        _say(f"\n$ dokuei ask \"{case.question}\" {attach} {('--patient ' + case.patient) if case.patient else ''}")
        t1 = time.perf_counter()
        turn = agent.ask(case.question, attachments=[str(p) for p in case.attachments],
                         patient=parse_patient(case.patient))
        _say(turn.answer_ja)
        _say(f"（検証: {'OK' if turn.verified else 'NG'}、{time.perf_counter() - t1:.1f} s）")
    if app is not None:
        _say(f"\nUI: http://127.0.0.1:{port} （Ctrl+C で終了）")
        app.block_thread()
