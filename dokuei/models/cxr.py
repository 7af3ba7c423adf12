"""Chest X-ray classifier backend: model card, preprocessing, weight loading, inference, saliency.

The model card (labels, operating thresholds, input size and value range) is data:
``knowledge/data/cxr_densenet121_res224_all.json``. Weights lie under
``$DOKUEI_WEIGHTS_DIR/<weights_dir>/<weights_file>`` and may be either torchxrayvision's released file
(a whole pickled model) or a plain state dict. The released file is read with a restricted unpickler
that accepts torch's own classes and stands in empty modules for torchxrayvision's (which is not
installed); only the tensors are kept.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dokuei.io.radiograph import Radiograph
from dokuei.knowledge import load_json


@dataclass(frozen=True)
class ModelCard:
    weights_id: str
    weights_file: str
    weights_dir: str
    labels: tuple[str, ...]
    labels_ja: tuple[str, ...]
    op_threshs: tuple[float, ...]
    size_px: int
    value_range: tuple[float, float]
    raw: dict[str, Any]


@cache
def model_card() -> ModelCard:
    raw = load_json("cxr_densenet121_res224_all.json")
    labels = raw["labels"]
    return ModelCard(
        weights_id=raw["weights_id"],
        weights_file=raw["weights_file"],
        weights_dir=raw["weights_dir"],
        labels=tuple(x["name"] for x in labels),
        labels_ja=tuple(x["ja"] for x in labels),
        op_threshs=tuple(float(x["op_thresh"]) for x in labels),
        size_px=int(raw["input"]["size_px"]),
        value_range=(float(raw["input"]["value_range"][0]), float(raw["input"]["value_range"][1])),
        raw=raw,
    )


def to_model_input(rad: Radiograph, size: int, value_range: tuple[float, float]) -> np.ndarray:
    """Centre square crop, antialiased resize to ``size``, [0, 1] → value_range; shape (1, 1, s, s)."""
    import torch
    import torch.nn.functional as F

    h, w = rad.pixels.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = torch.from_numpy(np.ascontiguousarray(rad.pixels[top : top + side, left : left + side]))[
        None, None
    ]
    resized = F.interpolate(square, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    lo, hi = value_range
    out = resized.clamp(0.0, 1.0) * (hi - lo) + lo
    return np.asarray(out.numpy(), dtype=np.float32)


# --- weights --------------------------------------------------------------------------------------

_SAFE_BUILTINS = {
    "set",
    "frozenset",
    "dict",
    "list",
    "tuple",
    "int",
    "float",
    "bool",
    "str",
    "bytes",
    "bytearray",
    "slice",
    "complex",
    "object",
}


def _restricted_pickle_module() -> Any:
    import torch

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            root = module.split(".")[0]
            if root == "torchxrayvision" or module in ("__main__", "models"):
                return type(name, (torch.nn.Module,), {"forward": lambda self, *a: None})
            if root in ("builtins", "__builtin__"):
                if name in _SAFE_BUILTINS:
                    return super().find_class(module, name)
            elif root in ("torch", "collections", "numpy", "_codecs"):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    class Module:
        pass

    mod = Module()
    mod.Unpickler = Unpickler  # type: ignore[attr-defined]
    mod.load = pickle.load  # type: ignore[attr-defined]
    mod.__name__ = "dokuei_restricted_pickle"  # type: ignore[attr-defined]
    return mod


def load_state_dict(path: Path) -> dict[str, Any]:
    """A state dict from a plain state-dict file or torchxrayvision's pickled model file."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        obj = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle_module()
        )
    if isinstance(obj, torch.nn.Module):
        for m in obj.modules():  # modules pickled by torch < 1.6 lack this attribute
            if not hasattr(m, "_non_persistent_buffers_set"):
                m._non_persistent_buffers_set = set()
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict or model ({type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items() if k != "op_threshs"}


def build_model(state: dict[str, Any] | None, num_classes: int, **arch: Any) -> Any:
    """DenseNet with the given weights loaded strictly (or random weights when ``state`` is None)."""
    from dokuei.models.densenet import DenseNet

    model = DenseNet(num_classes=num_classes, **arch)
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model.eval()


# --- inference ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # sigmoid per label
    normalized: np.ndarray  # op_norm: ≥ 0.5 means at/above the operating threshold
    saliency: np.ndarray | None  # (size, size) |d logit / d input| for the top label, scaled to [0, 1]


def predict(
    model: Any,
    x: np.ndarray,
    thresholds: tuple[float, ...],
    device: str = "cpu",
    saliency_for: int | None = None,
) -> Prediction:
    import torch

    from dokuei.models.densenet import op_norm

    tensor = torch.from_numpy(x).to(device)
    thr = torch.tensor(thresholds, dtype=torch.float32, device=device)
    if saliency_for is None:
        with torch.inference_mode():
            logits = model(tensor)
        sal = None
    else:
        tensor.requires_grad_(True)
        logits = model(tensor)
        logits[0, saliency_for].backward()
        assert tensor.grad is not None
        grad = tensor.grad.detach().abs()[0, 0]
        sal = (grad / grad.max().clamp_min(1e-12)).cpu().numpy()
        logits = logits.detach()
    probs = torch.sigmoid(logits)
    return Prediction(
        probabilities=probs[0].cpu().numpy(), normalized=op_norm(probs, thr)[0].cpu().numpy(), saliency=sal
    )


def save_overlay(x: np.ndarray, saliency: np.ndarray, out: Path, title: str) -> Path:
    from scipy.ndimage import gaussian_filter

    from dokuei.fonts import pyplot

    plt = pyplot()
    smooth = gaussian_filter(saliency, sigma=3)
    smooth = smooth / max(float(smooth.max()), 1e-12)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.imshow(x[0, 0], cmap="gray")
    ax.imshow(np.ma.masked_less(smooth, 0.3), cmap="jet", alpha=0.4, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def densenet_arch(state: dict[str, Any]) -> dict[str, Any]:
    """DenseNet hyper-parameters read off a state dict (densenet121 gives (6, 12, 24, 16), growth 32)."""
    import re

    blocks: dict[int, int] = {}
    for key in state:
        m = re.match(r"features\.denseblock(\d+)\.denselayer(\d+)\.", key)
        if m:
            blocks[int(m.group(1))] = max(blocks.get(int(m.group(1)), 0), int(m.group(2)))
    if not blocks:
        raise ValueError("not a DenseNet state dict (no features.denseblock*)")
    growth = int(state["features.denseblock1.denselayer1.conv2.weight"].shape[0])
    bottleneck = int(state["features.denseblock1.denselayer1.conv1.weight"].shape[0])
    return {
        "block_config": tuple(blocks[i] for i in sorted(blocks)),
        "growth_rate": growth,
        "bn_size": bottleneck // growth,
        "num_init_features": int(state["features.conv0.weight"].shape[0]),
        "in_channels": int(state["features.conv0.weight"].shape[1]),
    }
