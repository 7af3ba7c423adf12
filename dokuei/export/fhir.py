"""A turn as an HL7 FHIR R4 transaction ``Bundle``: DiagnosticReport + one Observation per measurement
+ Provenance per tool run, validated by ``fhir.resources`` (its R4B models: FHIR 4.3, which keeps R4's
shape for every resource written here).

Measurements are read from the tool outputs themselves: a numeric field whose name ends in a unit
(``_cm2``, ``_cm2_per_m2``, ``_mm``, ``_ml``, ``_ms``, ``_bpm``, ``_hu``, ``_percent``) becomes an
Observation with that UCUM unit, so no number is re-typed and none is invented. The checkup 判定 is
one Observation per item (grade as a coded value). Profiles declared (JP Core 1.1.2) are named in
``meta.profile``; this module does not claim conformance beyond what ``fhir.resources`` validates.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from dokuei.field_labels import unit_of

UCUM = "http://unitsofmeasure.org"
MEASUREMENT_SYSTEM = "urn:dokuei:measurement"
GRADE_SYSTEM = "urn:dokuei:checkup-grade"
TOOL_SYSTEM = "urn:dokuei:tool"
JP_CORE = "http://jpfhir.jp/fhir/core/StructureDefinition"
PROFILE_REPORT = f"{JP_CORE}/JP_DiagnosticReport_Common|1.1.2"
PROFILE_OBSERVATION = f"{JP_CORE}/JP_Observation_Common|1.1.2"


def measurements(output: dict[str, Any], prefix: str = "") -> list[tuple[str, float, str, str]]:
    """(path, value, UCUM code, unit) for every numeric leaf whose field name carries a unit."""
    found: list[tuple[str, float, str, str]] = []
    for key, value in output.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            found.extend(measurements(value, path))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    found.extend(measurements(item, f"{path}[{i}]"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            unit = unit_of(key)
            if unit is not None:
                found.append((path, float(value), *unit))
    return found


def _full_url(resource_id: str) -> str:
    return f"urn:uuid:{resource_id}"


def _observation(code: str, display: str, issued: str, subject: dict[str, Any] | None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": str(uuid.uuid4()), "status": "preliminary",
        "meta": {"profile": [PROFILE_OBSERVATION]},
        "code": {"coding": [{"system": MEASUREMENT_SYSTEM, "code": code, "display": display}], "text": display},
        "issued": issued,
    }
    if subject:
        obs["subject"] = subject
    return obs


def _checkup_observations(output: dict[str, Any], issued: str, subject: dict[str, Any] | None
                          ) -> list[dict[str, Any]]:
    observations = []
    for item in output.get("items", []):
        obs = _observation(f"checkup.{item['item']}", str(item.get("name_ja") or item["item"]), issued, subject)
        if item.get("grade"):
            obs["valueCodeableConcept"] = {"coding": [{"system": GRADE_SYSTEM, "code": item["grade"],
                                                       "display": item.get("grade_label_ja") or item["grade"]}]}
        else:
            obs["dataAbsentReason"] = {"text": item.get("error_ja") or "判定できませんでした"}
        value = item.get("value_canonical")
        if isinstance(value, int | float) and item.get("unit_canonical"):
            obs["component"] = [{"code": {"text": "測定値"}, "valueQuantity": {
                "value": value, "unit": item["unit_canonical"]}}]
        observations.append(obs)
    return observations


def turn_bundle(turn: dict[str, Any], patient_reference: str | None = None) -> dict[str, Any]:
    """Build and validate the Bundle for one turn (``TurnResult.to_json()``); returns its JSON dict."""
    issued = datetime.now(UTC).isoformat()
    subject = {"reference": patient_reference} if patient_reference else None
    entries: list[dict[str, Any]] = []
    result_refs: list[dict[str, str]] = []
    for call in turn.get("tool_calls", []):
        if call.get("status") != "ok" or not isinstance(call.get("output"), dict):
            continue
        tool = str(call["name"])
        if tool == "judge_checkup":
            observations = _checkup_observations(call["output"], issued, subject)
        else:
            observations = []
            for path, value, ucum, human in measurements(call["output"]):
                obs = _observation(f"{tool}.{path}", f"{tool} {path}", issued, subject)
                obs["valueQuantity"] = {"value": value, "unit": human, "system": UCUM, "code": ucum}
                observations.append(obs)
        prov = call.get("provenance") or {}
        method = f"{tool} v{prov.get('tool_version', '?')}"
        for obs in observations:
            obs["method"] = {"coding": [{"system": TOOL_SYSTEM, "code": tool, "display": method}]}
            entries.append({"fullUrl": _full_url(obs["id"]), "resource": obs,
                            "request": {"method": "POST", "url": "Observation"}})
            result_refs.append({"reference": _full_url(obs["id"])})
        if observations:
            entries.append(_provenance_entry(call, [o["id"] for o in observations], issued))
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": str(uuid.uuid4()), "status": "preliminary",
        "meta": {"profile": [PROFILE_REPORT]},
        "code": {"text": "dokuei 臨床支援結果（AI 生成・要確認）"},
        "issued": issued, "conclusion": str(turn.get("answer_ja", "")), "result": result_refs,
    }
    if subject:
        report["subject"] = subject
    entries.insert(0, {"fullUrl": _full_url(report["id"]), "resource": report,
                       "request": {"method": "POST", "url": "DiagnosticReport"}})
    bundle = {"resourceType": "Bundle", "type": "transaction", "timestamp": issued, "entry": entries}
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)


def _provenance_entry(call: dict[str, Any], observation_ids: list[str], issued: str) -> dict[str, Any]:
    prov = call.get("provenance") or {}
    weights = ", ".join(f"{k}={v}" for k, v in (prov.get("weights_sha256") or {}).items()) or "なし"
    resource_id = str(uuid.uuid4())
    resource: dict[str, Any] = {
        "resourceType": "Provenance", "id": resource_id,
        "target": [{"reference": _full_url(i)} for i in observation_ids],
        "recorded": prov.get("started_utc") or issued,
        "agent": [{"type": {"text": "algorithm"}, "who": {"display": (
            f"dokuei {prov.get('dokuei_version', '?')} / {call['name']} v{prov.get('tool_version', '?')}"
            f" / model {prov.get('model_version') or '-'} / weights {weights} / device {prov.get('device', '?')}")}}],
        "entity": [{"role": "source", "what": {"identifier": {"system": "urn:dokuei:input-sha256",
                                                              "value": prov.get("input_sha256") or "?"}}}],
    }
    return {"fullUrl": _full_url(resource_id), "resource": resource,
            "request": {"method": "POST", "url": "Provenance"}}
