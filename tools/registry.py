"""The tool registry, kept as data: listing tools imports each tool's module, never torch or monai.

dokuei's own tools are the lines of ``BUILTIN_TOOLS``; a third-party package adds a tool through the
entry-point group ``dokuei.tools`` (``name = "package.module:ToolClass"``) without touching this file.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from dokuei.settings import Settings
from dokuei.tools.base import Tool

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dokuei.tools"

#: name -> "module:Class". Adding a tool = one line here + its file + its test.
BUILTIN_TOOLS: dict[str, str] = {
    "judge_checkup": "dokuei.tools.judge_checkup:JudgeCheckup",
    "analyze_ecg": "dokuei.tools.analyze_ecg:AnalyzeEcg",
    "classify_chest_xray": "dokuei.tools.classify_chest_xray:ClassifyChestXray",
    "advise_cardiology": "dokuei.tools.advise_cardiology:AdviseCardiology",
    "measure_lymph_nodes": "dokuei.tools.measure_lymph_nodes:MeasureLymphNodes",
    "assess_recist_response": "dokuei.tools.assess_recist_response:AssessRecistResponse",
    "segment_ct": "dokuei.tools.segment_ct:SegmentCt",
    "measure_body_composition": "dokuei.tools.measure_body_composition:MeasureBodyComposition",
    "classify_ecg": "dokuei.tools.classify_ecg:ClassifyEcg",
    "search_reports": "dokuei.tools.search_reports:SearchReports",
    "detect_critical_findings": "dokuei.tools.detect_critical_findings:DetectCriticalFindings",
    "draft_impression": "dokuei.tools.draft_impression:DraftImpression",
    "structure_report": "dokuei.tools.structure_report:StructureReport",
    "check_missed_findings": "dokuei.tools.check_missed_findings:CheckMissedFindings",
}


@dataclass(frozen=True)
class ToolEntry:
    name: str
    target: str
    origin: str  # "builtin" or the distribution that provides the entry point


def tool_entries() -> list[ToolEntry]:
    """Built-in tools, then entry-point tools (a third party cannot replace a built-in name)."""
    entries = [ToolEntry(name, target, "builtin") for name, target in BUILTIN_TOOLS.items()]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_TOOLS:
            log.warning("entry point %s ignored: the name is a built-in tool", ep.name)
            continue
        dist = ep.dist.name if ep.dist is not None else "?"
        entries.append(ToolEntry(ep.name, ep.value, dist))
    return entries


def load_tool_class(entry: ToolEntry) -> type[Tool]:
    module_name, _, attr = entry.target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Tool)):
        raise TypeError(f"{entry.target} is not a dokuei Tool")
    if cls.name != entry.name:
        raise ValueError(f"{entry.target} declares name {cls.name!r}, registered as {entry.name!r}")
    return cls


@cache
def tool_title_ja(name: str) -> str:
    """The tool's Japanese title (「体組成計測（L3）」) for what a clinician reads; its name if it has none."""
    target = BUILTIN_TOOLS.get(name) or next((e.target for e in tool_entries() if e.name == name), None)
    if target is None:
        return name
    try:
        return load_tool_class(ToolEntry(name, target, "")).title_ja or name
    except Exception:  # an unloadable third-party tool still has its name
        log.warning("tool %s: no title (its class does not load)", name, exc_info=True)
        return name


class ToolRegistry:
    """Tool instances by name, created on first use; a tool that fails to import is reported, not fatal."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self._entries = {e.name: e for e in tool_entries()}
        self._instances: dict[str, Tool] = {}
        self.load_errors: dict[str, str] = {}

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def entry(self, name: str) -> ToolEntry:
        return self._entries[name]

    def get(self, name: str) -> Tool:
        if name not in self._entries:
            raise KeyError(name)
        if name not in self._instances:
            self._instances[name] = load_tool_class(self._entries[name])(self.settings)
        return self._instances[name]

    def tools(self) -> list[Tool]:
        """Every tool that imports; import failures are kept in ``load_errors``."""
        loaded = []
        for name in self._entries:
            try:
                loaded.append(self.get(name))
            except Exception as exc:
                log.warning("tool %s cannot be loaded: %s", name, exc)
                self.load_errors[name] = f"{type(exc).__name__}: {exc}"
        return loaded
