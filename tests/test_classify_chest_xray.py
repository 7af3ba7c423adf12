"""classify_chest_xray: the real PA radiograph RG1_UNCI.dcm through preprocessing, and the classifier path.

Data: RG1_UNCI.dcm from pydicom-data 1.0.0 (MIT package; a real anonymised CR PA chest radiograph from the
public DICOM test sets), fetched by ``python -m dokuei.testdata``.

The classifier tests run on a tiny randomly initialised DenseNet built here: PLUMBING ONLY (loading from
the weights dir, label order, thresholds, saliency). Its probabilities mean nothing. The real
``densenet121-res224-all`` weights are exercised by the live_model test when installed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dokuei import testdata
from dokuei.io.radiograph import load_radiograph, looks_like_chest_xray
from dokuei.settings import Settings
from dokuei.tools.base import ToolStatus
from dokuei.tools.classify_chest_xray import XRV_ALL, ClassifyChestXray

RG1 = testdata.path("RG1_UNCI.dcm")
needs_rg1 = pytest.mark.skipif(not RG1.exists(), reason="run python -m dokuei.testdata to fetch pydicom-data")
TINY: dict[str, Any] = {"block_config": (1, 1), "growth_rate": 4, "num_init_features": 8, "bn_size": 2}


def _tiny_state() -> dict[str, object]:
    import torch

    from dokuei.models.densenet import DenseNet

    torch.manual_seed(0)
    return dict(DenseNet(num_classes=18, **TINY).state_dict())


def _tool(home: Path, weights: Path | None = None) -> ClassifyChestXray:
    settings = Settings.load(home=home, weights_dir=weights or home / "weights", device="cpu")
    return ClassifyChestXray(settings)


@needs_rg1
def test_rg1_photometric_orientation_and_view() -> None:
    rad = load_radiograph(RG1)
    assert rad.photometric == "MONOCHROME1" and rad.inverted  # stored dark-is-dense: inverted for display
    assert rad.view_position == "PA" and rad.flips == ()  # PatientOrientation L\F is already standard
    assert rad.pixels.shape == (1955, 1841) and rad.pixels.dtype == np.float32
    h, w = rad.pixels.shape
    lungs = rad.pixels[int(0.3 * h) : int(0.6 * h)]
    spine = lungs[:, int(0.47 * w) : int(0.53 * w)].mean()
    lung_fields = np.r_[
        lungs[:, int(0.2 * w) : int(0.35 * w)].ravel(), lungs[:, int(0.65 * w) : int(0.8 * w)].ravel()
    ]
    assert spine > lung_fields.mean() + 0.1  # after inversion bone/mediastinum is bright, aerated lung dark
    lower = rad.pixels[int(0.6 * h) : int(0.75 * h)]
    # the heart lies to the viewer's right on a standard PA display (patient's left)
    assert lower[:, int(0.55 * w) : int(0.7 * w)].mean() > lower[:, int(0.3 * w) : int(0.45 * w)].mean()
    assert looks_like_chest_xray(RG1)


@needs_rg1
def test_model_input_tensor() -> None:
    from dokuei.models.cxr import model_card, to_model_input

    card = model_card()
    assert len(card.labels) == 18 and card.labels[10] == "Cardiomegaly" and card.size_px == 224
    x = to_model_input(load_radiograph(RG1), card.size_px, card.value_range)
    assert x.shape == (1, 1, 224, 224) and x.dtype == np.float32
    assert -1024 <= x.min() < -900 and 900 < x.max() <= 1024  # windowed image spans the model's range


def test_ct_slice_is_not_a_chest_xray() -> None:
    ct = testdata.path("693_UNCI.dcm")
    if not ct.exists():
        pytest.skip("pydicom-data not fetched")
    assert not looks_like_chest_xray(ct)


def test_screenshot_with_text_is_refused(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("L", (800, 600), 255)
    draw = ImageDraw.Draw(img)
    for i in range(20):
        draw.text((20, 20 + 28 * i), f"Patient 12345 胸部 X-ray report line {i}", fill=0)
    draw.rectangle((500, 300, 760, 560), fill=128)
    path = tmp_path / "screenshot.png"
    img.save(path)
    assert not looks_like_chest_xray(path)
    tool = _tool(tmp_path)
    weights = tool.settings.weights_root / XRV_ALL.relpath
    weights.parent.mkdir(parents=True)
    import torch

    torch.save(_tiny_state(), weights)
    result = tool({"image_path": str(path)})
    assert result.status is ToolStatus.FAILED and "スクリーンショット" in result.summary_ja


def test_unavailable_without_weights(tmp_path: Path) -> None:
    result = _tool(tmp_path)({"image_path": str(RG1)})
    assert result.status is ToolStatus.UNAVAILABLE
    assert "torchxrayvision" in result.summary_ja and XRV_ALL.id in result.summary_ja


@needs_rg1
def test_classifier_plumbing_tiny_random_network(tmp_path: Path) -> None:
    """PLUMBING: random tiny weights in the documented place go through the full tool path."""
    import torch

    tool = _tool(tmp_path)
    weights = tool.settings.weights_root / XRV_ALL.relpath
    weights.parent.mkdir(parents=True)
    torch.save(_tiny_state(), weights)
    result = tool({"image_path": str(RG1), "saliency": True})
    assert result.status is ToolStatus.OK, result.error_detail
    out = result.output
    assert out is not None
    assert [s["label"] for s in out["scores"]][:3] == ["Atelectasis", "Consolidation", "Infiltration"]
    for s in out["scores"]:
        assert 0 <= s["probability"] <= 1 and 0 <= s["normalized_score"] <= 1
        assert (
            s["positive"] == (s["probability"] >= s["threshold"])
            or abs(s["probability"] - s["threshold"]) < 1e-3
        )
    assert out["view_position"] == "PA" and out["warnings_ja"] == []
    assert Path(result.artifacts[0].path).exists()
    assert result.provenance.weights_sha256[XRV_ALL.id]


def test_torchxrayvision_pickled_model_file_loads(tmp_path: Path) -> None:
    """torchxrayvision releases whole pickled models; they load without torchxrayvision installed."""
    import torch

    from dokuei.models import densenet
    from dokuei.models.cxr import densenet_arch, load_state_dict

    fake = types.ModuleType("torchxrayvision.models")
    classes = {}
    for name in ("DenseNet", "_DenseLayer", "_DenseBlock", "_Transition"):
        cls = type(name, (getattr(densenet, name),), {"__module__": "torchxrayvision.models"})
        setattr(fake, name, cls)
        classes[name] = cls
    model = densenet.DenseNet(num_classes=18, **TINY)
    for module in model.modules():  # re-label every module as torchxrayvision's class of the same name
        if type(module).__name__ in classes:
            module.__class__ = classes[type(module).__name__]
    sys.modules["torchxrayvision"] = types.ModuleType("torchxrayvision")
    sys.modules["torchxrayvision.models"] = fake
    try:
        torch.save(model, tmp_path / "xrv.pt")
    finally:
        del sys.modules["torchxrayvision.models"], sys.modules["torchxrayvision"]
    state = load_state_dict(tmp_path / "xrv.pt")
    assert densenet_arch(state)["block_config"] == (1, 1)
    assert torch.equal(state["classifier.weight"], model.state_dict()["classifier.weight"])


def test_densenet121_keys_match_torchxrayvision_layout() -> None:
    from dokuei.models.densenet import DenseNet

    keys = DenseNet(num_classes=18).state_dict().keys()
    # names and count of torchxrayvision's densenet121 (torchvision layout): 2 convs per dense layer
    assert "features.denseblock4.denselayer16.conv2.weight" in keys and "features.norm5.running_var" in keys
    assert sum(k.endswith("conv1.weight") or k.endswith("conv2.weight") for k in keys) == 2 * (
        6 + 12 + 24 + 16
    )
    assert "classifier.weight" in keys


@pytest.mark.live_model
def test_real_weights_on_rg1() -> None:
    settings = Settings.load()
    if not (settings.weights_root / XRV_ALL.relpath).exists() or not RG1.exists():
        pytest.skip(f"real weights not installed at {settings.weights_root / XRV_ALL.relpath}")
    result = ClassifyChestXray(settings)({"image_path": str(RG1)})
    assert result.status is ToolStatus.OK and result.output is not None
    assert len(result.output["scores"]) == 18
