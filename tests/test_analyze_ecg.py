"""analyze_ecg and the ECG readers on real recordings that ship in packages.

Data:
- ``waveform_ecg.dcm`` in pydicom (MIT package; a real anonymised 12-lead, 10 s, 1 kHz Mortara ELI 250
  recording distributed with pydicom's test files).
- MIT-BIH Arrhythmia record 208, 19:35–24:35, lead MLII, 360 Hz, as scipy ≤ 1.12's ``misc/ecg.dat``
  (ODC-By, PhysioNet; Moody & Mark 2001). Decoded as scipy 1.12 did: npz key ``ecg``, uint16,
  mV = (raw − 1024) / 200.

Manual reading of waveform_ecg.dcm (done for these tests): the 12 leads' median beats (9 beats, aligned on
the lead II R peak) were plotted superimposed at 10 px/ms and read by eye, earliest onset / latest offset
over all leads, as a reader does with a global measurement: P onset −185 ms, QRS onset −34 ms, J point
+30 ms, T end +355 ms → PR 151 ms, QRS 64 ms, QT 389 ms; ten beats in 10 s with RR 953–1002 ms → 61 bpm.
Axes from the same median beats by the amplitude method (R − |Q/S|, P and T peak) in I and aVF with the
hexaxial correction aVF·2/√3: P 74°, QRS 55°, T 58°.
Tolerances: ±20 ms for PR, ±15 ms for QRS and ±30 ms for QT — about twice the mean-difference limits
that IEC 60601-2-25 sets for automated global intervals against CSE references (PR ±10, QRS ±6, QT
±12 ms), because a single record and a single reader carry their own error (inter-reader spread on one
record is 10–20 ms for QT). ±3 bpm for the rate. ±15° for axes: half of a 30° hexaxial sector, the
resolution clinicians read axes at. The device's stored values (PR 161, QRS 75, QT 368, axes 74/52/57)
lie within the same bands and are shown separately, labelled as the device's.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from dokuei import testdata
from dokuei.io.ecg import EcgRecord, finish_record, load_ecg, looks_like_ecg
from dokuei.settings import Settings
from dokuei.tools.analyze_ecg import AnalyzeEcg
from dokuei.tools.base import ToolStatus
from dokuei.tools.context import Attachment, PatientContext, ToolContext

log = logging.getLogger(__name__)

WAVEFORM = testdata.pydicom_file("waveform_ecg.dcm")
MITBIH = testdata.path("mitbih_208_ecg.dat")
needs_mitbih = pytest.mark.skipif(
    not MITBIH.exists(), reason="run python -m dokuei.testdata to fetch ecg.dat"
)


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory) -> AnalyzeEcg:
    return AnalyzeEcg(Settings.load(home=tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def mitbih_wfdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Record 208's excerpt written as a WFDB record (format 16, gain 200/mV, baseline 1024 as in MIT-BIH)."""
    import wfdb

    with np.load(MITBIH) as f:
        raw = f["ecg"].astype(np.int64)
    mv = (raw - 1024) / 200.0
    folder = tmp_path_factory.mktemp("wfdb")
    wfdb.wrsamp(
        "mitbih208",
        fs=360,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=mv[:, None],
        fmt=["16"],
        adc_gain=[200.0],
        baseline=[0],
        write_dir=str(folder),
    )
    return folder / "mitbih208.hea"


def test_dicom_reader_units_and_leads() -> None:
    rec = load_ecg(WAVEFORM)
    assert rec.leads == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert rec.sampling_rate_hz == 1000.0 and rec.n_samples == 10000
    assert rec.source_units == "uV"  # ChannelSensitivity 1.25 µV per count, converted to mV
    # Einthoven's law holds on the raw samples: III = II − I (within one 1.25 µV count per lead)
    assert np.max(np.abs(rec.lead("III") - (rec.lead("II") - rec.lead("I")))) < 0.005
    assert rec.lead_flags == {}
    assert rec.device_measurements["pr_ms"] == 161  # kept, but only as the device's value
    assert looks_like_ecg(WAVEFORM)


def test_waveform_ecg_against_manual_reading(tool: AnalyzeEcg) -> None:
    result = tool({"ecg_path": str(WAVEFORM), "require_axes": True})
    assert result.status is ToolStatus.OK, result.summary_ja
    out = result.output
    assert out is not None
    assert abs(out["heart_rate_bpm"] - 61) <= 3
    assert abs(out["pr_ms"] - 151) <= 20
    assert abs(out["qrs_ms"] - 64) <= 15
    assert abs(out["qt_ms"] - 389) <= 30
    rr_s = out["rr_ms"] / 1000
    assert (
        abs(out["qtc_bazett_ms"] - out["qt_ms"] / math.sqrt(rr_s)) <= 3
    )  # RR of dominant beats ≈ mean RR here
    assert abs(out["qtc_fridericia_ms"] - out["qt_ms"] / rr_s ** (1 / 3)) <= 3
    assert out["qtc_ms"] == out["qtc_bazett_ms"]
    assert abs(out["p_axis_deg"] - 74) <= 15
    assert abs(out["qrs_axis_deg"] - 55) <= 15
    assert abs(out["t_axis_deg"] - 58) <= 15
    assert out["rhythm"] == "sinus_rhythm" and out["pvc_count"] == 0
    assert out["findings"] == []  # a normal ECG, as the device's own statement "ECG NORMALE" also says
    assert out["device_reported"]["qt_ms"] == 368 and "ECG NORMALE" in out["device_statements"]
    assert "記録装置がファイルに保存した値" in result.summary_ja  # device values never pass as ours
    plot = Path(result.artifacts[0].path)
    assert plot.exists() and plot.stat().st_size > 50_000


def test_input_from_context_asks_axes_when_question_does(tool: AnalyzeEcg) -> None:
    ctx = ToolContext(
        question="この心電図の電気軸は？",
        attachments=[Attachment(WAVEFORM, "ecg")],
        patient=PatientContext(sex="F"),
    )
    inp = tool.input_from_context(ctx)
    assert inp is not None and inp.require_axes and inp.sex == "F"
    assert tool.input_from_context(ToolContext(question="この心電図の所見は？")) is None


@needs_mitbih
def test_mitbih_208_pvcs_and_rhythm(tool: AnalyzeEcg, mitbih_wfdb: Path) -> None:
    """Record 208 has frequent PVCs (992 of 2955 beats over the whole 30 min, MIT-BIH directory).

    Manual check of the excerpt (plotted 10 s per row, read by eye): wide bizarre complexes with a
    discordant T at 23.8, 25.5, 47.4 and 49.1 s; in 200–260 s 28 PVCs, i.e. ~20 % of beats.
    """
    result = tool({"ecg_path": str(mitbih_wfdb), "make_plot": False})
    assert result.status is ToolStatus.OK, result.summary_ja
    out = result.output
    assert out is not None
    assert out["leads"] == ["II"] and out["sampling_rate_hz"] == 360
    assert out["pvc_count"] >= 60
    assert 10 <= out["pvc_burden_pct"] <= 45
    assert out["rhythm"] != "sinus_rhythm"  # never called normal sinus rhythm
    assert any(f["code"] == "frequent_pvcs" for f in out["findings"])
    assert out["p_axis_deg"] is None and out["qrs_axis_deg"] is None  # one lead: no axes


@needs_mitbih
def test_mitbih_208_known_pvcs_are_typed_v() -> None:
    from dokuei.signals.ecg_measure import analyze_record

    with np.load(MITBIH) as f:
        mv = (f["ecg"].astype(np.int64) - 1024) / 200.0
    rec = finish_record(
        EcgRecord(
            signals_mv=mv[None, :],
            leads=("II",),
            sampling_rate_hz=360.0,
            source="208",
            format="wfdb",
            source_units="mV",
        )
    )
    a = analyze_record(rec)
    times = a.r_peaks / 360.0
    for t_pvc in (23.8, 25.5, 47.4, 49.1):
        i = int(np.argmin(np.abs(times - t_pvc)))
        assert abs(times[i] - t_pvc) < 0.1 and a.beat_types[i] == "V", t_pvc
    normal = [i for i, t in enumerate(times) if 0 < t < 15]  # the first 15 s are sinus beats only
    assert all(a.beat_types[i] == "N" for i in normal)


def test_one_lead_asked_for_axes_is_refused(tool: AnalyzeEcg, tmp_path: Path) -> None:
    rec = load_ecg(WAVEFORM)
    csv_path = tmp_path / "lead_v5.csv"
    rows = "\n".join(f"{v:.4f}" for v in rec.lead("V5"))
    csv_path.write_text(f"# sampling_rate_hz: 1000\n# units: mV\nV5\n{rows}\n")
    result = tool({"ecg_path": str(csv_path), "require_axes": True})
    assert result.status is ToolStatus.FAILED
    assert "電気軸を計算できません" in result.summary_ja
    ok = tool({"ecg_path": str(csv_path), "make_plot": False})  # without the request it measures what it can
    assert ok.status is ToolStatus.OK and ok.output is not None and ok.output["qrs_axis_deg"] is None


def test_csv_with_text_in_a_lead(tool: AnalyzeEcg, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    lines = ["# sampling_rate_hz: 500", "# units: uV", "I,II"] + [f"{i},{2 * i}" for i in range(2000)]
    lines[1500] = "12,lead-off"
    path.write_text("\n".join(lines))
    result = tool({"ecg_path": str(path)})
    assert result.status is ToolStatus.FAILED
    assert "数値でない値" in result.summary_ja and "II" in result.summary_ja


def test_csv_without_rate_is_refused_not_guessed(tool: AnalyzeEcg, tmp_path: Path) -> None:
    path = tmp_path / "norate.csv"
    path.write_text("I,II\n" + "\n".join(f"{i % 7},{i % 5}" for i in range(3000)))
    result = tool({"ecg_path": str(path)})
    assert result.status is ToolStatus.FAILED and "サンプリング周波数" in result.summary_ja


@needs_mitbih
def test_truncated_wfdb_record(tool: AnalyzeEcg, mitbih_wfdb: Path, tmp_path: Path) -> None:
    hea = tmp_path / "mitbih208.hea"
    hea.write_text(mitbih_wfdb.read_text())
    dat = mitbih_wfdb.with_suffix(".dat").read_bytes()
    (tmp_path / "mitbih208.dat").write_bytes(dat[: len(dat) // 3])
    result = tool({"ecg_path": str(hea)})
    assert result.status is ToolStatus.FAILED
    assert "WFDB" in result.summary_ja and (
        "切れて" in result.summary_ja or "読み込めません" in result.summary_ja
    )


def test_aecg_reader_matches_dicom(tmp_path: Path) -> None:
    """An HL7 aECG written from the DICOM samples (5 µV scale, leads I, II, V1–V6) reads back the same."""
    rec = load_ecg(WAVEFORM)
    seqs = [
        '<component><sequence><code code="TIME_ABSOLUTE" codeSystem="2.16.840.1.113883.5.4"/>'
        '<value xsi:type="GLIST_TS"><head value="20130125105919.000"/><increment value="0.001" unit="s"/>'
        "</value></sequence></component>"
    ]
    for lead in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"):
        digits = " ".join(str(round(v * 1000 / 5)) for v in rec.lead(lead))
        seqs.append(
            f'<component><sequence><code code="MDC_ECG_LEAD_{lead.upper()}" '
            'codeSystem="2.16.840.1.113883.6.24"/>'
            f'<value xsi:type="SLIST_PQ"><origin value="0" unit="uV"/><scale value="5" unit="uV"/>'
            f"<digits>{digits}</digits></value></sequence></component>"
        )
    xml = (
        '<?xml version="1.0"?><AnnotatedECG xmlns="urn:hl7-org:v3" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><component><series><component><sequenceSet>'
        + "".join(seqs)
        + "</sequenceSet></component></series></component></AnnotatedECG>"
    )
    path = tmp_path / "ecg.xml"
    path.write_text(xml)
    assert looks_like_ecg(path)
    back = load_ecg(path)
    assert back.sampling_rate_hz == pytest.approx(1000.0)
    assert set(back.derived_leads) == {"III", "aVR", "aVL", "aVF"}
    assert np.max(np.abs(back.lead("aVF") - rec.lead("aVF"))) < 0.01  # Goldberger from I and II, 5 µV steps


def test_flat_and_saturated_leads_flagged() -> None:
    rec = load_ecg(WAVEFORM)
    sig = rec.signals_mv.copy()
    sig[rec.leads.index("V2")] = 0.0003 * np.random.default_rng(0).standard_normal(rec.n_samples)
    clipped = sig[rec.leads.index("V4")]
    sig[rec.leads.index("V4")] = np.clip(clipped, None, 0.5)
    flagged = finish_record(
        EcgRecord(
            signals_mv=sig,
            leads=rec.leads,
            sampling_rate_hz=1000.0,
            source="x",
            format="dicom",
            source_units="uV",
        )
    )
    assert flagged.lead_flags == {"V2": "flat", "V4": "saturated"}
