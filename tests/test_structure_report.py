"""structure_report: attributes of each finding, stated per case with why the value is right."""

from __future__ import annotations

from typing import Any

import pytest

from dokuei.reports.structure import structure
from dokuei.reports.text import ReportTextError
from dokuei.settings import Settings
from dokuei.tools.base import ToolStatus
from dokuei.tools.structure_report import StructureReport

REPORT = ("右肺上葉に1.2cm大の充実性結節を認める。胸水は認めない。"
          "前回（2020/01/01）と比較して、肝S8に径15mmの低吸収域あり（10mm→15mm、増大）。"
          "3か月後の CT での経過観察を推奨します。")


def _by_finding(text: str) -> dict[str, Any]:
    return {f.finding: f for f in structure(text)}


def test_japanese_attributes() -> None:
    f = _by_finding(REPORT)
    nodule, effusion, lesion = f["nodule"], f["pleural_effusion"], f["low_attenuation"]
    # 1.2 cm → 12 mm; 右肺上葉 is the phrase before に; 肺 is the organ named in the sentence
    assert (nodule.size_mm, nodule.location, nodule.laterality, nodule.organ) == (12.0, "右肺上葉", "right", "肺")
    assert nodule.certainty == "present" and not nodule.negated and nodule.change_vs_prior == "not_stated"
    assert effusion.negated and effusion.certainty == "negated"
    # 10mm→15mm: the current size is the last one; 増大 → increased; the next sentence recommends follow-up
    assert lesion.size_mm == 15.0 and lesion.change_vs_prior == "increased" and lesion.organ == "肝臓"
    assert lesion.recommendation == "3か月後の CT での経過観察を推奨します。"


def test_english_attributes() -> None:
    f = _by_finding("Stable 8 mm nodule in the left upper lobe. No pleural effusion. Possible small pneumothorax.")
    assert (f["nodule"].size_mm, f["nodule"].laterality, f["nodule"].change_vs_prior) == (8.0, "left", "unchanged")
    assert f["nodule"].certainty == "unchanged_known"
    assert f["pleural_effusion"].negated
    assert f["pneumothorax"].certainty == "suspected"


def test_history_is_not_structured() -> None:
    assert structure("【既往歴】右気胸。【所見】特記なし。") == []
    with pytest.raises(ReportTextError):
        structure("【既往歴】右気胸。")


def test_tool_groups_by_organ(settings: Settings) -> None:
    res = StructureReport(settings)({"text": REPORT})
    assert res.status is ToolStatus.OK and res.output is not None
    assert res.output["n_findings"] == 3 and res.output["n_negated"] == 1
    assert res.output["organs"]["肝臓"][0]["size_mm"] == 15.0
