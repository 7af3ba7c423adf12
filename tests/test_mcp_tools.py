"""dokuei's MCP server through the official MCP SDK client, over stdio and streamable HTTP, as a separate
process started with ``dokuei mcp`` exactly as another agent would start it.

Data: the lymph-node phantom baseline (dokuei.phantoms.nodes): five ellipsoids whose RECIST axes on the
best axial grid slice are known analytically (the axial section of an ellipsoid is an ellipse whose axes
follow from the quadric, see the module docstring); ``ground_truth.json`` holds them. Node 2 (subcarinal)
has the truth 18.0 mm short axis and node 1 (right paratracheal) 15.9 mm. The tool's own test holds the
axes to 0.5 mm of the truth on this grid (0.8 mm pixels): the MCP path must give the very same numbers.
The checkup question: HbA1c 6.8 % and fasting glucose 130 mg/dL are both band D of the criteria table.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

CHECKUP_Q = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"
AXIS_TOL_MM = 0.5  # the tolerance of tests/test_measure_lymph_nodes.py on the same phantom


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dokuei.phantoms.nodes import pair_studies, write_study

    root = tmp_path_factory.mktemp("allowed")
    write_study(pair_studies()[0], root / "baseline", with_names=True)
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp_home")


def _session(target: Any, study: Path, outside: Path, with_ask: bool) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with Client(target, read_timeout_seconds=300) as client:
            got: dict[str, Any] = {"names": [t.name for t in (await client.list_tools()).tools]}
            got["measured"] = await client.call_tool("measure_lymph_nodes", {"study_path": str(study)})
            got["resources"] = (await client.list_resources()).resources
            uris = [a["uri"] for a in got["measured"].structured_content.get("artifacts", [])]
            got["blobs"] = [(await client.read_resource(u)).contents[0] for u in uris]
            got["refused"] = await client.call_tool("measure_lymph_nodes", {"study_path": str(outside)})
            if with_ask:
                got["ask"] = await client.call_tool("ask", {"question": CHECKUP_Q})
                got["ask_refused"] = await client.call_tool("ask", {"question": "この CT は？",
                                                                    "attachments": [str(outside)]})
            return got
    return anyio.run(main)


def _check_measured(got: dict[str, Any], study: Path) -> None:
    import base64

    assert {"measure_lymph_nodes", "judge_checkup", "ask"} <= set(got["names"])
    result = got["measured"]
    assert not result.is_error, result.content
    payload = result.structured_content
    assert payload["status"] == "ok" and payload["summary_ja"] and payload["provenance"]["tool"] == (
        "measure_lymph_nodes")
    truth = json.loads((study / "ground_truth.json").read_text(encoding="utf-8"))
    by_id = {n["node_id"]: n for n in payload["output"]["nodes"]}
    assert sorted(by_id) == sorted(int(k) for k in truth)
    for label, t in truth.items():
        assert by_id[int(label)]["long_axis_mm"] == pytest.approx(t["long_axis_mm"], abs=AXIS_TOL_MM), label
        assert by_id[int(label)]["short_axis_mm"] == pytest.approx(t["short_axis_mm"], abs=AXIS_TOL_MM), label
    assert truth["2"]["short_axis_mm"] == pytest.approx(18.0, abs=0.05)  # the numbers the docstring states
    assert truth["1"]["short_axis_mm"] == pytest.approx(15.9, abs=0.05)
    assert payload["output"]["target_node_ids"] == [2, 1]  # RECIST: measurable nodes are short axis >= 15 mm
    # artifacts travel as resources (no server path in the result), and the resource is the real image
    artifacts = payload["artifacts"]
    assert artifacts and all("path" not in a and a["uri"].startswith("dokuei-artifact://") for a in artifacts)
    assert {str(r.uri) for r in got["resources"]} >= {a["uri"] for a in artifacts}
    blob = base64.b64decode(got["blobs"][0].blob)
    assert got["blobs"][0].mime_type == "image/png" and blob[:8] == b"\x89PNG\r\n\x1a\n"
    refused = got["refused"]
    assert refused.is_error and "許可されたフォルダ" in refused.structured_content["summary_ja"]


def _check_ask(got: dict[str, Any]) -> None:
    ask = got["ask"]
    assert not ask.is_error, ask.content
    turn = ask.structured_content
    calls = [c for c in turn["tool_calls"] if c["name"] == "judge_checkup"]
    assert len(calls) == 1 and calls[0]["status"] == "ok"
    assert [i["grade"] for i in calls[0]["output"]["items"]] == ["D", "D"]
    prov = calls[0]["provenance"]
    assert prov["tool"] == "judge_checkup" and len(prov["input_sha256"]) == 64
    assert prov["input_sha256"] == calls[0]["input_sha256"]
    assert turn["verified"] and "[1]" in turn["answer_ja"]  # the answer cites its evidence
    assert any(c["tool"] == "judge_checkup" for c in turn["citations"])
    assert ask.content[0].text == turn["answer_ja"]
    refused = got["ask_refused"]
    assert refused.is_error and "許可されたフォルダ" in refused.content[0].text


def test_mcp_stdio_measures_the_phantom_nodes_and_asks(allowed: Path, home: Path) -> None:
    study = allowed / "baseline"
    params = StdioServerParameters(command=sys.executable, args=["-m", "dokuei.cli", "mcp", "--allow", str(allowed)],
                                   env={"DOKUEI_HOME": str(home), "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    got = _session(params, study, Path(__file__).parent, with_ask=True)
    _check_measured(got, study)
    _check_ask(got)
    audit = [json.loads(line) for f in (home / "audit").glob("*.jsonl")
             for line in f.read_text(encoding="utf-8").splitlines()]
    mcp_tools = [r.get("tool") for r in audit if r.get("channel") == "mcp"]
    assert {"measure_lymph_nodes", "ask"} <= set(mcp_tools)  # MCP calls are audited like chat turns
    # the MCP turn is kept like a CLI turn: `dokuei export TURN_ID` finds it, with the same grades
    from dokuei.export.turns import load_turn
    from dokuei.settings import Settings

    turn_id = got["ask"].structured_content["turn_id"]
    assert len(turn_id) == 16
    stored = load_turn(Settings.load(home=home), turn_id)
    (call,) = [c for c in stored["tool_calls"] if c["name"] == "judge_checkup"]
    assert [i["grade"] for i in call["output"]["items"]] == ["D", "D"]


def test_mcp_streamable_http_measures_the_phantom_nodes(allowed: Path, home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dokuei.cli", "mcp", "--http", "--port", str(port),
                             "--allow", str(allowed)], env={**os.environ, "DOKUEI_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.3)
        got = _session(f"http://127.0.0.1:{port}/mcp", allowed / "baseline", Path(__file__).parent, with_ask=False)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    _check_measured(got, allowed / "baseline")
