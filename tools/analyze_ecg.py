"""analyze_ecg: rate, rhythm, intervals, axes and PVCs measured from the ECG samples themselves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from dokuei.tools.base import Artifact, Outcome, Requirements, Tool, ToolInputError
from dokuei.tools.context import ToolContext

log = logging.getLogger(__name__)

_AXIS_WORDS = ("軸", "axis", "アクシス")


class AnalyzeEcgInput(BaseModel):
    ecg_path: Path = Field(description="ECG file: DICOM waveform, WFDB (.hea/.dat), CSV or HL7 aECG XML")
    sampling_rate_hz: float | None = Field(
        default=None, gt=0, description="sampling rate in Hz; only for a CSV file that does not state it"
    )
    units: Literal["mV", "uV"] | None = Field(
        default=None, description="sample units; only for a CSV file that does not state them"
    )
    require_axes: bool = Field(
        default=False,
        description="fail with a clear message if frontal axes cannot be computed (no leads I/II)",
    )
    sex: Literal["M", "F"] | None = Field(
        default=None, description="patient sex, for the QTc limit (M 450, F 460 ms)"
    )
    make_plot: bool = Field(
        default=True, description="write the 12-lead plot (25 mm/s, 10 mm/mV) as an artifact"
    )


class EcgFinding(BaseModel):
    code: str = Field(description="stable finding code, e.g. 'first_degree_av_block'")
    label_ja: str = Field(description="the finding in Japanese")


class AnalyzeEcgOutput(BaseModel):
    heart_rate_bpm: int = Field(description="mean ventricular rate over all beats, beats per minute")
    rr_ms: int = Field(description="mean RR interval over all beats, ms")
    pr_ms: int | None = Field(description="global PR interval (P onset to QRS onset) of the median beat, ms")
    qrs_ms: int | None = Field(description="global QRS duration of the median beat, ms")
    qt_ms: int | None = Field(description="global QT interval (QRS onset to T end) of the median beat, ms")
    qtc_ms: int | None = Field(description="corrected QT, Bazett (QT/√RR), ms — same value as qtc_bazett_ms")
    qtc_bazett_ms: int | None = Field(
        description="QTc by Bazett, QT/RR^(1/2) with RR of dominant beats in s, ms"
    )
    qtc_fridericia_ms: int | None = Field(description="QTc by Fridericia, QT/RR^(1/3), ms")
    p_axis_deg: int | None = Field(description="frontal P axis by net area in leads I and II, degrees")
    qrs_axis_deg: int | None = Field(description="frontal QRS axis by net area in leads I and II, degrees")
    t_axis_deg: int | None = Field(description="frontal T axis by net area in leads I and II, degrees")
    rhythm: str = Field(
        description="rhythm code (sinus_rhythm, sinus_bradycardia, …), '_with_pvcs' when PVCs"
    )
    rhythm_ja: str = Field(description="rhythm in Japanese")
    pvc_count: int = Field(description="premature ventricular complexes (wide beats of another morphology)")
    pvc_burden_pct: float = Field(description="PVCs as a percentage of all beats")
    beats_total: int = Field(description="beats counted (noise excluded)")
    findings: list[EcgFinding] = Field(
        description="findings worded from the measurements and ecg_criteria.json"
    )
    quality: Literal["good", "acceptable", "poor"] = Field(description="signal quality of the record")
    quality_notes: list[str] = Field(description="why the quality is what it is (flagged leads, noise beats)")
    leads: list[str] = Field(description="leads in the record, standard order")
    derived_leads: list[str] = Field(
        description="limb leads computed from I and II because the file lacks them"
    )
    flagged_leads: dict[str, str] = Field(
        description="lead -> 'flat' or 'saturated'; excluded from measurement"
    )
    sampling_rate_hz: float = Field(description="sampling rate read from the file, Hz")
    duration_s: float = Field(description="record length, s")
    source_units: str = Field(description="sample units stated in the file (converted to mV)")
    device_reported: dict[str, float] = Field(
        description="values the recording device stored in the file (rr_ms, pr_ms, …): the DEVICE's, not ours"
    )
    device_statements: list[str] = Field(
        description="interpretation statements stored by the device, verbatim"
    )


class AnalyzeEcg(Tool[AnalyzeEcgInput]):
    name: ClassVar[str] = "analyze_ecg"
    title_ja: ClassVar[str] = "心電図解析"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "心電図ファイル（DICOM 波形・WFDB・CSV・HL7 aECG）の波形そのものから心拍数、調律、PR・QRS・QT・QTc"
        "（Bazett/Fridericia）、P・QRS・T の前額面電気軸、心室期外収縮の数と頻度、信号品質を計測し、"
        "12 誘導の波形図を作る。心電図が添付された質問に使う。"
        "画像（胸部 X 線など）や検査値だけの質問には使わない。"
    )
    description_en: ClassVar[str] = (
        "Measures heart rate, rhythm, PR/QRS/QT/QTc (Bazett and Fridericia), frontal P/QRS/T axes, PVC count "
        "and burden and signal quality from the samples of an ECG file "
        "(DICOM waveform, WFDB, CSV, HL7 aECG), "
        "and plots the 12 leads. Use when an ECG is attached; not for images or lab values."
    )
    Input: ClassVar[type[BaseModel]] = AnalyzeEcgInput
    Output: ClassVar[type[BaseModel]] = AnalyzeEcgOutput
    requires: ClassVar[Requirements] = Requirements(
        device="cpu",
        licence="Apache-2.0 (dokuei); neurokit2 MIT; wfdb MIT; pydicom MIT",
        python_packages=("neurokit2", "wfdb", "pydicom"),
    )
    keywords_ja: ClassVar[tuple[str, ...]] = (
        "心電図",
        "ECG",
        "12誘導",
        "不整脈",
        "QT",
        "QTc",
        "心拍数",
        "期外収縮",
        "PVC",
        "電気軸",
        "PR",
        "QRS",
        "調律",
    )
    keywords_en: ClassVar[tuple[str, ...]] = ("ECG", "EKG", "QT", "QTc", "heart rate", "arrhythmia", "axis", "PVC")
    attachment_kinds: ClassVar[tuple[str, ...]] = ("ecg",)
    runs_on_attachment: ClassVar[bool] = True
    needs_ja: ClassVar[str] = "心電図ファイル（DICOM 波形、WFDB、CSV、HL7 aECG）を添付してください。"

    def input_from_context(self, ctx: ToolContext) -> AnalyzeEcgInput | None:
        ecgs = ctx.of_kind("ecg")
        if not ecgs:
            return None
        wants_axes = any(w in ctx.question.lower() for w in _AXIS_WORDS)
        return AnalyzeEcgInput(ecg_path=ecgs[0].path, require_axes=wants_axes, sex=ctx.patient.sex)

    def run(self, inp: AnalyzeEcgInput) -> Outcome:
        from dokuei.io.ecg import load_ecg
        from dokuei.signals.ecg_measure import RHYTHM_JA, EcgAnalysisError, analyze_record

        record = load_ecg(inp.ecg_path, sampling_rate_hz=inp.sampling_rate_hz, units=inp.units)
        if inp.require_axes and not (record.usable("I") and record.usable("II")):
            raise ToolInputError(
                f"この記録（{len(record.leads)} 誘導: {', '.join(record.leads)}）には"
                "使える肢誘導 I と II がないため、"
                "電気軸を計算できません。12 誘導心電図を添付してください。",
                f"{inp.ecg_path}: leads {record.leads}, flags {record.lead_flags}",
            )
        try:
            a = analyze_record(record)
        except EcgAnalysisError as exc:
            raise ToolInputError(
                "心電図から心拍（R 波）を十分に検出できず、計測できません。記録の品質を確認してください。",
                f"{inp.ecg_path}: {exc}",
            ) from exc
        rhythm = a.rhythm + ("_with_pvcs" if a.pvc_count else "")
        rhythm_ja = RHYTHM_JA[a.rhythm] + ("（心室期外収縮を伴う）" if a.pvc_count else "")
        out = AnalyzeEcgOutput(
            heart_rate_bpm=round(a.heart_rate_bpm),
            rr_ms=round(a.rr_ms),
            pr_ms=_r(a.pr_ms),
            qrs_ms=_r(a.qrs_ms),
            qt_ms=_r(a.qt_ms),
            qtc_ms=_r(a.qtc_bazett_ms),
            qtc_bazett_ms=_r(a.qtc_bazett_ms),
            qtc_fridericia_ms=_r(a.qtc_fridericia_ms),
            p_axis_deg=_r(a.p_axis_deg),
            qrs_axis_deg=_r(a.qrs_axis_deg),
            t_axis_deg=_r(a.t_axis_deg),
            rhythm=rhythm,
            rhythm_ja=rhythm_ja,
            pvc_count=a.pvc_count,
            pvc_burden_pct=round(a.pvc_burden_pct, 1),
            beats_total=sum(t != "Q" for t in a.beat_types),
            findings=[],
            quality=a.quality,
            quality_notes=list(a.quality_notes),
            leads=list(record.leads),
            derived_leads=list(record.derived_leads),
            flagged_leads=dict(record.lead_flags),
            sampling_rate_hz=record.sampling_rate_hz,
            duration_s=round(record.duration_s, 2),
            source_units=record.source_units,
            device_reported=dict(record.device_measurements),
            device_statements=list(record.device_statements),
        )
        out.findings = ecg_findings(out, inp.sex)
        artifacts = []
        if inp.make_plot:
            from dokuei.signals.ecg_plot import plot_ecg

            png = self.artifact_dir(inp) / "ecg_12lead.png"
            plot_ecg(record, a.r_peaks, a.beat_types, png, title=inp.ecg_path.name)
            artifacts.append(
                Artifact(
                    path=str(png),
                    kind="image",
                    caption_ja="心電図（25 mm/s、10 mm/mV、拍の位置を▲で表示、V は心室期外収縮）",
                )
            )
        return Outcome(output=out, summary_ja=summarize(out), artifacts=artifacts)


def _r(value: float | None) -> int | None:
    return None if value is None else round(value)


def ecg_findings(out: AnalyzeEcgOutput, sex: Literal["M", "F"] | None) -> list[EcgFinding]:
    """Findings worded from the measurements with the thresholds of knowledge/data/ecg_criteria.json."""
    from dokuei.signals.ecg_measure import load_criteria

    c = load_criteria()
    found: list[EcgFinding] = []

    def add(code: str, label: str) -> None:
        found.append(EcgFinding(code=code, label_ja=label))

    base = out.rhythm.removesuffix("_with_pvcs")
    if base == "af_like_irregular":
        add("af_like_irregular", "RR 間隔が絶対性に不整で P 波が同定できない（心房細動様）")
    elif base in ("sinus_bradycardia", "sinus_tachycardia"):
        add(base, f"{out.rhythm_ja.split('（')[0]}（心拍数 {out.heart_rate_bpm} bpm）")
    if out.pvc_count:
        frequent = out.pvc_burden_pct >= float(c["rhythm"]["frequent_pvc_burden_pct_from"])
        add(
            "frequent_pvcs" if frequent else "pvcs",
            f"心室期外収縮 {out.pvc_count} 拍（全拍の {out.pvc_burden_pct}%）"
            + ("、頻発" if frequent else ""),
        )
    if out.pr_ms is not None:
        if out.pr_ms > c["pr_ms"]["first_degree_av_block_above"]:
            add("first_degree_av_block", f"PR 延長（{out.pr_ms} ms、1 度房室ブロック相当）")
        elif out.pr_ms < c["pr_ms"]["short_below"]:
            add("short_pr", f"PR 短縮（{out.pr_ms} ms）")
    if out.qrs_ms is not None:
        if out.qrs_ms >= c["qrs_ms"]["wide_from"]:
            add("wide_qrs", f"QRS 幅の延長（{out.qrs_ms} ms、脚ブロックまたは心室内伝導障害の水準）")
        elif out.qrs_ms >= c["qrs_ms"]["incomplete_conduction_delay_from"]:
            add("borderline_qrs", f"QRS 幅の軽度延長（{out.qrs_ms} ms）")
    if out.qtc_ms is not None:
        q = c["qtc_ms"]
        limit = {"M": q["long_from_male"], "F": q["long_from_female"]}.get(
            sex or "", q["long_from_unknown_sex"]
        )
        if out.qtc_ms >= q["markedly_long_from"]:
            add("markedly_long_qtc", f"QTc 著明延長（Bazett {out.qtc_ms} ms）")
        elif out.qtc_ms >= limit:
            add("long_qtc", f"QTc 延長（Bazett {out.qtc_ms} ms）")
        elif out.qtc_ms <= q["short_at_or_below"]:
            add("short_qtc", f"QTc 短縮（Bazett {out.qtc_ms} ms）")
    if out.qrs_axis_deg is not None:
        ax = c["frontal_axis_deg"]
        if out.qrs_axis_deg < ax["left_axis_deviation_below"] and out.qrs_axis_deg >= -90:
            add("left_axis_deviation", f"左軸偏位（QRS 軸 {out.qrs_axis_deg}°）")
        elif out.qrs_axis_deg > ax["right_axis_deviation_above"] and out.qrs_axis_deg <= 180:
            add("right_axis_deviation", f"右軸偏位（QRS 軸 {out.qrs_axis_deg}°）")
        elif out.qrs_axis_deg < -90:
            add("extreme_axis", f"高度の軸偏位（QRS 軸 {out.qrs_axis_deg}°）")
    if out.quality == "poor":
        add("poor_quality", "信号品質が不良のため計測値の信頼性が低い")
    return found


def summarize(out: AnalyzeEcgOutput) -> str:
    """Radiology-report style Japanese summary; every number in it is a field of ``out``."""
    parts = [f"心拍数 {out.heart_rate_bpm} bpm（平均 RR {out.rr_ms} ms）、{out.rhythm_ja}。"]
    intervals = []
    if out.pr_ms is not None:
        intervals.append(f"PR {out.pr_ms} ms")
    if out.qrs_ms is not None:
        intervals.append(f"QRS {out.qrs_ms} ms")
    if out.qt_ms is not None:
        intervals.append(f"QT {out.qt_ms} ms")
    if out.qtc_bazett_ms is not None and out.qtc_fridericia_ms is not None:
        intervals.append(f"QTc {out.qtc_bazett_ms} ms（Bazett）/ {out.qtc_fridericia_ms} ms（Fridericia）")
    if intervals:
        parts.append("、".join(intervals) + "。")
    if out.qrs_axis_deg is not None:
        axes = [f"QRS {out.qrs_axis_deg}°"]
        if out.p_axis_deg is not None:
            axes.insert(0, f"P {out.p_axis_deg}°")
        if out.t_axis_deg is not None:
            axes.append(f"T {out.t_axis_deg}°")
        parts.append("前額面電気軸 " + "、".join(axes) + "。")
    else:
        parts.append("肢誘導 I・II がないため電気軸は計算していません。")
    parts.append(
        f"心室期外収縮 {out.pvc_count} 拍（{out.pvc_burden_pct}%）。"
        if out.pvc_count
        else "心室期外収縮は検出されません。"
    )
    if out.findings:
        parts.append("所見: " + "；".join(f.label_ja for f in out.findings) + "。")
    quality_ja = {"good": "良好", "acceptable": "おおむね良好", "poor": "不良"}[out.quality]
    parts.append(f"信号品質 {quality_ja}。")
    if out.device_reported:
        shown = "、".join(f"{_DEVICE_LABEL.get(k, k)} {v:g}" for k, v in out.device_reported.items())
        parts.append(f"（参考: 記録装置がファイルに保存した値 — {shown}。本ツールの計測値ではありません）")
    return "".join(parts)


_DEVICE_LABEL = {
    "rr_ms": "RR(ms)",
    "pr_ms": "PR(ms)",
    "qrs_ms": "QRS(ms)",
    "qt_ms": "QT(ms)",
    "qtc_ms": "QTc(ms)",
    "p_axis_deg": "P軸(°)",
    "qrs_axis_deg": "QRS軸(°)",
    "t_axis_deg": "T軸(°)",
    "heart_rate_bpm": "心拍数(bpm)",
}
