"""One contract test over every registered tool (built-in and entry-point ones).

Checks what STYLE.md promises of a tool: a snake_case verb-phrase name, descriptions in Japanese and
English, described schema fields with units in the names of numeric fields, declared requirements,
and a result (never an exception) with provenance even for a broken input.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from dokuei.settings import Settings
from dokuei.tools.base import Requirements, Tool, ToolResult, ToolStatus
from dokuei.tools.registry import ToolRegistry, tool_entries

#: suffixes that carry a unit, and names that are dimensionless by nature
UNIT_SUFFIXES = ("_mm", "_mm2", "_mm3", "_cm", "_cm2", "_ml", "_l", "_m2", "_cm2_per_m2", "_hu", "_bpm", "_ms", "_s",
                 "_deg", "_percent", "_kg", "_kg_m2", "_g_dl", "_mg_dl", "_years", "_hz", "_mv", "_uv", "_px",
                 "_gib", "_mb", "_pct", "_per_min", "_per_hour", "_days", "_mmhg")
DIMENSIONLESS = re.compile(r"(^n_|^num_|count|index|^idx|score|prob|threshold|ratio|fraction|rank|^k$|top_k|seed|label|"
                           r"^slice|_slice$|^id$|_id$|_ids$|timepoint|version|^z$|^i$|^j$|^value|level|grade|weight$|^row|^lead|"
                           r"^rows|^cols|^channels|dice|^rr_|^page|^limit|^n$|^beats?)")
VERBS = ("judge", "segment", "measure", "analyze", "classify", "search", "assess", "advise", "draft", "detect",
         "compare", "summarize", "find", "estimate", "list", "check", "compute", "read", "structure")

ENTRIES = [e.name for e in tool_entries()]


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return ToolRegistry(Settings.load())


def _numeric_fields(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, field, field-schema) of every int/float field in a schema and its $defs."""
    models = {"<root>": schema, **schema.get("$defs", {})}
    found = []
    for model_name, model in models.items():
        props = model.get("properties", {})
        for field_name, field in props.items():
            kinds = {field.get("type")} | {s.get("type") for s in field.get("anyOf", [])}
            items = field.get("items", {})
            kinds |= {items.get("type")}
            if kinds & {"number", "integer"}:
                found.append((model_name, field_name, field))
    return found


def _has_unit_sibling(schema: dict[str, Any], model: str) -> bool:
    """A value whose unit travels in a sibling field (``value`` + ``unit``) carries its unit too."""
    props = schema.get("$defs", {}).get(model, schema).get("properties", {})
    return any(k.startswith("unit") for k in props)


def _undescribed(schema: dict[str, Any]) -> list[str]:
    models = {"<root>": schema, **schema.get("$defs", {})}
    missing = []
    for model_name, model in models.items():
        if model.get("type") != "object" or "properties" not in model:
            continue
        for field_name, field in model["properties"].items():
            if "description" not in field and "$ref" not in field and "allOf" not in field:
                missing.append(f"{model_name}.{field_name}")
    return missing


def test_registry_is_not_empty() -> None:
    assert "judge_checkup" in ENTRIES


@pytest.mark.parametrize("name", ENTRIES)
def test_tool_honours_the_contract(name: str, registry: ToolRegistry) -> None:
    tool: Tool = registry.get(name)
    assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", tool.name), "snake_case name"
    assert tool.name.split("_")[0] in VERBS, f"{tool.name} should start with a verb"
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", tool.description_ja) and len(tool.description_ja) >= 30
    assert not re.search(r"[\u3040-\u30ff]", tool.description_en) and len(tool.description_en) >= 30
    assert re.fullmatch(r"\d+\.\d+\.\d+", tool.version)
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", tool.title_ja), "a Japanese title for clinicians"
    assert isinstance(tool.requires, Requirements) and tool.requires.licence
    for spec in tool.requires.weights:
        assert spec.install_ja and spec.licence and spec.relpath

    for model in (tool.Input, tool.Output):
        schema = model.model_json_schema()
        assert not _undescribed(schema) or model is tool.Output, f"{model.__name__}: {_undescribed(schema)}"
        unitless = [f"{m}.{f}" for m, f, _ in _numeric_fields(schema)
                    if not f.endswith(UNIT_SUFFIXES) and not DIMENSIONLESS.search(f)
                    and not _has_unit_sibling(schema, m)]
        assert not unitless, f"{model.__name__}: numeric fields without a unit in the name: {unitless}"


@pytest.mark.parametrize("name", ENTRIES)
def test_bad_input_becomes_a_failed_result_with_provenance(name: str, registry: ToolRegistry) -> None:
    tool = registry.get(name)
    result = tool({"__not_a_field__": object.__name__, "unexpected": [1, 2, 3]})
    assert isinstance(result, ToolResult)
    assert result.status in (ToolStatus.FAILED, ToolStatus.UNAVAILABLE)
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", result.summary_ja), "reason in Japanese"
    prov = result.provenance
    assert prov.tool == tool.name and prov.tool_version == tool.version
    assert len(prov.input_sha256) == 64 and prov.runtime_s >= 0 and prov.started_utc is not None
