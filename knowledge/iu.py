"""The Indiana University chest X-ray reports (NLM Open-i, 3,955 reports, CC BY-NC-ND 4.0).

They ship as ``NLMCXR_reports.tgz`` inside the torchxrayvision wheel (fetched by
``python -m dokuei.testdata``): one XML file per report with COMPARISON / INDICATION / FINDINGS /
IMPRESSION sections and MeSH terms. They are imported through the same row importer as hospital
exports; the major MeSH terms become the report's labels (ground truth for evaluation) and both MeSH
lists are kept as metadata. The reports are de-identified and carry no study date or patient id: the
collection's publication date (``articleDate``, 2013-08-01) stands in as the date, and each report is
its own (unnamed) patient.
"""

from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dokuei.knowledge.archive import ReportArchive
from dokuei.knowledge.importers import ImportResult, import_rows

IU_SOURCE = "iu-openi"
IU_LICENCE = "CC BY-NC-ND 4.0"
IU_COUNT = 3955


def default_path() -> Path:
    from dokuei import testdata

    return testdata.path("NLMCXR_reports.tgz")


def parse_report(xml_bytes: bytes) -> dict[str, Any]:
    """One Open-i XML report -> an import row (English texts, MeSH labels)."""
    root = ET.fromstring(xml_bytes)
    uid = root.find("uId")
    sections = {el.get("Label", "").upper(): (el.text or "").strip() for el in root.iter("AbstractText")}
    mesh = root.find("MeSH")
    major = [m.text.strip() for m in (mesh.findall("major") if mesh is not None else []) if m.text]
    automatic = [m.text.strip() for m in (mesh.findall("automatic") if mesh is not None else []) if m.text]
    images = [img.get("id", "") for img in root.findall("parentImage")]
    return {
        "report_id": f"IU-{uid.get('id') if uid is not None else ''}",
        "study_date": (root.findtext("articleDate") or "2013-08-01").strip(),
        "modality": "CR",
        "body_part": "胸部",
        "department": "",
        "clinical_info": " ".join(
            x for x in (sections.get("INDICATION", ""), sections.get("COMPARISON", "")) if x
        ),
        "findings": sections.get("FINDINGS", ""),
        "diagnosis": sections.get("IMPRESSION", ""),
        "labels": major,
        "meta": {"mesh_major": major, "mesh_automatic": automatic, "images": images, "licence": IU_LICENCE},
    }


def mesh_heads(labels: list[str]) -> set[str]:
    """'Cardiomegaly/mild' -> 'Cardiomegaly'."""
    return {label.split("/")[0].strip() for label in labels}


def iter_rows(path: Path | None = None, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(file number, row) of each report in the archive, ordered by file name for reproducibility."""
    path = path or default_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m dokuei.testdata` to fetch it")
    with tarfile.open(path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".xml")), key=lambda m: m.name)
        for i, member in enumerate(members[:limit] if limit else members, start=1):
            fh = tar.extractfile(member)
            if fh is not None:
                yield i, parse_report(fh.read())


def import_iu(
    archive: ReportArchive,
    path: Path | None = None,
    limit: int | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import the IU reports (all, or the first ``limit`` by file name). Reports with neither findings
    nor impression (a few dozen) are reported as row errors, like any empty row."""
    path = path or default_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m dokuei.testdata` to fetch it")
    total = min(limit or IU_COUNT, IU_COUNT)
    return import_rows(
        archive, iter_rows(path, limit), source=IU_SOURCE, language="en", progress=progress, total=total,
        on_batch=on_batch,
    )
