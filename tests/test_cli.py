"""The `dokuei` command as a user runs it: a subprocess, a clean home, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _dokuei(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dokuei.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "DOKUEI_HOME": str(home)}, check=False)


def test_ask_json_acceptance(tmp_path: Path) -> None:
    proc = _dokuei(tmp_path, "ask", "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"answer_ja", "citations", "tool_calls", "verified"}
    assert out["verified"] is True
    call = out["tool_calls"][0]
    assert call["name"] == "judge_checkup" and call["status"] == "ok"
    assert {"input", "output", "summary_ja"} <= set(call)
    assert {i["item"]: i["grade"] for i in call["output"]["items"]} == {"hba1c": "D", "fpg": "D"}
    assert out["citations"][0]["id"] == "judge_checkup" and "[1]" in out["answer_ja"]


def test_tools_listing_imports_no_torch(tmp_path: Path) -> None:
    code = ("import sys; from dokuei.cli import main; main(['tools', '--json']); "
            "print('HEAVY', sorted(m for m in ('torch', 'monai', 'totalsegmentator', 'transformers') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "DOKUEI_HOME": str(tmp_path)})
    assert proc.stdout.strip().endswith("HEAVY []")


@pytest.mark.parametrize("patient", ["age=abc", "sex=X", "height_cm=5", "bogus=1"])
def test_bad_patient_context_is_a_clear_japanese_error(tmp_path: Path, patient: str) -> None:
    proc = _dokuei(tmp_path, "ask", "HbA1c 6.8%", "--patient", patient)
    assert proc.returncode in (1, 2)
    assert "エラー" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_missing_attachment_is_refused_before_anything_runs(tmp_path: Path) -> None:
    proc = _dokuei(tmp_path, "ask", "この CT は？", "--attach", str(tmp_path / "nope.nii.gz"))
    assert proc.returncode == 2 and "見つかりません" in proc.stdout


def test_weights_and_doctor_run_offline(tmp_path: Path) -> None:
    assert _dokuei(tmp_path, "weights").returncode == 0
    doctor = _dokuei(tmp_path, "doctor")
    report = json.loads(doctor.stdout)
    assert all(report["telemetry_off"][k] for k in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_OFFLINE",
                                                     "ANONYMIZED_TELEMETRY"))
