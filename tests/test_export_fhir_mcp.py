"""FHIR R4 export and the MCP server, end to end through the real agent and the official MCP SDK.

Data: the labelled CT phantom (dokuei.phantoms.ct; SMI 34.63 cm²/m² for a 152 cm woman is the
analytic value the acceptance test already checks) and the README checkup question (HbA1c 6.8 % and
fasting glucose 130 mg/dL are both band D in the criteria table, so the overall grade is D).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from fhir.resources.R4B.bundle import Bundle
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from dokuei.agent.graph import Agent
from dokuei.export.cli import write_exports
from dokuei.export.fhir import measurements, turn_bundle
from dokuei.mcp_server import build_server
from dokuei.settings import Settings

CHECKUP_Q = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def ct_turn(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from dokuei.phantoms.ct import write_study

    study = write_study(tmp_path_factory.mktemp("ct") / "ct")
    agent = Agent(Settings.load(home=home))
    turn = agent.ask("この CT で L3 の骨格筋量とサルコペニアの判定は？", attachments=[str(study)],
                     patient={"age_years": 72, "sex": "F", "height_cm": 152})
    return turn.to_json()


def test_measurements_take_units_from_field_names() -> None:
    found = measurements({"smi_cm2_per_m2": 34.63, "sma_cm2": 80.0, "nodes": [{"short_axis_mm": 12.0}],
                          "flag": True, "count": 3})
    assert ("smi_cm2_per_m2", 34.63, "cm2/m2", "cm²/m²") in found
    assert ("nodes[0].short_axis_mm", 12.0, "mm", "mm") in found
    assert len(found) == 3  # booleans and unit-less numbers are not measurements


def test_ct_turn_bundle_validates_and_round_trips_smi(ct_turn: dict[str, Any], tmp_path: Path) -> None:
    paths = write_exports(ct_turn, ["fhir", "txt"], tmp_path)
    bundle_json = json.loads(paths[0].read_text(encoding="utf-8"))
    bundle: Any = Bundle.model_validate(bundle_json)  # the maintained model library accepts it
    kinds = [e.resource.get_resource_type() for e in bundle.entry]
    assert kinds[0] == "DiagnosticReport" and "Observation" in kinds and "Provenance" in kinds
    smi = [e.resource for e in bundle.entry if e.resource.get_resource_type() == "Observation"
           and e.resource.code.text.endswith("smi_cm2_per_m2")]
    assert len(smi) == 1
    assert smi[0].valueQuantity.code == "cm2/m2" and smi[0].valueQuantity.system == "http://unitsofmeasure.org"
    assert abs(float(smi[0].valueQuantity.value) - 34.63) <= 0.01
    report = bundle.entry[0].resource
    assert "SMI" in report.conclusion and len(report.result) == kinds.count("Observation")
    assert "34.63" in paths[1].read_text(encoding="utf-8")


def test_ct_turn_pdf_renders_japanese_and_the_numbers(ct_turn: dict[str, Any], tmp_path: Path) -> None:
    from pypdf import PdfReader

    (pdf_path,) = write_exports(ct_turn, ["pdf"], tmp_path, "この CT で L3 の骨格筋量は？")
    text = "".join(page.extract_text() for page in PdfReader(pdf_path).pages)
    assert "臨床支援結果" in text and "筋肉量低下" in text  # Japanese survives embedding and extraction
    assert "34.63" in text and "骨格筋指数（SMI）" in text and "体組成計測（L3）" in text  # labels, not field names
    assert "smi_cm2_per_m2" not in text and "measure_body_composition" not in text
    assert "ct_phantom" not in text and "/tmp" not in text  # no file name or server path printed


def test_checkup_bundle_has_one_graded_observation_per_item(home: Path) -> None:
    turn = Agent(Settings.load(home=home)).ask(CHECKUP_Q).to_json()
    bundle = turn_bundle(turn)
    grades = [e["resource"]["valueCodeableConcept"]["coding"][0]["code"] for e in bundle["entry"]
              if e["resource"]["resourceType"] == "Observation"]
    assert grades == ["D", "D"]


def _mcp_calls(target: Any, roots_ok: Path, outside: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with Client(target) as client:
            listed = await client.list_tools()
            judged = await client.call_tool("judge_checkup", {"items": [
                {"item": "hba1c", "value": 6.8, "unit": "%"}, {"item": "fpg", "value": 130,
                                                                "unit": "mg/dL"}]})
            refused = await client.call_tool("analyze_ecg", {"ecg_path": str(outside)})
            return {"names": [t.name for t in listed.tools], "judged": judged, "refused": refused}
    return anyio.run(main)


def test_mcp_in_process_lists_tools_judges_and_refuses_outside_roots(home: Path, tmp_path: Path) -> None:
    server, _ = build_server(Settings.load(home=home), [tmp_path])
    outside = Path(__file__)  # exists, but is not under the allowed root
    got = _mcp_calls(server, tmp_path, outside)
    assert {"judge_checkup", "analyze_ecg", "measure_lymph_nodes", "ask"} <= set(got["names"])
    judged = got["judged"].structured_content
    assert not got["judged"].is_error and judged["status"] == "ok"
    assert [i["grade"] for i in judged["output"]["items"]] == ["D", "D"]
    assert judged["provenance"]["tool"] == "judge_checkup" and len(judged["provenance"]["input_sha256"]) == 64
    assert got["refused"].is_error and "許可されたフォルダ" in got["refused"].structured_content["summary_ja"]
    audit_lines = [json.loads(line) for f in (home / "audit").glob("*.jsonl")
                   for line in f.read_text(encoding="utf-8").splitlines()]
    assert any(r.get("channel") == "mcp" and r.get("tool") == "judge_checkup" for r in audit_lines)


def test_mcp_over_stdio_subprocess(home: Path, tmp_path: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "dokuei.cli", "mcp", "--allow", str(tmp_path)],
                                   env={"DOKUEI_HOME": str(home)})
    got = _mcp_calls(params, tmp_path, Path(__file__))
    assert "judge_checkup" in got["names"]
    assert [i["grade"] for i in got["judged"].structured_content["output"]["items"]] == ["D", "D"]
    assert got["refused"].is_error


def test_mcp_over_streamable_http_on_loopback(home: Path, tmp_path: Path) -> None:
    import socket
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dokuei.cli", "mcp", "--http", "--port", str(port), "--allow",
                             str(tmp_path)], env={**__import__("os").environ, "DOKUEI_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.3)
        got = _mcp_calls(f"http://127.0.0.1:{port}/mcp", tmp_path, Path(__file__))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert [i["grade"] for i in got["judged"].structured_content["output"]["items"]] == ["D", "D"]
    assert got["refused"].is_error


def test_mcp_http_refuses_a_non_loopback_host(home: Path) -> None:
    from dokuei.mcp_server import serve_http

    with pytest.raises(ValueError, match="loopback"):
        serve_http(Settings.load(home=home), [home], host="0.0.0.0")
