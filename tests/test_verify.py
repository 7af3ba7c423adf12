"""The verify step: numbers and findings must trace to the sources an answer cites."""

from __future__ import annotations

from dokuei.agent.compose import Source, compose_deterministic, number_sources
from dokuei.agent.verify import numbers_in, verify_answer
from dokuei.tools.base import Citation, Provenance, ToolResult, ToolStatus


def _result(summary: str, output: dict[str, object], tool: str = "t") -> ToolResult:
    return ToolResult(tool=tool, status=ToolStatus.OK, summary_ja=summary, output=output,
                      citations=[Citation(id=tool, kind="tool_result", label_ja=tool, text=summary)],
                      provenance=Provenance(tool=tool, tool_version="1.0.0"))


def _sources(*results: ToolResult) -> list[Source]:
    return number_sources(list(results))


def test_numbers_ignore_identifiers_and_citation_markers() -> None:
    assert numbers_in("L3 の SMA 98.4 cm2、V1 誘導、HL7、HbA1c 6.8 % [2]") == {98.4, 6.8}
    assert numbers_in("前回 16 mm から +38%、-5 mm") == {16.0, 38.0, 5.0}


def test_supported_answer_passes() -> None:
    sources = _sources(_result("SMI 35.1 cm2/m2 はサルコペニアの基準を満たす", {"smi_cm2_per_m2": 35.1}))
    report = verify_answer("SMI は 35.1 cm2/m2 で、サルコペニアに該当します [1]。", sources)
    assert report.ok and report.checked_sentences == 1


def test_a_copied_source_list_is_dropped_but_a_look_alike_line_is_checked() -> None:
    """The 1.5B model copies 「出典: [1] 健診判定（v1.1.0）（実行済み）」 into its answer (live run 12-04); the
    version 1.1 then read as an unsupported number. An exact copy of a system line says nothing new."""
    from dokuei.agent.compose import source_list, with_sources

    result = _result("HbA1c 6.8 %: D 判定", {"value": 6.8}, tool="judge_checkup")
    result.citations[0].label_ja = "健診判定（v1.1.0）"
    sources = _sources(result)
    body = "HbA1c 6.8 % は D 判定です [1]。\n\n" + source_list(sources)
    answer = with_sources(body, sources)
    assert answer.count("出典:") == 1 and verify_answer(answer, sources).ok
    forged = with_sources("HbA1c 6.8 % は D 判定です [1]。\n[1] 健診判定（v9.9）敗血症あり", sources)
    assert "v9.9" in forged and not verify_answer(forged, sources).ok


def test_a_short_english_answer_is_not_japanese_but_measurements_are_no_language() -> None:
    from dokuei.agent.verify import script_issues

    assert script_issues("The heart rate is 61 bpm [1].")  # accepted before: 17 letters, under the ratio floor
    assert not script_issues("PR 156 ms、QRS 71 ms、QTc 396 ms [1]。")
    assert not script_issues("心拍数 61 bpm [1]。")


def test_a_runaway_repetition_is_rejected_although_every_marker_is_valid() -> None:
    sources = _sources(_result("総合判定 D（要医療・要精密検査）", {}))
    runaway = "総合判定 D [1] [1] は要医療・要精密検査 " + "[1] " * 40  # the real model's draft, 12-04
    assert not verify_answer(runaway, sources).ok
    assert verify_answer("総合判定 D（要医療・要精密検査）です [1]。", sources).ok
    assert not verify_answer("要医療" * 8 + " [1]。", sources).ok
    from dokuei.agent.verify import script_issues

    assert not script_issues("血小板 100000000 /L、―――――――― [1]。")  # digits and rules are no runaway


def test_with_one_source_an_uncited_sentence_is_cited_to_it_and_still_checked() -> None:
    from dokuei.agent.compose import cite_the_only_source

    one = _sources(_result("HbA1c 6.8 %: D 判定", {"value": 6.8}))
    cited = cite_the_only_source("HbA1c 6.8 % は D 判定です。\n※ 参考情報です。", one)
    assert cited == "HbA1c 6.8 % は D 判定です [1]。\n※ 参考情報です。"  # a ※ note is not a claim
    assert verify_answer(cited, one).ok
    assert cite_the_only_source("要受診です。[1]", one) == "要受診です [1]。"  # a late [1] joins its sentence
    assert not verify_answer(cite_the_only_source("HbA1c 7.2 % です。", one), one).ok  # claims still checked
    two = _sources(_result("HbA1c 6.8 %", {"value": 6.8}, tool="a"), _result("LDL 165", {"value": 165.0}, tool="b"))
    assert cite_the_only_source("HbA1c 6.8 % です。", two) == "HbA1c 6.8 % です。"  # which one? none is guessed
    assert not verify_answer("HbA1c 6.8 % です。", two).ok


def test_an_exact_equivalent_backs_a_term_but_a_related_one_does_not() -> None:
    """「要受診」 is the D grade's 「受診勧奨」 in other words (finding_terms_ja.json "equivalents"); the
    1.5B model's cited 「要受診です [1]。」 was rejected for it (live run 12-04). 要治療 is no equivalent."""
    sources = _sources(_result("総合判定 D（要医療・要精密検査）: 医療機関を受診してください（受診勧奨）", {}))
    assert verify_answer("要受診です [1]。", sources).ok
    assert not verify_answer("要治療です [1]。", sources).ok


def test_invented_number_fails() -> None:
    sources = _sources(_result("SMI 35.1", {"smi_cm2_per_m2": 35.1}))
    report = verify_answer("SMI は 36.0 cm2/m2 です [1]。", sources)
    assert not report.ok and "36.0" in report.issues[0]


def test_uncited_clinical_sentence_fails() -> None:
    sources = _sources(_result("心拡大あり", {"cardiomegaly": True}))
    report = verify_answer("心拡大があります。", sources)
    assert not report.ok and "出典のない" in report.issues[0]


def test_finding_not_in_the_cited_source_fails() -> None:
    sources = _sources(_result("心拡大あり", {}, tool="a"), _result("胸水あり", {}, tool="b"))
    assert verify_answer("心拡大と胸水を認めます [1]。", sources).ok is False
    assert verify_answer("心拡大を認めます [1]。胸水を認めます [2]。", sources).ok is True


def test_unknown_citation_number_fails() -> None:
    sources = _sources(_result("x 1", {"a": 1}))
    assert not verify_answer("値は 1 です [3]。", sources).ok


def test_deterministic_composer_output_always_verifies() -> None:
    results = [_result("HbA1c 6.8 %: D 判定。総合判定 D。", {"v": 6.8}, tool="judge_checkup"),
               _result("心拡大の記載あり。", {}, tool="search_reports")]
    results[1].citations.append(Citation(id="report:R1", kind="report", label_ja="R1 2020-01-01 CR",
                                         text="Cardiomegaly. 心拡大 15 mm"))
    answer, sources = compose_deterministic(results, [])
    assert [s.number for s in sources] == [1, 2, 3]
    assert verify_answer(answer, sources, trust_notes=True).ok
