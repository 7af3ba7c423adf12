"""`dokuei demo`'s cases: one question per capability on data written here or shipped in packages; the
report search goes last, so in the served demo it runs after the others while the index builds."""

from __future__ import annotations

from pathlib import Path

from dokuei.demo import SEARCH_QUESTION, prepare
from dokuei.settings import Settings


def test_demo_cases_cover_each_capability_and_search_last(tmp_path: Path) -> None:
    cases = prepare(Settings.load(home=tmp_path))
    questions = [c.question for c in cases]
    assert questions[-1] == SEARCH_QUESTION and questions[0].startswith("55歳男性、HbA1c 6.8%")
    ct = next(c for c in cases if "L3" in c.question)
    assert ct.patient == "age=72,sex=F,height_cm=152" and (ct.attachments[0] / "ct.nii.gz").exists()
    recist = next(c for c in cases if "RECIST" in c.question)
    assert [p.name for p in recist.attachments] == ["baseline", "followup"]
    assert all(p.exists() for c in cases for p in c.attachments)  # nothing refers to a file not written
