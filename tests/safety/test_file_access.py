"""Uploads and artifacts are served only to the browser that owns them (issue #9 item 12; ui/access.py).

A real Gradio app is launched on loopback and driven over HTTP by two browsers (two cookie jars). Before
ui/access.py, Gradio answered ``/gradio_api/file=<path>`` with 200 for anyone who had the path, and the
artifacts folder was in ``allowed_paths``. Now: the owner gets 200 with the file's bytes; another browser,
a request without the cookie, a guessed path inside the artifacts folder, the deprecated ``/file/`` route
and the run-history pages all get 404. The agent is a stand-in that returns one tool result with one image
artifact, because what is tested is file serving, not the tools.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dokuei.agent.graph import TurnResult
from dokuei.settings import Settings
from dokuei.tools.base import Artifact, Provenance, ToolResult, ToolStatus
from dokuei.ui import access

#: the smallest valid PNG (1×1, grey): gradio's gallery copies it into its cache and serves the copy
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010800000000"
                    "3a7e9b550000000a49444154789c63680000008200815f1e2c2d0000000049454e44ae426082")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ImageAgent:
    """Answers every question with one ok tool result carrying one image the 'tool' wrote."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def ask(self, question: str, **_: Any) -> TurnResult:
        folder = self.settings.artifacts_dir / "analyze_ecg" / "0123456789abcdef-call"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ecg_12lead.png").write_bytes(PNG)
        result = ToolResult(tool="analyze_ecg", status=ToolStatus.OK, output={"heart_rate_bpm": 61},
                            summary_ja="心拍数 61 bpm",
                            artifacts=[Artifact(path=str(folder / "ecg_12lead.png"), kind="image",
                                                caption_ja="心電図")],
                            provenance=Provenance(tool="analyze_ecg", tool_version="0"))
        return TurnResult(session_id="s", answer_ja="心拍数 61 bpm [1]", verified=True, backend="test",
                          citations=[{"number": 1, "label_ja": "ツール analyze_ecg", "text": "心拍数 61 bpm"}],
                          results=[result])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    from dokuei.ui.app import build_app, launch_options

    home = tmp_path_factory.mktemp("home")
    settings = Settings.load(home=home)
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(home / "gradio-cache"))
    app = build_app(settings, agent=ImageAgent(settings))
    port = _free_port()
    app.queue().launch(server_port=port, prevent_thread_lock=True, quiet=True,
                       **launch_options(settings, "127.0.0.1"))
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        app.close()
        mp.undo()


def _browser(base: str) -> tuple[httpx.Client, str]:
    """A cookie jar that loaded the page once, and the owner cookie the server gave it."""
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/")
    assert page.status_code == 200
    set_cookie = page.headers.get("set-cookie", "")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    owner = client.cookies.get(access.COOKIE)
    assert owner and len(owner) == 43  # 32 random bytes, url-safe base64
    return client, owner


def test_an_upload_is_served_to_its_uploader_only(served: tuple[str, Settings]) -> None:
    base, _ = served
    alice, _ = _browser(base)
    bob, _ = _browser(base)
    body = b"# sampling_rate_hz: 500\nI,II\n0.1,0.2\n"
    uploaded = alice.post("/gradio_api/upload", files=[("files", ("yamada_ecg.csv", body))])
    assert uploaded.status_code == 200
    (path,) = uploaded.json()
    assert alice.get(f"/gradio_api/file={path}").content == body
    assert bob.get(f"/gradio_api/file={path}").status_code == 404
    assert bob.get(f"/gradio_api/file/{path}").status_code == 404  # the deprecated spelling of the route
    assert httpx.get(f"{base}/gradio_api/file={path}").status_code == 404  # no cookie at all


def test_an_artifact_is_served_to_the_session_that_asked_only(served: tuple[str, Settings]) -> None:
    from gradio_client import Client

    base, settings = served
    alice, alice_owner = _browser(base)
    bob, _ = _browser(base)
    client = Client(f"{base}/", verbose=False, download_files=False,
                    headers={"Cookie": f"{access.COOKIE}={alice_owner}"})
    outputs = client.predict("この心電図の所見は？", [], "", None, "", "", api_name="/respond")
    gallery = outputs[5]
    assert len(gallery) == 1
    served_path = gallery[0]["image"]["path"]
    assert Path(served_path).read_bytes() == PNG  # gradio's cached copy of the tool's image
    assert alice.get(f"/gradio_api/file={served_path}").content == PNG
    assert bob.get(f"/gradio_api/file={served_path}").status_code == 404
    # the tool's own file sits in allowed_paths: a guessed or leaked path is no key, not even for its owner
    original = settings.artifacts_dir / "analyze_ecg" / "0123456789abcdef-call" / "ecg_12lead.png"
    assert original.is_file()
    assert bob.get(f"/gradio_api/file={original}").status_code == 404
    assert alice.get(f"/gradio_api/file={original}").status_code == 404
    assert bob.get("/gradio_api/file=/etc/passwd").status_code == 404


def test_run_history_is_off_and_closed(served: tuple[str, Settings]) -> None:
    base, _ = served
    alice, _ = _browser(base)
    assert alice.get("/gradio_api/runs").status_code == 404
    assert alice.get("/gradio_api/run-history/records").status_code == 404
    assert alice.get("/config").json().get("run_history") is False


def test_file_paths_are_found_in_generator_diffs() -> None:
    # a generator's update arrives as a diff: [["replace", [5], [{"image": FileData}]]]
    diff = [["replace", [5], [{"image": {"path": "/c/x.png", "url": "http://h/file=/c/x.png",
                                         "meta": {"_type": "gradio.FileData"}}, "caption": "心電図"}]]]
    assert access.file_paths({"msg": "process_generating", "output": {"data": diff}}) == ["/c/x.png"]
    assert access.file_paths({"path": "/not/a/file/data"}) == []  # a plain "path" key is not a file


def test_owners_are_bounded_and_exact(tmp_path: Path) -> None:
    owners = access.FileOwners(max_per_owner=2)
    for name in ("a", "b", "c"):
        owners.grant("o", str(tmp_path / name))
    assert not owners.owns("o", str(tmp_path / "a"))  # the oldest went first
    assert owners.owns("o", str(tmp_path / "x" / ".." / "c"))  # the same file by another spelling
    assert not owners.owns("p", str(tmp_path / "c")) and not owners.owns(None, str(tmp_path / "c"))
