"""Routing: one vocabulary (each tool's keywords), inputs assembled for every routed question, asks not refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from dokuei.agent.router import ask_ja, keyword_hits, plan_deterministic
from dokuei.settings import Settings
from dokuei.tools.base import Tool
from dokuei.tools.context import Attachment, ToolContext
from dokuei.tools.registry import ToolRegistry
from dokuei.tools.search_reports import query_from_question
from tests.routing_cases import NoSemantic, RoutingCase, context_for, is_correct, load_cases, plan_case

CASES = load_cases()


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> list[Tool]:
    settings = Settings.load(home=tmp_path_factory.mktemp("home"), device="cpu")
    registry = ToolRegistry(settings)
    return [registry.get(name) for name in registry.names]


def test_the_question_set_is_large_and_bilingual() -> None:
    english = [c for c in CASES if c.question.isascii()]
    assert len(CASES) >= 60 and len(english) >= 12
    assert {name for c in CASES for name in c.expected} >= {
        "measure_lymph_nodes", "assess_recist_response", "segment_ct", "measure_body_composition",
        "search_reports", "analyze_ecg", "classify_ecg", "classify_chest_xray", "advise_cardiology", "judge_checkup"}


@pytest.mark.parametrize("case", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_labelled_question_routes_as_labelled(case: RoutingCase, tools: list[Tool], tmp_path: Path) -> None:
    # keyword routing alone (no embedder) must already get every labelled question right
    plan = plan_case(case, tools, NoSemantic(), tmp_path)
    assert is_correct(case, plan), (sorted(c.name for c in plan.calls), plan.unmet_ja)


def _stand_in_kinds(tool: Tool) -> tuple[str, ...]:
    primary = tool.attachment_kinds[0]
    return (primary, primary) if tool.name == "assess_recist_response" else (primary,)


def test_every_routing_keyword_with_its_attachment_yields_an_input(tools: list[Tool], tmp_path: Path) -> None:
    # The contract behind "one vocabulary": a tool the router picks by one of its own keywords, given
    # the file it consumes, always builds an input (never "attach a CT" with a CT attached).
    checked = 0
    for tool in tools:
        if tool.depends_on or tool.name == "judge_checkup":  # reads other results / values in the text
            continue
        kinds = _stand_in_kinds(tool) if tool.attachment_kinds else ()
        for keyword in (*tool.keywords_ja, *tool.keywords_en):
            question = keyword if tool.name != "search_reports" else f"{keyword} 無気肺"
            case = RoutingCase(question, kinds, frozenset(), None)
            ctx = context_for(case, tmp_path / tool.name)
            assert keyword_hits(question, tool), (tool.name, keyword)
            assert tool.input_from_context(ctx) is not None, (tool.name, keyword)
            checked += 1
    assert checked > 100


def test_an_attached_ct_is_never_asked_for(tools: list[Tool], tmp_path: Path) -> None:
    ct = tmp_path / "study"
    ct.mkdir()
    for question in ("このCTの標的病変は？", "レシストで計測して"):
        plan = plan_deterministic(ToolContext(question, [Attachment(ct, "ct_series")]), tools, NoSemantic())
        assert [c.name for c in plan.calls] == ["measure_lymph_nodes"], question
        assert plan.calls[0].input is not None and plan.calls[0].input["study_path"] == str(ct)


def test_a_missing_file_is_asked_for(tools: list[Tool]) -> None:
    plan = plan_deterministic(ToolContext("このCTの標的病変は？"), tools, NoSemantic())
    assert plan.calls == []
    assert plan.unmet_ja == ["リンパ節を計測する CT（DICOM シリーズまたは NIfTI）を添付してください。"]
    assert all("答えられません" not in ask and "ください" in ask for ask in map(ask_ja, tools))


def test_one_ct_for_a_comparison_asks_for_the_second(tools: list[Tool], tmp_path: Path) -> None:
    ct = tmp_path / "study"
    ct.mkdir()
    plan = plan_deterministic(ToolContext("前回と比べて増大していますか？", [Attachment(ct, "ct_series")]),
                              tools, NoSemantic())
    assert plan.calls == [] and plan.unmet_ja[0].startswith("比較する 2 時点以上の CT")


def test_precedence_is_declared_data(tools: list[Tool], tmp_path: Path) -> None:
    # two CTs and a lymph-node question: the comparison supersedes the single-study measurement
    by_name = {t.name: t for t in tools}
    assert "measure_lymph_nodes" in by_name["assess_recist_response"].supersedes
    assert "segment_ct" in by_name["measure_body_composition"].supersedes
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    ctx = ToolContext("リンパ節の短径を前回と比べて", [Attachment(a, "ct_series"), Attachment(b, "ct_series")])
    plan = plan_deterministic(ctx, tools, NoSemantic())
    assert [c.name for c in plan.calls] == ["assess_recist_response"]


def test_ascii_keywords_match_whole_words_only(tools: list[Tool]) -> None:
    ecg = next(t for t in tools if t.name == "analyze_ecg")
    assert keyword_hits("show previous reports", ecg) == []  # "PR" is not in "previous"
    assert "PR" in keyword_hits("PR 間隔は？", ecg)


@pytest.mark.parametrize(("question", "query", "similar"), [
    # the finding reaches the search whole, the question's frame does not
    ("無気肺に触れているものを見せて", "無気肺", False),
    ("右上葉の空洞影、似たような症例を探して", "右上葉の空洞影", True),
    ("心拡大の症例を検索して", "心拡大", False),
    ("reports mentioning hiatal hernia", "hiatal hernia", False),
    ("過去のレポートで心拡大の記載があるものは？", "心拡大", False),
    ("過去レポートで肺気腫の所見が記載された例", "肺気腫", False),
    ("以前の報告書に大動脈の石灰化はありますか？", "大動脈の石灰化", False),
    ("Find similar cases to right upper lobe cavitation", "right upper lobe cavitation", True),
])
def test_query_keeps_the_finding_and_drops_the_frame(question: str, query: str, similar: bool) -> None:
    got, _, got_similar = query_from_question(question)
    assert (got, got_similar) == (query, similar)


def test_the_semantic_scorer_embeds_a_long_questions_head_and_tail_only() -> None:
    from dokuei.agent.router import SEMANTIC_MAX_CHARS, _semantic_excerpt

    short = "この心電図の所見は？"
    assert _semantic_excerpt(short) == short
    pasted = "所見: " + "右肺上葉に小結節を認めます。" * 300  # 4,200 characters of pasted findings
    question = pasted + "この所見から診断欄を下書きして"
    excerpt = _semantic_excerpt(question)
    # 200 from each end plus the 3-character joiner: the ask at the end survives, the middle does not
    assert len(excerpt) == SEMANTIC_MAX_CHARS + 3
    assert excerpt.endswith("この所見から診断欄を下書きして") and excerpt.startswith("所見: 右肺上葉")
