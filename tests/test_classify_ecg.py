"""classify_ecg: the ECG model slot, on pydicom's real 12-lead waveform_ecg.dcm.

Data: ``waveform_ecg.dcm`` in pydicom (MIT package; a real anonymised 12-lead, 10 s, 1 kHz recording
distributed with pydicom's test files).

The model tests run on a tiny randomly initialised network of the real family (dokuei/models/resnet1d.py,
8 channels instead of 128) saved in the documented place with a made-up scaler: PLUMBING ONLY (loading,
resampling, windowing, label order, thresholds, provenance). Its probabilities mean nothing. Real weights
are exercised by the live_model test when installed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dokuei import testdata
from dokuei.io.ecg import load_ecg
from dokuei.settings import Settings
from dokuei.tools.analyze_ecg import AnalyzeEcg
from dokuei.tools.base import ToolStatus
from dokuei.tools.classify_ecg import ECG_PREPROCESSING, ECG_WEIGHTS, ClassifyEcg
from dokuei.tools.context import Attachment, ToolContext

WAVEFORM = testdata.pydicom_file("waveform_ecg.dcm")
TINY: dict[str, Any] = {"channels": 8, "head_hidden": (8,)}
ORDER = ["CD", "HYP", "MI", "NORM", "STTC"]  # the benchmark's MultiLabelBinarizer order (alphabetical)
#: a made-up scaler for the plumbing tests (a real one comes from the training run)
PREP: dict[str, Any] = {"mean_mv": 0.0, "std_mv": 0.25, "thresholds": {"MI": 0.31, "NORM": 0.62}}


def _install(root: Path, n_labels: int = 5, prep: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """Save a tiny random resnet1d in fastai's ``{"model": state_dict}`` form, and its preprocessing JSON."""
    import torch

    from dokuei.models.resnet1d import ResNet1d

    torch.manual_seed(seed)
    model = ResNet1d(n_labels, **TINY)
    with torch.no_grad():  # non-trivial BN statistics, so a wrong running_mean/var load would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d) and m.running_mean is not None and m.running_var is not None:
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        last = list(model.modules())[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.mul_(0.02)  # moderate logits: probabilities away from 0/1 make comparisons bite
    weights = root / ECG_WEIGHTS.relpath
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "opt": {}}, weights)
    (root / ECG_PREPROCESSING.relpath).write_text(json.dumps(PREP if prep is None else prep))
    return weights


def _tool(home: Path) -> ClassifyEcg:
    return ClassifyEcg(Settings.load(home=home, weights_dir=home / "weights", device="cpu"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> ClassifyEcg:
    home = tmp_path_factory.mktemp("home")
    tool = _tool(home)
    _install(tool.settings.weights_root)
    return tool


def test_unavailable_without_weights_names_the_exact_paths(tmp_path: Path) -> None:
    tool = _tool(tmp_path)
    result = tool({"ecg_path": str(WAVEFORM)})
    assert result.status is ToolStatus.UNAVAILABLE and result.output is None
    root = tool.settings.weights_root
    assert str(root / "ecg" / "ptbxl_superdiagnostic_resnet1d_wang.pth") in result.summary_ja
    assert str(root / "ecg" / "ptbxl_superdiagnostic_resnet1d_wang.json") in result.summary_ja
    assert "mean_mv" in result.summary_ja and "ダウンロードしません" in result.summary_ja


def test_listing_the_tool_does_not_import_torch() -> None:
    code = (
        "import sys; import dokuei.tools.classify_ecg as m; m.ClassifyEcg().availability(); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_plumbing_tiny_random_network_on_waveform_ecg(installed: ClassifyEcg) -> None:
    """PLUMBING: random weights in the documented place go through the whole tool path."""
    result = installed({"ecg_path": str(WAVEFORM)})
    assert result.status is ToolStatus.OK, result.error_detail
    out = result.output
    assert out is not None
    assert [s["label"] for s in out["scores"]] == ORDER
    assert [s["label_ja"] for s in out["scores"]][2] == "心筋梗塞"
    thresholds = {s["label"]: s["threshold"] for s in out["scores"]}
    assert thresholds == {"CD": 0.5, "HYP": 0.5, "MI": 0.31, "NORM": 0.62, "STTC": 0.5}  # file over card
    for s in out["scores"]:
        assert 0.0 <= s["probability"] <= 1.0
        assert s["positive"] == (s["probability"] >= s["threshold"]) or abs(s["probability"] - s["threshold"]) < 1e-3
    assert out["positive_labels"] == [s["label"] for s in out["scores"] if s["positive"]]
    assert out["thresholds_from_file"] == ["MI", "NORM"] and out["lvsd_available"] is False
    # 1 kHz file → 100 Hz model: 10 s = 1000 samples, 2.5 s windows every 1.25 s → starts 0, 125, …, 750
    assert out["source_sampling_rate_hz"] == 1000 and out["model_sampling_rate_hz"] == 100
    assert out["analysed_duration_s"] == 10.0 and out["window_count"] == 7
    assert out["warnings_ja"] == []
    weights = installed.settings.weights_root / ECG_WEIGHTS.relpath
    assert result.provenance.weights_sha256[ECG_WEIGHTS.id] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert ECG_PREPROCESSING.id in result.provenance.weights_sha256
    assert "左室収縮機能低下" in result.summary_ja and "診断ではありません" in result.summary_ja


def test_probabilities_are_the_max_over_windows_of_the_saved_network(installed: ClassifyEcg, tmp_path: Path) -> None:
    """The tool's numbers equal a forward pass of the saved file in plain torch (load + aggregation)."""
    import torch

    from dokuei.models.ecg_classifier import load_preprocessing, model_card, to_model_input
    from dokuei.models.resnet1d import ResNet1d

    root = installed.settings.weights_root
    net = ResNet1d(5, **TINY)
    net.load_state_dict(torch.load(root / ECG_WEIGHTS.relpath, weights_only=True)["model"])
    prep = load_preprocessing(root / ECG_PREPROCESSING.relpath, model_card())
    x = to_model_input(load_ecg(WAVEFORM), model_card(), prep)
    with torch.no_grad():
        expected = torch.sigmoid(net.eval()(torch.from_numpy(x.windows))).amax(dim=0).numpy()
    out = installed({"ecg_path": str(WAVEFORM)}).output
    assert out is not None
    np.testing.assert_allclose([s["probability"] for s in out["scores"]], expected, atol=5e-4)  # rounded to 3


def test_model_input_resampled_standardised_windowed(tmp_path: Path) -> None:
    """The 100 Hz input keeps the waveform: lead II's R-wave amplitude survives the anti-aliased decimation."""
    from dokuei.models.ecg_classifier import load_preprocessing, model_card, to_model_input

    card = model_card()
    record = load_ecg(WAVEFORM)
    tmp = tmp_path / "p.json"
    tmp.write_text(json.dumps(PREP))
    x = to_model_input(record, card, load_preprocessing(tmp, card))
    assert x.windows.shape == (7, 12, 250) and x.windows.dtype == np.float32 and x.resampled_from_hz == 1000
    ii = x.windows[0, 1] * PREP["std_mv"] + PREP["mean_mv"]  # back to mV, first 2.5 s of lead II
    raw = record.lead("II")[:2500]
    # QRS energy sits mostly below 40 Hz, under the 50 Hz Nyquist of 100 Hz, but a 10 ms sample grid can
    # straddle the sharp R peak: the peak-to-peak may shrink, by < 20 % (13 % measured here), never grow
    assert 0.8 * np.ptp(raw) < np.ptp(ii) <= 1.05 * np.ptp(raw)
    # window k starts 1.25 k s in: window 1's first half is window 0's second half
    np.testing.assert_array_equal(x.windows[1, :, :125], x.windows[0, :, 125:])


def test_other_sampling_rate_is_resampled_to_the_same_input(installed: ClassifyEcg, tmp_path: Path) -> None:
    """The same ECG stored at 500 Hz (CSV, µV) gives the model the same input, hence the same output."""
    from scipy.signal import resample_poly

    record = load_ecg(WAVEFORM)
    at500 = resample_poly(record.signals_mv, 1, 2, axis=1) * 1000.0  # µV
    csv = tmp_path / "ecg500.csv"
    rows = "\n".join(",".join(f"{v:.1f}" for v in col) for col in at500.T)
    csv.write_text("# sampling_rate_hz: 500\n# units: uV\n" + ",".join(record.leads) + "\n" + rows + "\n")
    a = installed({"ecg_path": str(WAVEFORM)})
    b = installed({"ecg_path": str(csv)})
    assert a.output is not None and b.output is not None, b.error_detail
    assert b.output["source_sampling_rate_hz"] == 500 and b.output["window_count"] == 7
    pa = np.array([s["probability"] for s in a.output["scores"]])
    pb = np.array([s["probability"] for s in b.output["scores"]])
    # two resampling paths (1000→100 vs 1000→500→100) differ only near the 50 Hz cut-off
    np.testing.assert_allclose(pa, pb, atol=0.005)


def test_one_lead_file_is_refused_in_japanese(installed: ClassifyEcg, tmp_path: Path) -> None:
    rec = load_ecg(WAVEFORM)
    path = tmp_path / "lead_v5.csv"
    path.write_text("# sampling_rate_hz: 1000\n# units: mV\nV5\n" + "\n".join(f"{v:.4f}" for v in rec.lead("V5")))
    result = installed({"ecg_path": str(path)})
    assert result.status is ToolStatus.FAILED and result.output is None
    assert "12 誘導が必要" in result.summary_ja and "V5" in result.summary_ja


def test_lvsd_output_when_the_weights_have_it(tmp_path: Path) -> None:
    tool = _tool(tmp_path)
    _install(tool.settings.weights_root, n_labels=6, prep={**PREP, "labels": [*ORDER, "LVSD"]})
    result = tool({"ecg_path": str(WAVEFORM)})
    assert result.status is ToolStatus.OK and result.output is not None, result.error_detail
    assert result.output["lvsd_available"] is True
    assert result.output["scores"][-1]["label_ja"] == "左室収縮機能低下（低左心機能）"
    assert "評価していません" not in result.summary_ja


@pytest.mark.parametrize(
    ("n_labels", "prep", "expected"),
    [
        (5, {"mean_mv": 0.0}, "前処理ファイル"),  # no std: the scaler is never assumed
        (6, PREP, "読み込めません"),  # 6 outputs but the file lists the 5 superclasses
        (5, {**PREP, "sampling_rate_hz": 250}, "前処理ファイル"),
    ],
)
def test_mismatched_install_is_unavailable(tmp_path: Path, n_labels: int, prep: dict[str, Any], expected: str) -> None:
    tool = _tool(tmp_path)
    _install(tool.settings.weights_root, n_labels=n_labels, prep=prep)
    result = tool({"ecg_path": str(WAVEFORM)})
    assert result.status is ToolStatus.UNAVAILABLE and expected in result.summary_ja


def test_state_dict_layout_of_resnet1d_wang() -> None:
    """The documented key layout, and the architecture read back off it."""
    from dokuei.models.ecg_classifier import resnet1d_arch
    from dokuei.models.resnet1d import resnet1d_wang

    state = resnet1d_wang(5).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["0.weight"] == (128, 12, 7) and shapes["3.0.conv1.weight"] == (128, 128, 5)
    assert shapes["3.0.conv2.weight"] == (128, 128, 3) and "3.0.downsample.0.weight" not in shapes
    assert shapes["4.0.downsample.0.weight"] == (128, 128, 1) and shapes["5.0.downsample.1.running_var"] == (128,)
    assert shapes["6.2.running_mean"] == (256,) and shapes["6.4.weight"] == (128, 256)
    assert shapes["6.6.weight"] == (128,) and shapes["6.8.weight"] == (5, 128)
    arch = resnet1d_arch(state, {"stride_stem": 1, "stride": 2})
    assert arch == {
        "in_channels": 12, "channels": 128, "kernel_stem": 7, "blocks": (1, 1, 1), "kernels": (5, 3),
        "pooling_stem": False, "stride_stem": 1, "stride": 2, "head_hidden": (128,), "n_labels": 5,
    }


def _ctx(question: str, ecg: bool = True) -> ToolContext:
    return ToolContext(question=question, attachments=[Attachment(WAVEFORM, "ecg")] if ecg else [])


@pytest.mark.parametrize(
    ("question", "routed"),
    [
        ("この心電図から左室収縮機能低下が疑われますか？", True),
        ("心電図のAI判定は？", True),
        ("心電図のＡＩ判定は？", True),  # full-width letters, NFKC
        ("この心電図の所見は？", False),  # plain question: analyze_ecg only (see the tool's docstring)
        ("QTc は？", False),
    ],
)
def test_routed_only_when_the_model_is_asked_for(tmp_path: Path, question: str, routed: bool) -> None:
    # the router decides from the tool's keywords; input_from_context only assembles the input
    from dokuei.agent.router import plan_deterministic
    from tests.routing_cases import NoSemantic

    tool = _tool(tmp_path)
    plan = plan_deterministic(_ctx(question), [tool], NoSemantic())
    assert (plan.calls != []) == routed
    built = tool.input_from_context(_ctx(question))
    assert built is not None and built.ecg_path == WAVEFORM
    assert tool.input_from_context(_ctx(question, ecg=False)) is None


def test_deterministic_planner_routes(tmp_path: Path) -> None:
    from dokuei.agent.router import plan_deterministic

    class NoSemantic:
        def scores(self, question: str, tools: list[Any]) -> dict[str, float]:
            return {}

    settings = Settings.load(home=tmp_path, device="cpu")
    tools: list[Any] = [AnalyzeEcg(settings), ClassifyEcg(settings)]
    plain = plan_deterministic(_ctx("この心電図の所見は？"), tools, NoSemantic())
    assert [c.name for c in plain.calls] == ["analyze_ecg"]
    lvsd = plan_deterministic(_ctx("この心電図から左室収縮機能低下が疑われますか？"), tools, NoSemantic())
    assert {c.name for c in lvsd.calls} == {"analyze_ecg", "classify_ecg"}


@pytest.mark.live_model
def test_real_weights_on_waveform_ecg() -> None:
    settings = Settings.load()
    missing = [s.relpath for s in (ECG_WEIGHTS, ECG_PREPROCESSING) if not (settings.weights_root / s.relpath).exists()]
    if missing:
        pytest.skip(f"real ECG weights not installed under {settings.weights_root}: {', '.join(missing)}")
    result = ClassifyEcg(settings)({"ecg_path": str(WAVEFORM)})
    assert result.status is ToolStatus.OK and result.output is not None, result.summary_ja
    assert {s["label"] for s in result.output["scores"]} >= set(ORDER)
