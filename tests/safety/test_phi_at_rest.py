"""Patient data at rest under $DOKUEI_HOME (issue #9 item 11).

Plants a name, a birth date, a patient id and an identifying attachment file name, runs real turns
through the `dokuei ask` command line (so the log file is written as in use), then greps every file.
Where each may remain, and why:
- patient id: nowhere (kept as a keyed hash, also in the session database);
- name and birth date typed into a question: only in sessions.sqlite, the session's own memory, which
  「新しいセッション」 (``Agent.reset_session``) deletes; the audit keeps the question's sha256;
- attachment file name: only in sessions.sqlite (a follow-up question re-reads the file by its path);
  the audit keeps its sha256 and the file's content hash.
Logs are technical and must hold none of them. Files are 0600, folders 0700.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from pydicom.data import get_testdata_file

NAME = "山田太郎"
BIRTH = "1956年4月1日"
PATIENT_ID = "P-778899"
FILE_STEM = "yamada_taro_19560401"


def _dokuei(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOKUEI_") or k == "DOKUEI_TESTDATA_DIR"}
    return subprocess.run([sys.executable, "-m", "dokuei.cli", *args], capture_output=True, text=True,
                          env={**env, "DOKUEI_HOME": str(home)}, check=False, timeout=600)


def _holding(home: Path, needle: str) -> set[str]:
    return {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()}


def test_patient_data_stays_out_of_files_at_rest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ecg = tmp_path / f"{FILE_STEM}.dcm"
    shutil.copy(str(get_testdata_file("waveform_ecg.dcm")), ecg)
    first = _dokuei(home, "ask", f"{NAME}さん（{BIRTH}生）の HbA1c 6.8% は？", "--patient",
                    f"id={PATIENT_ID},age=70,sex=M", "--session", "phi")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _dokuei(home, "ask", f"{NAME}さんのこの心電図を解析して", "--attach", str(ecg),
                     "--patient", f"id={PATIENT_ID}", "--session", "phi")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "心拍" in second.stdout  # the ECG really ran, so its file went through every layer
    audit_files = list((home / "audit").glob("audit-*.jsonl"))
    assert len(audit_files) == 1 and len(audit_files[0].read_text().splitlines()) == 2
    assert (home / "logs" / "dokuei.log").exists()

    assert _holding(home, PATIENT_ID) == set()
    assert _holding(home, "778899") == set()
    assert _holding(home, NAME) <= {"sessions.sqlite"}
    assert _holding(home, BIRTH) <= {"sessions.sqlite"}
    assert _holding(home, FILE_STEM) <= {"sessions.sqlite"}
    assert _holding(home, NAME) == {"sessions.sqlite"}  # the session memory does hold it (and is private)

    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(home)} is {oct(mode)}"
