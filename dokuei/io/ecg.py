"""ECG readers: DICOM waveform, WFDB, CSV and HL7 aECG into one :class:`EcgRecord` in millivolts.

Units and sampling rate always come from the file (or, for CSV, from a stated header or an explicit
argument); a file that does not say them is refused, never guessed. Leads are renamed to the standard
names (I, II, III, aVR, aVL, aVF, V1–V6); missing limb leads are derived from I and II (Einthoven and
Goldberger) and marked as derived. Flat and saturated leads are flagged, not dropped.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from dokuei.errors import InputError as ToolInputError

log = logging.getLogger(__name__)

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_LEADS: tuple[str, ...] = STANDARD_LEADS[:6]
EcgFormat = Literal["dicom", "wfdb", "csv", "aecg"]
LeadFlag = Literal["flat", "saturated", "nonfinite"]
#: what each flag means, in Japanese, for summaries
LEAD_FLAG_JA: dict[str, str] = {
    "flat": "平坦（電極外れの可能性）",
    "saturated": "飽和（振り切れ）",
    "nonfinite": "数値でないサンプル（NaN・無限大）を含む",
}

#: millivolts per unit, for every unit spelling seen in DICOM, WFDB, aECG and CSV headers
_UNIT_TO_MV: dict[str, float] = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
    "nv": 1e-6,
}

# Flat: peak-to-peak below 0.05 mV after removing the median (an unplugged electrode reads ~0; the
# smallest real lead, often aVR/aVL/III, still swings ≥ 0.1 mV with each QRS).
FLAT_PEAK_TO_PEAK_MV = 0.05
# Saturated: the signal sits on its extreme value for ≥ 25 ms in a row on ≥ 0.5 % of the record
# (an amplifier at its rail or ADC clipping; a real QRS peak lasts a few ms at 1 kHz).
SATURATION_RUN_S = 0.025
SATURATION_FRACTION = 0.005


def _lead_name(raw: str) -> str | None:
    """Standard lead name for a DICOM code meaning, a WFDB sig_name or an MDC code; None if unknown."""
    text = raw.strip()
    text = re.sub(r"^(MDC_ECG_LEAD_|Lead\s+)", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s*\(.*\)$", "", text).strip()
    upper = text.upper()
    if upper in ("MLII", "ML2"):
        return "II"
    if upper in ("MLI",):
        return "I"
    for name in STANDARD_LEADS:
        if upper == name.upper():
            return name
    return None


@dataclass(frozen=True)
class EcgRecord:
    """A multi-lead ECG: ``signals_mv[lead, sample]`` in millivolts at ``sampling_rate_hz``."""

    signals_mv: np.ndarray
    leads: tuple[str, ...]
    sampling_rate_hz: float
    source: str
    format: EcgFormat
    source_units: str
    #: values the recording device stored in the file (intervals, axes, its statements): theirs, not ours
    device_measurements: dict[str, float] = field(default_factory=dict)
    device_statements: tuple[str, ...] = ()
    derived_leads: tuple[str, ...] = ()
    lead_flags: dict[str, LeadFlag] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.signals_mv.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sampling_rate_hz

    def lead(self, name: str) -> np.ndarray:
        return self.signals_mv[self.leads.index(name)]

    def has(self, *names: str) -> bool:
        return all(n in self.leads for n in names)

    def usable(self, name: str) -> bool:
        return name in self.leads and name not in self.lead_flags


# --- public entry points ------------------------------------------------------------------------


def load_ecg(path: Path, *, sampling_rate_hz: float | None = None, units: str | None = None) -> EcgRecord:
    """Read an ECG by content. ``sampling_rate_hz``/``units`` are used only for CSV files that lack them."""
    if not path.exists():
        raise ToolInputError(f"心電図ファイル {path.name} が見つかりません。", f"missing: {path}")
    if not path.is_file():  # a folder, or a named pipe that would block the first read
        raise ToolInputError(
            f"{path.name} は通常のファイルではありません（心電図ファイルを指定してください）。",
            f"not a regular file: {path}",
        )
    kind = sniff_ecg_format(path)
    if kind == "dicom":
        record = read_dicom_ecg(path)
    elif kind == "wfdb":
        record = read_wfdb(path)
    elif kind == "aecg":
        record = read_aecg(path)
    elif kind == "csv":
        record = read_csv_ecg(path, sampling_rate_hz=sampling_rate_hz, units=units)
    else:
        raise ToolInputError(
            f"{path.name} は心電図として読める形式ではありません（DICOM 波形・WFDB・CSV・HL7 aECG に対応）。",
            f"unrecognised ECG format: {path}",
        )
    return finish_record(record)


def looks_like_ecg(path: Path) -> bool:
    """True when the file's content is an ECG this module can read (for the attachment typer)."""
    try:
        return sniff_ecg_format(path) is not None
    except OSError:
        return False


def sniff_ecg_format(path: Path) -> EcgFormat | None:
    """Which ECG format a file is, judged by its content (extension only to find a WFDB pair)."""
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix in (".hea", ".dat") and path.with_suffix(".hea").exists():
        header = path.with_suffix(".hea").read_text(errors="replace").splitlines()
        first = next((ln for ln in header if ln.strip() and not ln.startswith("#")), "")
        if re.match(r"^\S+(/\d+)?\s+\d+\s+[\d.]+", first):
            return "wfdb"
    with path.open("rb") as fh:
        head = fh.read(4096)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom" if _dicom_has_waveform(path) else None
    text = head.decode("utf-8", errors="replace")
    if "<AnnotatedECG" in text:
        return "aecg"
    if csv_header_leads(text):
        return "csv"
    return None


# --- DICOM ------------------------------------------------------------------------------------


def _dicom_has_waveform(path: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "WaveformSequence"])
    except Exception:
        return False
    return "WaveformSequence" in ds


def read_dicom_ecg(path: Path) -> EcgRecord:
    """DICOM waveform (12-lead / general ECG): the first rhythm multiplex group, in mV."""
    import pydicom
    from pydicom.waveforms.numpy_handler import multiplex_array

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ToolInputError(f"DICOM ファイル {path.name} を読み込めません。", f"{path}: {exc}") from exc
    if "WaveformSequence" not in ds or not ds.WaveformSequence:
        raise ToolInputError(
            f"{path.name} には心電図波形が含まれていません。", f"{path}: no WaveformSequence"
        )
    groups = list(ds.WaveformSequence)
    index = next(
        (i for i, g in enumerate(groups) if "RHYTHM" in str(g.get("MultiplexGroupLabel", "")).upper()), 0
    )
    group = groups[index]
    n_ch, n_s = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
    bytes_needed = n_ch * n_s * int(group.WaveformBitsAllocated) // 8
    if len(group.WaveformData) < bytes_needed:
        raise ToolInputError(
            f"{path.name} の波形データが途中で切れています"
            f"（{len(group.WaveformData)} / {bytes_needed} バイト）。",
            f"{path}: truncated WaveformData",
        )
    raw = multiplex_array(ds, index, as_raw=False).T  # (channels, samples) in each channel's units
    leads: list[str] = []
    rows: list[np.ndarray] = []
    unit_names: set[str] = set()
    for ch, row in zip(group.ChannelDefinitionSequence, raw, strict=True):
        label = (
            ch.ChannelSourceSequence[0].CodeMeaning
            if "ChannelSourceSequence" in ch
            else ch.get("ChannelLabel", "")
        )
        name = _lead_name(str(label))
        if name is None or name in leads:
            log.info("%s: channel %r skipped", path.name, label)
            continue
        unit = (
            str(ch.ChannelSensitivityUnitsSequence[0].CodeValue)
            if "ChannelSensitivityUnitsSequence" in ch
            else ""
        )
        if "ChannelSensitivity" not in ch or unit.lower() not in _UNIT_TO_MV:
            raise ToolInputError(
                f"{path.name} の誘導 {name} の感度または単位が記録されていないため、電位を計算できません。",
                f"{path}: channel {label} sensitivity/unit missing ({unit!r})",
            )
        unit_names.add(unit)
        leads.append(name)
        rows.append(row * _UNIT_TO_MV[unit.lower()])
    if not leads:
        raise ToolInputError(f"{path.name} に標準誘導の波形が見つかりません。", f"{path}: no standard leads")
    device, statements = _dicom_device_values(ds)
    return EcgRecord(
        signals_mv=np.vstack(rows).astype(np.float64),
        leads=tuple(leads),
        sampling_rate_hz=float(group.SamplingFrequency),
        source=str(path),
        format="dicom",
        source_units="/".join(sorted(unit_names)),
        device_measurements=device,
        device_statements=statements,
    )


_DEVICE_KEYS = {
    "RR Interval": "rr_ms",
    "PR Interval": "pr_ms",
    "QRS Duration": "qrs_ms",
    "QT Interval": "qt_ms",
    "QTc Interval": "qtc_ms",
    "P Axis": "p_axis_deg",
    "QRS Axis": "qrs_axis_deg",
    "T Axis": "t_axis_deg",
    "Ventricular Heart Rate": "heart_rate_bpm",
}


def _dicom_device_values(ds: object) -> tuple[dict[str, float], tuple[str, ...]]:
    """Measurements and statements the recording device stored as waveform annotations."""
    values: dict[str, float] = {}
    statements: list[str] = []
    for ann in getattr(ds, "WaveformAnnotationSequence", []):
        if "UnformattedTextValue" in ann:
            statements.append(str(ann.UnformattedTextValue))
            continue
        if "ConceptNameCodeSequence" not in ann or "NumericValue" not in ann:
            continue
        key = _DEVICE_KEYS.get(str(ann.ConceptNameCodeSequence[0].CodeMeaning))
        value = float(ann.NumericValue)
        if key and value > 0:  # devices write 0 for "not measured" (e.g. PP Interval here)
            values[key] = value
    return values, tuple(statements)


# --- WFDB -------------------------------------------------------------------------------------


def read_wfdb(path: Path) -> EcgRecord:
    """A WFDB record (.hea + signal file); units and gain from the header."""
    import wfdb

    base = path.with_suffix("")
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:
        raise ToolInputError(f"WFDB ヘッダ {base.name}.hea を読み込めません。", f"{base}: {exc}") from exc
    try:
        rec = wfdb.rdrecord(str(base), physical=True)
    except Exception as exc:
        raise ToolInputError(
            f"WFDB レコード {base.name} の信号ファイルを読み込めません（欠損または途中で切れている可能性）。",
            f"{base}: {exc}",
        ) from exc
    signal = rec.p_signal
    if signal is None or header.sig_len is None or signal.shape[0] < int(header.sig_len):
        got = 0 if signal is None else signal.shape[0]
        raise ToolInputError(
            f"WFDB レコード {base.name} の信号が途中で切れています（{got} / {header.sig_len} サンプル）。",
            f"{base}: truncated signal",
        )
    leads: list[str] = []
    rows: list[np.ndarray] = []
    unit_names: set[str] = set()
    for j, (name_raw, unit) in enumerate(zip(rec.sig_name, rec.units, strict=True)):
        name = _lead_name(name_raw)
        if name is None or name in leads:
            continue
        scale = _UNIT_TO_MV.get(str(unit).strip().lower())
        if scale is None:
            raise ToolInputError(
                f"WFDB レコード {base.name} の誘導 {name_raw} の単位「{unit}」は電位の単位ではありません。",
                f"{base}: unit {unit!r}",
            )
        unit_names.add(str(unit))
        leads.append(name)
        rows.append(signal[:, j] * scale)
    if not leads:
        raise ToolInputError(
            f"WFDB レコード {base.name} に標準誘導が見つかりません。", f"{base}: {rec.sig_name}"
        )
    return EcgRecord(
        signals_mv=np.vstack(rows).astype(np.float64),
        leads=tuple(leads),
        sampling_rate_hz=float(rec.fs),
        source=str(base),
        format="wfdb",
        source_units="/".join(sorted(unit_names)),
    )


# --- CSV --------------------------------------------------------------------------------------

_META_RE = re.compile(r"^#\s*(sampling_rate_hz|sampling_rate|fs|units?)\s*[:=]\s*(\S+)", re.IGNORECASE)


def csv_header_leads(text: str) -> list[str]:
    """Standard leads named in the first non-comment line of a CSV text, or [] if none."""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        names = [_lead_name(c) for c in next(csv.reader([line]))]
        return [n for n in names if n]
    return []


def _stated_rate(path: Path, raw: str) -> float:
    """The sampling rate a comment line states; a value that is not a positive finite number is refused
    by name (a stated but unusable rate is not 'missing')."""
    try:
        fs = float(raw)
    except ValueError:
        fs = float("nan")
    if not np.isfinite(fs) or fs <= 0:
        raise ToolInputError(
            f"CSV {path.name} のサンプリング周波数「{raw[:20]}」は正の数ではないため使えません"
            "（例: 先頭行に「# sampling_rate_hz: 500」）。",
            f"{path}: sampling rate {raw!r}",
        )
    return fs


def read_csv_ecg(path: Path, *, sampling_rate_hz: float | None = None, units: str | None = None) -> EcgRecord:
    """CSV: a header row of lead names, one row per sample. Sampling rate and units must be stated.

    They are read from comment lines (``# sampling_rate_hz: 500``, ``# units: uV``), from a ``time_s`` or
    ``time_ms`` column, or from the arguments; if none states them the file is refused.
    """
    text = path.read_text(errors="replace")
    meta: dict[str, str] = {}
    body: list[str] = []
    for line in text.splitlines():
        m = _META_RE.match(line.strip())
        if m:
            key = "units" if m.group(1).lower().startswith("unit") else "fs"
            meta[key] = m.group(2)
        elif line.strip() and not line.lstrip().startswith("#"):
            body.append(line)
    rows = list(csv.reader(io.StringIO("\n".join(body))))
    if len(rows) < 2:
        raise ToolInputError(f"CSV {path.name} に波形データがありません。", f"{path}: {len(rows)} rows")
    header = [h.strip() for h in rows[0]]
    fs = sampling_rate_hz or (_stated_rate(path, meta["fs"]) if "fs" in meta else None)
    unit = units or meta.get("units")
    time_col = next((i for i, h in enumerate(header) if h.lower() in ("time_s", "time_ms")), None)
    columns: dict[str, list[float]] = {}
    for j, h in enumerate(header):
        name = _lead_name(h)
        if name is not None and name not in columns:
            columns[name] = []
            for r, row in enumerate(rows[1:], start=2):
                cell = row[j].strip() if j < len(row) else ""
                try:
                    columns[name].append(float(cell))
                except ValueError as exc:
                    raise ToolInputError(
                        f"CSV {path.name} の {r} 行目、誘導 {h} に数値でない値「{cell[:20]}」があります。",
                        f"{path}: row {r} column {h}: {cell!r}",
                    ) from exc
    if not columns:
        raise ToolInputError(
            f"CSV {path.name} の見出しに誘導名（I, II, V1 など）がありません。", f"{path}: {header}"
        )
    if fs is None and time_col is not None:
        try:
            t = np.array([float(r[time_col]) for r in rows[1:]])
        except (ValueError, IndexError) as exc:
            raise ToolInputError(f"CSV {path.name} の時刻列「{header[time_col]}」に数値でない値があります。",
                                 f"{path}: time column: {exc}") from exc
        step = float(np.median(np.diff(t))) if len(t) > 1 else float("nan")
        if not np.isfinite(step) or step <= 0:
            raise ToolInputError(f"CSV {path.name} の時刻列「{header[time_col]}」が増加していないため、"
                                 "サンプリング周波数を決められません。", f"{path}: time step {step}")
        fs = 1.0 / (step / 1000.0 if header[time_col].lower() == "time_ms" else step)
    if fs is None or not np.isfinite(fs) or fs <= 0:
        raise ToolInputError(
            f"CSV {path.name} にサンプリング周波数の記載がありません"
            "（例: 先頭行に「# sampling_rate_hz: 500」）。",
            f"{path}: sampling rate not stated",
        )
    if unit is None or unit.lower() not in _UNIT_TO_MV:
        raise ToolInputError(
            f"CSV {path.name} に電位の単位（mV または uV）の記載がありません（例: 「# units: uV」）。",
            f"{path}: units {unit!r}",
        )
    signals = np.array(list(columns.values()), dtype=np.float64) * _UNIT_TO_MV[unit.lower()]
    return EcgRecord(
        signals_mv=signals,
        leads=tuple(columns),
        sampling_rate_hz=float(fs),
        source=str(path),
        format="csv",
        source_units=unit,
    )


# --- HL7 aECG ---------------------------------------------------------------------------------

_HL7 = "{urn:hl7-org:v3}"


def read_aecg(path: Path) -> EcgRecord:
    """HL7 annotated ECG (FDA XML): the first series' rhythm sequence set, scaled by origin and scale."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ToolInputError(f"aECG ファイル {path.name} の XML が壊れています。", f"{path}: {exc}") from exc
    ns = _HL7 if root.tag.startswith(_HL7) else ""
    seq_set = root.find(f".//{ns}series/{ns}component/{ns}sequenceSet")
    if seq_set is None:
        raise ToolInputError(f"aECG ファイル {path.name} に波形（sequenceSet）がありません。", f"{path}")
    fs: float | None = None
    leads: list[str] = []
    rows: list[np.ndarray] = []
    unit_names: set[str] = set()
    for seq in seq_set.iter(f"{ns}sequence"):
        code_el, value = seq.find(f"{ns}code"), seq.find(f"{ns}value")
        if code_el is None or value is None:
            continue
        code = code_el.get("code", "")
        if code.startswith("TIME_"):
            inc = value.find(f"{ns}increment")
            if inc is not None:
                step = float(inc.get("value", "nan"))
                step_unit = inc.get("unit", "s").lower()
                fs = 1.0 / (step / 1000.0 if step_unit == "ms" else step)
            continue
        name = _lead_name(code)
        digits = value.find(f"{ns}digits")
        if name is None or digits is None or not digits.text:
            continue
        origin, scale = value.find(f"{ns}origin"), value.find(f"{ns}scale")
        unit = (scale.get("unit", "") if scale is not None else "").strip()
        if scale is None or unit.lower() not in _UNIT_TO_MV:
            raise ToolInputError(
                f"aECG ファイル {path.name} の誘導 {name} に単位（scale）がありません。",
                f"{path}: {code} scale unit {unit!r}",
            )
        try:
            samples = np.array(digits.text.split(), dtype=np.float64)
        except ValueError as exc:
            raise ToolInputError(
                f"aECG ファイル {path.name} の誘導 {name} に数値でない値があります。",
                f"{path}: {code}: {exc}",
            ) from exc
        offset = float(origin.get("value", "0")) if origin is not None else 0.0
        origin_unit = origin.get("unit", unit) if origin is not None else unit
        mv = samples * float(scale.get("value", "1")) * _UNIT_TO_MV[unit.lower()]
        mv += offset * _UNIT_TO_MV.get(origin_unit.lower(), _UNIT_TO_MV[unit.lower()])
        unit_names.add(unit)
        leads.append(name)
        rows.append(mv)
    if fs is None or not rows:
        raise ToolInputError(
            f"aECG ファイル {path.name} からサンプリング周波数または誘導を読み取れません。",
            f"{path}: fs={fs}, leads={leads}",
        )
    n = min(len(r) for r in rows)
    return EcgRecord(
        signals_mv=np.vstack([r[:n] for r in rows]),
        leads=tuple(leads),
        sampling_rate_hz=fs,
        source=str(path),
        format="aecg",
        source_units="/".join(sorted(unit_names)),
    )


# --- common finishing -------------------------------------------------------------------------


def finish_record(record: EcgRecord) -> EcgRecord:
    """Check shape and rate, derive missing limb leads, order leads, flag flat and saturated ones."""
    sig = record.signals_mv
    if sig.ndim != 2 or sig.shape[1] < 2 * record.sampling_rate_hz:
        raise ToolInputError(
            "心電図の記録が短すぎます（2 秒以上必要です）。",
            f"{record.source}: shape {sig.shape} at {record.sampling_rate_hz} Hz",
        )
    if not 100 <= record.sampling_rate_hz <= 20000:
        raise ToolInputError(
            f"サンプリング周波数 {record.sampling_rate_hz:g} Hz は解析できません（100 Hz 以上が必要）。",
            f"{record.source}: fs {record.sampling_rate_hz}",
        )
    bad_counts = {n: int(np.count_nonzero(~np.isfinite(row))) for n, row in zip(record.leads, sig, strict=True)}
    nonfinite = {n for n, c in bad_counts.items() if c}
    if nonfinite == set(record.leads):
        total = sum(bad_counts.values())
        raise ToolInputError(
            f"心電図 {Path(record.source).name} はすべての誘導に数値でないサンプル（NaN・無限大、計 {total:,} 個）"
            "があるため解析できません。",
            f"{record.source}: non-finite samples per lead {bad_counts}",
        )
    if nonfinite:
        log.warning("%s: leads with non-finite samples excluded: %s", record.source, bad_counts)
        # an interpolated gap is a straight line that measures like a real segment: the lead is excluded
        # from measurement (flag "nonfinite") and shown as a flat zero line
        sig = np.where(np.isfinite(sig), sig, 0.0)
        sig[[record.leads.index(n) for n in nonfinite]] = 0.0
    by_name = dict(zip(record.leads, sig, strict=True))
    derived: list[str] = []
    if "I" in by_name and "II" in by_name and not nonfinite & {"I", "II"}:
        lead_i, lead_ii = by_name["I"], by_name["II"]
        formulas = {
            "III": lead_ii - lead_i,
            "aVR": -(lead_i + lead_ii) / 2,
            "aVL": lead_i - lead_ii / 2,
            "aVF": lead_ii - lead_i / 2,
        }
        for name, values in formulas.items():
            if name not in by_name:
                by_name[name] = values
                derived.append(name)
    order = [n for n in STANDARD_LEADS if n in by_name]
    signals = np.vstack([by_name[n] for n in order])
    flags: dict[str, LeadFlag] = {n: "nonfinite" for n in order if n in nonfinite}
    for n in order:
        flag = None if n in flags else _lead_flag(by_name[n], record.sampling_rate_hz)
        if flag:
            flags[n] = flag
    return EcgRecord(
        signals_mv=signals,
        leads=tuple(order),
        sampling_rate_hz=record.sampling_rate_hz,
        source=record.source,
        format=record.format,
        source_units=record.source_units,
        device_measurements=record.device_measurements,
        device_statements=record.device_statements,
        derived_leads=tuple(derived),
        lead_flags=flags,
    )


def _lead_flag(values: np.ndarray, fs: float) -> LeadFlag | None:
    centred = values - np.median(values)
    if np.ptp(centred) < FLAT_PEAK_TO_PEAK_MV:
        return "flat"
    run = max(2, round(SATURATION_RUN_S * fs))
    clipped = 0
    for extreme in (values.max(), values.min()):
        at = np.concatenate(([0], (values == extreme).astype(np.int8), [0]))
        starts, ends = np.flatnonzero(np.diff(at) == 1), np.flatnonzero(np.diff(at) == -1)
        lengths = ends - starts
        clipped += int(lengths[lengths >= run].sum())
    return "saturated" if clipped >= SATURATION_FRACTION * values.size else None
