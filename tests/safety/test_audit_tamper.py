"""The audit trail survives faults and names every tamper (issue #9 item 7).

Each test builds a small real trail over three UTC days with ``audit.append``, alters it the way an
attacker or a crash would, and checks that ``verify_dir`` and ``dokuei doctor`` (exit code 1) name the
exact file and line, and that writing (and asking) goes on.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dokuei.agent import audit
from dokuei.agent.graph import Agent
from dokuei.cli import cmd_doctor
from dokuei.settings import Settings

DAY1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = "test-audit-key"


def _trail(audit_dir: Path, key: str | None = None) -> list[Path]:
    """3 days × 3 records; returns the day files in order."""
    for day in range(3):
        for n in range(3):
            audit.append(audit_dir, {"status": "ok", "question": {"sha256": f"{day}{n}" * 8, "chars": 10}},
                         key, now=DAY1 + timedelta(days=day, minutes=n))
    files = sorted(audit_dir.glob("audit-*.jsonl"))
    assert [f.name for f in files] == ["audit-20260301.jsonl", "audit-20260302.jsonl", "audit-20260303.jsonl"]
    return files


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _doctor(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = cmd_doctor(argparse.Namespace(), settings)
    return code, json.loads(capsys.readouterr().out)


def _where(problems: list[audit.Problem]) -> set[tuple[str, int]]:
    return {(p.file, p.line) for p in problems}


def test_an_intact_trail_links_days_and_doctor_says_ok(settings: Settings, capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    files = _trail(settings.audit_dir)
    day2_first = json.loads(_lines(files[1])[0])
    day1_last = json.loads(_lines(files[0])[-1])
    assert day2_first["seq"] == 1 and day2_first["prev_sha256"] == day1_last["sha256"]
    assert audit.verify_dir(settings.audit_dir) == []
    code, report = _doctor(settings, capsys)
    assert code == 0 and report["ok"] is True
    chains: Any = report["audit_chain"]
    assert set(chains.values()) == {"ok"}


def test_edited_record_is_named(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    files = _trail(settings.audit_dir)
    lines = _lines(files[1])
    lines[1] = lines[1].replace('"status": "ok"', '"status": "error"')
    files[1].write_text("".join(lines), encoding="utf-8")
    assert _where(audit.verify_dir(settings.audit_dir)) == {(files[1].name, 2)}
    code, report = _doctor(settings, capsys)
    assert code == 1 and report["ok"] is False
    assert any("line 2" in p for p in report["audit_chain"][files[1].name])  # type: ignore[index]


def test_edited_and_rehashed_record_is_caught_by_the_hmac(settings: Settings) -> None:
    files = _trail(settings.audit_dir, KEY)
    lines = _lines(files[1])
    record = json.loads(lines[1])
    record["status"] = "error"
    record["sha256"] = audit._record_hash(record)  # an editor who knows the scheme but not the key
    lines[1] = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
    files[1].write_text("".join(lines), encoding="utf-8")
    problems = audit.verify_dir(settings.audit_dir, KEY)
    assert (files[1].name, 2) in _where(problems)
    assert any("HMAC" in p.reason for p in problems)
    # without the key the rewrite still breaks the next record's link
    assert (files[1].name, 3) in _where(audit.verify_dir(settings.audit_dir))


def test_deleted_line_is_named(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    files = _trail(settings.audit_dir)
    lines = _lines(files[1])
    del lines[1]
    files[1].write_text("".join(lines), encoding="utf-8")
    problems = audit.verify_dir(settings.audit_dir)
    assert _where(problems) == {(files[1].name, 2)}  # the record after the gap: link and seq both broken
    assert any("sequence number 3" in p.reason for p in problems)
    assert _doctor(settings, capsys)[0] == 1


def test_torn_last_line_is_named_and_the_next_ask_still_works(settings: Settings,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    agent = Agent(settings)
    agent.ask("HbA1c 6.8% は？", session_id="t")
    path = next(settings.audit_dir.glob("audit-*.jsonl"))
    good = path.read_bytes()
    path.write_bytes(good + good[: len(good) // 2].split(b"\n")[0][:200])  # a crash mid-write
    assert _where(audit.verify_dir(settings.audit_dir)) >= {(path.name, 2)}
    code, report = _doctor(settings, capsys)
    assert code == 1 and any("line 2" in p for p in report["audit_chain"][path.name])  # type: ignore[index]
    turn = agent.ask("空腹時血糖 130 mg/dL は？", session_id="t")  # used to fail with JSONDecodeError
    assert turn.results and turn.results[0].ok
    records = [json.loads(line) for line in path.read_text().splitlines() if line.startswith('{"') and
               line.endswith("}")]
    assert [r["seq"] for r in records] == [1, 2]  # the new record links to the last good one
    assert records[1]["prev_sha256"] == records[0]["sha256"]
    assert _where(audit.verify_dir(settings.audit_dir)) == {(path.name, 2)}  # the torn line stays named


def test_garbage_line_is_named(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    files = _trail(settings.audit_dir)
    lines = _lines(files[2])
    lines.insert(1, "not json at all\n")
    files[2].write_text("".join(lines), encoding="utf-8")
    audit.append(settings.audit_dir, {"status": "ok"}, now=DAY1 + timedelta(days=2, hours=1))  # still writes
    problems = audit.verify_dir(settings.audit_dir)
    assert (files[2].name, 2) in _where(problems)
    assert _doctor(settings, capsys)[0] == 1


def test_oversized_record_is_bounded_and_a_planted_one_is_named(settings: Settings) -> None:
    files = _trail(settings.audit_dir)
    big = "長" * 100_000
    written = audit.append(settings.audit_dir, {"status": "ok", "question": big, "issues": [big] * 5},
                           now=DAY1 + timedelta(days=2, hours=1))
    last_line = _lines(files[2])[-1]
    assert len(last_line.encode()) <= audit.MAX_RECORD_BYTES
    # the cut text keeps the whole text's sha256 and length, so it can still be matched to the original
    assert written["question"]["chars"] == 100_000 and written["question"]["sha256"] == audit.text_digest(big)["sha256"]
    assert audit.verify_dir(settings.audit_dir) == []
    # a 200 KiB line planted by hand (the old failure: every later append died on it)
    planted = {"seq": 99, "sha256": "f" * 64, "prev_sha256": "0" * 64, "blob": "x" * 200_000}
    with files[2].open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(planted) + "\n")
    audit.append(settings.audit_dir, {"status": "ok"}, now=DAY1 + timedelta(days=2, hours=2))
    assert (files[2].name, 5) in _where(audit.verify_dir(settings.audit_dir))
    assert any("over the" in p.reason for p in audit.verify_dir(settings.audit_dir))


def test_deleted_day_file_is_named(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    files = _trail(settings.audit_dir)
    files[1].unlink()
    assert _where(audit.verify_dir(settings.audit_dir)) == {(files[2].name, 1)}
    code, report = _doctor(settings, capsys)
    assert code == 1 and any("line 1" in p for p in report["audit_chain"][files[2].name])  # type: ignore[index]


def test_truncated_tail_is_named(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    files = _trail(settings.audit_dir, KEY)
    files[2].write_text("".join(_lines(files[2])[:-1]), encoding="utf-8")  # the newest record removed
    problems = audit.verify_dir(settings.audit_dir, KEY)
    assert _where(problems) == {(files[2].name, 3)}  # HEAD.json names the record that should be there
    assert "truncated" in problems[0].reason
    code, report = _doctor(settings.__class__.load(home=settings.home, audit_hmac_key=KEY), capsys)
    assert code == 1 and any("line 3" in p for p in report["audit_chain"][files[2].name])  # type: ignore[index]


def test_truncated_tail_of_an_earlier_day_is_named(settings: Settings) -> None:
    files = _trail(settings.audit_dir)
    files[0].write_text("".join(_lines(files[0])[:-1]), encoding="utf-8")
    assert _where(audit.verify_dir(settings.audit_dir)) == {(files[1].name, 1)}


def test_a_failed_turn_is_audited(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import dokuei.agent.graph as graph

    def broken(path: Path) -> None:
        raise RuntimeError("reader exploded")

    monkeypatch.setattr(graph, "classify_attachment", broken)
    attached = tmp_path / "a.csv"
    attached.write_text("x\n")
    turn = Agent(settings).ask("この心電図は？", attachments=[str(attached)], session_id="f")
    assert "内部エラー" in turn.answer_ja and not turn.verified
    record = json.loads(next(settings.audit_dir.glob("audit-*.jsonl")).read_text().splitlines()[-1])
    assert record["status"] == "error" and "RuntimeError" in record["error"]
    assert audit.verify_dir(settings.audit_dir) == []
