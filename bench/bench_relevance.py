"""Calibrate and check the relevance floor of search_reports (knowledge/data/relevance_floor.json).

On an index holding IU chest X-ray reports (--home), runs the labelled IU queries (every glossary term
with a MeSH descriptor that some indexed report carries as a major MeSH; English and Japanese forms) and
off-topic questions about organs a chest X-ray archive does not hold (the glossary's abdominal and head
findings, plus hand-written ones such as 「肝S8の低吸収域」). Prints: the 2nd percentile of the dense
and fused scores of the relevant top-10 hits (the floor), then, without and with the floor, the share of
relevant top-10 hits kept, the labelled queries that still have a relevant hit, and the off-topic
questions that still get any hit. Asserts nothing.

    python -m bench.bench_relevance --home DIR [--embedder onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.knowledge.archive import Hit, ReportArchive
from dokuei.knowledge.glossary import terms
from dokuei.knowledge.iu import mesh_heads
from dokuei.knowledge.relevance import Floor, apply_floor, floor_for
from dokuei.settings import Settings

OFF_TOPIC = (
    "肝S8の低吸収域", "肝S8の低吸収域 似た症例", "脳梗塞", "腎嚢胞", "膵頭部腫瘤", "子宮筋腫", "前立腺肥大",
    "胆嚢結石", "hepatic hypodense lesion", "acute cerebral infarction", "pancreatic head mass",
    "肝細胞癌の早期濃染", "脳室拡大", "副腎腫瘤",
)
#: glossary terms of the abdomen and head (a chest X-ray archive holds none of them)
OFF_TOPIC_TERMS = (
    "liver_cyst", "fatty_liver", "cerebral_infarction", "white_matter", "gallstone", "renal_cyst",
    "renal_stone", "splenomegaly", "ascites", "pancreatic_cyst",
)


def emit(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run(archive: ReportArchive) -> tuple[list[tuple[str, list[Hit], set[str]]], list[tuple[str, list[Hit]]]]:
    labels = {r.report_id: mesh_heads(r.labels) for r in archive.store.iter_reports() if r.source == "iu-openi"}
    labelled, off = [], []
    for t in terms():
        rel = {rid for rid, heads in labels.items() if heads & set(t.mesh)}
        for q in (t.en[0], t.ja[0]):
            if rel:
                labelled.append((q, archive.search(q, k=10, collapse=False), rel))
            elif t.id in OFF_TOPIC_TERMS:
                off.append((q, archive.search(q, k=10, collapse=False)))
    off += [(q, archive.search(q, k=10, collapse=False)) for q in OFF_TOPIC]
    return labelled, off


def summary(labelled: list[Any], off: list[Any], floor: Floor | None, anatomy: bool) -> dict[str, Any]:
    def kept(q: str, hits: list[Hit]) -> list[Hit]:
        if not anatomy and floor is None:
            return hits
        return apply_floor(q if anatomy else "", hits, floor)

    rel_total = sum(h.report_id in rel for _, hits, rel in labelled for h in hits)
    rel_kept = sum(h.report_id in rel for q, hits, rel in labelled for h in kept(q, hits))
    q_total = sum(any(h.report_id in rel for h in hits) for _, hits, rel in labelled)
    q_kept = sum(any(h.report_id in rel for h in kept(q, hits)) for q, hits, rel in labelled)
    return {
        "relevant_top10_hits_kept": round(rel_kept / max(rel_total, 1), 3),
        "labelled_queries_with_a_relevant_hit": f"{q_kept}/{q_total}",
        "off_topic_questions_with_any_hit": f"{sum(bool(kept(q, hits)) for q, hits in off)}/{len(off)}",
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--percentile", type=float, default=2.0)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    archive = ReportArchive(Settings.load(home=a.home))
    labelled, off = run(archive)
    rel_hits = [h for _, hits, rel in labelled for h in hits if h.report_id in rel]
    dense = np.array([h.dense_score for h in rel_hits if h.dense_score is not None])
    fused = np.array([h.score for h in rel_hits])
    embedder = archive.store.get_meta("embedder") or "?"
    calibrated = Floor(embedder, round(float(np.percentile(dense, a.percentile)), 3),
                       round(float(np.percentile(fused, a.percentile)), 5))
    off_dense = [h.dense_score for _, hits in off for h in hits[:1] if h.dense_score is not None]
    result = {
        "embedder": embedder,
        "index": archive.store.stats()["reports"],
        "labelled_queries": len(labelled),
        "off_topic_questions": len(off),
        "relevant_hit_dense_cosine": [round(float(dense.min()), 3), round(float(dense.max()), 3)],
        "off_topic_top1_dense_cosine": [round(min(off_dense), 3), round(max(off_dense), 3)],
        f"calibrated_p{a.percentile:g}": calibrated.as_dict(),
        "no_floor": summary(labelled, off, None, anatomy=False),
        "scores_only": summary(labelled, off, calibrated, anatomy=False),
        "anatomy_only": summary(labelled, off, None, anatomy=True),
        "scores_and_anatomy": summary(labelled, off, calibrated, anatomy=True),
        "in_use": (floor_for(embedder) or calibrated).as_dict(),
    }
    emit(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
