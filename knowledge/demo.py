"""Build the demo archive: the 3,955 real IU chest X-ray reports plus synthetic Japanese reports."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dokuei.knowledge.archive import IndexStats, ReportArchive
from dokuei.knowledge.importers import ImportResult, import_rows
from dokuei.knowledge.iu import IU_COUNT, import_iu
from dokuei.knowledge.iu import default_path as default_iu_path
from dokuei.knowledge.progress import ProgressCounter
from dokuei.knowledge.synthetic import GENERATOR, generate
from dokuei.settings import Settings

log = logging.getLogger(__name__)


def import_synthetic(
    archive: ReportArchive,
    n: int,
    seed: int = 0,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> ImportResult:
    rows = ((i, row) for i, row in enumerate(generate(n, seed), start=1))
    return import_rows(
        archive, rows, source=f"synthetic:{GENERATOR}:seed={seed}", synthetic=True, progress=progress, total=n,
        on_batch=on_batch,
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
    call only checks hashes. Returns the index statistics with the wall time in ``seconds``.

    The real reports go first, and the build's progress is written beside the store
    (:mod:`dokuei.knowledge.progress`), so searches made meanwhile say how far it is.
    """
    t0 = time.perf_counter()
    archive = ReportArchive(settings, chroma_url=chroma_url)
    iu_path = default_iu_path()
    with_iu = include_iu and iu_path.exists()
    if include_iu and not with_iu:
        log.warning("IU reports not imported: %s is missing (run `python -m dokuei.testdata`)", iu_path)
    counter = ProgressCounter(archive.root, (IU_COUNT if with_iu else 0) + max(n_synthetic, 0))
    results: list[ImportResult] = []
    try:
        if with_iu:
            results.append(import_iu(archive, iu_path, progress=progress, on_batch=counter.add))
        if n_synthetic > 0:
            results.append(
                import_synthetic(archive, n_synthetic, seed=seed, progress=progress, on_batch=counter.add)
            )
    except BaseException as exc:
        counter.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    counter.finish("done")
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
