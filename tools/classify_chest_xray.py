"""classify_chest_xray: per-pathology probabilities from torchxrayvision's DenseNet-121 (res224, "all")."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from dokuei.tools.base import Artifact, Outcome, Requirements, Tool, ToolUnavailableError
from dokuei.tools.context import ToolContext
from dokuei.weights import WeightSpec

log = logging.getLogger(__name__)

_WEIGHTS_FILE = (
    "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
)
XRV_ALL = WeightSpec(
    id="xrv-densenet121-res224-all",
    version="1",
    relpath=f"torchxrayvision/{_WEIGHTS_FILE}",
    sha256=None,
    licence="Apache-2.0",
    source=f"https://github.com/mlmed/torchxrayvision/releases/download/v1/{_WEIGHTS_FILE}",
    install_ja=(
        "インターネットに接続できる端末で torchxrayvision の densenet121-res224-all の重み "
        f"（{_WEIGHTS_FILE}、GitHub mlmed/torchxrayvision の releases v1）を取得し、"
        "$DOKUEI_WEIGHTS_DIR/torchxrayvision/ に置いてください"
        "（~/.torchxrayvision/models_data/ にあればそれを複写）。"
    ),
)


class ClassifyChestXrayInput(BaseModel):
    image_path: Path = Field(description="chest radiograph: DICOM CR/DX, PNG or JPEG")
    saliency: bool = Field(default=False, description="also write a saliency overlay for the top finding")


class PathologyScore(BaseModel):
    label: str = Field(description="torchxrayvision label name")
    label_ja: str = Field(description="label in Japanese")
    probability: float = Field(description="model sigmoid output, 0–1 (not a calibrated risk)")
    threshold: float = Field(description="the model's operating threshold for this label (model card)")
    normalized_score: float = Field(description="op-normalised score: 0.5 at the threshold, above = positive")
    positive: bool = Field(description="probability ≥ threshold")


class ClassifyChestXrayOutput(BaseModel):
    model_id: str = Field(description="weights id from the model card")
    view_position: str = Field(description="PA, AP, LATERAL or UNKNOWN (from DICOM ViewPosition)")
    photometric: str = Field(description="DICOM photometric interpretation of the source")
    inverted: bool = Field(description="MONOCHROME1 was inverted so that bone is bright")
    flips: list[str] = Field(description="flips applied to reach the standard display orientation")
    input_size_px: int = Field(description="model input side, pixels")
    scores: list[PathologyScore] = Field(description="every label of the model, in model order")
    positive_labels: list[str] = Field(description="labels at or above their operating threshold")
    warnings_ja: list[str] = Field(description="limits of this result (lateral view, unknown view, …)")


class ClassifyChestXray(Tool[ClassifyChestXrayInput]):
    name: ClassVar[str] = "classify_chest_xray"
    title_ja: ClassVar[str] = "胸部X線分類"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "胸部 X 線写真（DICOM CR/DX、PNG、JPEG）から、心拡大・胸水・肺水腫・浸潤影・気胸など 18 所見の確率を"
        "torchxrayvision の DenseNet-121 で推定し、モデルの動作点（閾値）と比べて陽性の所見を挙げる。"
        "正面像（PA/AP）向け。CT や心電図、検査値の質問には使わない。読影の補助であり診断ではない。"
    )
    description_en: ClassVar[str] = (
        "Estimates probabilities of 18 findings (cardiomegaly, effusion, edema, consolidation, "
        "pneumothorax …) on a frontal chest radiograph (DICOM CR/DX, PNG, JPEG) with torchxrayvision's "
        "DenseNet-121 and flags those above the model's operating thresholds. Not for CT, ECG or lab "
        "values; an aid, not a diagnosis."
    )
    Input: ClassVar[type[BaseModel]] = ClassifyChestXrayInput
    Output: ClassVar[type[BaseModel]] = ClassifyChestXrayOutput
    heavy: ClassVar[bool] = True  # runs in a worker process, killed at the timeout
    requires: ClassVar[Requirements] = Requirements(
        device="cuda_preferred",
        min_vram_gb=1.0,
        weights=(XRV_ALL,),
        licence="Apache-2.0 (torchxrayvision weights and method)",
        python_packages=("torch",),
    )
    keywords_ja: ClassVar[tuple[str, ...]] = (
        "胸部X線",
        "胸部 X 線",
        "胸部レントゲン",
        "レントゲン",
        "胸写",
        "X線",
        "心拡大",
        "胸水",
        "肺うっ血",
        "肺水腫",
        "気胸",
        "肺炎",
        "CXR",
    )
    keywords_en: ClassVar[tuple[str, ...]] = (
        "chest x-ray", "chest radiograph", "CXR", "cardiomegaly", "pleural effusion", "pneumothorax", "edema",
    )
    attachment_kinds: ClassVar[tuple[str, ...]] = ("chest_xray",)
    runs_on_attachment: ClassVar[bool] = True
    needs_ja: ClassVar[str] = "胸部 X 線画像（DICOM または PNG/JPEG）を添付してください。"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: Any = None

    def input_from_context(self, ctx: ToolContext) -> ClassifyChestXrayInput | None:
        images = ctx.of_kind("chest_xray")
        if not images:
            return None
        return ClassifyChestXrayInput(image_path=images[0].path)

    def setup(self) -> None:
        from dokuei.models.cxr import build_model, densenet_arch, load_state_dict, model_card

        path = self.settings.weights_root / XRV_ALL.relpath
        try:
            state = load_state_dict(path)
            self.model = build_model(state, len(model_card().labels), **densenet_arch(state)).to(self.device)
        except Exception as exc:
            raise ToolUnavailableError(
                f"胸部 X 線モデルの重み {path.name} を読み込めません（壊れているか別のモデルです）。"
                + XRV_ALL.install_ja,
                f"{path}: {exc}",
            ) from exc

    def run(self, inp: ClassifyChestXrayInput) -> Outcome:
        from dokuei.io.radiograph import load_radiograph
        from dokuei.models.cxr import model_card, predict, save_overlay, to_model_input

        card = model_card()
        rad = load_radiograph(inp.image_path)
        warnings_ja = []
        if rad.view_position == "LATERAL":
            warnings_ja.append(
                "側面像です。このモデルは正面像（PA/AP）で学習されており、側面像の結果は信頼できません。"
            )
        elif rad.view_position == "UNKNOWN":
            warnings_ja.append("撮影方向（PA/AP）が画像から分かりません。正面像として解析しました。")
        elif rad.view_position == "AP":
            warnings_ja.append(
                "AP 像です。AP 像では心陰影が拡大して写るため、心拡大の判定に注意してください。"
            )
        x = to_model_input(rad, card.size_px, card.value_range)
        thresholds = card.op_threshs
        prelim = predict(self.model, x, thresholds, self.device)
        top = int(prelim.normalized.argmax())
        pred = predict(self.model, x, thresholds, self.device, saliency_for=top) if inp.saliency else prelim
        scores = [
            PathologyScore(
                label=lab,
                label_ja=ja,
                probability=round(float(p), 3),
                threshold=round(t, 3),
                normalized_score=round(float(n), 3),
                positive=bool(p >= t),
            )
            for lab, ja, p, t, n in zip(
                card.labels, card.labels_ja, pred.probabilities, thresholds, pred.normalized, strict=True
            )
        ]
        out = ClassifyChestXrayOutput(
            model_id=card.weights_id,
            view_position=rad.view_position,
            photometric=rad.photometric,
            inverted=rad.inverted,
            flips=list(rad.flips),
            input_size_px=card.size_px,
            scores=scores,
            positive_labels=[s.label for s in scores if s.positive],
            warnings_ja=warnings_ja,
        )
        artifacts = []
        if inp.saliency and pred.saliency is not None:
            png = save_overlay(
                x,
                pred.saliency,
                self.artifact_dir(inp) / "saliency.png",
                f"寄与領域: {card.labels_ja[top]}",
            )
            artifacts.append(
                Artifact(
                    path=str(png),
                    kind="image",
                    caption_ja=f"「{card.labels_ja[top]}」の判断に寄与した領域（勾配の大きさ）",
                )
            )
        return Outcome(
            output=out, summary_ja=summarize(out), artifacts=artifacts, model_version=card.weights_id
        )


def summarize(out: ClassifyChestXrayOutput) -> str:
    view = {"PA": "正面 PA 像", "AP": "正面 AP 像", "LATERAL": "側面像", "UNKNOWN": "撮影方向不明"}[
        out.view_position
    ]
    positives = sorted((s for s in out.scores if s.positive), key=lambda s: -s.normalized_score)
    if positives:
        listed = "、".join(f"{s.label_ja}（確率 {s.probability}、閾値 {s.threshold}）" for s in positives)
        text = f"胸部 X 線（{view}）: モデルの動作点を超えた所見は {listed}。"
    else:
        text = f"胸部 X 線（{view}）: モデルの動作点を超えた所見はありません。"
    text += "AI モデル（torchxrayvision の DenseNet）の推定であり、読影医の判断に代わるものではありません。"
    if out.warnings_ja:
        text += " 注意: " + " ".join(out.warnings_ja)
    return text
