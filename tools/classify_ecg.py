"""classify_ecg: per-label probabilities from a 12-lead ECG with a 1-D CNN whose weights the user installs.

The slot holds a ``resnet1d_wang``-family network (dokuei/models/resnet1d.py) trained on PTB-XL's five
diagnostic superclasses (NORM, MI, STTC, CD, HYP), optionally with a sixth output for LV systolic
dysfunction (LVSD) when the user's weights were trained for it. Labels, default thresholds and input
conventions are the model card ``knowledge/data/ecg_ptbxl_superdiagnostic.json``; the scaler, rate, output
order and operating points of the installed weights are in the preprocessing JSON beside them. Without
both files the tool is ``unavailable`` and says where to put them; it never guesses an output.

Routing: a question reaches this tool only when it asks for a model's judgement or for what only a model
can estimate from an ECG (AI 判定, 左室収縮機能低下, 心筋梗塞, …: ``keywords_ja``), and an ECG is attached.
A plain 「この心電図の所見は？」 goes to ``analyze_ecg`` alone: its measurements come from the samples and
always run, while this slot is often empty on a site without installed weights, and adding an
"unavailable" line to every ordinary ECG question would be noise a clinician learns to ignore. Asked
explicitly, the tool answers even when empty (with the install instructions), which is honest and wanted.
"""

from __future__ import annotations

import logging
import unicodedata
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from dokuei.models.ecg_classifier import model_card
from dokuei.tools.base import Outcome, Requirements, Tool, ToolInputError, ToolUnavailableError
from dokuei.tools.context import ToolContext
from dokuei.weights import WeightSpec

log = logging.getLogger(__name__)

_CARD = model_card()
_WEIGHTS_REL = f"{_CARD.weights_dir}/{_CARD.weights_file}"
_PREP_REL = f"{_CARD.weights_dir}/{_CARD.preprocessing_file}"
_WEIGHTS_INSTALL_JA = (
    "PTB-XL の診断スーパークラス（NORM/MI/STTC/CD/HYP）で学習した resnet1d_wang 型 1 次元 CNN の重み"
    "（state dict。ecg_ptbxl_benchmarking の fastai 保存形式も可）を利用者が用意して置いてください"
    "（重みは自動ではダウンロードしません）。左室収縮機能低下（LVSD）の判定には、心エコーの LVEF で"
    "学習した出力を持つ重みが別途必要です。"
)
_PREP_INSTALL_JA = (
    "重みと同じフォルダに、その重みの学習時の標準化 mean_mv・std_mv（必要なら sampling_rate_hz 100/500、"
    "出力順 labels、閾値 thresholds）を書いた JSON を置いてください"
    "（書式は knowledge/data/ecg_ptbxl_superdiagnostic.json と dokuei/models/ecg_classifier.py を参照）。"
)
_INSTALL_JA = (
    f"$DOKUEI_WEIGHTS_DIR/{_WEIGHTS_REL} に、{_WEIGHTS_INSTALL_JA}"
    f"また $DOKUEI_WEIGHTS_DIR/{_PREP_REL} に、{_PREP_INSTALL_JA}"
)
ECG_WEIGHTS = WeightSpec(
    id=_CARD.weights_id,
    version="1",
    relpath=_WEIGHTS_REL,
    sha256=None,
    licence="user-supplied weights (PTB-XL data CC BY 4.0)",
    source="the user's own training on PTB-XL (e.g. github.com/helme/ecg_ptbxl_benchmarking, fastai_resnet1d_wang)",
    install_ja=_WEIGHTS_INSTALL_JA,
)
ECG_PREPROCESSING = WeightSpec(
    id=f"{_CARD.weights_id}-preprocessing",
    version="1",
    relpath=_PREP_REL,
    sha256=None,
    licence="user-supplied (belongs to the weights)",
    source="written by the user from the training run (standard_scaler mean_/scale_, label order, thresholds)",
    install_ja=_PREP_INSTALL_JA,
)

#: normalised question words that ask for this model (see the module docstring for why plain
#: 「心電図の所見」 is not among them)
KEYWORDS_JA: tuple[str, ...] = (
    "AI判定", "AI 判定", "AIの判定", "AI診断", "AIによる", "AI解析", "AIで", "心電図AI", "自動判定", "自動診断",
    "深層学習", "機械学習", "ディープラーニング", "PTB-XL",
    "左室収縮機能低下", "左室機能低下", "左心機能低下", "低左心機能", "心機能低下", "収縮機能低下", "LVSD",
    "駆出率低下", "EF低下",
    "心筋梗塞", "陳旧性梗塞", "ST-T変化", "ST変化", "心肥大", "左室肥大", "伝導障害",
)


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


class ClassifyEcgInput(BaseModel):
    ecg_path: Path = Field(description="12-lead ECG file: DICOM waveform, WFDB (.hea/.dat), CSV or HL7 aECG XML")
    sampling_rate_hz: float | None = Field(
        default=None, gt=0, description="sampling rate in Hz; only for a CSV file that does not state it"
    )
    units: Literal["mV", "uV"] | None = Field(
        default=None, description="sample units; only for a CSV file that does not state them"
    )


class EcgLabelScore(BaseModel):
    label: str = Field(description="label name (PTB-XL superclass or LVSD)")
    label_ja: str = Field(description="label in Japanese")
    probability: float = Field(description="model sigmoid output, 0–1, max over windows (not a calibrated risk)")
    threshold: float = Field(description="operating threshold for this label (preprocessing file or card)")
    positive: bool = Field(description="probability ≥ threshold")


class ClassifyEcgOutput(BaseModel):
    model_id: str = Field(description="weights id from the model card")
    architecture: str = Field(description="network family, e.g. resnet1d_wang")
    scores: list[EcgLabelScore] = Field(description="every output of the installed model, in model order")
    positive_labels: list[str] = Field(description="labels at or above their threshold")
    lvsd_available: bool = Field(description="the installed weights have an LV systolic dysfunction output")
    thresholds_from_file: list[str] = Field(
        description="labels whose threshold came from the preprocessing file (others: card placeholder 0.5)"
    )
    model_sampling_rate_hz: float = Field(description="rate the model expects; the record was resampled to it")
    source_sampling_rate_hz: float = Field(description="rate stated in the ECG file, Hz")
    analysed_duration_s: float = Field(description="seconds of the record fed to the model (first record_s)")
    model_record_s: float = Field(description="record length the model was trained on (card), s")
    window_count: int = Field(description="windows the record was cut into; probabilities are their max")
    normalization_mean_mv: float = Field(description="training-set scaler mean used, mV")
    normalization_std_mv: float = Field(description="training-set scaler standard deviation used, mV")
    warnings_ja: list[str] = Field(description="limits of this result (flagged leads, short record, …)")


class ClassifyEcg(Tool[ClassifyEcgInput]):
    name: ClassVar[str] = "classify_ecg"
    title_ja: ClassVar[str] = "心電図分類（1次元CNN）"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "12 誘導心電図を、利用者が導入した学習済み 1 次元 CNN（PTB-XL の診断スーパークラス: 正常・心筋梗塞・"
        "ST/T 変化・伝導障害・心肥大。重みがあれば左室収縮機能低下も）で判定し、ラベルごとの確率と閾値判定を返す。"
        "「AI 判定」や左室収縮機能低下・心筋梗塞の疑いを心電図から尋ねられたときに使う。"
        "心拍数・間隔・電気軸の計測は analyze_ecg を使う。重みが未導入なら利用不可。診断ではなく補助。"
    )
    description_en: ClassVar[str] = (
        "Runs a user-installed 1-D CNN (PTB-XL diagnostic superclasses NORM, MI, STTC, CD, HYP; plus LV "
        "systolic dysfunction when the weights have that output) on a 12-lead ECG and returns per-label "
        "probabilities against thresholds. Use when an AI reading, LV dysfunction or infarction is asked of "
        "an ECG; for rate, intervals and axes use analyze_ecg. Unavailable without weights; an aid only."
    )
    Input: ClassVar[type[BaseModel]] = ClassifyEcgInput
    Output: ClassVar[type[BaseModel]] = ClassifyEcgOutput
    heavy: ClassVar[bool] = True  # runs in a worker process, killed at the timeout
    requires: ClassVar[Requirements] = Requirements(
        device="cuda_preferred",
        min_vram_gb=0.5,
        weights=(ECG_WEIGHTS, ECG_PREPROCESSING),
        licence="Apache-2.0 (dokuei code); weights: the user's own",
        python_packages=("torch", "scipy"),
    )
    keywords_ja: ClassVar[tuple[str, ...]] = KEYWORDS_JA
    keywords_en: ClassVar[tuple[str, ...]] = (
        "AI", "deep learning", "LVSD", "ejection fraction", "myocardial infarction", "hypertrophy", "PTB-XL",
    )
    attachment_kinds: ClassVar[tuple[str, ...]] = ("ecg",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: Any = None
        self.prep: Any = None
        self.arch: dict[str, Any] = {}

    def input_from_context(self, ctx: ToolContext) -> ClassifyEcgInput | None:
        """The first ECG attached. The router plans this tool only for a question asking for the model
        (``keywords_ja``), never for every attached ECG: analyze_ecg answers a plain one."""
        ecgs = ctx.of_kind("ecg")
        if not ecgs:
            return None
        return ClassifyEcgInput(ecg_path=ecgs[0].path)

    def setup(self) -> None:
        from dokuei.models.ecg_classifier import build_model, load_preprocessing, load_state_dict, resnet1d_arch

        root = self.settings.weights_root
        try:
            self.prep = load_preprocessing(root / ECG_PREPROCESSING.relpath, _CARD)
        except ValueError as exc:
            raise ToolUnavailableError(
                f"心電図モデルの前処理ファイル {ECG_PREPROCESSING.relpath} の内容が不正です"
                "（学習時の標準化 mean_mv・std_mv、出力ラベル、閾値を確認してください）。" + _INSTALL_JA,
                str(exc),
            ) from exc
        path = root / ECG_WEIGHTS.relpath
        try:
            state = load_state_dict(path)
            arch = resnet1d_arch(state, _CARD.architecture)
            n_labels = arch.pop("n_labels")
            if arch["in_channels"] != len(_CARD.leads) or n_labels != len(self.prep.labels):
                raise ValueError(
                    f"model has {arch['in_channels']} inputs and {n_labels} outputs; "
                    f"expected {len(_CARD.leads)} and {len(self.prep.labels)} ({self.prep.labels})"
                )
            self.model = build_model(state, n_labels=n_labels, **arch).to(self.device)
            self.arch = arch
        except Exception as exc:
            raise ToolUnavailableError(
                f"心電図モデルの重み {path.name} を読み込めません（壊れているか、resnet1d_wang 型でないか、"
                "出力数が前処理ファイルの labels と合いません）。" + _INSTALL_JA,
                f"{path}: {exc}",
            ) from exc

    def run(self, inp: ClassifyEcgInput) -> Outcome:
        from dokuei.io.ecg import load_ecg
        from dokuei.models.ecg_classifier import predict, to_model_input

        record = load_ecg(inp.ecg_path, sampling_rate_hz=inp.sampling_rate_hz, units=inp.units)
        missing = [n for n in _CARD.leads if n not in record.leads]
        if missing:
            raise ToolInputError(
                f"この心電図モデルは標準 12 誘導が必要ですが、この記録は {len(record.leads)} 誘導"
                f"（{', '.join(record.leads)}）で、{', '.join(missing)} がありません。"
                "12 誘導心電図を添付してください。",
                f"{inp.ecg_path}: leads {record.leads}",
            )
        try:
            x = to_model_input(record, _CARD, self.prep)
        except ValueError as exc:
            raise ToolInputError(
                f"心電図の記録が短すぎます（このモデルには {_CARD.window_s:g} 秒以上が必要です）。",
                f"{inp.ecg_path}: {exc}",
            ) from exc
        warnings_ja = []
        if record.lead_flags:
            flagged = "、".join(f"{k}（{'平坦' if v == 'flat' else '飽和'}）" for k, v in record.lead_flags.items())
            warnings_ja.append(f"信号に問題のある誘導があります: {flagged}。判定の信頼性が下がります。")
        used_s = round(x.used_s, 2)
        if used_s < _CARD.record_s:
            warnings_ja.append(
                f"記録が {_CARD.record_s:g} 秒より短いため、学習条件と異なります（{used_s:g} 秒を判定）。"
            )
        probs = predict(self.model, x.windows, self.device, _CARD.aggregate)
        scores = [
            EcgLabelScore(
                label=lab,
                label_ja=_CARD.labels[lab].ja,
                probability=round(float(p), 3),
                threshold=round(t, 3),
                positive=bool(p >= t),
            )
            for lab, p, t in zip(self.prep.labels, probs, self.prep.thresholds, strict=True)
        ]
        out = ClassifyEcgOutput(
            model_id=_CARD.weights_id,
            architecture=str(_CARD.architecture["name"]),
            scores=scores,
            positive_labels=[s.label for s in scores if s.positive],
            lvsd_available="LVSD" in self.prep.labels,
            thresholds_from_file=list(self.prep.thresholds_from_file),
            model_sampling_rate_hz=self.prep.sampling_rate_hz,
            source_sampling_rate_hz=record.sampling_rate_hz,
            analysed_duration_s=used_s,
            model_record_s=_CARD.record_s,
            window_count=int(x.windows.shape[0]),
            normalization_mean_mv=self.prep.mean_mv,
            normalization_std_mv=self.prep.std_mv,
            warnings_ja=warnings_ja,
        )
        return Outcome(output=out, summary_ja=summarize(out), model_version=f"{_CARD.weights_id}:{ECG_WEIGHTS.version}")


def summarize(out: ClassifyEcgOutput) -> str:
    """Japanese summary; every number in it is a field of ``out``."""
    positives = [s for s in out.scores if s.positive]
    if positives:
        listed = "、".join(f"{s.label_ja}（確率 {s.probability}、閾値 {s.threshold}）" for s in positives)
        text = f"心電図 AI 判定（{out.model_id}）: 閾値を超えたのは {listed}。"
    else:
        text = f"心電図 AI 判定（{out.model_id}）: 閾値を超えたラベルはありません。"
    if not out.lvsd_available:
        text += "左室収縮機能低下（低左心機能）の判定出力は導入された重みにないため評価していません。"
    if len(out.thresholds_from_file) < len(out.scores):
        text += "閾値の一部はモデルカードの仮の値です。"
    text += "利用者が導入した学習済みモデルの推定であり、診断ではありません。"
    if out.warnings_ja:
        text += " 注意: " + " ".join(out.warnings_ja)
    return text
