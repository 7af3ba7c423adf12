"""Measurements of a turn as DICOM Comprehensive 3D SR, TID 1500 Measurement Report (highdicom).

One SR per CT tool call (body composition at L3, organ volumes, lymph nodes, RECIST response), each
referencing its source series by UID (evidence) and the exact slice measured (source image of the
measurement group), with the algorithm identification (TID 4019: tool, version, dokuei version,
model and weights sha256). Values are copied from the tool output, never recomputed.

Codes: SNOMED CT, LOINC and DCM where a concept exists (Area 42798000, Volume 118565006, Long/Short Axis
103339001/103340004, Skeletal muscle 127954009, L3 vertebra 36470004, Lymph node 59441001, Fat 55603005,
organs, Attenuation Coefficient DCM 112031 with Mean 373098007, Response Evaluation DCM 112020, UCUM
units). Concepts without a standard code (SMI, PMI, psoas, visceral / subcutaneous fat compartments,
the RECIST class of a node, the sum of target short axes, response values) use the private coding
scheme ``99DOKUEI``, declared in the SR's Coding Scheme Identification Sequence. The document is
written preliminary and unverified (CompletionFlag PARTIAL, VerificationFlag UNVERIFIED): a clinician
signs results, not dokuei.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dokuei import __version__
from dokuei.export.errors import ExportError
from dokuei.export.source import SourceSeries, load_source

log = logging.getLogger(__name__)

PRIVATE_SCHEME = "99DOKUEI"
SR_SERIES_NUMBER = 9001
#: tools whose outputs become an SR, and the input field that names their study
SR_TOOLS = {"measure_body_composition": "study_path", "segment_ct": "study_path",
            "measure_lymph_nodes": "study_path", "assess_recist_response": "study_paths"}


def _code(value: str, scheme: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _private(value: str, meaning: str) -> Any:
    return _code(value, PRIVATE_SCHEME, meaning)


def _sct(value: str, meaning: str) -> Any:
    return _code(value, "SCT", meaning)


def _ucum(value: str, meaning: str) -> Any:
    return _code(value, "UCUM", meaning)


AREA = ("42798000", "SCT", "Area")
VOLUME = ("118565006", "SCT", "Volume")
LONG_AXIS = ("103339001", "SCT", "Long Axis")
SHORT_AXIS = ("103340004", "SCT", "Short Axis")
ATTENUATION = ("112031", "DCM", "Attenuation Coefficient")
SMI = ("SMI", PRIVATE_SCHEME, "Skeletal muscle index")
PMI = ("PMI", PRIVATE_SCHEME, "Psoas muscle index")
TARGET_SUM = ("SUMTGTSA", PRIVATE_SCHEME, "Sum of target lymph node short axes")
SKELETAL_MUSCLE = ("127954009", "SCT", "Skeletal muscle")
PSOAS = ("PSOAS", PRIVATE_SCHEME, "Psoas major muscles")
PARASPINAL = ("PARASPINAL", PRIVATE_SCHEME, "Paraspinal muscles")
VISCERAL_FAT = ("VAT", PRIVATE_SCHEME, "Visceral adipose tissue")
SUBCUTANEOUS_FAT = ("SAT", PRIVATE_SCHEME, "Subcutaneous adipose tissue")
L3_VERTEBRA = ("36470004", "SCT", "L3 vertebra")
LYMPH_NODE = ("59441001", "SCT", "Lymph node")
UNITS = {"cm2": ("cm2", "square centimeter"), "cm2/m2": ("cm2/m2", "square centimeter per square meter"),
         "HU": ("[hnsf'U]", "Hounsfield unit"), "mm": ("mm", "millimeter"), "ml": ("ml", "milliliter"),
         "%": ("%", "percent")}

#: body-composition output field → (measurement name, unit, finding site, derived as mean)
BODY_COMPOSITION: dict[str, tuple[tuple[str, str, str], str, tuple[str, str, str], bool]] = {
    "sma_cm2": (AREA, "cm2", SKELETAL_MUSCLE, False),
    "smi_cm2_per_m2": (SMI, "cm2/m2", SKELETAL_MUSCLE, False),
    "muscle_mean_hu": (ATTENUATION, "HU", SKELETAL_MUSCLE, True),
    "psoas_area_cm2": (AREA, "cm2", PSOAS, False),
    "pmi_cm2_per_m2": (PMI, "cm2/m2", PSOAS, False),
    "paraspinal_area_cm2": (AREA, "cm2", PARASPINAL, False),
    "vfa_cm2": (AREA, "cm2", VISCERAL_FAT, False),
    "sfa_cm2": (AREA, "cm2", SUBCUTANEOUS_FAT, False),
}
#: TotalSegmentator structure → SNOMED CT (code, meaning, laterality or "")
ORGANS: dict[str, tuple[str, str, str]] = {
    "liver": ("10200004", "Liver", ""), "spleen": ("78961009", "Spleen", ""),
    "kidney_right": ("64033007", "Kidney", "right"), "kidney_left": ("64033007", "Kidney", "left"),
    "aorta": ("15825003", "Aorta", ""), "pancreas": ("15776009", "Pancreas", ""),
    "gallbladder": ("28231008", "Gallbladder", ""), "stomach": ("69695003", "Stomach", ""),
    "heart": ("80891009", "Heart", ""), "urinary_bladder": ("89837001", "Urinary bladder", ""),
}
LATERALITY = {"right": ("24028007", "SCT", "Right"), "left": ("7771000", "SCT", "Left")}
RECIST_CLASS = ("RECISTCLS", PRIVATE_SCHEME, "RECIST 1.1 lymph node class")
RESPONSE = ("112020", "DCM", "Response Evaluation")


def _c(code: tuple[str, str, str]) -> Any:
    return _code(*code)


def _unit(unit: str) -> Any:
    value, meaning = UNITS[unit]
    return _ucum(value, meaning)


def _site(code: tuple[str, str, str], laterality: str = "") -> Any:
    import highdicom as hd

    lat = _c(LATERALITY[laterality]) if laterality in LATERALITY else None
    return hd.sr.FindingSite(anatomic_location=_c(code), laterality=lat)


def algorithm(call: dict[str, Any]) -> Any:
    """TID 4019 Algorithm Identification from the tool call's provenance."""
    import highdicom as hd

    prov = call.get("provenance") or {}
    params = [f"dokuei {prov.get('dokuei_version') or __version__}"]
    if prov.get("model_version"):
        params.append(f"model {prov['model_version']}")
    params += [f"weights {k} sha256 {v}" for k, v in sorted((prov.get("weights_sha256") or {}).items())]
    if prov.get("input_sha256"):
        params.append(f"input sha256 {prov['input_sha256']}")
    return hd.sr.AlgorithmIdentification(name=str(call["name"]), version=str(prov.get("tool_version") or "?"),
                                         parameters=params)


def _measurement(name: tuple[str, str, str], value: float, unit: str, *, site: Any = None, mean: bool = False,
                 algo: Any = None) -> Any:
    import highdicom as hd

    return hd.sr.Measurement(name=_c(name), value=float(value), unit=_unit(unit),
                             finding_sites=[site] if site is not None else None,
                             derivation=_sct("373098007", "Mean") if mean else None, algorithm_id=algo)


def _group(label: str, uid_parts: list[str], measurements: list[Any], *, source_ds: Any, algo: Any,
           sites: list[Any] | None = None, evaluations: list[Any] | None = None) -> Any:
    import highdicom as hd
    from pydicom.uid import generate_uid

    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(entropy_srcs=["dokuei-sr", *uid_parts]),
                                        identifier=label)
    source = [hd.sr.SourceImageForMeasurementGroup.from_source_image(source_ds)] if source_ds is not None else None
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, algorithm_id=algo, finding_sites=sites, measurements=measurements or None,
        qualitative_evaluations=evaluations or None, source_images=source)


def _evaluation(name: tuple[str, str, str], value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.QualitativeEvaluation(name=_c(name), value=_private(value.upper()[:16], meaning))


def _slice(source: SourceSeries, k: Any) -> Any:
    if isinstance(k, int) and 0 <= k < len(source.datasets):
        return source.datasets[k]
    return None


def body_composition_groups(call: dict[str, Any], source: SourceSeries) -> list[Any]:
    out, algo = call["output"], algorithm(call)
    measurements = [_measurement(name, out[f], unit, site=_site(site), mean=mean, algo=algo)
                    for f, (name, unit, site, mean) in BODY_COMPOSITION.items() if out.get(f) is not None]
    return [_group("L3 body composition", [source.series_uid, "L3", str(out.get("l3_slice_index"))], measurements,
                   source_ds=_slice(source, out.get("l3_slice_index")), algo=algo, sites=[_site(L3_VERTEBRA)])]


def organ_groups(call: dict[str, Any], source: SourceSeries) -> list[Any]:
    algo, groups = algorithm(call), []
    for s in call["output"].get("structures", []):
        if not s.get("present"):
            continue
        code, meaning, side = ORGANS.get(s["name"], (s["name"], s["name"], ""))
        site = _site((code, "SCT" if s["name"] in ORGANS else PRIVATE_SCHEME, meaning), side)
        ms = [_measurement(VOLUME, s["volume_ml"], "ml", site=site, algo=algo)]
        if s.get("mean_hu") is not None:
            ms.append(_measurement(ATTENUATION, s["mean_hu"], "HU", site=site, mean=True, algo=algo))
        groups.append(_group(f"organ {s['name']}", [source.series_uid, s["name"]], ms, source_ds=None, algo=algo,
                             sites=[site]))
    return groups


def lymph_node_groups(call: dict[str, Any], source: SourceSeries) -> list[Any]:
    out, algo, groups = call["output"], algorithm(call), []
    for n in out.get("nodes", []):
        site = _site(LYMPH_NODE, n.get("side", ""))
        ms = [_measurement(LONG_AXIS, n["long_axis_mm"], "mm", site=site, algo=algo),
              _measurement(SHORT_AXIS, n["short_axis_mm"], "mm", site=site, algo=algo),
              _measurement(VOLUME, n["volume_ml"], "ml", site=site, algo=algo)]
        role = str(n.get("role") or n.get("recist_class"))
        groups.append(_group(f"lymph node {n['node_id']}", [source.series_uid, "node", str(n["node_id"])], ms,
                             source_ds=_slice(source, n.get("slice_index")), algo=algo, sites=[site],
                             evaluations=[_evaluation(RECIST_CLASS, role, f"RECIST 1.1 {role}")]))
    if out.get("sum_of_target_short_axes_mm") is not None:
        groups.append(_group("RECIST 1.1 targets", [source.series_uid, "targets"],
                             [_measurement(TARGET_SUM, out["sum_of_target_short_axes_mm"], "mm", algo=algo)],
                             source_ds=None, algo=algo))
    return groups


def recist_groups(call: dict[str, Any], source: SourceSeries) -> list[Any]:
    out, algo = call["output"], algorithm(call)
    last = (out.get("timepoints") or [{}])[-1]
    ms = []
    if last.get("sum_of_target_short_axes_mm") is not None:
        ms.append(_measurement(TARGET_SUM, last["sum_of_target_short_axes_mm"], "mm", algo=algo))
    if last.get("change_from_baseline_percent") is not None:
        ms.append(_measurement(("CHGBL", PRIVATE_SCHEME, "Change of target sum from baseline"),
                               last["change_from_baseline_percent"], "%", algo=algo))
    response = str(out.get("overall_response") or "NE")
    groups = [_group("RECIST 1.1 response", [source.series_uid, "response"], ms, source_ds=None, algo=algo,
                     evaluations=[_evaluation(RESPONSE, response.replace("non-CR/non-PD", "NONCRNONPD"),
                                              f"RECIST 1.1 {response}")])]
    for node in out.get("nodes", []):
        sa = (node.get("short_axis_mm_by_timepoint") or [None])[-1]
        if sa is not None:
            groups.append(_group(f"lymph node track {node['track_id']}", [source.series_uid, "track",
                                                                         str(node["track_id"])],
                                 [_measurement(SHORT_AXIS, sa, "mm", site=_site(LYMPH_NODE), algo=algo)],
                                 source_ds=None, algo=algo, sites=[_site(LYMPH_NODE)]))
    return groups


BUILDERS = {"measure_body_composition": body_composition_groups, "segment_ct": organ_groups,
            "measure_lymph_nodes": lymph_node_groups, "assess_recist_response": recist_groups}


def study_of(call: dict[str, Any]) -> Path:
    value = (call.get("input") or {}).get(SR_TOOLS[call["name"]])
    if isinstance(value, list):
        value = value[-1] if value else None
    if not value:
        raise ExportError(f"{call['name']} の入力に検査のパスがないため、DICOM SR を書き出せません。")
    return Path(str(value))


def sr_calls(turn: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in turn.get("tool_calls", [])
            if c.get("name") in SR_TOOLS and c.get("status") == "ok" and isinstance(c.get("output"), dict)]


def build_sr(call: dict[str, Any], source: SourceSeries) -> Any:
    """The SR dataset for one tool call on its source series."""
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    groups = BUILDERS[call["name"]](call, source)
    if not groups:
        raise ExportError(f"{call['name']} の結果に DICOM SR にできる計測値がありません。")
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["dokuei-device", __version__]), name="dokuei",
        manufacturer_name="dokuei", model_name=str(call["name"]))
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(observation_context=context,
                                     procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
                                     imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(
        evidence=source.datasets, content=report[0], series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="dokuei",
        series_description=f"dokuei {call['name']} (AI, unverified)")
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = "dokuei private codes"
    scheme.CodingSchemeVersion = "1"
    scheme.CodingSchemeResponsibleOrganization = "dokuei project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def write_sr(turn: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """One SR file per CT measurement call of the turn; ExportError (Japanese) when none can be written."""
    calls = sr_calls(turn)
    if not calls:
        raise ExportError("この回答には DICOM SR にできる CT の計測（体組成・臓器体積・リンパ節）がありません。")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n, call in enumerate(calls):
        source = load_source(study_of(call))
        sr = build_sr(call, source)
        suffix = f"-{n + 1}" if len(calls) > 1 else ""
        path = out_dir / f"{stem}.{call['name']}{suffix}.sr.dcm"
        sr.save_as(path, enforce_file_format=True)
        log.info("SR written: %s (%s)", path.name, call["name"])
        written.append(path)
    return written


@dataclass(frozen=True)
class SrValue:
    group: str  # tracking identifier text
    name: str  # code value of the concept name
    site: str  # code value of the first finding site ("" when none)
    value: float
    unit: str  # UCUM code


def read_sr(path: Path) -> tuple[Any, list[SrValue]]:
    """Read an SR back with highdicom: the dataset and every numeric measurement in it."""
    import highdicom as hd

    sr = hd.sr.srread(str(path))
    content: Any = sr.content  # a MeasurementReport once read back (typed as its base ContentSequence)
    values = []
    for group in content.get_image_measurement_groups():
        label = str(group.tracking_identifier or "")
        for m in group.get_measurements():
            sites = m.finding_sites
            values.append(SrValue(label, str(m.name.value), str(sites[0].value.value) if sites else "", float(m.value),
                                  str(m.unit.value)))
    return sr, values
