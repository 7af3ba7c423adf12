"""Build the demo archive: the 3,955 real IU chest X-ray reports plus synthetic Japanese reports."""

from __future__ import annotations

import logging
import time

from dokuei.knowledge.archive import IndexStats, ReportArchive
from dokuei.knowledge.importers import ImportResult, import_rows
from dokuei.knowledge.iu import import_iu
from dokuei.knowledge.synthetic import GENERATOR, generate
from dokuei.settings import Settings

log = logging.getLogger(__name__)


def import_synthetic(archive: ReportArchive, n: int, seed: int = 0, progress: bool = True) -> ImportResult:
    rows = ((i, row) for i, row in enumerate(generate(n, seed), start=1))
    return import_rows(
        archive, rows, source=f"synthetic:{GENERATOR}:seed={seed}", synthetic=True, progress=progress, total=n
    )


def build_demo_index(
    settings: Settings | None = None,
    n_synthetic: int = 10_000,
    chroma_url: str | None = None,
    include_iu: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> IndexStats:
    """Import the IU reports (when fetched) and ``n_synthetic`` synthetic ones; idempotent, so a second
    call only checks hashes. Returns the index statistics with the wall time in ``seconds``."""
    t0 = time.perf_counter()
    archive = ReportArchive(settings, chroma_url=chroma_url)
    results: list[ImportResult] = []
    if include_iu:
        try:
            results.append(import_iu(archive, progress=progress))
        except FileNotFoundError as exc:
            log.warning("IU reports not imported: %s", exc)
    if n_synthetic > 0:
        results.append(import_synthetic(archive, n_synthetic, seed=seed, progress=progress))
    stats = archive.stats()
    stats.seconds = time.perf_counter() - t0
    stats.details["imports"] = [
        {
            "source": r.source,
            "rows": r.rows,
            "inserted": r.inserted,
            "updated": r.updated,
            "unchanged": r.unchanged,
            "errors": len(r.errors),
            "seconds": round(r.seconds, 1),
        }
        for r in results
    ]
    log.info("demo index: %d reports, %d chunks in %.0f s", stats.reports, stats.chunks, stats.seconds)
    return stats
