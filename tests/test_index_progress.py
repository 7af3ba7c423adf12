"""The archive is searchable while it is being built, and says so (knowledge/progress.py).

The demo starts the UI first and embeds the archive in a background thread. Here a real build (the
first 60 Indiana University chest X-ray reports, the default embedder, batches of 20) is paused after
its first batch; a search through the ``search_reports`` tool, with its own archive object as in the
agent, must then answer from exactly the 20 reports stored, name the progress (20/60), and leave the
saved lexical index to the builder. After the build the same search covers all 60 and the note is gone.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dokuei import testdata
from dokuei.knowledge.archive import ReportArchive
from dokuei.knowledge.importers import parse_row
from dokuei.knowledge.iu import iter_rows
from dokuei.knowledge.progress import BuildProgress, ProgressCounter, read_progress, write_progress
from dokuei.knowledge.records import ReportRecord, batched
from dokuei.settings import Settings
from dokuei.tools.base import ToolStatus
from dokuei.tools.search_reports import SearchReports

IU = testdata.path("NLMCXR_reports.tgz")


def test_a_build_whose_process_died_reads_as_interrupted(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    write_progress(tmp_path, BuildProgress(state="building", total_reports=100, done_reports=40,
                                           pid=int(done.stdout)))
    progress = read_progress(tmp_path)
    assert progress is not None and progress.state == "interrupted"
    assert "40/100" in progress.note_ja() and "dokuei index demo" in progress.note_ja()


def test_batches_start_small_and_double_up_to_the_batch_size() -> None:
    sizes = [len(b) for b in batched(range(100), 40, first=8)]
    assert sizes == [8, 16, 32, 40, 4]  # 8+16+32+40 = 96, the last 4 remain
    assert [len(b) for b in batched(range(5), 40)] == [5]


def test_unreadable_progress_is_no_progress(tmp_path: Path) -> None:
    (tmp_path / "build-progress.json").write_text("{not json", encoding="utf-8")
    assert read_progress(tmp_path) is None


def test_an_empty_archive_being_built_says_so_instead_of_asking_to_build(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path)
    archive = ReportArchive(settings)
    ProgressCounter(archive.root, 500)  # this process is alive: the build counts as running
    result = SearchReports(settings)({"query": "心拡大"})
    assert result.status is ToolStatus.UNAVAILABLE
    assert "作成中です（0/500 件）" in result.summary_ja and "dokuei index" not in result.summary_ja


@pytest.mark.skipif(not IU.exists(), reason=f"{IU} missing: run python -m dokuei.testdata")
def test_search_during_a_background_build_answers_from_what_is_stored(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path)
    builder = ReportArchive(settings)
    parsed = (parse_row(i, row, builder.salt, "iu-openi", "en", False) for i, row in iter_rows(limit=80))
    records = [r for r in parsed if isinstance(r, ReportRecord)][:60]  # a few IU files are empty
    assert len(records) == 60
    counter = ProgressCounter(builder.root, len(records), every_s=0.0)
    first_batch_stored, resume = threading.Event(), threading.Event()

    def on_batch(n: int) -> None:
        counter.add(n)
        if not first_batch_stored.is_set():
            first_batch_stored.set()
            resume.wait(timeout=120)

    def build() -> None:
        builder.upsert(records, batch_size=20, progress=False, on_batch=on_batch)
        counter.finish("done")

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    try:
        assert first_batch_stored.wait(timeout=300), "the first batch was never stored"
        tool = SearchReports(settings)
        mid = tool({"query": "heart size", "k": 50, "mode": "lexical"})
        assert mid.ok and mid.output is not None, mid.summary_ja
        assert mid.output["n_reports_indexed"] == 20
        first_ids = {r.report_id for r in records[:20]}
        assert mid.output["n_hits"] >= 1
        assert {h["report_id"] for h in mid.output["hits"]} <= first_ids
        assert "作成中です（20/60 件）" in mid.summary_ja
        # the searcher kept its lexical index in memory: nothing was saved for a half-built archive
        assert builder.store.get_meta("bm25_bigram_generation") is None
    finally:
        resume.set()
        thread.join(timeout=300)
    assert not thread.is_alive()
    after = SearchReports(settings)({"query": "heart size", "k": 50, "mode": "lexical"})
    assert after.ok and after.output is not None
    assert after.output["n_reports_indexed"] == 60
    assert after.output["index_build_ja"] is None and "作成中" not in after.summary_ja
    assert {h["report_id"] for h in after.output["hits"]} - {r.report_id for r in records[:20]}


def test_during_a_build_a_searcher_refreshes_its_bm25_at_most_every_few_seconds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 1M reports a BM25 rebuild takes ~30 s: during a build it is redone at most every
    LEXICAL_REFRESH_S (or ten build times), not on every search; after the build, on the next search."""
    import dokuei.knowledge.archive as archive_module

    settings = Settings.load(home=tmp_path)
    archive = ReportArchive(settings)
    parsed = (parse_row(i, row, archive.salt, "iu-openi", "en", False) for i, row in iter_rows(limit=30))
    records = [r for r in parsed if isinstance(r, ReportRecord)][:20]
    archive.upsert(records[:10], progress=False)
    monkeypatch.setattr(archive_module, "_build_running", lambda root: True)
    searcher = ReportArchive(settings)  # another tool's archive, as the agent's search_reports holds one
    first = searcher.lexical()
    archive.upsert(records[10:], progress=False)
    assert searcher.lexical() is first  # within the refresh interval: the same in-memory index
    monkeypatch.setattr(archive_module, "LEXICAL_REFRESH_S", 0.0)
    monkeypatch.setattr(searcher, "_lexical_build_s", 0.0)
    refreshed = searcher.lexical()
    assert refreshed is not first and len(refreshed.rows) > len(first.rows)
