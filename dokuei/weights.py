"""Weights registry: where each model's files must lie, whether they are there, and their sha256.

Layout: ``$DOKUEI_WEIGHTS_DIR/<spec.relpath>`` (default ``~/.dokuei/weights``). A spec with a known
sha256 is verified; one without (a user-chosen checkpoint) is hashed and the hash recorded in every
result's provenance. Hashes are cached by path, size and mtime so large weights are read once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class WeightSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="stable id, e.g. 'totalseg-Dataset297'")
    version: str
    relpath: str = Field(description="file or folder under the weights dir")
    sha256: str | None = Field(default=None, description="expected sha256; None = user-chosen, recorded not verified")
    licence: str
    source: str = Field(description="where the weights come from (for the person installing them)")
    install_ja: str = Field(description="how to install, in Japanese, shown when missing")
    min_files: int = Field(default=1, ge=1, description="a folder must hold at least this many files")


@dataclass(frozen=True)
class WeightsCheck:
    spec: WeightSpec
    path: Path
    present: bool
    sha256: str | None
    verified: bool
    reason_ja: str

    @property
    def ok(self) -> bool:
        return self.present and (self.spec.sha256 is None or self.verified)


_CACHE_NAME = ".sha256-cache.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _cached_hash(path: Path, root: Path) -> str:
    """sha256 of a file, or of a folder's sorted listing of (relpath, sha256); cached by size+mtime."""
    cache_path = root / _CACHE_NAME
    try:
        cache: dict[str, list[object]] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    except json.JSONDecodeError:
        cache = {}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    lines = []
    changed = False
    for f in files:
        stat = f.stat()
        key = str(f.resolve())
        entry = cache.get(key)
        if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            digest = str(entry[2])
        else:
            digest = sha256_file(f)
            cache[key] = [stat.st_size, stat.st_mtime_ns, digest]
            changed = True
        lines.append(f"{f.relative_to(path).as_posix() if path.is_dir() else f.name} {digest}")
    if changed:
        try:
            cache_path.write_text(json.dumps(cache))
        except OSError:
            log.debug("cannot write weights hash cache %s", cache_path)
    if path.is_file():
        return lines[0].split()[1]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def check_weights(spec: WeightSpec, root: Path) -> WeightsCheck:
    path = root / spec.relpath
    if not path.exists():
        return WeightsCheck(spec, path, False, None, False,
                            f"モデル重み {spec.id} が未インストールです（{path} が必要）。{spec.install_ja}")
    if path.is_dir() and sum(1 for p in path.rglob("*") if p.is_file()) < spec.min_files:
        return WeightsCheck(spec, path, False, None, False,
                            f"モデル重み {spec.id} のフォルダ {path} が不完全です。{spec.install_ja}")
    digest = _cached_hash(path, root)
    if spec.sha256 is not None and digest != spec.sha256:
        return WeightsCheck(spec, path, True, digest, False,
                            f"モデル重み {spec.id} のハッシュが一致しません（期待 {spec.sha256[:12]}…、"
                            f"実際 {digest[:12]}…）。ファイルを入れ直してください。")
    return WeightsCheck(spec, path, True, digest, spec.sha256 is not None, "インストール済み")
