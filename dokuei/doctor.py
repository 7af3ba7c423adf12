"""What ``dokuei doctor`` and the UI's 管理者 tab report: versions, GPU, weights, index, telemetry, audit trail.

One function for both, so the UI never imports the command line (and no import circle forms).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from dokuei import __version__
from dokuei.settings import Settings

log = logging.getLogger(__name__)


def weight_rows(settings: Settings) -> list[dict[str, Any]]:
    from dokuei.tools.registry import ToolRegistry
    from dokuei.tools.weights import check_weights

    rows = []
    for tool in ToolRegistry(settings).tools():
        for spec in tool.requires.weights:
            check = check_weights(spec, settings.weights_root)
            rows.append({"tool": tool.name, "id": spec.id, "version": spec.version, "path": str(check.path),
                         "present": check.present, "verified": check.verified, "sha256": check.sha256,
                         "licence": spec.licence, "status_ja": check.reason_ja})
    return rows + _totalseg_rows(settings)


def _totalseg_rows(settings: Settings) -> list[dict[str, Any]]:
    """TotalSegmentator's nnU-Net datasets, found the way its backend looks for them."""
    from dokuei.io import totalseg

    rows = []
    for task, fast in (("total", True), ("total", False), ("abdominal_muscles", False), ("tissue_types", False)):
        found = totalseg.find_weights(task, fast, settings)
        name = f"totalsegmentator {task}{' --fast' if fast else ''}"
        rows.append({"tool": "segment_ct", "id": name, "version": totalseg.totalseg_version(),
                     "path": str(found or settings.weights_root / "totalsegmentator"), "present": found is not None,
                     "verified": False, "sha256": None, "licence": "Apache-2.0 (tissue_types: licence key)",
                     "status_ja": "インストール済み" if found else totalseg.install_ja(task, fast, settings)})
    return rows


def doctor_report(settings: Settings) -> dict[str, Any]:
    """The full report; ``report["ok"]`` is False when the audit trail is broken."""
    from dokuei.agent import audit
    from dokuei.offline import telemetry_report
    from dokuei.tools.base import cuda_available

    report: dict[str, Any] = {"dokuei": __version__, "python": sys.version.split()[0],
                              "home": str(settings.home), "weights_dir": str(settings.weights_root),
                              "llm_backend": settings.llm_backend}
    try:
        import torch

        report["torch"] = torch.__version__
        report["cuda"] = cuda_available()
        if report["cuda"]:
            report["gpu"] = torch.cuda.get_device_name(0)
            report["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except ImportError:
        report["torch"] = None
        report["cuda"] = False
    report["weights"] = {f"{row['tool']}: {row['id']}": "present" if row["present"] else "missing"
                         for row in weight_rows(settings)}
    report["telemetry_off"] = telemetry_report()
    try:
        from dokuei.llm_install import describe

        report["embedded_llm"] = describe(settings)
    except Exception as exc:  # the try-out LLM is optional
        report["embedded_llm"] = f"unavailable: {type(exc).__name__}"
    try:
        from dataclasses import asdict

        from dokuei.knowledge.archive import ReportArchive
        from dokuei.knowledge.location import archive_root, indexed_report_count

        if indexed_report_count(settings):
            archive = ReportArchive(settings)
            try:
                report["index"] = {"path": str(archive_root(settings)), **asdict(archive.stats())}
            finally:
                archive.store.close()
        else:
            where = archive_root(settings)
            report["index"] = f"empty: build it with `dokuei index demo` or `dokuei index iu` ({where})"
    except Exception as exc:  # a broken index is reported, not fatal
        log.exception("index check failed")
        report["index"] = f"unreadable: {type(exc).__name__}: {exc}"
    problems = audit.verify_dir(settings.audit_dir, settings.audit_hmac_key)
    broken = {p.file for p in problems}
    chains: dict[str, Any] = {path.name: "ok" for path in sorted(settings.audit_dir.glob("audit-*.jsonl"))
                              if path.name not in broken}
    for problem in problems:
        chains.setdefault(problem.file, [])
        chains[problem.file].append(f"line {problem.line}: {problem.reason}" if problem.line else problem.reason)
    report["audit_chain"] = chains
    report["audit_hmac"] = bool(settings.audit_hmac_key)
    report["ok"] = not problems
    return report
