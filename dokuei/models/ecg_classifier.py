"""ECG classifier backend: model card, the preprocessing file beside the weights, input tensors, inference.

The model card (labels with Japanese names, default thresholds, input conventions) is data:
``knowledge/data/ecg_ptbxl_superdiagnostic.json``. The user installs two files under
``$DOKUEI_WEIGHTS_DIR/ecg/``: the weights (a state dict; the benchmark's fastai ``{"model": ...}`` file
also loads) and a preprocessing JSON that belongs to those weights::

    {"mean_mv": -0.0018, "std_mv": 0.16,          # the training set's standard scaler (required)
     "sampling_rate_hz": 100,                     # 100 or 500 (optional; card default 100)
     "labels": ["CD", "HYP", "MI", "NORM", "STTC"],  # output order (optional; card default)
     "thresholds": {"MI": 0.31, ...}}             # operating points (optional; card default 0.5)

The scaler values are never assumed: without them the model's inputs would be on the wrong scale and
its outputs meaningless. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.io.ecg import EcgRecord
from dokuei.knowledge import load_json


@dataclass(frozen=True)
class LabelDef:
    name: str
    ja: str
    threshold: float
    optional: bool


@dataclass(frozen=True)
class ModelCard:
    weights_id: str
    weights_dir: str
    weights_file: str
    preprocessing_file: str
    sampling_rate_hz: float
    allowed_rates_hz: tuple[float, ...]
    record_s: float
    window_s: float
    stride_s: float
    aggregate: str
    leads: tuple[str, ...]
    output_order: tuple[str, ...]
    labels: dict[str, LabelDef]
    architecture: dict[str, Any]
    raw: dict[str, Any]


@cache
def model_card() -> ModelCard:
    raw = load_json("ecg_ptbxl_superdiagnostic.json")
    inp = raw["input"]
    return ModelCard(
        weights_id=raw["weights_id"],
        weights_dir=raw["weights_dir"],
        weights_file=raw["weights_file"],
        preprocessing_file=raw["preprocessing_file"],
        sampling_rate_hz=float(inp["sampling_rate_hz"]),
        allowed_rates_hz=tuple(float(x) for x in inp["allowed_sampling_rates_hz"]),
        record_s=float(inp["record_s"]),
        window_s=float(inp["window_s"]),
        stride_s=float(inp["stride_s"]),
        aggregate=str(inp["aggregate"]),
        leads=tuple(inp["leads"]),
        output_order=tuple(raw["output_order"]),
        labels={
            x["name"]: LabelDef(x["name"], x["ja"], float(x["threshold"]), bool(x.get("optional", False)))
            for x in raw["labels"]
        },
        architecture=dict(raw["architecture"]),
        raw=raw,
    )


@dataclass(frozen=True)
class Preprocessing:
    """What belongs to one set of trained weights: scaler, rate, output order, thresholds."""

    mean_mv: float
    std_mv: float
    sampling_rate_hz: float
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    thresholds_from_file: tuple[str, ...]


def load_preprocessing(path: Path, card: ModelCard) -> Preprocessing:
    """Read and check the preprocessing JSON; ValueError (English detail) if it is unusable."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    try:
        mean, std = float(raw["mean_mv"]), float(raw["std_mv"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: mean_mv and std_mv (the training set's scaler, mV) are required") from exc
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise ValueError(f"{path}: mean_mv={mean}, std_mv={std} are not a usable scaler")
    fs = float(raw.get("sampling_rate_hz", card.sampling_rate_hz))
    if fs not in card.allowed_rates_hz:
        raise ValueError(f"{path}: sampling_rate_hz {fs} not in {card.allowed_rates_hz}")
    labels = tuple(str(x) for x in raw.get("labels", card.output_order))
    unknown = [x for x in labels if x not in card.labels]
    if unknown or len(set(labels)) != len(labels):
        raise ValueError(f"{path}: labels {labels} must be distinct names from the model card ({unknown})")
    missing = [x for x in card.output_order if x not in labels]
    if missing:
        raise ValueError(f"{path}: labels lack the required superclasses {missing}")
    given = raw.get("thresholds", {})
    if not isinstance(given, dict) or any(k not in labels for k in given):
        raise ValueError(f"{path}: thresholds must map output labels to probabilities")
    thresholds = tuple(float(given.get(x, card.labels[x].threshold)) for x in labels)
    if not all(0.0 < t < 1.0 for t in thresholds):
        raise ValueError(f"{path}: thresholds must lie strictly between 0 and 1: {thresholds}")
    return Preprocessing(mean, std, fs, labels, thresholds, tuple(k for k in labels if k in given))


# --- input ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInput:
    windows: np.ndarray  # (n_windows, leads, window samples), standardised, float32
    used_s: float  # seconds of the record fed to the model
    resampled_from_hz: float | None  # the file's rate when it differs from the model's


def to_model_input(record: EcgRecord, card: ModelCard, prep: Preprocessing) -> ModelInput:
    """Leads in the card's order, resampled to the model rate, cut to record_s, standardised, windowed."""
    from scipy.signal import resample_poly

    signals = np.vstack([record.lead(name) for name in card.leads])
    fs_in, fs_out = record.sampling_rate_hz, prep.sampling_rate_hz
    resampled_from: float | None = None
    if abs(fs_in - fs_out) > 1e-6:
        ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
        signals = resample_poly(signals, ratio.numerator, ratio.denominator, axis=1)
        resampled_from = fs_in
    signals = signals[:, : round(card.record_s * fs_out)]
    window, stride = round(card.window_s * fs_out), round(card.stride_s * fs_out)
    n = signals.shape[1]
    if n < window:
        raise ValueError(f"{n} samples at {fs_out} Hz, the model needs at least {window}")
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] + window < n:  # cover the end of the record too
        starts.append(n - window)
    scaled = (signals - prep.mean_mv) / prep.std_mv
    windows = np.stack([scaled[:, s : s + window] for s in starts]).astype(np.float32)
    return ModelInput(windows=windows, used_s=n / fs_out, resampled_from_hz=resampled_from)


# --- weights --------------------------------------------------------------------------------------


def load_state_dict(path: Path) -> dict[str, Any]:
    """A plain state dict, or one under "model" (fastai learn.save) or "state_dict"; tensors only."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict ({type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def resnet1d_arch(state: dict[str, Any], card_arch: dict[str, Any]) -> dict[str, Any]:
    """ResNet1d hyper-parameters read off a state dict (strides and stem pooling from the card)."""
    if "0.weight" not in state or state["0.weight"].ndim != 3:
        raise ValueError("not a resnet1d state dict (no Conv1d stem at '0.weight')")
    stem = state["0.weight"]
    stages: dict[int, int] = {}
    for key in state:
        m = re.match(r"(\d+)\.(\d+)\.conv1\.weight$", key)
        if m:
            stages[int(m.group(1))] = max(stages.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    if not stages:
        raise ValueError("not a resnet1d state dict (no residual blocks)")
    first = min(stages)
    head = max(int(k.split(".")[0]) for k in state)
    linears = sorted(
        (int(k.split(".")[1]), v) for k, v in state.items() if re.match(rf"{head}\.\d+\.weight$", k) and v.ndim == 2
    )
    if not linears:
        raise ValueError("not a resnet1d state dict (no linear head)")
    return {
        "in_channels": int(stem.shape[1]),
        "channels": int(stem.shape[0]),
        "kernel_stem": int(stem.shape[2]),
        "blocks": tuple(stages[i] for i in sorted(stages)),
        "kernels": (int(state[f"{first}.0.conv1.weight"].shape[2]), int(state[f"{first}.0.conv2.weight"].shape[2])),
        "pooling_stem": first == 4,
        "stride_stem": int(card_arch.get("stride_stem", 1)),
        "stride": int(card_arch.get("stride", 2)),
        "head_hidden": tuple(int(w.shape[0]) for _, w in linears[:-1]),
        "n_labels": int(linears[-1][1].shape[0]),
    }


def build_model(state: dict[str, Any] | None, **arch: Any) -> Any:
    """ResNet1d with the weights loaded strictly (random weights when ``state`` is None), in eval mode."""
    from dokuei.models.resnet1d import ResNet1d

    model = ResNet1d(**arch)
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model.eval()


# --- inference ------------------------------------------------------------------------------------


def predict(model: Any, windows: np.ndarray, device: str = "cpu", aggregate: str = "max") -> np.ndarray:
    """Sigmoid probabilities per window, aggregated over windows (max or mean): shape (n_labels,)."""
    import torch

    with torch.inference_mode():
        probs = torch.sigmoid(model(torch.from_numpy(windows).to(device))).cpu().numpy()
    out = probs.max(axis=0) if aggregate == "max" else probs.mean(axis=0)
    return np.asarray(out, dtype=np.float64)
