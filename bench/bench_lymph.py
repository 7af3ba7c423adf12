"""Lymph-node bench: time per study for 20 nodes (mask → RECIST table) and click-to-measure latency.

Figures printed (median of ``--repeats``): open (read NIfTI), measure (axes, location, RECIST classes
and targets for 20 nodes; target < 1 s), render (overlay montage), and the click latency (region
growing + axes of one node; target < 300 ms) on a synthetic 400×320×120 study at 0.8×0.8×2.5 mm.
Everything is CPU code (scipy/scikit-image); ``--device`` is accepted for symmetry with other benches.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from dokuei.io.volume import Volume
from dokuei.lymph.axes import measure_node
from dokuei.lymph.grow import grow_from_click
from dokuei.lymph.overlay import render_montage
from dokuei.lymph.study import measure_study, open_study
from dokuei.phantoms.nodes import many_nodes_study, write_study

log = logging.getLogger("bench_lymph")


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    phantom = many_nodes_study(args.nodes)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_study(phantom, Path(tmp) / "study")
        study = open_study(folder)
        measure_study(study)  # warm-up: imports
        open_ms = _median_ms(lambda: open_study(folder), args.repeats)
        measure_ms = _median_ms(lambda: measure_study(study), args.repeats)
        result = measure_study(study)
        render_ms = _median_ms(lambda: render_montage(result, Path(tmp) / "m.png"), args.repeats)
        ct: Volume = study.ct
        inv = np.linalg.inv(ct.affine)
        seeds = [
            tuple(int(v) for v in np.rint(inv[:3, :3] @ np.asarray(n.center_mm) + inv[:3, 3]))
            for n in phantom.nodes
        ]

        def click(seed: tuple[int, int, int]) -> None:
            measure_node(grow_from_click(ct, seed).mask, ct.spacing_mm)

        per_click = [_median_ms(partial(click, (s[0], s[1], s[2])), args.repeats) for s in seeds]
    shape = "×".join(str(n) for n in ct.shape)
    log.info(
        "study %s voxels at %s mm, %d nodes, device %s (CPU code)",
        shape,
        ct.spacing_mm,
        len(result.nodes),
        args.device,
    )
    log.info("open (NIfTI read)            median %.0f ms", open_ms)
    log.info("measure 20 nodes (mask)      median %.0f ms  (target < 1000 ms)", measure_ms)
    log.info("render overlay montage       median %.0f ms", render_ms)
    log.info(
        "click-to-measure per node    median %.0f ms, max %.0f ms  (target < 300 ms)",
        statistics.median(per_click),
        max(per_click),
    )


if __name__ == "__main__":
    main()
