"""Workstation timings in Debian's Chromium (issue #10): page ready, first answer for the checkup example,
a 300-slice CT DICOM series from upload to its first slice in the viewer, and the slice-scroll frame time.

    PYTHONPATH=. .venv/bin/python bench/bench_ui.py [--slices 300] [--size 512] [--scroll 30]

The app runs in this process with the real agent (deterministic backend) on a loopback port and a fresh
temporary DOKUEI_HOME. The CT is a synthetic series (a water cylinder in air, int16 with rescale, 0.7 mm
pixels, 1 mm slices, one StudyInstanceUID/SeriesInstanceUID) written here with pydicom, so no patient data
is involved. Targets: page usable < 2 s, scroll < 100 ms per slice.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench_ui")
CHECKUP = "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？"


def write_dicom_series(folder: Path, slices: int, size: int) -> list[Path]:
    """A CT series of ``slices`` axial images (size × size), water cylinder (0 HU) in air (-1000 HU)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[0:size, 0:size]
    body = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (0.4 * size) ** 2
    paths = []
    for k in range(slices):
        hu = np.where(body, 0, -1000).astype(np.int16)
        hu[body & ((xx - size / 2) ** 2 + (yy - size / 2 - k % 50) ** 2 < 30**2)] = 300  # a moving bright disc
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"IM{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.StudyDate, ds.SeriesDescription = "CT", "20250115", "bench phantom"
        ds.PatientID, ds.PatientName = "BENCH", "BENCH^PHANTOM"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-0.35 * size, -0.35 * size, float(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = hu.tobytes()
        path = folder / f"IM{k:04d}.dcm"
        pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
        paths.append(path)
    return paths


def _img_src(page: Any, elem_id: str) -> str:
    return str(page.evaluate(f"() => document.querySelector('#{elem_id} img')?.src || ''"))


def _wait_new_image(page: Any, elem_id: str, previous: str, timeout_ms: int = 60_000) -> str:
    page.wait_for_function(
        "([id, prev]) => { const i = document.querySelector('#' + id + ' img');"
        " return i && i.src && i.src !== prev && i.complete && i.naturalWidth > 0; }",
        arg=[elem_id, previous], timeout=timeout_ms)
    return _img_src(page, elem_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--scroll", type=int, default=30, help="slice steps timed")
    parser.add_argument("--loads", type=int, default=5, help="page loads timed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from playwright.sync_api import sync_playwright

    from dokuei.settings import Settings
    from tests.ui.conftest import CHROMIUM, serve
    from tests.ui.pages import ask

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        series = write_dicom_series(root / "series", args.slices, args.size)
        log.info("wrote %d slices (%d×%d) in %.1f s", len(series), args.size, args.size, time.perf_counter() - t0)
        Settings.load(home=root / "home")
        server = serve(root / "home")
        url, _agent, _home = next(server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            ready = []
            for _ in range(args.loads):
                context = browser.new_context(viewport={"width": 1600, "height": 1200}, locale="ja-JP")
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(url)
                page.locator("#send").wait_for(state="visible")
                page.wait_for_function("() => !document.querySelector('#send').disabled")
                ready.append(time.perf_counter() - t0)
                context.close()
            context = browser.new_context(viewport={"width": 1600, "height": 1200}, locale="ja-JP")
            page = context.new_page()
            page.goto(url)
            page.locator("#question textarea").wait_for()
            t0 = time.perf_counter()
            answer = ask(page, CHECKUP)
            first_answer = time.perf_counter() - t0
            assert "HbA1c" in answer, answer

            t0 = time.perf_counter()
            page.locator("#upload-files input[type=file]").set_input_files([str(p) for p in series])
            page.wait_for_function("() => (document.querySelector('#upload-note')?.innerText || '').includes('取り込')",
                                   timeout=600_000)
            listed = time.perf_counter() - t0
            page.locator("#ct-pick input").click()
            page.get_by_role("option").first.click()
            src = _wait_new_image(page, "ct-view", "", timeout_ms=600_000)
            first_image = time.perf_counter() - t0
            # the whole stack reaches the page (ui/slice_stack.py); from then on a step is a swap in the browser
            page.wait_for_function(f"() => document.querySelector('#ct-stack [data-slices]')?.dataset.slices"
                                   f" == '{args.slices}'", timeout=600_000)
            stack_ready = time.perf_counter() - t0

            slider = page.locator("#ct-slice input[type=range]")
            slider.focus()
            frames, in_page = [], []
            stack = "#ct-stack [data-slices]"
            for i in range(args.scroll):
                t1 = time.perf_counter()
                page.keyboard.press("ArrowUp")
                src = _wait_new_image(page, "ct-view", src)
                frames.append(time.perf_counter() - t1)
                # the page's own figure: input event → decoded frame painted (ui/slice_stack.py)
                page.wait_for_function(f"() => Number(document.querySelector('{stack}')?.dataset.frames || 0)"
                                       f" >= {i + 1}", timeout=30_000)
                in_page.append(float(page.evaluate(f"() => document.querySelector('{stack}').dataset.frameMs")))
            context.close()
            browser.close()
        with contextlib.suppress(StopIteration):
            next(server)  # closes the app

    frames_ms = sorted(f * 1000 for f in frames)
    p95 = frames_ms[min(len(frames_ms) - 1, int(0.95 * len(frames_ms)))]
    log.info("| what | figure | target |")
    log.info("|---|---|---|")
    log.info("| page usable (送信 enabled), fresh context | %.2f s median (n=%d, max %.2f s) | < 2 s |",
             statistics.median(ready), len(ready), max(ready))
    log.info("| first answer, checkup example | %.2f s | — |", first_answer)
    log.info("| %d-slice %d² CT DICOM upload → study listed | %.1f s | — |", args.slices, args.size, listed)
    log.info("| same → first slice in the viewer | %.1f s | — |", first_image)
    log.info("| same → every slice in the browser (stack) | %.1f s | — |", stack_ready)
    in_page.sort()
    log.info("| slice scroll in the page, input → frame painted | %.1f ms median, max %.1f ms (n=%d) | < 100 ms |",
             statistics.median(in_page), in_page[-1], len(in_page))
    log.info("| slice scroll, keypress → new slice shown | %.0f ms median, p95 %.0f ms (n=%d) | < 100 ms |",
             statistics.median(frames_ms), p95, len(frames_ms))


if __name__ == "__main__":
    main()
