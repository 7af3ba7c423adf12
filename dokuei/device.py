"""Device probes: is there a GPU, does torch see it. Neither imports torch unless it is installed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path


def importable(module: str) -> bool:
    """True when ``module`` can be imported (found on the path), without importing it."""
    return importlib.util.find_spec(module) is not None


def gpu_present() -> bool:
    """Cheap check for an NVIDIA GPU without importing torch (used when listing tools)."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def cuda_available() -> bool:
    """True when torch is installed and sees a GPU. Imports torch only if it is installed."""
    if not importable("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())
