"""draft_impression: cited drafts, exemplar exclusion (same id, near-identical text), extractive fallback.

The archive test imports 300 synthetic Japanese reports (hashed-bigram stand-in embedder: the tool only
uses BM25, so retrieval quality does not depend on it) and drafts a report that is itself in the archive:
it must never come back as its own exemplar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dokuei.reports.impression import Exemplar, compress, draft_impression, jaccard3
from dokuei.settings import Settings
from dokuei.tools.base import ToolStatus
from dokuei.tools.draft_impression import DraftImpression

NODULE = "右肺上葉に8mm大の充実性結節を認める。胸水は認めない。"
EXEMPLAR = Exemplar("SYN-1", "右肺上葉に12mm大の充実性結節を認める。胸水は認めない。", "右肺上葉結節（12mm）。")


def test_exemplar_wording_adopted_with_our_numbers() -> None:
    d = draft_impression(NODULE, [EXEMPLAR])
    # the exemplar's 12 mm is replaced by this report's 8 mm; the negated 胸水 sentence is left out
    assert d.text == "右肺上葉結節（8mm）。"
    assert d.sentences[0].exemplar_id == "SYN-1"
    assert d.sentences[0].findings_sentence == "右肺上葉に8mm大の充実性結節を認める。"
    assert d.mode == "retrieval"


def test_exemplar_for_another_location_is_not_adopted() -> None:
    d = draft_impression("左肺下葉に8mm大の充実性結節を認める。", [EXEMPLAR])
    assert d.text == "左肺下葉に8mm大の充実性結節。"  # 右肺上葉 would be a finding not in the text
    assert d.sentences[0].exemplar_id is None


def test_the_report_is_never_its_own_exemplar() -> None:
    own = Exemplar("R-42", NODULE, "右肺上葉結節（8mm）、経過観察。")
    twin = Exemplar("R-43", NODULE.replace("。胸水", "。 胸水"), "右肺上葉結節（8mm）、要精査。")
    assert jaccard3(twin.findings, NODULE) >= 0.9
    d = draft_impression(NODULE, [own, twin, EXEMPLAR], report_id="R-42")
    assert set(d.excluded_exemplars) == {"R-42", "R-43"}
    assert d.exemplars_used == ["SYN-1"]
    # by text alone (no id given) the identical report is still excluded
    assert draft_impression(NODULE, [own]).excluded_exemplars == ["R-42"]


def test_extractive_without_exemplars_says_so() -> None:
    d = draft_impression("右気胸を認めます。縦隔の偏位はありません。")
    assert d.text == "右気胸。" and d.mode == "extractive"
    assert any("抽出" in n for n in d.notes_ja)
    assert compress("Small right pleural effusion.") == "Small right pleural effusion."
    assert draft_impression("No pneumothorax. No effusion.").text == "No acute abnormality."


NORMAL_EN = "The heart is normal in size. The lungs are clear. No pneumothorax or pleural effusion."


def _normals(*impressions: str) -> list[Exemplar]:
    return [Exemplar(f"IU-{i}", f"Heart size is normal. Lungs are clear bilaterally. No effusion. Study {i}.", imp)
            for i, imp in enumerate(impressions)]


def test_the_wording_the_exemplars_agree_on_is_adopted_and_cited() -> None:
    """Two of three archived impressions read 「No acute cardiopulmonary abnormality.」: its mean ROUGE-L
    against the other two is (1.0 + 0.0) / 2 = 0.5, the agreement floor; the odd one out scores 0."""
    d = draft_impression(NORMAL_EN, _normals("No acute cardiopulmonary abnormality.", "No active disease.",
                                             "No acute cardiopulmonary abnormality."))
    assert d.mode == "consensus" and d.text == "No acute cardiopulmonary abnormality."
    assert d.exemplars_used == ["IU-0"] and d.sentences[0].exemplar_id == "IU-0"
    assert any("一致" in n for n in d.notes_ja)


def test_agreed_wording_naming_a_finding_we_lack_is_not_adopted() -> None:
    d = draft_impression(NORMAL_EN, _normals(*["Stable cardiomegaly. No acute disease."] * 3))
    assert d.mode == "retrieval" and "cardiomegaly" not in d.text.lower()


def test_an_agreed_normal_impression_never_stands_for_a_critical_finding() -> None:
    d = draft_impression("Small right apical pneumothorax. The heart is normal in size.",
                         _normals(*["No acute cardiopulmonary abnormality."] * 3))
    assert d.mode != "consensus" and "pneumothorax" in d.text.lower()


def test_exemplars_that_disagree_give_no_consensus() -> None:
    d = draft_impression(NORMAL_EN, _normals("No active disease.", "Negative chest x-ray.",
                                             "No acute cardiopulmonary abnormality."))
    assert d.mode != "consensus"


@pytest.fixture(scope="module")
def archive_settings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, str]]:
    from dokuei.knowledge.archive import ReportArchive
    from dokuei.knowledge.importers import import_rows
    from dokuei.knowledge.synthetic import generate
    from tests.reports_fixtures import HashEmbedder

    settings = Settings.load(home=tmp_path_factory.mktemp("draft-home"))
    rows = list(generate(300, seed=5))
    archive = ReportArchive(settings, embedder=HashEmbedder())
    import_rows(archive, enumerate(rows, start=1), source="syn", progress=False)
    target = next(r for r in rows if "nodule" in r["labels"])
    return settings, target


def test_tool_excludes_the_archived_report_itself(archive_settings: tuple[Settings, dict[str, str]]) -> None:
    settings, target = archive_settings
    tool = DraftImpression(settings)
    res = tool({"findings": target["findings"], "report_id": target["report_id"], "k": 5})
    assert res.status is ToolStatus.OK and res.output is not None, res.summary_ja
    out = res.output
    assert out["mode"] == "retrieval"
    assert target["report_id"] not in out["exemplars_considered"]
    assert target["report_id"] in out["excluded_exemplars"]
    cited = {c.id for c in res.citations if c.kind == "report"}
    assert cited == {f"report:{rid}" for rid in out["exemplars_used"]}
    assert all(line["findings_sentence"] in target["findings"] for line in out["lines"])


def test_acceptance_through_the_agent(tmp_path_factory: pytest.TempPathFactory) -> None:
    from dokuei.agent.graph import Agent

    agent = Agent(Settings.load(home=tmp_path_factory.mktemp("agent-home")))
    turn = agent.ask("この所見から診断欄を下書きして: 右肺上葉に12mm大の充実性結節を認める。胸水は認めない。")
    assert [r.tool for r in turn.results] == ["draft_impression"]
    out = turn.results[0].output
    assert out is not None
    # no archive in this home: the extractive draft, the negated 胸水 sentence left out
    assert out["draft"] == "右肺上葉に12mm大の充実性結節。" and out["mode"] == "extractive"
    assert turn.verified, turn.verify_issues
    assert "[1]" in turn.answer_ja


def _llm_tool(tmp_path: Path, reply: str) -> tuple[Any, Any]:
    from dokuei.agent.llm import ChatReply, ScriptedBackend
    from dokuei.tools.draft_impression import DraftImpression

    backend = ScriptedBackend([ChatReply(text=reply)])
    tool = DraftImpression(Settings.load(home=tmp_path), llm=lambda messages: backend.chat(messages).text)
    return tool, backend


def test_llm_draft_kept_when_every_finding_is_in_the_findings(tmp_path: Path) -> None:
    tool, backend = _llm_tool(tmp_path, "右気胸。")
    res = tool({"findings": "右気胸を認める。胸水は認めない。", "k": 0})
    assert res.ok and res.output["mode"] == "llm" and res.output["draft"] == "右気胸。"
    assert res.output["lines"][0]["findings_sentence"] == "右気胸を認める。"  # cited to its findings sentence
    assert backend.seen[0][-1]["content"] == "所見: 右気胸を認める。胸水は認めない。"


def test_llm_draft_naming_an_absent_finding_is_rejected(tmp_path: Path) -> None:
    # 胸水 is negated in the findings and 肺塞栓 is not there at all; 15mm is not the findings' 12mm
    tool, _ = _llm_tool(tmp_path, "右肺上葉結節15mm。肺塞栓症。")
    res = tool({"findings": "右肺上葉に12mm大の充実性結節を認める。胸水は認めない。", "k": 0})
    assert res.ok and res.output["mode"] == "extractive"  # the deterministic draft stands
    note = "".join(res.output["notes_ja"])
    assert "LLM の下書きを採用しませんでした" in note and "肺塞栓" in note and "15" in note


def test_few_shot_context_is_the_exemplars() -> None:
    from dokuei.reports.impression import Exemplar, few_shot_messages

    msgs = few_shot_messages("右気胸を認める。", [Exemplar("A1", "左気胸を認める。", "左気胸。")])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"] == "所見: 左気胸を認める。" and msgs[2]["content"] == "左気胸。"


def test_the_llm_the_agent_registered_is_used_without_a_slot(tmp_path: Path) -> None:
    """A configured backend reaches the tool through dokuei.llm_hook (tools may not import the agent);
    once unregistered, the same call is back on the retrieval path."""
    from dokuei import llm_hook
    from dokuei.tools.draft_impression import DraftImpression

    tool = DraftImpression(Settings.load(home=tmp_path))
    llm_hook.register("scripted", lambda messages: "右気胸。")
    try:
        res = tool({"findings": "右気胸を認める。胸水は認めない。", "k": 0})
    finally:
        llm_hook.register("scripted", None)
    assert res.ok and res.output is not None
    assert res.output["mode"] == "llm" and res.output["draft"] == "右気胸。"
    again = tool({"findings": "右気胸を認める。胸水は認めない。", "k": 0}).output
    assert again is not None and again["mode"] != "llm"
