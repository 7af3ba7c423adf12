"""detect_critical_findings: every negation / uncertainty / temporality pattern and every category, JA and EN.

Each case states the label a radiologist would give the sentence; the rule must return exactly that
status for the named category (present / suspected / negated / unchanged_known), or no mention at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from dokuei.reports.critical import detect, load_categories
from dokuei.reports.text import ReportTextError, split_sections
from dokuei.settings import Settings
from dokuei.tools.base import ToolStatus
from dokuei.tools.detect_critical_findings import DetectCriticalFindings
from dokuei.tools.registry import BUILTIN_TOOLS

# (report text, category, expected status) — one line per pattern of the issue
PATTERNS: list[tuple[str, str, str]] = [
    # Japanese: positive, negation, uncertainty, temporality
    ("右気胸を認めます。", "pneumothorax", "present"),
    ("右気胸あり、胸水は認めない。", "pneumothorax", "present"),  # the negation belongs to 胸水's clause
    ("気胸は認めません。", "pneumothorax", "negated"),
    ("気胸は認めない。", "pneumothorax", "negated"),
    ("明らかな気胸は指摘できません。", "pneumothorax", "negated"),
    ("気胸、胸水は認めない。", "pneumothorax", "negated"),  # a listed negation covers both terms
    ("気胸なし。", "pneumothorax", "negated"),
    ("気胸は否定的。", "pneumothorax", "negated"),
    ("気胸の疑いはない。", "pneumothorax", "negated"),  # 疑い itself negated
    ("前回指摘の気胸は消失。", "pneumothorax", "negated"),
    ("気胸は否定できない。", "pneumothorax", "suspected"),
    ("気胸は否定できません。", "pneumothorax", "suspected"),
    ("右気胸の疑い。", "pneumothorax", "suspected"),
    ("r/o 気胸。", "pneumothorax", "suspected"),
    ("ｒ／ｏ　気胸", "pneumothorax", "suspected"),  # full-width r/o normalised by NFKC
    ("右気胸の可能性がある。", "pneumothorax", "suspected"),
    ("右気胸は前回と著変なし。", "pneumothorax", "unchanged_known"),
    ("既知の右気胸が残存。", "pneumothorax", "unchanged_known"),
    ("前回と比較して右気胸は増大。", "pneumothorax", "present"),  # worsening is not 'unchanged'
    # English, NegEx-style
    ("Small right pneumothorax.", "pneumothorax", "present"),
    ("No pneumothorax or pleural effusion.", "pneumothorax", "negated"),
    ("No pleural effusion, focal consolidation or pneumothorax.", "pneumothorax", "negated"),
    ("Without evidence of pneumothorax.", "pneumothorax", "negated"),
    # the cue covers a whole list (IU phrasing)
    ("No focal consolidation, suspicious pulmonary opacity, large pleural effusion, or pneumothorax is identified.",
     "pneumothorax", "negated"),
    ("The lungs are clear of focal airspace disease, pneumothorax, or pleural effusion.", "pneumothorax", "negated"),
    ("Negative for pneumothorax.", "pneumothorax", "negated"),
    ("Pneumothorax is not seen.", "pneumothorax", "negated"),
    ("The pneumothorax has resolved.", "pneumothorax", "negated"),
    ("No effusion, but a small pneumothorax is present.", "pneumothorax", "present"),  # scope stops at 'but'
    ("Possible small pneumothorax.", "pneumothorax", "suspected"),
    ("Pneumothorax cannot be excluded.", "pneumothorax", "suspected"),
    ("Findings suspicious for pneumothorax.", "pneumothorax", "suspected"),
    ("Stable small left pneumothorax.", "pneumothorax", "unchanged_known"),
    ("No significant change in pneumothorax.", "pneumothorax", "unchanged_known"),  # 'no change', not 'no X'
    ("Large left hydropneumothorax.", "pneumothorax", "present"),
    ("Old healed right rib fractures.", "unstable_fracture", "unchanged_known"),
]

# one Japanese and one English positive sentence per category of the data file
CATEGORY_CASES: list[tuple[str, str, str]] = [
    ("右緊張性気胸を認める。", "Large right tension pneumothorax.", "pneumothorax"),
    ("横隔膜下に遊離ガスを認める。", "Free air under the right hemidiaphragm.", "free_air"),
    ("Stanford A 型の急性大動脈解離を認める。", "Type A aortic dissection.", "aortic_dissection"),
    ("右肺動脈に肺塞栓を認める。", "Filling defect consistent with pulmonary embolism.", "pulmonary_embolism"),
    ("左硬膜下血腫を認める。", "Acute subdural hematoma on the left.", "intracranial_hemorrhage"),
    ("小腸の拡張があり腸閉塞を認める。", "Dilated loops consistent with small bowel obstruction.",
     "bowel_obstruction_ischemia"),
    ("膵頭部に腫瘤を認める。", "Spiculated mass in the right upper lobe.", "suspected_malignancy"),
    ("胃管の先端位置異常を認める。", "The enteric tube is malpositioned.", "misplaced_tube_line"),
    ("肝 S6 に膿瘍を認める。", "Rim-enhancing abscess in the liver.", "abscess"),
    ("第1腰椎に椎体骨折を認める。", "Acute fracture of the C2 vertebra.", "unstable_fracture"),
]


def _status(text: str, category: str) -> str | None:
    det = detect(text)
    return next((c.status for c in det.categories if c.category.id == category), None)


@pytest.mark.parametrize(("text", "category", "expected"), PATTERNS)
def test_negation_uncertainty_temporality(text: str, category: str, expected: str) -> None:
    assert _status(text, category) == expected


def test_every_category_has_a_case() -> None:
    assert {c for *_, c in CATEGORY_CASES} == {c.id for c in load_categories()[2]}


@pytest.mark.parametrize(("ja", "en", "category"), CATEGORY_CASES)
def test_every_category_present_and_negated(ja: str, en: str, category: str) -> None:
    assert _status(ja, category) == "present"
    assert _status(en, category) == "present"
    # the same finding ruled out is negated, never flagged
    term_ja = next(t for t, p in next(c for c in load_categories()[2] if c.id == category).patterns
                   if p.search(ja.lower()))
    assert _status(f"{term_ja}は認めません。", category) == "negated"
    assert _status(f"No {en[:-1].lower()}.", category) == "negated"


def test_history_and_request_text_is_not_a_finding() -> None:
    text = "【依頼】気胸疑い。【既往歴】左気胸（2019年）。【所見】両肺に異常影なし。縦隔偏位なし。"
    det = detect(text)
    assert det.categories == []  # 気胸 appears only in 依頼 and 既往歴
    assert {(m.category, m.section) for m in det.context_mentions} == {
        ("pneumothorax", "indication"), ("pneumothorax", "history")}
    det = detect("所見: 特記なし。", history="気胸術後", clinical_diagnosis="肺塞栓疑い")
    assert det.categories == [] and len(det.context_mentions) == 2


def test_english_sections() -> None:
    text = "INDICATION: rule out pneumothorax. FINDINGS: Lungs are clear. IMPRESSION: No acute disease."
    assert [k for k, _ in split_sections(text)] == ["indication", "findings", "impression"]
    assert detect(text).categories == []


def test_evidence_is_quoted_verbatim_and_scored() -> None:
    det = detect("心拡大なし。右気胸を認めます。縦隔の偏位はありません。")
    (hit,) = det.flagged
    assert hit.category.id == "pneumothorax" and hit.evidence.sentence == "右気胸を認めます。"
    assert hit.score == pytest.approx(0.9)  # the data file's score for 'present'
    assert det.score == pytest.approx(0.9)


def test_empty_text_is_a_clear_error() -> None:
    with pytest.raises(ReportTextError):
        detect("【既往歴】気胸")


def test_tool_result_and_registry(settings: Settings) -> None:
    assert "detect_critical_findings" in BUILTIN_TOOLS
    tool = DetectCriticalFindings(settings)
    res = tool({"findings": "右気胸を認めます。"})
    assert res.status is ToolStatus.OK and res.output is not None
    assert res.output["findings"][0]["evidence"] == "右気胸を認めます。"
    assert "右気胸を認めます。" in res.summary_ja
    bad = tool({"findings": "【既往歴】気胸"})
    assert bad.status is ToolStatus.FAILED and "所見" in bad.summary_ja


def test_llm_judge_reads_findings_and_department_and_never_removes_a_flag(settings: Settings) -> None:
    """With an LLM registered the tool asks it about each flagged category (所見 + 依頼科 + the evidence).
    「なし」 keeps the flag at half the score (recall first); 「疑い」 caps a present at the suspected score."""
    from dokuei import llm_hook

    asked: list[str] = []

    def judge(messages: list[dict[str, str]]) -> str:
        asked.append(messages[-1]["content"])
        return "なし" if "気胸" in messages[-1]["content"].split("重大所見:")[1] else "疑い"

    report = "右気胸を認めます。右肺上葉に腫瘤を認めます。"
    plain = DetectCriticalFindings(settings)({"findings": report}).output
    assert plain is not None
    rules = {f["category"]: f for f in plain["findings"]}
    llm_hook.register("scripted", judge)
    try:
        res = DetectCriticalFindings(settings)({"findings": report, "department": "呼吸器内科"})
    finally:
        llm_hook.register("scripted", None)
    out = res.output
    assert out is not None
    by_id = {f["category"]: f for f in out["findings"]}
    scores = load_categories()[1]
    assert out["method"] == "rules+scripted" and len(asked) == 2 and all("依頼科: 呼吸器内科" in a for a in asked)
    assert by_id["pneumothorax"]["flagged"] and by_id["pneumothorax"]["judge_status"] == "absent"
    assert by_id["pneumothorax"]["score"] == pytest.approx(rules["pneumothorax"]["score"] / 2)
    malignancy = next(f for f in out["findings"] if f["category"] != "pneumothorax")
    assert malignancy["judge_status"] == "suspected" and malignancy["score"] == pytest.approx(scores["suspected"])
    assert "LLM 判定はなし" in res.summary_ja and out["n_flagged"] == 2


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from dokuei.agent.graph import Agent

    return Agent(Settings.load(home=tmp_path_factory.mktemp("home")))


def test_acceptance_through_the_agent(agent: Any) -> None:
    turn = agent.ask("このレポートに重大所見は？ 所見: 右気胸を認めます。縦隔の偏位はありません。")
    assert [r.tool for r in turn.results] == ["detect_critical_findings"]
    out = turn.results[0].output
    assert out["findings"][0]["category"] == "pneumothorax" and out["findings"][0]["status"] == "present"
    assert turn.verified, turn.verify_issues
    assert "「右気胸を認めます。」" in turn.answer_ja and "[1]" in turn.answer_ja

    turn = agent.ask("このレポートに重大所見は？ 所見: 気胸は認めません。")
    out = turn.results[0].output
    assert out["n_flagged"] == 0 and out["findings"][0]["status"] == "negated"
    assert turn.verified, turn.verify_issues
