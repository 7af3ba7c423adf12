"""Global ECG measurements computed from the samples.

Pipeline (every step on the record's own samples, none on values the device stored):

1. neurokit2 cleans each usable lead and finds R peaks on one detection lead (II, else the first usable).
2. Beats are typed by QRS morphology on the detection lead: the dominant template (median of beats that
   correlate ≥ 0.9 with the record's median beat); a beat of another shape whose QRS is ≥ 1.5× as wide
   = PVC ('V'); a narrow beat of another shape = noise ('Q'). Fusion beats that still correlate ≥ 0.85
   stay with the dominant beats. Prematurity is not required: in MIT-BIH 208 many PVCs are not early.
3. Median beats of the dominant beats, per lead, aligned on the common R peaks.
4. QRS onset and offset from the spatial velocity of all usable median beats (the global method of the
   CSE-era programs). neurokit2's prominence delineator places R offsets on the ST segment (~20 ms after
   the J point on pydicom's waveform_ecg.dcm, checked against a manual reading), so only its P onsets,
   P offsets and T offsets are used, as the median over leads.
5. Intervals, QTc (Bazett, Fridericia), frontal P/QRS/T axes by the net-area method from leads I and II,
   rhythm from RR regularity, P-wave presence and P axis.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from dokuei.io.ecg import LEAD_FLAG_JA, EcgRecord
from dokuei.knowledge import load_json

log = logging.getLogger(__name__)

DETECTION_PREFERENCE = ("II", "V5", "I", "V6", "aVF", "V4", "V2", "III", "V3", "V1", "aVL", "aVR")

BeatType = Literal["N", "V", "Q"]
Rhythm = Literal[
    "sinus_rhythm",
    "sinus_bradycardia",
    "sinus_tachycardia",
    "af_like_irregular",
    "irregular_unclassified",
    "undetermined",
]
RHYTHM_JA: dict[str, str] = {
    "sinus_rhythm": "洞調律",
    "sinus_bradycardia": "洞徐脈",
    "sinus_tachycardia": "洞頻脈",
    "af_like_irregular": "絶対性不整（心房細動様）",
    "irregular_unclassified": "分類不能の不整脈",
    "undetermined": "調律判定不能",
}

_BEAT_TYPING = load_json("ecg_criteria.json")["beat_typing"]  # thresholds and their rationale live there
DOMINANT_CORR = float(_BEAT_TYPING["dominant_template_correlation_min"])  # joins the dominant morphology above this
ECTOPIC_CORR = float(_BEAT_TYPING["ectopic_correlation_max"])  # below this it has another morphology
WIDE_RATIO = float(_BEAT_TYPING["wide_qrs_ratio_min"])  # QRS energy width vs the dominant beats': ventricular
WIDE_RATIO_DOMINANT_MAX = float(_BEAT_TYPING["never_dominant_width_ratio_min"])  # never dominant, however similar
SPATIAL_VELOCITY_FRACTION = 0.10  # QRS boundary: spatial velocity falls below 10 % of its peak


def load_criteria() -> dict[str, Any]:
    return load_json("ecg_criteria.json")  # cached by load_json


@dataclass(frozen=True)
class EcgAnalysis:
    detection_lead: str
    sampling_rate_hz: float
    r_peaks: np.ndarray  # sample index of every detected beat
    beat_types: tuple[BeatType, ...]
    heart_rate_bpm: float
    rr_ms: float  # mean RR of all beats
    nn_ms: float  # mean RR between consecutive dominant beats
    rr_cv: float
    pr_ms: float | None
    qrs_ms: float | None
    qt_ms: float | None
    qtc_bazett_ms: float | None
    qtc_fridericia_ms: float | None
    p_axis_deg: float | None
    qrs_axis_deg: float | None
    t_axis_deg: float | None
    p_wave_fraction: float
    rhythm: Rhythm
    pvc_count: int
    pvc_burden_pct: float
    noise_beats: int
    quality: Literal["good", "acceptable", "poor"]
    quality_notes: tuple[str, ...]
    #: global fiducials in ms relative to the R peak of the median beat
    fiducials_ms: dict[str, float] = field(default_factory=dict)

    @property
    def dominant_peaks(self) -> np.ndarray:
        return self.r_peaks[np.array([t == "N" for t in self.beat_types], dtype=bool)]


class EcgAnalysisError(ValueError):
    """The record cannot be measured (no beats found, too noisy)."""


def analyze_record(record: EcgRecord) -> EcgAnalysis:
    import neurokit2 as nk

    fs = record.sampling_rate_hz
    # defence in depth: a record not built by finish_record may still hold NaN/inf in a lead
    usable = [n for n in record.leads if record.usable(n) and bool(np.all(np.isfinite(record.lead(n))))]
    if not usable:
        raise EcgAnalysisError("all leads are flat, saturated or non-finite")
    detection = next(n for n in (*DETECTION_PREFERENCE, *usable) if n in usable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = {
            n: np.asarray(nk.ecg_clean(record.lead(n), sampling_rate=round(fs)), float) for n in usable
        }
        _, info = nk.ecg_peaks(cleaned[detection], sampling_rate=round(fs))
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
    if peaks.size < 3:
        raise EcgAnalysisError(f"only {peaks.size} R peaks found in lead {detection}")
    types = classify_beats(cleaned[detection], peaks, fs)
    rr = np.diff(peaks) / fs * 1000.0
    real = np.array([t != "Q" for t in types])
    rr_real = rr[real[1:] & real[:-1]]
    nn = rr[np.array([a == "N" and b == "N" for a, b in itertools.pairwise(types)])]
    if nn.size == 0 or rr_real.size == 0:
        raise EcgAnalysisError("no two consecutive dominant beats")
    dominant = peaks[np.array([t == "N" for t in types])]
    nn_ms = float(np.mean(nn))
    pre_s = min(0.35, 0.45 * nn_ms / 1000.0)
    post_s = min(0.6, 0.7 * nn_ms / 1000.0)
    medians, r_index = median_beats(cleaned, dominant, fs, pre_s, post_s)
    qrs_on, qrs_off = qrs_boundaries(medians, r_index, fs)
    waves = _delineate_waves(cleaned, dominant, fs)
    fid: dict[str, float] = {"qrs_onset": qrs_on, "qrs_offset": qrs_off}
    for key in ("p_onset", "p_offset", "t_offset"):
        if key in waves:
            fid[key] = waves[key]
    if "p_onset" in fid and not (-pre_s * 1000 < fid["p_onset"] < qrs_on - 40):
        fid.pop("p_onset")
    if "t_offset" in fid and not (qrs_off + 80 < fid["t_offset"] < post_s * 1000):
        fid.pop("t_offset")
    pr = qrs_on - fid["p_onset"] if "p_onset" in fid else None
    qrs = qrs_off - qrs_on
    qt = fid["t_offset"] - qrs_on if "t_offset" in fid else None
    rr_s = nn_ms / 1000.0
    axes = frontal_axes(medians, r_index, fs, fid) if "I" in medians and "II" in medians else {}
    pvc = sum(t == "V" for t in types)
    counted = sum(t != "Q" for t in types)
    cv = float(np.std(nn) / np.mean(nn)) if nn.size >= 2 else 0.0
    rhythm = classify_rhythm(60000.0 / nn_ms, cv, waves.get("p_fraction", 0.0), axes.get("p"))
    quality, notes = _quality(record, types, cleaned[detection], peaks, fs)
    return EcgAnalysis(
        detection_lead=detection,
        sampling_rate_hz=fs,
        r_peaks=peaks,
        beat_types=tuple(types),
        heart_rate_bpm=60000.0 / float(np.mean(rr_real)),
        rr_ms=float(np.mean(rr_real)),
        nn_ms=nn_ms,
        rr_cv=cv,
        pr_ms=pr,
        qrs_ms=qrs,
        qt_ms=qt,
        qtc_bazett_ms=qt / math.sqrt(rr_s) if qt is not None else None,
        qtc_fridericia_ms=qt / rr_s ** (1 / 3) if qt is not None else None,
        p_axis_deg=axes.get("p"),
        qrs_axis_deg=axes.get("qrs"),
        t_axis_deg=axes.get("t"),
        p_wave_fraction=waves.get("p_fraction", 0.0),
        rhythm=rhythm,
        pvc_count=pvc,
        pvc_burden_pct=100.0 * pvc / max(counted, 1),
        noise_beats=sum(t == "Q" for t in types),
        quality=quality,
        quality_notes=tuple(notes),
        fiducials_ms=fid,
    )


# --- beats ------------------------------------------------------------------------------------


def _windows(signal: np.ndarray, peaks: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Segments signal[p-lo : p+hi] for peaks whose window fits; returns (segments, mask of fitted peaks)."""
    ok = (peaks - lo >= 0) & (peaks + hi <= signal.size)
    idx = peaks[ok][:, None] + np.arange(-lo, hi)[None, :]
    return signal[idx], ok


def _detrend(segments: np.ndarray) -> np.ndarray:
    """Remove each row's straight line through its end points (baseline wander across the beat)."""
    ramp = np.linspace(0.0, 1.0, segments.shape[-1])
    start, end = segments[..., :1], segments[..., -1:]
    return np.asarray(segments - (start + (end - start) * ramp))


def _corr(segments: np.ndarray, template: np.ndarray) -> np.ndarray:
    a = _detrend(segments)
    a = a - a.mean(axis=1, keepdims=True)
    b = _detrend(template)
    b = b - b.mean()
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b) + 1e-12
    return np.asarray((a @ b) / denom)


def _energy_width(segments: np.ndarray) -> np.ndarray:
    """Span (samples) holding the central 80 % of each segment's squared slope: a QRS width proxy."""
    energy = np.gradient(segments, axis=1) ** 2
    cum = np.cumsum(energy, axis=1)
    cum /= cum[:, -1:] + 1e-12
    return np.asarray((cum < 0.9).sum(axis=1) - (cum < 0.1).sum(axis=1))


def classify_beats(signal: np.ndarray, peaks: np.ndarray, fs: float) -> list[BeatType]:
    """'N' dominant morphology, 'V' premature or wide beat of another morphology, 'Q' noise."""
    lo, hi = round(0.09 * fs), round(0.11 * fs)
    segments, fitted = _windows(signal, peaks, lo, hi)
    types: list[BeatType] = ["Q"] * peaks.size
    if segments.shape[0] < 2:
        return ["N" if f else "Q" for f in fitted]
    corr = _corr(segments, np.median(segments, axis=0))
    core = corr >= DOMINANT_CORR
    if core.sum() < max(2, 0.2 * corr.size):
        core = corr >= np.quantile(corr, 0.5)
    template = np.median(segments[core], axis=0)
    corr = _corr(segments, template)
    width = _energy_width(segments)
    ref_width = (
        float(np.median(width[corr >= DOMINANT_CORR]))
        if (corr >= DOMINANT_CORR).any()
        else float(np.median(width))
    )
    fitted_idx = np.flatnonzero(fitted)
    for k, i in enumerate(fitted_idx):
        ratio = width[k] / max(ref_width, 1.0)
        if corr[k] >= ECTOPIC_CORR and ratio < WIDE_RATIO_DOMINANT_MAX:
            types[i] = "N"
        elif ratio >= WIDE_RATIO:
            types[i] = "V"
        else:
            types[i] = "Q"
    return types


def median_beats(
    cleaned: dict[str, np.ndarray], peaks: np.ndarray, fs: float, pre_s: float, post_s: float
) -> tuple[dict[str, np.ndarray], int]:
    lo, hi = round(pre_s * fs), round(post_s * fs)
    medians = {}
    for name, sig in cleaned.items():
        segments, _ = _windows(sig, peaks, lo, hi)
        med = np.median(segments, axis=0)
        medians[name] = med - np.median(med[max(0, lo - round(0.08 * fs)) : lo - round(0.05 * fs)])
    return medians, lo


def qrs_boundaries(medians: dict[str, np.ndarray], r_index: int, fs: float) -> tuple[float, float]:
    """QRS onset/offset (ms from R) where the multi-lead spatial velocity crosses 10 % of its peak."""
    k = max(1, round(0.008 * fs))
    box = np.ones(k) / k
    stack = np.vstack([np.convolve(m, box, mode="same") for m in medians.values()])
    velocity = np.sqrt((np.gradient(stack, axis=1) ** 2).sum(axis=0)) * fs
    near = slice(max(0, r_index - round(0.06 * fs)), r_index + round(0.06 * fs))
    peak = float(velocity[near].max())
    quiet = velocity[max(0, r_index - round(0.12 * fs)) : max(1, r_index - round(0.04 * fs))]
    noise = float(np.median(quiet)) if quiet.size else 0.0
    threshold = noise + SPATIAL_VELOCITY_FRACTION * (peak - noise)
    gate = max(1, round(0.006 * fs))
    on = r_index
    while on > gate and velocity[on - gate : on].max() >= threshold:
        on -= 1
    off = r_index
    while off < velocity.size - gate - 1 and velocity[off + 1 : off + 1 + gate].max() >= threshold:
        off += 1
    return (on - r_index) / fs * 1000.0, (off - r_index) / fs * 1000.0


def _delineate_waves(cleaned: dict[str, np.ndarray], peaks: np.ndarray, fs: float) -> dict[str, float]:
    """neurokit2 prominence delineation per lead; median over leads of each fiducial (ms from R)."""
    import neurokit2 as nk

    per_lead: dict[str, list[float]] = {"p_onset": [], "p_offset": [], "t_offset": []}
    p_found: list[float] = []
    search = round(0.05 * fs)
    for sig in cleaned.values():
        around, _ok = _windows(sig, peaks, round(0.06 * fs), round(0.06 * fs))
        if around.shape[0] == 0:
            continue
        polarity = 1.0 if around.max(axis=1).mean() >= -around.min(axis=1).mean() else -1.0
        oriented = polarity * sig
        local = np.array(
            [
                p - search + int(np.argmax(oriented[max(0, p - search) : p + search]))
                if p - search >= 0
                else p
                for p in peaks
            ]
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, waves = nk.ecg_delineate(oriented, local, sampling_rate=round(fs), method="prominence")
        except Exception as exc:  # neurokit raises on very short or odd signals; the lead is skipped
            log.debug("delineation failed on a lead: %s", exc)
            continue
        for key, nk_key in (
            ("p_onset", "ECG_P_Onsets"),
            ("p_offset", "ECG_P_Offsets"),
            ("t_offset", "ECG_T_Offsets"),
        ):
            values = np.asarray(waves.get(nk_key, []), dtype=float)
            if values.size == peaks.size:
                rel = (values - peaks) / fs * 1000.0
                if np.isfinite(rel).any():
                    per_lead[key].append(float(np.nanmedian(rel)))
        p_peaks = np.asarray(waves.get("ECG_P_Peaks", []), dtype=float)
        if p_peaks.size == peaks.size:
            gap = (peaks - p_peaks) / fs * 1000.0
            p_found.append(float(np.mean(np.isfinite(gap) & (gap > 60) & (gap < 350))))
    out = {key: float(np.median(v)) for key, v in per_lead.items() if v}
    out["p_fraction"] = float(np.median(p_found)) if p_found else 0.0
    return out


# --- axes and rhythm --------------------------------------------------------------------------


def frontal_axes(
    medians: dict[str, np.ndarray], r_index: int, fs: float, fid: dict[str, float]
) -> dict[str, float]:
    """Frontal P, QRS and T axes (degrees) by the net-area method in leads I and II.

    Einthoven: I = Hx, II = Hx/2 + Hy·√3/2, so Hy = (2·II − I)/√3 (equivalently (2/√3)·aVF).
    """

    def area(lead: str, start_ms: float, end_ms: float) -> float:
        a = r_index + round(start_ms * fs / 1000.0)
        b = r_index + round(end_ms * fs / 1000.0)
        return float(np.sum(medians[lead][max(a, 0) : max(b, a + 1)])) / fs

    def axis(start: float, end: float) -> float:
        hx = area("I", start, end)
        hy = (2.0 * area("II", start, end) - hx) / math.sqrt(3.0)
        return math.degrees(math.atan2(hy, hx))

    out = {"qrs": axis(fid["qrs_onset"], fid["qrs_offset"])}
    if "p_onset" in fid and "p_offset" in fid and fid["p_offset"] > fid["p_onset"]:
        out["p"] = axis(fid["p_onset"], fid["p_offset"])
    if "t_offset" in fid:
        out["t"] = axis(fid["qrs_offset"], fid["t_offset"])
    return out


def classify_rhythm(rate_bpm: float, rr_cv: float, p_fraction: float, p_axis: float | None) -> Rhythm:
    crit = load_criteria()
    rules = crit["rhythm"]
    irregular = rr_cv > float(rules["irregular_cv_above"])
    p_present = p_fraction >= float(rules["p_wave_present_fraction_min"])
    sinus_axis = crit["sinus_p_axis_deg"]
    p_axis_ok = p_axis is None or float(sinus_axis["from"]) <= p_axis <= float(sinus_axis["to"])
    if irregular and not p_present:
        return "af_like_irregular"
    if p_present and p_axis_ok:
        hr = crit["heart_rate_bpm"]
        if rate_bpm < float(hr["bradycardia_below"]):
            return "sinus_bradycardia"
        if rate_bpm > float(hr["tachycardia_above"]):
            return "sinus_tachycardia"
        return "sinus_rhythm"
    return "irregular_unclassified" if irregular else "undetermined"


def _quality(
    record: EcgRecord, types: list[BeatType], det: np.ndarray, peaks: np.ndarray, fs: float
) -> tuple[Literal["good", "acceptable", "poor"], list[str]]:
    notes: list[str] = []
    for lead, flag in record.lead_flags.items():
        notes.append(f"{lead} 誘導が{LEAD_FLAG_JA.get(flag, flag)}のため除外")
    noise = sum(t == "Q" for t in types) / max(len(types), 1)
    if noise > 0:
        notes.append(f"雑音と判定した拍 {sum(t == 'Q' for t in types)} 個を除外")
    if noise > 0.2 or len(record.lead_flags) > len(record.leads) // 2:
        return "poor", notes
    if noise > 0.05 or record.lead_flags:
        return "acceptable", notes
    return "good", notes
