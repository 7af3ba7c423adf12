"""The masks behind a turn's measurements as DICOM SEG (highdicom), on the source series' own geometry.

Body composition: the four L3 tissue maps the areas were counted on (skeletal muscle within −29…150 HU,
psoas, subcutaneous and visceral fat within −190…−30 HU), one BINARY segment each, on the L3 source
slice. The tool output keeps numbers, not masks, so the masks are computed again from the same study
with the same domain function (:func:`dokuei.ct.bodycomp.measure`) and must give the same SMA/VFA/SFA
as the turn did; otherwise the study changed and the SEG is refused. Each mask pixel is placed through
:func:`dokuei.export.source.pixel_index_map`, so the SEG overlays the source voxel for voxel.

Lymph nodes: one segment per node (its mask from the label file or grown from clicks, recomputed with the
tool's inputs and refused unless every short axis matches the turn's), frames on each source slice the
node covers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dokuei import __version__
from dokuei.export.errors import ExportError
from dokuei.export.source import SourceSeries, load_source, pixel_index_map, to_frame
from dokuei.export.sr import PRIVATE_SCHEME, sr_calls

log = logging.getLogger(__name__)

SEG_SERIES_NUMBER = 9002
#: segment number → (mask key in BodyComposition.masks, label, category code, type code)
BODY_SEGMENTS: dict[int, tuple[str, str, tuple[str, str, str], tuple[str, str, str]]] = {
    1: ("muscle", "skeletal muscle L3 (-29..150 HU)", ("85756007", "SCT", "Tissue"),
        ("127954009", "SCT", "Skeletal muscle")),
    2: ("psoas", "psoas major L3", ("91723000", "SCT", "Anatomical Structure"),
        ("PSOAS", PRIVATE_SCHEME, "Psoas major muscles")),
    3: ("sat", "subcutaneous fat L3 (-190..-30 HU)", ("85756007", "SCT", "Tissue"), ("55603005", "SCT", "Fat")),
    4: ("vat", "visceral fat L3 (-190..-30 HU)", ("85756007", "SCT", "Tissue"), ("55603005", "SCT", "Fat")),
}
#: fat compartments carry their anatomic region as a private code (no SNOMED concept distinguishes them)
REGIONS = {3: ("SAT", PRIVATE_SCHEME, "Subcutaneous adipose tissue"),
           4: ("VAT", PRIVATE_SCHEME, "Visceral adipose tissue")}
#: the tool's area fields that the recomputed masks must reproduce
CHECKED = ("sma_cm2", "vfa_cm2", "sfa_cm2", "psoas_area_cm2")


def body_composition_masks(call: dict[str, Any], source: SourceSeries) -> tuple[int, dict[str, np.ndarray]]:
    """(L3 slice k, canonical 2D masks) recomputed from the study, checked against the turn's areas."""
    from dokuei.ct import pipeline
    from dokuei.ct.bodycomp import measure
    from dokuei.errors import InputError, UnavailableError
    from dokuei.settings import Settings

    inp, out = call.get("input") or {}, call["output"]
    try:
        prepared = pipeline.prepare(Path(str(inp["study_path"])), settings=Settings.load(), device="cpu",
                                    required=("total",), optional=("abdominal_muscles", "tissue_types"),
                                    segmentation_paths=[Path(p) for p in inp.get("segmentation_paths") or []],
                                    fast=inp.get("fast"), run_missing=False)
        bc = measure(prepared.ct, prepared.segs, sex=out.get("sex"), height_cm=out.get("height_cm"),
                     weight_kg=None, age_years=out.get("age_years"))
    except (InputError, UnavailableError) as exc:
        raise ExportError(f"マスクを作り直せないため DICOM SEG を書き出せません: {exc.message_ja}") from exc
    for field in CHECKED:
        recorded, now = out.get(field), getattr(bc, field)
        if recorded is not None and (now is None or abs(float(recorded) - float(now)) > 0.01):
            raise ExportError(f"検査 {Path(str(inp['study_path'])).name} から作り直した {field} が回答時の値"
                              f"（{recorded}）と一致しません（{now}）。画像かセグメンテーションが変わったため、"
                              "DICOM SEG は書き出しません。")
    if bc.l3_slice_index != out.get("l3_slice_index"):
        raise ExportError("L3 の位置が回答時と異なるため、DICOM SEG は書き出しません。")
    return bc.l3_slice_index, bc.masks


def _description(number: int, label: str, category: tuple[str, str, str], kind: tuple[str, str, str],
                 call: dict[str, Any]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    prov = call.get("provenance") or {}
    params = {"dokuei": str(prov.get("dokuei_version") or __version__)}
    if prov.get("model_version"):
        params["model"] = str(prov["model_version"])
    params.update({f"weights {k}": str(v) for k, v in (prov.get("weights_sha256") or {}).items()})
    algo = hd.AlgorithmIdentificationSequence(name=str(call["name"]), family=codes.cid7162.ArtificialIntelligence,
                                              version=str(prov.get("tool_version") or "?"), parameters=params)
    region = REGIONS.get(number)
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=hd.sr.CodedConcept(*category),
        segmented_property_type=hd.sr.CodedConcept(*kind), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo,
        anatomic_regions=[hd.sr.CodedConcept(*region)] if region else None)


def build_body_composition_seg(call: dict[str, Any], source: SourceSeries) -> Any:
    import highdicom as hd
    from pydicom.uid import generate_uid

    k, masks = body_composition_masks(call, source)
    ds = source.datasets[k]
    index = pixel_index_map(ds, source.ct)
    present = [(n, spec) for n, spec in BODY_SEGMENTS.items() if spec[0] in masks and masks[spec[0]].any()]
    if not present:
        raise ExportError("L3 の筋・脂肪マスクが空のため、DICOM SEG は書き出しません。")
    pixels = np.zeros((1, int(ds.Rows), int(ds.Columns), len(present)), dtype=bool)
    for s, (_, spec) in enumerate(present):
        pixels[0, :, :, s] = to_frame(masks[spec[0]], index)
    descriptions = [_description(s + 1, spec[1], spec[2], spec[3], call) for s, (_, spec) in enumerate(present)]
    return hd.seg.Segmentation(
        source_images=[ds], pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="dokuei",
        manufacturer_model_name=str(call["name"]), software_versions=f"dokuei {__version__}",
        device_serial_number="0", content_label="DOKUEI_L3", content_description="L3 body composition masks (AI)",
        series_description=f"dokuei {call['name']} masks (AI, unverified)")


def lymph_node_masks(call: dict[str, Any], source: SourceSeries) -> dict[int, np.ndarray]:
    """node id → full canonical mask, recomputed with the tool's own inputs, checked against its short axes."""
    from dokuei.errors import InputError, UnavailableError
    from dokuei.lymph.recist import load_rules
    from dokuei.lymph.study import Seed, measure_study, open_study
    from dokuei.settings import Settings

    inp, out = call.get("input") or {}, call["output"]
    try:
        study = open_study(Path(str(inp["study_path"])), Path(str(inp["mask_path"])) if inp.get("mask_path") else None)
        seeds = [Seed(tuple(c["point"]), c.get("coordinate_system", "voxel")) for c in inp.get("clicks") or []]
        nodes = measure_study(study, seeds, inp.get("mask_source", "auto"), Settings.load().weights_root, "cpu",
                              load_rules())
    except (InputError, UnavailableError) as exc:
        raise ExportError(f"リンパ節のマスクを作り直せないため DICOM SEG を書き出せません: {exc.message_ja}") from exc
    recorded = {int(n["node_id"]): float(n["short_axis_mm"]) for n in out.get("nodes", [])}
    now = {r.label: float(r.axes.short_axis_mm) for r in nodes.nodes}
    if set(now) != set(recorded) or any(abs(round(now[k], 1) - recorded[k]) > 0.01 for k in recorded):
        raise ExportError("作り直したリンパ節の計測が回答時と一致しないため、DICOM SEG は書き出しません。")
    masks = {}
    for label, (crop, offset) in nodes.masks.items():
        full = np.zeros(source.ct.shape, dtype=bool)
        i, j, k = offset
        full[i:i + crop.shape[0], j:j + crop.shape[1], k:k + crop.shape[2]] = crop
        masks[label] = full
    return masks


def build_lymph_node_seg(call: dict[str, Any], source: SourceSeries) -> Any:
    import highdicom as hd
    from pydicom.uid import generate_uid

    masks = lymph_node_masks(call, source)
    labels = sorted(label for label, m in masks.items() if m.any())
    if not labels:
        raise ExportError("リンパ節のマスクが空のため、DICOM SEG は書き出しません。")
    slices = sorted({int(k) for label in labels for k in np.flatnonzero(masks[label].any(axis=(0, 1)))})
    images = [source.datasets[k] for k in slices]
    pixels = np.zeros((len(slices), int(images[0].Rows), int(images[0].Columns), len(labels)), dtype=bool)
    for f, k in enumerate(slices):
        index = pixel_index_map(source.datasets[k], source.ct)
        for s, label in enumerate(labels):
            pixels[f, :, :, s] = to_frame(masks[label][:, :, k], index)
    node = ("59441001", "SCT", "Lymph node")
    descriptions = [_description(s + 1, f"lymph node {label}", ("91723000", "SCT", "Anatomical Structure"), node,
                                 call) for s, label in enumerate(labels)]
    return hd.seg.Segmentation(
        source_images=images, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="dokuei",
        manufacturer_model_name=str(call["name"]), software_versions=f"dokuei {__version__}",
        device_serial_number="0", content_label="DOKUEI_NODES", content_description="lymph node masks (AI)",
        series_description=f"dokuei {call['name']} masks (AI, unverified)")


SEG_BUILDERS = {"measure_body_composition": build_body_composition_seg, "measure_lymph_nodes": build_lymph_node_seg}


def write_seg(turn: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """One SEG file per body-composition call of the turn; ExportError (Japanese) when none can be written."""
    from dokuei.export.sr import study_of

    calls = [c for c in sr_calls(turn) if c["name"] in SEG_BUILDERS]
    if not calls:
        raise ExportError("この回答には DICOM SEG にできるマスク（L3 の筋・脂肪、リンパ節）がありません"
                          "（臓器のマスクの SEG 出力は未対応です）。")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n, call in enumerate(calls):
        source = load_source(study_of(call))
        seg = SEG_BUILDERS[call["name"]](call, source)
        suffix = f"-{n + 1}" if len(calls) > 1 else ""
        path = out_dir / f"{stem}.{call['name']}{suffix}.seg.dcm"
        seg.save_as(path, enforce_file_format=True)
        log.info("SEG written: %s", path.name)
        written.append(path)
    return written
