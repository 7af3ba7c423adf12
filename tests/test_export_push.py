"""Optional push into hospital systems, against real servers started on loopback inside the tests.

- PACS: a pynetdicom Storage SCP (the C-STORE implementation PACS vendors test against) in a thread.
- DICOMweb STOW-RS and FHIR: a stdlib ``http.server`` in a thread that records each request and answers
  what a real server answers (PS3.18 §10.5 STOW-RS response; FHIR R4 transaction-response).
- DICOM files: ``CT_small.dcm`` and ``MR_small.dcm`` that ship inside pydicom (real scanner files, MIT
  licence as part of pydicom's test data), standing in for the SR/SEG objects: C-STORE and STOW-RS do
  not care which SOP class they carry. The FHIR Bundle is the real export of the README checkup question.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dokuei.export.push import PushError, check_host, is_dicom_file, push_exports
from dokuei.settings import Settings

CHECKUP_Q = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"


@pytest.fixture()
def dicom_files(tmp_path: Path) -> list[Path]:
    out = tmp_path / "export"
    out.mkdir()
    files = []
    for name in ("CT_small.dcm", "MR_small.dcm"):
        src = get_testdata_file(name)
        assert src is not None, f"pydicom test file {name} missing"
        files.append(Path(shutil.copy(str(src), out / name)))
    return files


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- a real Storage SCP ----------------------------------------------------------------------------

@dataclass
class Scp:
    port: int
    received: list[Any] = field(default_factory=list)
    callers: list[str] = field(default_factory=list)
    status: int = 0x0000


@pytest.fixture()
def scp() -> Iterator[Scp]:
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    state = Scp(port=0)

    def on_store(event: Any) -> int:
        state.received.append(event.dataset)
        state.callers.append(event.assoc.requestor.ae_title)
        return state.status

    ae = AE(ae_title="TESTPACS")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.require_called_aet = True  # like a PACS node: it answers only to its own AE title
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert server is not None
    state.port = int(server.server_address[1])
    try:
        yield state
    finally:
        server.shutdown()


def _pacs(home: Path, port: int) -> Settings:
    return Settings.load(home=home, pacs_host="127.0.0.1", pacs_port=port, pacs_ae_title="TESTPACS")


def test_cstore_delivers_every_file_to_the_scp(tmp_path: Path, dicom_files: list[Path], scp: Scp) -> None:
    (outcome,) = push_exports(["pacs"], dicom_files, _pacs(tmp_path / "home", scp.port))
    assert outcome.ok, outcome.message_ja
    sent_uids = [str(dcmread(p).SOPInstanceUID) for p in dicom_files]
    assert outcome.sent == sent_uids
    assert [str(ds.SOPInstanceUID) for ds in scp.received] == sent_uids  # what the PACS stored is what we sent
    assert [int(ds.Rows) for ds in scp.received] == [int(dcmread(p).Rows) for p in dicom_files]
    assert scp.callers == ["DOKUEI", "DOKUEI"]  # the calling AE title from the settings
    assert "2 件送信しました" in outcome.message_ja


def test_cstore_failure_status_is_reported_and_the_files_stay(tmp_path: Path, dicom_files: list[Path],
                                                              scp: Scp) -> None:
    scp.status = 0xA700  # "Refused: out of resources" (PS3.4 Table B.2-1)
    (outcome,) = push_exports(["pacs"], dicom_files, _pacs(tmp_path / "home", scp.port))
    assert not outcome.ok and outcome.sent == []
    assert "0xA700" in outcome.message_ja and "CT_small.dcm" in outcome.message_ja
    assert "残っています" in outcome.message_ja and all(p.exists() for p in dicom_files)


def test_cstore_refused_connection_says_so_in_japanese(tmp_path: Path, dicom_files: list[Path]) -> None:
    port = _free_port()  # nothing listens there
    (outcome,) = push_exports(["pacs"], dicom_files, _pacs(tmp_path / "home", port))
    assert not outcome.ok
    assert f"TESTPACS@127.0.0.1:{port}" in outcome.message_ja and "接続できませんでした" in outcome.message_ja
    assert str(dicom_files[0].parent) in outcome.message_ja and all(p.exists() for p in dicom_files)


def test_cstore_wrong_called_ae_title_is_a_rejection(tmp_path: Path, dicom_files: list[Path], scp: Scp) -> None:
    settings = Settings.load(home=tmp_path / "home", pacs_host="127.0.0.1", pacs_port=scp.port,
                             pacs_ae_title="OTHERPACS")
    (outcome,) = push_exports(["pacs"], dicom_files, settings)
    assert not outcome.ok and "拒否" in outcome.message_ja and scp.received == []


# --- a minimal HTTP endpoint (STOW-RS and FHIR) ----------------------------------------------------

@dataclass
class Http:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply_status: int = 200
    reply_body: Any = None  # dict (sent as JSON) or a callable(request) -> dict


@pytest.fixture()
def http() -> Iterator[Http]:
    state = Http(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = {"path": self.path, "headers": dict(self.headers.items()), "body": body}
            state.requests.append(request)
            reply = state.reply_body(request) if callable(state.reply_body) else state.reply_body
            data = json.dumps(reply or {}).encode()
            self.send_response(state.reply_status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _parts(request: dict[str, Any]) -> list[Any]:
    """Split a multipart/related body with the stdlib MIME parser (independent of our writer)."""
    head = f"Content-Type: {request['headers']['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request["body"])
    return list(message.iter_parts())


def _stow_reply(request: dict[str, Any]) -> dict[str, Any]:
    """PS3.18 §10.5.3: the stored instances in ReferencedSOPSequence (0008,1199)."""
    import io

    uids = [str(dcmread(io.BytesIO(p.get_payload(decode=True))).SOPInstanceUID) for p in _parts(request)]
    return {"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [u]}} for u in uids]}}


def test_stow_rs_posts_one_multipart_related_request(tmp_path: Path, dicom_files: list[Path], http: Http) -> None:
    http.reply_body = _stow_reply
    settings = Settings.load(home=tmp_path / "home", stow_url=f"{http.url}/dicomweb/studies", stow_token="t0k")
    (outcome,) = push_exports(["stow"], dicom_files, settings)
    assert outcome.ok, outcome.message_ja
    (request,) = http.requests
    assert request["path"] == "/dicomweb/studies"
    content_type = request["headers"]["Content-Type"]
    assert content_type.startswith("multipart/related") and 'type="application/dicom"' in content_type
    assert request["headers"]["Accept"] == "application/dicom+json"
    assert request["headers"]["Authorization"] == "Bearer t0k"
    parts = _parts(request)
    assert [p.get_content_type() for p in parts] == ["application/dicom", "application/dicom"]
    assert [p.get_payload(decode=True) for p in parts] == [f.read_bytes() for f in dicom_files]  # byte-exact
    assert outcome.sent == [str(dcmread(p).SOPInstanceUID) for p in dicom_files]


def test_stow_rs_conflict_is_a_failure_and_the_files_stay(tmp_path: Path, dicom_files: list[Path],
                                                          http: Http) -> None:
    http.reply_status = 409  # PS3.18: none of the instances were stored
    settings = Settings.load(home=tmp_path / "home", stow_url=f"{http.url}/dicomweb/studies")
    (outcome,) = push_exports(["stow"], dicom_files, settings)
    assert not outcome.ok and "HTTP 409" in outcome.message_ja and "保存されませんでした" in outcome.message_ja
    assert all(p.exists() for p in dicom_files)


def test_stow_rs_refused_connection(tmp_path: Path, dicom_files: list[Path]) -> None:
    url = f"http://127.0.0.1:{_free_port()}/dicomweb/studies"
    (outcome,) = push_exports(["stow"], dicom_files, Settings.load(home=tmp_path / "home", stow_url=url))
    assert not outcome.ok and "接続できませんでした" in outcome.message_ja and url in outcome.message_ja


@pytest.fixture(scope="module")
def checkup_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dokuei.agent.graph import Agent
    from dokuei.export.cli import write_exports

    home = tmp_path_factory.mktemp("home")
    turn = Agent(Settings.load(home=home)).ask(CHECKUP_Q).to_json()
    (path,) = write_exports(turn, ["fhir"], tmp_path_factory.mktemp("fhir_out"))
    return path


def _transaction_response(request: dict[str, Any]) -> dict[str, Any]:
    bundle = json.loads(request["body"])
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created", "location": f"{e['request']['url']}/{i}/_history/1"}}
        for i, e in enumerate(bundle["entry"], start=1)]}


def test_fhir_transaction_bundle_is_posted_to_the_base_url(tmp_path: Path, checkup_bundle: Path,
                                                           http: Http) -> None:
    from fhir.resources.R4B.bundle import Bundle

    http.reply_body = _transaction_response
    settings = Settings.load(home=tmp_path / "home", fhir_url=f"{http.url}/fhir")
    (outcome,) = push_exports(["fhir"], [checkup_bundle], settings)
    assert outcome.ok, outcome.message_ja
    (request,) = http.requests
    assert request["path"] == "/fhir"
    assert request["headers"]["Content-Type"].startswith("application/fhir+json")
    assert request["headers"]["Accept"] == "application/fhir+json"
    assert "Authorization" not in request["headers"]  # no token configured, none sent
    received: Any = Bundle.model_validate(json.loads(request["body"]))
    assert received.type == "transaction"
    grades = [e.resource.valueCodeableConcept.coding[0].code for e in received.entry
              if e.resource.get_resource_type() == "Observation"]
    assert grades == ["D", "D"]  # HbA1c 6.8 % and FPG 130 mg/dL are both band D (criteria table)
    assert len(outcome.sent) == len(received.entry) and outcome.sent[0].endswith("/1/_history/1")


def test_fhir_error_carries_the_operation_outcome(tmp_path: Path, checkup_bundle: Path, http: Http) -> None:
    http.reply_status = 422
    http.reply_body = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": "Observation.subject is required"}]}
    settings = Settings.load(home=tmp_path / "home", fhir_url=f"{http.url}/fhir")
    (outcome,) = push_exports(["fhir"], [checkup_bundle], settings)
    assert not outcome.ok
    assert "HTTP 422" in outcome.message_ja and "Observation.subject is required" in outcome.message_ja
    assert str(checkup_bundle.parent) in outcome.message_ja and checkup_bundle.exists()


def test_fhir_partial_rejection_inside_the_transaction_response(tmp_path: Path, checkup_bundle: Path,
                                                                http: Http) -> None:
    http.reply_body = {"resourceType": "Bundle", "type": "transaction-response",
                       "entry": [{"response": {"status": "201 Created"}}, {"response": {"status": "400 Bad Request"}}]}
    settings = Settings.load(home=tmp_path / "home", fhir_url=f"{http.url}/fhir")
    (outcome,) = push_exports(["fhir"], [checkup_bundle], settings)
    assert not outcome.ok and "400 Bad Request" in outcome.message_ja


# --- policy: nothing by default, the hospital LAN only ---------------------------------------------

def test_nothing_is_configured_or_sent_by_default(tmp_path: Path, dicom_files: list[Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DOKUEI_PACS_HOST", "DOKUEI_STOW_URL", "DOKUEI_FHIR_URL", "DOKUEI_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.load(home=tmp_path / "home")
    assert (settings.pacs_host, settings.stow_url, settings.fhir_url, settings.push_allow_public) == (
        None, None, None, False)
    outcomes = push_exports(["pacs", "stow", "fhir"], dicom_files, settings)
    assert [o.ok for o in outcomes] == [False, False, False]
    assert all("設定されていないため送信しませんでした" in o.message_ja for o in outcomes)


def test_a_public_address_is_refused_before_any_connection(tmp_path: Path, dicom_files: list[Path]) -> None:
    # pytest-socket blocks connections to non-loopback hosts: reaching one would raise, not return
    settings = Settings.load(home=tmp_path / "home", stow_url="http://8.8.8.8/dicomweb/studies",
                             pacs_host="8.8.4.4")
    outcomes = push_exports(["stow", "pacs"], dicom_files, settings)
    assert [o.ok for o in outcomes] == [False, False]
    assert all("院内ネットワーク" in o.message_ja and "push_allow_public" in o.message_ja for o in outcomes)


def test_private_and_loopback_hosts_pass_the_policy(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "home")
    for host in ("127.0.0.1", "10.2.3.4", "192.168.10.20", "172.16.0.9", "::1", "fd00::5", "localhost"):
        check_host(host, settings)  # no exception
    with pytest.raises(PushError, match="院内ネットワーク"):
        check_host("1.1.1.1", settings)
    check_host("1.1.1.1", Settings.load(home=tmp_path / "home", push_allow_public=True))


def test_allow_public_reads_true_and_false_from_the_environment(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOKUEI_PUSH_ALLOW_PUBLIC", "true")
    assert Settings.load(home=tmp_path).push_allow_public is True
    monkeypatch.setenv("DOKUEI_PUSH_ALLOW_PUBLIC", "0")
    assert Settings.load(home=tmp_path).push_allow_public is False
    monkeypatch.setenv("DOKUEI_PUSH_ALLOW_PUBLIC", "maybe")
    with pytest.raises(ValueError, match="push_allow_public"):
        Settings.load(home=tmp_path)


def test_no_dicom_to_send_and_unknown_target(tmp_path: Path, checkup_bundle: Path, scp: Scp) -> None:
    assert not is_dicom_file(checkup_bundle)
    (outcome,) = push_exports(["pacs"], [checkup_bundle], _pacs(tmp_path / "home", scp.port))
    assert not outcome.ok and "DICOM ファイルがありません" in outcome.message_ja and scp.received == []
    with pytest.raises(ValueError, match="未対応の送信先: ftp"):
        push_exports(["ftp"], [checkup_bundle], _pacs(tmp_path / "home", scp.port))


# --- the CLI flag ----------------------------------------------------------------------------------

def test_push_flag_prints_each_outcome_and_exits_3_on_failure(tmp_path: Path, checkup_bundle: Path, http: Http,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from dokuei.cli import build_parser
    from dokuei.export.push import push_written

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert any("--push" in action.option_strings for action in sub.choices["export"]._actions)  # the flag is wired
    http.reply_body = _transaction_response
    settings = Settings.load(home=tmp_path / "home", fhir_url=f"{http.url}/fhir")
    assert push_written("", [checkup_bundle], settings) == 0 and http.requests == []  # no flag, no traffic
    assert push_written("fhir", [checkup_bundle], settings) == 0
    assert "送信: FHIR サーバー" in capsys.readouterr().out
    assert json.loads(http.requests[0]["body"]) == json.loads(checkup_bundle.read_text(encoding="utf-8"))
    http.reply_status = 500
    assert push_written("fhir,pacs", [checkup_bundle], settings) == 3
    printed = capsys.readouterr().out
    assert "送信失敗: FHIR サーバー" in printed and "HTTP 500" in printed
    assert "送信失敗: 送信先 pacs が設定されていない" in printed
    assert checkup_bundle.exists()
    assert push_written("ftp", [checkup_bundle], settings) == 2


def test_ask_export_push_sends_the_turns_bundle(tmp_path: Path, http: Http, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`dokuei ask … --export fhir DIR --push fhir`: the bundle written for this turn is what is POSTed."""
    from fhir.resources.R4B.bundle import Bundle

    from dokuei.cli import main

    http.reply_body = _transaction_response
    monkeypatch.setenv("DOKUEI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOKUEI_FHIR_URL", f"{http.url}/fhir")
    assert main(["ask", CHECKUP_Q, "--export", "fhir", str(tmp_path / "out"), "--push", "fhir"]) == 0
    assert "送信: FHIR サーバー" in capsys.readouterr().out
    (written,) = sorted((tmp_path / "out").glob("*.json"))
    (request,) = http.requests
    assert json.loads(request["body"]) == json.loads(written.read_text(encoding="utf-8"))
    received: Any = Bundle.model_validate(json.loads(request["body"]))
    grades = [e.resource.valueCodeableConcept.coding[0].code for e in received.entry
              if e.resource.get_resource_type() == "Observation"]
    assert grades == ["D", "D"]  # HbA1c 6.8 % and FPG 130 mg/dL, band D in the criteria table


def test_ask_push_without_export_is_refused(tmp_path: Path, http: Http, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from dokuei.cli import main

    monkeypatch.setenv("DOKUEI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOKUEI_FHIR_URL", f"{http.url}/fhir")
    assert main(["ask", CHECKUP_Q, "--push", "fhir"]) == 2
    assert "--export と一緒に" in capsys.readouterr().out and http.requests == []
