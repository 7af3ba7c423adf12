"""`dokuei demo` from a fresh home to the first answer in the UI (issue #11: target < 3 min after install).

    PYTHONPATH=. .venv/bin/python bench/bench_demo.py [--n-synthetic 10000] [--wait-index]

Runs the real ``dokuei demo`` as a subprocess with an empty ``DOKUEI_HOME`` and an empty
``XDG_CACHE_HOME`` (so the int8 ONNX embedder is built as on a fresh clone; the venv and the test data
are the install step and are reused), polls the port until the page answers, then in Debian's Chromium
asks the checkup example and a report search, as a clinician would. Reported: seconds from the command's
start to the page, to the first answer, to the search answer (with the index progress it names) and,
with ``--wait-index``, to the finished index. The terminal's sample answers run in the same process
meanwhile, as they do for a user of ``make demo``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

log = logging.getLogger("bench_demo")
CHECKUP = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"
SEARCH = "過去のレポートで心拡大の記載があるものは？"


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"dokuei demo exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def _wait_progress(home: Path, timeout_s: float) -> str:
    from dokuei.knowledge.progress import read_progress

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        progress = read_progress(home / "index" / "reports")
        if progress is not None and progress.state != "building":
            return progress.state
        time.sleep(2)
    return "timeout"


def _wait_first_batch(home: Path, timeout_s: float) -> bool:
    from dokuei.knowledge.location import indexed_report_count
    from dokuei.settings import Settings

    settings = Settings.load(home=home)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if indexed_report_count(settings) > 0:
            return True
        time.sleep(1)
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-synthetic", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=7871)
    parser.add_argument("--wait-index", action="store_true", help="also time the finished index")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from playwright.sync_api import sync_playwright

    from tests.ui.conftest import CHROMIUM
    from tests.ui.pages import ask

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "DOKUEI_HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "cache")}
        out = (root / "demo.log").open("wb")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "dokuei.cli", "demo", "--n-synthetic", str(args.n_synthetic),
             "--port", str(args.port)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{args.port}/"
            _wait_http(url, proc, 600)
            page_up = time.perf_counter() - t0
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
                page = browser.new_context(viewport={"width": 1600, "height": 1200}, locale="ja-JP").new_page()
                page.goto(url)
                page.locator("#question textarea").wait_for(timeout=120_000)
                answer = ask(page, CHECKUP)
                first_answer = time.perf_counter() - t0
                assert "HbA1c" in answer, answer
                search = ask(page, SEARCH).rsplit(SEARCH, 1)[-1]
                search_answer = time.perf_counter() - t0
                # the same search once the first batch is stored: answered from it, naming N/M
                partial, partial_s = "", None
                if _wait_first_batch(root / "home", 600):
                    partial = ask(page, SEARCH).rsplit(SEARCH, 1)[-1]  # this turn only, not the chat
                    partial_s = time.perf_counter() - t0
                page.screenshot(path=str(Path("bench") / "bench_demo.png"), full_page=True)
                browser.close()
            progress = re.search(r"作成中です（\d+/\d+ 件）", search)
            index_s = None
            if args.wait_index:
                state = _wait_progress(root / "home", 3600)
                index_s = time.perf_counter() - t0
                log.info("index build ended: %s", state)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            out.close()
        log.info("demo log tail:\n%s", (root / "demo.log").read_text(errors="replace")[-3000:])
    log.info("| what (from `dokuei demo` start, fresh home and ONNX cache) | seconds |")
    log.info("|---|---|")
    log.info("| UI page answers HTTP | %.1f |", page_up)
    log.info("| first answer in the UI (checkup example) | %.1f |", first_answer)
    log.info("| report search answered in the UI | %.1f (%s) |", search_answer,
             progress.group(0) if progress else "index finished or not named")
    if partial_s is not None:
        found = re.search(r"作成中です（\d+/\d+ 件）", partial)
        hits = len(set(re.findall(r"IU-CXR\d+|SYN-[\w-]+", partial)))
        log.info("| same search once the first batch was stored | %.1f (%s, %d reports cited) |", partial_s,
                 found.group(0) if found else "no progress named", hits)
    if index_s is not None:
        log.info("| index finished (%d synthetic + IU) | %.0f |", args.n_synthetic, index_s)


if __name__ == "__main__":
    main()
