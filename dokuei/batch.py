"""``dokuei batch ct DIR --out FILE``: organ volumes and body composition over many CT studies.

Every entry of DIR that is a CT study (a study folder, a DICOM series folder, a zip or a NIfTI file) is
run through ``segment_ct`` and ``measure_body_composition``; one row per study goes to FILE (CSV, or
Parquet when FILE ends in ``.parquet``). Each finished study is appended at once to ``FILE.partial.jsonl``,
so an interrupted batch resumes where it stopped (``--no-resume`` starts over). Patient facts for the
indices come from ``DIR/patients.csv`` (columns ``study,sex,age_years,height_cm,weight_kg``) or a
``patient.json`` inside a study folder; without them the DICOM header is used when it has them.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

from dokuei.settings import Settings

log = logging.getLogger(__name__)


def find_studies(study_dir: Path) -> list[Path]:
    """The CT studies directly under ``study_dir``, sorted by name."""
    from dokuei.io import dicom
    from dokuei.io.ctstudy import is_ct_study
    from dokuei.io.volume import is_nifti

    studies = []
    for p in sorted(study_dir.iterdir()):
        if p.name.startswith(".") or p.name == "patients.csv":
            continue
        if (p.is_dir() and is_ct_study(p)) or (
            p.is_file() and (is_nifti(p) or zipfile.is_zipfile(p) or dicom.is_dicom_file(p))
        ):
            studies.append(p)
    return studies


def _patients(study_dir: Path) -> dict[str, dict[str, Any]]:
    table = study_dir / "patients.csv"
    if not table.exists():
        return {}
    with table.open(newline="", encoding="utf-8") as fh:
        return {
            row["study"]: {k: v for k, v in row.items() if k != "study" and v} for row in csv.DictReader(fh)
        }


def _patient_for(study: Path, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    facts: dict[str, Any] = dict(table.get(study.name, {}))
    if not facts and study.is_dir() and (study / "patient.json").exists():
        facts = json.loads((study / "patient.json").read_text())
    out: dict[str, Any] = {}
    for key, cast in (("sex", str), ("age_years", int), ("height_cm", float), ("weight_kg", float)):
        if facts.get(key) not in (None, ""):
            out[key] = cast(facts[key])
    return out


def _row(study: Path, results: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"study": study.name}
    seg, bc = results["segment_ct"], results["measure_body_composition"]
    row["segment_ct_status"] = seg.status.value
    row["body_composition_status"] = bc.status.value
    errors = [r.summary_ja for r in (seg, bc) if not r.ok]
    row["error_ja"] = " / ".join(errors)
    if seg.ok and seg.output:
        for s in seg.output["structures"]:
            if s["present"]:
                row[f"{s['name']}_volume_ml"] = s["volume_ml"]
                row[f"{s['name']}_mean_hu"] = s["mean_hu"]
    if bc.ok and bc.output:
        out = bc.output
        for key in (
            "l3_slice_index",
            "sma_cm2",
            "smi_cm2_per_m2",
            "muscle_mean_hu",
            "psoas_area_cm2",
            "pmi_cm2_per_m2",
            "vfa_cm2",
            "sfa_cm2",
            "sex",
            "age_years",
            "height_cm",
        ):
            row[key] = out.get(key)
        for j in out["judgements"]:
            row[f"{j['criterion_id']}_result"] = j["result"]
        row["l3_overlay_path"] = out.get("overlay_path")
    return row


def _write_table(rows: list[dict[str, Any]], out: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
        pq.write_table(table, out)
        return
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def run_ct_batch(
    study_dir: Path,
    out: Path,
    *,
    resume: bool = True,
    settings: Settings | None = None,
    write_overlays: bool = True,
) -> Path:
    """Measure every study under ``study_dir``; returns ``out`` (CSV or Parquet by its suffix)."""
    from tqdm import tqdm

    from dokuei.tools.measure_body_composition import MeasureBodyComposition
    from dokuei.tools.segment_ct import SegmentCt

    settings = settings or Settings.load()
    partial = out.with_name(out.name + ".partial.jsonl")
    rows: dict[str, dict[str, Any]] = {}
    if resume and partial.exists():
        for line in partial.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["study"]] = row
    elif partial.exists():
        partial.unlink()
    studies = find_studies(study_dir)
    todo = [s for s in studies if s.name not in rows]
    log.info("%d studies, %d already done, %d to run", len(studies), len(studies) - len(todo), len(todo))
    patients = _patients(study_dir)
    seg_tool, bc_tool = SegmentCt(settings), MeasureBodyComposition(settings)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("a", encoding="utf-8") as log_fh:
        for study in tqdm(todo, desc="CT studies", unit="study"):
            results = {
                "segment_ct": seg_tool({"study_path": str(study), "write_overlay": write_overlays}),
                "measure_body_composition": bc_tool(
                    {
                        "study_path": str(study),
                        "write_overlay": write_overlays,
                        **_patient_for(study, patients),
                    }
                ),
            }
            row = _row(study, results)
            rows[study.name] = row
            log_fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            log_fh.flush()
    ordered = [rows[s.name] for s in studies if s.name in rows]
    _write_table(ordered, out)
    return out


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``batch ct DIR --out FILE [--no-resume]`` to the ``dokuei`` command."""
    batch = subparsers.add_parser("batch", help="run tools over many studies")
    kinds = batch.add_subparsers(dest="batch_kind", required=True)
    ct = kinds.add_parser("ct", help="organ volumes and L3 body composition for every CT study in DIR")
    ct.add_argument("dir", type=Path, help="folder holding one CT study per entry")
    ct.add_argument("--out", type=Path, required=True, help="results table (.csv or .parquet)")
    ct.add_argument("--no-resume", action="store_true", help="ignore results of an earlier, interrupted run")
    ct.add_argument("--no-overlays", action="store_true", help="skip the PNG overlays (faster)")
    ct.set_defaults(func=_cli_ct)


def _cli_ct(args: argparse.Namespace) -> int:
    out = run_ct_batch(args.dir, args.out, resume=not args.no_resume, write_overlays=not args.no_overlays)
    log.info("results written to %s", out)
    return 0
