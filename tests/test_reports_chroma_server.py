"""The scale path: import and search through ``--chroma-url`` against a real chromadb server.

The test starts ``chroma run`` (the server that ships with the chromadb wheel) on 127.0.0.1 and a free
port, so it stays inside the loopback-only socket guard. Data: the invented CP932 export of
test_reports_import.py; embeddings: the hashing stand-in (this tests the transport, not quality).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dokuei.knowledge.archive import ReportArchive
from dokuei.knowledge.filters import Filters
from dokuei.knowledge.importers import import_file
from dokuei.settings import Settings
from tests.reports_fixtures import HashEmbedder
from tests.test_reports_import import HEADER, ROWS


def _chroma_cli() -> str | None:
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cli = _chroma_cli()
    if cli is None:
        pytest.skip("the chroma CLI (from the chromadb wheel) is not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen(
        [cli, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"chroma run exited with {proc.returncode}")
                time.sleep(0.2)
        else:
            pytest.fail("chroma server did not start within 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_import_and_search_through_a_chromadb_server(chroma_url: str, tmp_path: Path) -> None:
    csv_path = tmp_path / "export.csv"
    csv_path.write_bytes((HEADER + "".join(ROWS)).encode("cp932"))
    settings = Settings.load(home=tmp_path / "home")
    archive = ReportArchive(settings, chroma_url=chroma_url, embedder=HashEmbedder())
    res = import_file(archive, csv_path, progress=False)
    assert res.inserted == 4 and [e.row for e in res.errors] == [4]
    assert archive.stats().backend == "chromadb-http"
    assert archive.collection().count() == 4  # the vectors are on the server
    # a second client (as another process would) sees the same vectors and filters on the server side
    other = ReportArchive(settings, chroma_url=chroma_url, embedder=HashEmbedder())
    hits = other.search("結節", Filters(patient_id="PT123"), k=5, mode="dense")
    assert {h.report_id for h in hits} == {"R0001", "R0002"}
    assert [h.report_id for h in other.search("梗塞", k=1)] == ["R0004"]
    # the embedded store of the same home is untouched
    assert not (settings.index_dir / "reports" / "chroma").exists()


def test_cli_stats_against_the_server(
    chroma_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dokuei.knowledge.cli import main

    os.environ["DOKUEI_HOME"] = str(tmp_path / "home")
    try:
        assert main(["index", "stats", "--chroma-url", chroma_url, "--json"]) == 0
    finally:
        del os.environ["DOKUEI_HOME"]
    assert '"backend": "chromadb-http"' in capsys.readouterr().out
