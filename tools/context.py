"""What the planner knows when it builds a tool's input: the question, the attachments, the patient."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

AttachmentKind = Literal[
    "ct_series",       # a DICOM CT series: folder, zip or single slice
    "mr_series",
    "nifti",           # NIfTI volume (image or label map; see role)
    "dicom_seg",
    "ecg",             # DICOM waveform, WFDB, CSV or HL7 aECG
    "chest_xray",      # DICOM CR/DX or PNG/JPEG radiograph
    "image",           # any other picture
    "report_text",     # a report as plain text
    "table",           # CSV of lab values etc.
    "unknown",
]


class PatientContext(BaseModel):
    """Patient facts given by the user; never guessed."""

    age_years: int | None = Field(default=None, ge=0, le=130)
    sex: Literal["M", "F"] | None = None
    height_cm: float | None = Field(default=None, gt=30, lt=260)
    weight_kg: float | None = Field(default=None, gt=1, lt=400)
    patient_id: str | None = None


@dataclass(frozen=True)
class Attachment:
    path: Path
    kind: AttachmentKind
    detail: str = ""  # e.g. modality or the reason it was typed so


@dataclass
class ToolContext:
    question: str
    attachments: list[Attachment] = field(default_factory=list)
    patient: PatientContext = field(default_factory=PatientContext)
    results: dict[str, Any] = field(default_factory=dict)  # tool name -> ToolResult of this turn

    def of_kind(self, *kinds: AttachmentKind) -> list[Attachment]:
        return [a for a in self.attachments if a.kind in kinds]

    def attached_report_text(self, max_chars: int = 20_000) -> str | None:
        """The first attached report's text (cut at ``max_chars``); None when no report text is attached."""
        attached = self.of_kind("report_text")
        if not attached:
            return None
        return Path(attached[0].path).read_text(encoding="utf-8", errors="replace")[:max_chars]
