"""The Gradio app, driven through its own HTTP API on loopback as a browser would."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from dokuei.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_chat_answers_with_sources_and_trace(tmp_path: Path) -> None:
    from gradio_client import Client

    from dokuei.ui.app import build_app

    app = build_app(Settings.load(home=tmp_path))
    port = _free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        # the session id is a gr.State: kept by the server per browser session, not part of the API
        chat, sources, trace, _gallery = client.predict(
            "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？", [], None, 55, "男性", None, None,
            api_name="/respond")
        answer = chat[-1]["content"]
        text = answer if isinstance(answer, str) else "".join(part.get("text", "") for part in answer)
        assert "D 判定" in text and "[1]" in text
        assert "judge_checkup" in sources
        assert json.loads(trace)[0]["name"] == "judge_checkup"
    finally:
        app.close()
