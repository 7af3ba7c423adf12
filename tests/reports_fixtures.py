"""Shared helpers for the report-archive tests (not a conftest: plain imports keep ownership simple)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from dokuei.knowledge.lexical import bigram_tokens


class HashEmbedder:
    """A deterministic stand-in embedder (hashed bag of bigrams, 64 dims) for plumbing tests that do not
    measure retrieval quality: importer, filters, idempotency, the chromadb server path."""

    id = "test-hash-bigram-64"
    dim = 64

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, np.float32)
        for tok in bigram_tokens(text):
            v[int(hashlib.md5(tok.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
        n = float(np.linalg.norm(v))
        return v / n if n else v + 1.0 / np.sqrt(self.dim)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.passages(texts)
