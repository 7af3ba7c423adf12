"""Exports of a turn for the hospital, one function per format, each returning the path(s) it wrote.

``turn`` is ``TurnResult.to_json()`` (or a stored turn, :mod:`dokuei.export.turns`); ``stem`` names the
files (``<stem>.fhir.json``, ``<stem>.pdf``, ``<stem>.txt``, ``<stem>.<tool>.sr.dcm``, ``<stem>.<tool>.seg.dcm``).
A format that cannot be written raises :class:`ExportError` with a Japanese reason (e.g. SR/SEG for a
NIfTI-only study, which has no UIDs to reference). :func:`export_turn` writes several formats and keeps
going past a refused one, so the caller (CLI, UI download buttons, push) can show both.

| format | function | standard |
|---|---|---|
| fhir | :func:`export_fhir` | HL7 FHIR R4 transaction Bundle (fhir.resources, JP Core profile names) |
| pdf | :func:`export_pdf` | readable report, Japanese font embedded |
| txt | :func:`export_txt` | plain text for pasting into 電子カルテ |
| sr | :func:`export_sr` | DICOM Comprehensive 3D SR, TID 1500 (highdicom) |
| seg | :func:`export_seg` | DICOM SEG, BINARY (highdicom) |
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dokuei.export.errors import ExportError

FORMATS = ("sr", "seg", "fhir", "pdf", "txt")


def export_fhir(turn: dict[str, Any], out_dir: Path, stem: str, question: str = "") -> list[Path]:
    from dokuei.export.fhir import turn_bundle

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.fhir.json"
    path.write_text(json.dumps(turn_bundle(turn), ensure_ascii=False, indent=2), encoding="utf-8")
    return [path]


def export_pdf(turn: dict[str, Any], out_dir: Path, stem: str, question: str = "") -> list[Path]:
    from dokuei.export.pdf import turn_pdf

    out_dir.mkdir(parents=True, exist_ok=True)
    return [turn_pdf(turn, out_dir / f"{stem}.pdf", question)]


def export_txt(turn: dict[str, Any], out_dir: Path, stem: str, question: str = "") -> list[Path]:
    from dokuei.export.text import turn_text

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.txt"
    path.write_text(turn_text(turn, question), encoding="utf-8")
    return [path]


def export_sr(turn: dict[str, Any], out_dir: Path, stem: str, question: str = "") -> list[Path]:
    from dokuei.export.sr import write_sr

    return write_sr(turn, out_dir, stem)


def export_seg(turn: dict[str, Any], out_dir: Path, stem: str, question: str = "") -> list[Path]:
    from dokuei.export.seg import write_seg

    return write_seg(turn, out_dir, stem)


EXPORTERS: dict[str, Callable[[dict[str, Any], Path, str, str], list[Path]]] = {
    "sr": export_sr, "seg": export_seg, "fhir": export_fhir, "pdf": export_pdf, "txt": export_txt}


@dataclass
class ExportReport:
    written: list[Path] = field(default_factory=list)
    refused_ja: dict[str, str] = field(default_factory=dict)  # format -> Japanese reason


def parse_formats(text: str) -> list[str]:
    """``"sr,seg,fhir"`` → the list; unknown names raise ExportError naming them."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ExportError(f"未対応の出力形式: {', '.join(unknown) or '（空）'}（対応: {', '.join(FORMATS)}）")
    return formats


def turn_stem(turn: dict[str, Any]) -> str:
    return f"dokuei-{str(turn.get('turn_id') or turn.get('session_id') or 'turn')[:16]}"


def export_turn(turn: dict[str, Any], formats: list[str], out_dir: Path, question: str = "",
                stem: str | None = None) -> ExportReport:
    """Write every requested format; a refused one is reported, the others are still written."""
    report = ExportReport()
    for fmt in formats:
        try:
            report.written += EXPORTERS[fmt](turn, out_dir, stem or turn_stem(turn), question)
        except ExportError as exc:
            report.refused_ja[fmt] = str(exc)
    return report


__all__ = ["EXPORTERS", "FORMATS", "ExportError", "ExportReport", "export_fhir", "export_pdf", "export_seg",
           "export_sr", "export_turn", "export_txt", "parse_formats", "turn_stem"]
