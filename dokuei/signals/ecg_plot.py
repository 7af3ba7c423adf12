"""The ECG as a clinician reads it on paper: 3×4 layout plus a lead II rhythm strip.

Drawn in millimetres on a 1 mm / 5 mm grid at 25 mm/s and 10 mm/mV, so a printed page at 100 % has the
standard paper scale. Each column shows 2.5 s of its leads (I/II/III, aVR/aVL/aVF, V1–V3, V4–V6); the
rhythm strip shows the whole first 10 s of lead II with a marker at every detected beat (N black, V red).
Records with fewer leads get one 10 s strip per lead.

Nothing identifying is drawn: file names often carry a patient's name or ID, so the caption holds only
the paper scale and sampling rate. All text is ASCII (matplotlib's default font has no Japanese glyphs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dokuei.io.ecg import EcgRecord

MM_PER_S = 25.0
MM_PER_MV = 10.0
STRIP_S = 10.0
ROW_MM = 35.0
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))


def caption(record: EcgRecord) -> str:
    """The one line of text under the tracing: scale and rate, never the file name (PHI)."""
    return f"25 mm/s, 10 mm/mV, {record.sampling_rate_hz:g} Hz"


def plot_ecg(
    record: EcgRecord, r_peaks: np.ndarray, beat_types: tuple[str, ...], out: Path, title: str = ""
) -> Path:
    """Draw the record to ``out`` (PNG). ``title`` is accepted for old callers and never drawn (PHI)."""
    del title
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs = record.sampling_rate_hz
    n = min(record.n_samples, int(STRIP_S * fs))
    twelve = all(lead in record.leads for row in LAYOUT for lead in row)
    rhythm_lead = "II" if "II" in record.leads else record.leads[0]
    rows: list[list[tuple[str, float, float]]] = []  # (lead, start_s, end_s) segments per row
    if twelve:
        quarter = STRIP_S / 4
        rows = [[(lead, c * quarter, (c + 1) * quarter) for c, lead in enumerate(row)] for row in LAYOUT]
    else:
        rows = [[(lead, 0.0, n / fs)] for lead in record.leads[:12]]
    rows.append([(rhythm_lead, 0.0, n / fs)])
    width_mm = STRIP_S * MM_PER_S + 10
    height_mm = ROW_MM * len(rows) + 10
    fig = plt.figure(figsize=(width_mm / 25.4, height_mm / 25.4), dpi=150)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-8, width_mm - 8)
    ax.set_ylim(0, height_mm)
    ax.set_aspect("equal")
    ax.axis("off")
    for x in np.arange(-8, width_mm - 8 + 0.01, 1.0):
        ax.axvline(
            x, color="#f4c7c7" if round(x) % 5 else "#e58f8f", lw=0.3 if round(x) % 5 else 0.6, zorder=0
        )
    for y in np.arange(0, height_mm + 0.01, 1.0):
        ax.axhline(
            y, color="#f4c7c7" if round(y) % 5 else "#e58f8f", lw=0.3 if round(y) % 5 else 0.6, zorder=0
        )
    for r, row in enumerate(rows):
        base = height_mm - 5 - ROW_MM * (r + 0.5)
        # 1 mV calibration pulse, 0.2 s wide
        ax.plot(
            [-7, -6, -6, -3, -3, -2],
            [base, base, base + MM_PER_MV, base + MM_PER_MV, base, base],
            color="black",
            lw=0.8,
        )
        for lead, t0, t1 in row:
            a, b = int(t0 * fs), min(int(t1 * fs), n)
            sig = record.lead(lead)[a:b]
            sig = sig - np.median(record.lead(lead)[:n])
            t = np.arange(a, b) / fs
            ax.plot(t * MM_PER_S, base + np.clip(sig, -1.6, 1.6) * MM_PER_MV, color="black", lw=0.6)
            ax.text(t0 * MM_PER_S + 1, base + 0.55 * ROW_MM - 3, lead, fontsize=6)
        if r == len(rows) - 1:
            for p, kind in zip(r_peaks, beat_types, strict=True):
                if p >= n or kind == "Q":
                    continue
                ax.plot(
                    p / fs * MM_PER_S,
                    base - 0.45 * ROW_MM + 2,
                    marker="^",
                    ms=3,
                    color="red" if kind == "V" else "black",
                )
                if kind == "V":
                    ax.text(
                        p / fs * MM_PER_S, base - 0.45 * ROW_MM + 4, "V", color="red", fontsize=5, ha="center"
                    )
    ax.text(0, 1.5, caption(record), fontsize=6)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, metadata={"Software": None})
    plt.close(fig)
    return out
