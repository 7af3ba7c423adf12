"""A relevance floor for archive search, and what the archive holds when nothing clears it.

Reciprocal rank fusion ranks whatever it is given, so a question about the liver put to an archive of
chest X-rays still got five "hits". Two rules, both data (``data/relevance_floor.json``):

- anatomy: a query that names an organ or finding of one body region (肝 → 腹部, 脳梗塞 → 頭部) keeps
  only reports of that region. This is what rejects off-topic questions: measured on the labelled IU
  queries, e5-small puts chest reports at cosine 0.80-0.87 of a liver question, inside the band of
  the relevant hits of chest questions (0.78-0.91), so no score threshold separates them;
- scores: per embedder, the dense score (cosine of query and passage vectors) and the fused RRF score
  must reach floors set at a low percentile of the relevant hits' scores (how: ``measured`` in the file,
  ``bench/bench_relevance.py``), which drops stragglers without costing the labelled queries recall.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dokuei.knowledge.archive import Hit
from dokuei.knowledge.glossary import find_terms, organs_in
from dokuei.knowledge.records import normalize_body_part

log = logging.getLogger(__name__)

FLOOR_PATH = Path(__file__).with_name("data") / "relevance_floor.json"
NOT_FOUND_JA = "該当する過去レポートは見つかりませんでした"
#: the anatomy rule reads questions, not whole attached reports (a chest CT report that mentions the
#: liver in passing must not be restricted to abdominal reports)
ANATOMY_MAX_CHARS = 120


@dataclass(frozen=True)
class Floor:
    embedder: str
    dense_min_cosine: float
    fused_min: float

    def as_dict(self) -> dict[str, float]:
        return {"dense_min_cosine": self.dense_min_cosine, "fused_min": self.fused_min}


@cache
def _table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FLOOR_PATH.read_text(encoding="utf-8"))
    return data


def floor_for(embedder_id: str | None) -> Floor | None:
    """The calibrated score floor of this embedder (matched by id prefix), or None when it has none."""
    for prefix, entry in _table()["embedders"].items():
        if embedder_id and embedder_id.startswith(prefix):
            return Floor(prefix, float(entry["dense_min_cosine"]), float(entry["fused_min"]))
    log.info("no calibrated relevance floor for embedder %s: scores are not filtered", embedder_id)
    return None


def query_regions(query: str) -> set[str]:
    """Body regions the query's anatomy belongs to (empty: it names nothing region-specific)."""
    regions = _table()["regions"]
    out: set[str] = set()
    for organ in organs_in(query):
        out.update(regions["organs"].get(organ, ()))
    for _, term in find_terms(query):
        out.update(regions["terms"].get(term.id, ()))
    return out


def keeps(hit: Hit, floor: Floor | None, regions: set[str]) -> bool:
    if regions and normalize_body_part(hit.body_part) not in regions:
        return False
    if floor is None:
        return True
    if hit.dense_score is not None and hit.dense_score < floor.dense_min_cosine:
        return False
    return hit.score >= floor.fused_min


def apply_floor(query: str, hits: Sequence[Hit], floor: Floor | None) -> list[Hit]:
    regions = query_regions(query) if len(query) <= ANATOMY_MAX_CHARS else set()
    return [h for h in hits if keeps(h, floor, regions)]


def describe_archive(stats: dict[str, Any]) -> str:
    """「索引にあるのは 512 件: モダリティ CR 512 件、部位 胸部 512 件、検査日 …」 from ``ReportStore.stats()``."""
    n = int(stats.get("reports", 0))
    if n == 0:
        return "索引にはレポートがありません。"
    span = stats.get("date_range") or []
    when = f"、検査日 {span[0]}〜{span[1]}" if len(span) == 2 else ""
    synthetic = int(stats.get("synthetic", 0))
    syn = f"（うち合成 {synthetic:,} 件）" if synthetic else ""
    return (
        f"索引にあるのは {n:,} 件{syn}: モダリティ {_counts(stats.get('by_modality', {}))}、"
        f"部位 {_counts(stats.get('by_body_part', {}))}{when}。"
    )


def _counts(by: dict[str, int]) -> str:
    items = sorted(((k or "不明", int(v)) for k, v in by.items()), key=lambda kv: -kv[1])
    return "、".join(f"{k} {v:,} 件" for k, v in items) or "不明"
