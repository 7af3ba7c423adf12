"""Bench: analyze_ecg per 10 s 12-lead record, chest X-ray preprocessing + DenseNet-121 inference per image.

    PYTHONPATH=$PWD python bench/bench_ecg_cxr.py [--device cpu|cuda] [--repeat 10]

ECG: pydicom's waveform_ecg.dcm (12 leads, 10 s, 1 kHz), full analysis (read, clean, detect, delineate,
axes) without the plot, then the plot alone. Chest X-ray: RG1_UNCI.dcm (1955×1841 CR) read + windowed +
resized to 224², then one forward pass of a DenseNet-121 with RANDOM weights of the real shape
(speed figures only: the outputs mean nothing). classify_ecg: waveform_ecg.dcm read + resampled to
100 Hz + cut into 7 windows of 2.5 s, then one batched forward pass of resnet1d_wang (128 channels,
5 labels) with RANDOM weights of the real shape (speed only).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from dokuei import testdata

log = logging.getLogger("bench_ecg_cxr")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from dokuei.io.ecg import load_ecg
    from dokuei.signals.ecg_measure import analyze_record
    from dokuei.signals.ecg_plot import plot_ecg

    ecg_path = testdata.pydicom_file("waveform_ecg.dcm")
    med, best = timed(lambda: analyze_record(load_ecg(ecg_path)), args.repeat)
    log.info(
        "analyze_ecg, 10 s 12-lead @1 kHz (read + measure), CPU: median %.3f s, min %.3f s (target < 1 s)",
        med,
        best,
    )
    rec = load_ecg(ecg_path)
    a = analyze_record(rec)
    with TemporaryDirectory() as tmp:
        med, best = timed(
            lambda: plot_ecg(rec, a.r_peaks, a.beat_types, Path(tmp) / "p.png"), max(3, args.repeat // 3)
        )
    log.info("analyze_ecg 12-lead plot (matplotlib Agg, 150 dpi), CPU: median %.3f s, min %.3f s", med, best)

    bench_classify_ecg(ecg_path, args.device, args.repeat)

    import torch

    from dokuei.io.radiograph import load_radiograph
    from dokuei.models.cxr import model_card, predict, to_model_input
    from dokuei.models.densenet import DenseNet

    cxr_path = testdata.path("RG1_UNCI.dcm")
    if not cxr_path.exists():
        log.info("RG1_UNCI.dcm missing: run python -m dokuei.testdata")
        return
    card = model_card()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        log.info("CUDA not available; skipping --device cuda")
        return
    torch.manual_seed(0)
    model = DenseNet(num_classes=len(card.labels)).eval().to(device)  # RANDOM weights: speed only
    med, best = timed(
        lambda: to_model_input(load_radiograph(cxr_path), card.size_px, card.value_range), args.repeat
    )
    log.info(
        "chest X-ray preprocessing (read DICOM 1955x1841, window, invert, resize 224), CPU: median %.3f s, "
        "min %.3f s",
        med,
        best,
    )
    x = to_model_input(load_radiograph(cxr_path), card.size_px, card.value_range)

    def infer() -> object:
        out = predict(model, x, card.op_threshs, device)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    med, best = timed(infer, args.repeat)
    log.info(
        "DenseNet-121 inference, 1 image 224², RANDOM weights of the real shape, %s (%d threads): "
        "median %.3f s, min %.3f s",
        device,
        torch.get_num_threads(),
        med,
        best,
    )
    med, best = timed(
        lambda: predict(model, x, card.op_threshs, device, saliency_for=10), max(3, args.repeat // 3)
    )
    log.info("DenseNet-121 inference + saliency (backward), %s: median %.3f s, min %.3f s", device, med, best)


def bench_classify_ecg(ecg_path: Path, device: str, repeat: int) -> None:
    import json

    import torch

    from dokuei.io.ecg import load_ecg
    from dokuei.models.ecg_classifier import load_preprocessing, model_card, predict, to_model_input
    from dokuei.models.resnet1d import resnet1d_wang

    if device == "cuda" and not torch.cuda.is_available():
        log.info("CUDA not available; skipping classify_ecg on cuda")
        return
    card = model_card()
    with TemporaryDirectory() as tmp:
        prep_path = Path(tmp) / "prep.json"
        prep_path.write_text(json.dumps({"mean_mv": 0.0, "std_mv": 0.25}))  # made-up scaler: speed only
        prep = load_preprocessing(prep_path, card)
    med, best = timed(lambda: to_model_input(load_ecg(ecg_path), card, prep), repeat)
    log.info(
        "classify_ecg preprocessing (read 12-lead 1 kHz, resample to 100 Hz, 7 windows), CPU: median %.4f s, "
        "min %.4f s",
        med,
        best,
    )
    x = to_model_input(load_ecg(ecg_path), card, prep)
    torch.manual_seed(0)
    model = resnet1d_wang(len(card.output_order)).eval().to(device)  # RANDOM weights: speed only
    n_params = sum(p.numel() for p in model.parameters())

    def infer() -> object:
        out = predict(model, x.windows, device, card.aggregate)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    med, best = timed(infer, repeat)
    log.info(
        "classify_ecg inference, resnet1d_wang (%d parameters), RANDOM weights of the real shape, 1 record = "
        "%d windows, %s (%d threads): median %.4f s, min %.4f s",
        n_params,
        x.windows.shape[0],
        device,
        torch.get_num_threads(),
        med,
        best,
    )


if __name__ == "__main__":
    main()
