"""What the planner knows when it builds a tool's input: the question, the attachments, the patient."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:  # base imports this module; the results are only held here, never built
    from dokuei.tools.base import ToolResult

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


class CallResults:
    """This turn's tool results keyed per call id, in the order they finished.

    Two calls of the same tool keep two results (a dict by tool name kept only the last). Tools that
    read another tool's result ask for it by tool name: :meth:`get` gives that tool's latest result.
    """

    def __init__(self, results: Iterable[tuple[str, ToolResult]] = ()) -> None:
        self._by_call: dict[str, ToolResult] = {}
        for call_id, result in results:
            self.add(call_id, result)

    @classmethod
    def of(cls, results: Iterable[ToolResult]) -> CallResults:
        """From results that carry their ``call_id`` (a result without one gets ``<tool>#<n>``)."""
        return cls((r.call_id or f"{r.tool}#{n}", r) for n, r in enumerate(results, start=1))

    def add(self, call_id: str, result: ToolResult) -> str:
        """Keep ``result`` under ``call_id`` (a repeated id, as a model may send, gets ``#2``, ``#3``…)."""
        key, n = call_id, 1
        while key in self._by_call:
            n += 1
            key = f"{call_id}#{n}"
        self._by_call[key] = result
        return key

    def for_call(self, call_id: str) -> ToolResult | None:
        return self._by_call.get(call_id)

    def by_tool(self, tool: str) -> list[ToolResult]:
        return [r for r in self._by_call.values() if r.tool == tool]

    def get(self, tool: str) -> ToolResult | None:
        """The latest result of ``tool`` this turn, or None when it has not run."""
        found = self.by_tool(tool)
        return found[-1] if found else None

    def values(self) -> list[ToolResult]:
        return list(self._by_call.values())

    def items(self) -> list[tuple[str, ToolResult]]:
        return list(self._by_call.items())

    def tools(self) -> set[str]:
        return {r.tool for r in self._by_call.values()}

    def __iter__(self) -> Iterator[ToolResult]:
        return iter(list(self._by_call.values()))

    def __len__(self) -> int:
        return len(self._by_call)

    def __bool__(self) -> bool:
        return bool(self._by_call)


@dataclass(init=False)
class ToolContext:
    question: str
    attachments: list[Attachment]
    patient: PatientContext
    results: CallResults  # this turn's results, per call

    def __init__(self, question: str, attachments: list[Attachment] | None = None,
                 patient: PatientContext | None = None,
                 results: CallResults | Mapping[str, ToolResult] | None = None) -> None:
        """``results`` as :class:`CallResults`, or a mapping call id (or tool name) → result."""
        self.question = question
        self.attachments = list(attachments or [])
        self.patient = patient if patient is not None else PatientContext()
        self.results = results if isinstance(results, CallResults) else CallResults((results or {}).items())

    def of_kind(self, *kinds: AttachmentKind) -> list[Attachment]:
        return [a for a in self.attachments if a.kind in kinds]

    def attached_report_text(self, max_chars: int = 20_000) -> str | None:
        """The first attached report's text (cut at ``max_chars``); None when no report text is attached."""
        attached = self.of_kind("report_text")
        if not attached:
            return None
        return Path(attached[0].path).read_text(encoding="utf-8", errors="replace")[:max_chars]
