"""De-identification of what dokuei keeps from DICOM (issue #9 item 11; DICOM PS3.15 Annex E basic profile).

Every attribute of the basic-profile table (``dokuei/deid_basic_profile.csv``, 655 rows) that can hold a
string, a UID or a date is planted with a marker of its own in a real CT series (CT_small.dcm from pydicom,
copied into 6 slices) and a real 12-lead ECG (waveform_ecg.dcm from pydicom): text ``MK<row>Q``, UIDs under
``1.2.826.0.1.3680043.9.7777.``, dates 1931-05-17. The real flows then run: ``dokuei ask`` on both files,
``dokuei export`` (FHIR, text, PDF) into ``$DOKUEI_HOME/exports``, and the UI's upload path
(``dokuei.studies.ingest_upload`` into ``$DOKUEI_HOME/uploads/<session>/``) followed by a turn on the kept
copies. Every file under ``$DOKUEI_HOME`` is then read as bytes (gzip members decompressed too, sqlite
included) and must hold none of the markers.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom import datadict
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dokuei import deid
from dokuei import studies as st
from dokuei.io.volume import load_volume
from dokuei.settings import Settings
from tests.ct_helpers import ct_small, write_series

MARK = re.compile(rb"MK\d{4}Q|9\d{4}\.31415")
UID_ROOT = "1.2.826.0.1.3680043.9.7777."
PLANT_DATE = "19310517"
PLANT_TIME = "101010.424242"
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
#: attributes the readers need intact to open the file at all; planted elsewhere in the test
STRUCTURAL = {"SOPInstanceUID", "SeriesInstanceUID", "MediaStorageSOPInstanceUID"}
KEY = "test-key"


def _rows() -> list[deid.Rule]:
    return sorted(deid.basic_profile().values(), key=lambda r: (r.group, r.element))


def _vr(tag: int) -> str:
    """The attribute's VR; the 25 table rows newer than pydicom's dictionary are planted as LO."""
    if not datadict.dictionary_has_tag(tag):
        return "LO"
    return datadict.dictionary_VR(tag).split(" or ")[0]


def plant(ds: Dataset, tag_filter: set[int] | None = None) -> dict[str, int]:
    """Every plantable table attribute gets a unique marker; returns how many per kind were planted."""
    counts = {"text": 0, "uid": 0, "date": 0, "time": 0, "sequence": 0, "bytes": 0, "decimal": 0}
    for i, rule in enumerate(_rows()):
        tag = int(rule.group + rule.element, 16)
        vr = _vr(tag)
        keyword = datadict.keyword_for_tag(tag)
        if keyword in deid.RETAINED_CHARACTERISTICS or keyword in STRUCTURAL or tag >> 16 in (0x0000, 0x0002):
            continue
        if tag_filter is not None and tag not in tag_filter:
            continue
        marker = f"MK{i:04d}Q"
        if vr in TEXT_VRS:
            ds.add_new(tag, vr, marker)
            counts["text"] += 1
        elif vr == "UI":
            ds.add_new(tag, vr, f"{UID_ROOT}{i}")
            counts["uid"] += 1
        elif vr == "DA":
            ds.add_new(tag, vr, PLANT_DATE)
            counts["date"] += 1
        elif vr == "DT":
            ds.add_new(tag, vr, PLANT_DATE + "101010")
            counts["date"] += 1
        elif vr == "TM":
            ds.add_new(tag, vr, PLANT_TIME)
            counts["time"] += 1
        elif vr in ("OB", "UN"):
            ds.add_new(tag, vr, marker.encode() + b"\x00")
            counts["bytes"] += 1
        elif vr == "DS":
            ds.add_new(tag, vr, f"9{i:04d}.31415")
            counts["decimal"] += 1
        elif vr == "SQ":
            item = Dataset()
            item.CodeMeaning = marker  # not in the table: only removing or emptying the sequence clears it
            item.PatientName = marker + "N"
            ds.add_new(tag, vr, Sequence([item]))
            counts["sequence"] += 1
    ds.PatientAge, ds.PatientSex, ds.PatientSize, ds.PatientWeight = "061Y", "M", "1.70", "64"
    ds.add_new(0x00091010, "LO", "MK9990Q")  # a private attribute (the profile removes them all)
    ds.add_new(0x60004000, "LT", "MK9991Q")  # overlay comments, a repeating group
    return counts


def _planted_series(folder: Path) -> list[Path]:
    def modify(ds: Any, k: int) -> None:
        plant(ds)
        ds.file_meta.SourceApplicationEntityTitle = "MK9992Q"

    return write_series(folder, n=6, series_uid=UID_ROOT + "9000", modify=modify)


def _planted_ecg(path: Path) -> Path:
    ds = pydicom.dcmread(str(get_testdata_file("waveform_ecg.dcm")))
    plant(ds)
    ds.SOPInstanceUID = UID_ROOT + "9100"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = UID_ROOT + "9101"
    ds.save_as(str(path), enforce_file_format=False)
    return path


def _hits(root: Path) -> dict[str, list[str]]:
    """Every marker (text, UID root, planted date and time) found in any file under root, gz unpacked."""
    needles = [UID_ROOT.encode(), PLANT_DATE.encode(), PLANT_TIME.encode()]
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        blobs = [path.read_bytes()]
        if blobs[0][:2] == b"\x1f\x8b":
            with contextlib.suppress(OSError, EOFError):
                blobs.append(gzip.decompress(blobs[0]))
        hits = sorted({m.decode() for b in blobs for m in MARK.findall(b)}
                      | {n.decode() for b in blobs for n in needles if n in b})
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


# --- the table and each action ------------------------------------------------------------------------


def test_the_table_is_the_whole_basic_profile_column() -> None:
    rules = deid.basic_profile()
    # Table E.1-1 (2026c) lists 655 attributes; three are repeating groups (50xx curves, 60xx overlays)
    assert len(rules) == 652
    expected = {"PatientName": "Z", "PatientID": "Z/D", "PatientBirthDate": "Z", "InstitutionName": "X/Z/D",
                "ReferringPhysicianName": "Z", "AccessionNumber": "Z", "OtherPatientIDs": "X",
                "StationName": "X/Z/D", "OperatorsName": "X/Z/D", "StudyInstanceUID": "U", "StudyDate": "Z",
                "PatientAddress": "X", "StudyDescription": "X", "SeriesDescription": "X"}
    by_keyword = {r.keyword: r.action for r in rules.values()}
    assert {k: by_keyword[k] for k in expected} == expected
    assert {r.action for r in rules.values()} == {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


def test_each_action_is_applied_as_the_table_says() -> None:
    ds = ct_small()
    counts = plant(ds)
    # 652 rows: all planted but the 4 retained characteristics, SOP/Series Instance UID (set per slice
    # instead), 3 command/file-meta rows (not dataset attributes), 2 US, 1 IS and 1 AS (no room for a marker)
    assert counts == {"text": 329, "uid": 52, "date": 112, "time": 53, "sequence": 65, "bytes": 16,
                      "decimal": 12}
    assert sum(counts.values()) == 652 - 4 - 2 - 3 - 2 - 1 - 1
    original_patient_id = str(ds.get("PatientID"))
    out = deid.deidentify(copy.deepcopy(ds), KEY)
    days = deid.shift_days(original_patient_id, KEY)
    for rule in deid.basic_profile().values():
        tag = int(rule.group + rule.element, 16)
        if tag not in ds or rule.keyword in STRUCTURAL:
            continue
        kept = out.get(tag)
        vr = ds[tag].VR
        if rule.keyword in deid.RETAINED_CHARACTERISTICS:
            assert kept is not None and kept.value == ds[tag].value, rule.keyword
        elif vr in ("DA", "DT") and rule.keyword != "PatientBirthDate":  # Modified Dates option
            assert str(kept.value)[:8] == (np.datetime64("1931-05-17") - np.timedelta64(days, "D")).astype(
                str).replace("-", ""), rule.keyword
        elif rule.action == "U":
            assert kept is not None and kept.value == deid.mapped_uid(str(ds[tag].value), KEY), rule.keyword
        elif rule.keyword == "PatientID":
            assert kept.value == deid.pseudonym(original_patient_id, KEY)
        elif rule.keyword == "ContrastBolusAgent":
            assert kept.value == "ANONYMIZED"  # D: the dummy keeps "contrast given" for the CT header
        elif "X" in rule.action:
            assert kept is None, rule.keyword
        elif "Z" in rule.action:
            assert kept is not None and kept.value in (None, "", []), rule.keyword
        else:  # D
            assert kept is not None and kept.value not in (None, "", []), rule.keyword
            if vr == "SQ":
                assert len(kept.value) == 1 and len(kept.value[0]) == 0, rule.keyword
            else:
                assert not MARK.search(str(kept.value).encode()), rule.keyword
    assert 0x00091010 not in out and 0x60004000 not in out
    assert out.PatientIdentityRemoved == "YES" and out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100", "113108", "113107"]


def test_uids_map_consistently_so_baseline_and_follow_up_still_pair() -> None:
    baseline, follow_up = ct_small(), ct_small()
    for ds, study_date in ((baseline, "20240110"), (follow_up, "20240412")):
        ds.PatientID, ds.StudyDate = "P-1234", study_date
        ds.FrameOfReferenceUID = UID_ROOT + "42"
    a, b = deid.deidentify(baseline, KEY), deid.deidentify(follow_up, KEY)
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID != UID_ROOT + "42"
    assert a.PatientID == b.PatientID != "P-1234"
    # the same shift for one patient: order and the 93-day interval are kept, the dates are not
    da, db = (np.datetime64(f"{d.StudyDate[:4]}-{d.StudyDate[4:6]}-{d.StudyDate[6:]}") for d in (a, b))
    assert int((db - da).astype(int)) == 93 and str(a.StudyDate) != "20240110"
    other = deid.deidentify(ct_small(), "another-key")
    assert other.SeriesInstanceUID != a.SeriesInstanceUID  # without the key the mapping cannot be redone
    assert len(a.SeriesInstanceUID) <= 64 and a.SeriesInstanceUID.startswith("2.25.")


def test_geometry_and_pixels_survive_so_the_tools_read_the_same_volume(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    paths = _planted_series(raw)
    clean = tmp_path / "clean"
    clean.mkdir()
    for i, path in enumerate(paths):
        deid.deidentify_file(path, KEY, clean / f"{i:05d}.dcm")
    before, after = load_volume(raw), load_volume(clean)
    assert np.array_equal(before.array, after.array)
    assert np.allclose(before.affine, after.affine, atol=0)
    assert after.header.get("patient_age_years") == 61 and after.header.get("patient_sex") == "M"
    assert after.header.get("contrast_agent_given") is True  # the planted agent, kept as a dummy
    assert _hits(clean) == {}
    assert all(stat_mode(p) == 0o600 for p in clean.iterdir())


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_an_upload_keeps_only_de_identified_copies_and_the_role(tmp_path: Path) -> None:
    src = tmp_path / "src"
    paths = _planted_series(src / "YAMADA_TARO")
    study = st.ingest_upload([(p, f"YAMADA_TARO/{p.name}") for p in paths], tmp_path / "uploads" / "s1",
                             remove_sources=False)
    assert study.study_date is not None and study.study_date.isoformat() == "1931-05-17"  # read, in memory
    assert study.n_slices == 6
    st.assign_roles([study])
    assert _hits(tmp_path / "uploads") == {}
    names = {p.name for p in (tmp_path / "uploads").rglob("*")}
    assert not any("YAMADA" in n or "slice_" in n for n in names)


# --- the real flows, then a grep of everything under $DOKUEI_HOME --------------------------------------


def _dokuei(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOKUEI_") or k == "DOKUEI_TESTDATA_DIR"}
    return subprocess.run([sys.executable, "-m", "dokuei.cli", *args], capture_output=True, text=True,
                          env={**env, "DOKUEI_HOME": str(home)}, check=False, timeout=600)


def test_no_planted_attribute_reaches_any_file_under_dokuei_home(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    series = tmp_path / "series"
    _planted_series(series)
    ecg = _planted_ecg(tmp_path / "ecg.dcm")
    question = "この CT の L3 骨格筋量と、この心電図の所見は？"

    asked = _dokuei(home, "ask", question, "--attach", str(series), "--attach", str(ecg), "--session", "deid")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "心拍数" in asked.stdout  # the ECG really was read and measured
    turn_id = re.search(r"ターン ID: (\S+?)（", asked.stdout)  # the stored turn (0600, paths hashed) is grepped too
    assert turn_id, asked.stdout
    exported = _dokuei(home, "export", turn_id.group(1), "--formats", "fhir,txt,pdf", "--out", str(home / "exports"))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert len(list((home / "exports").iterdir())) == 3

    # the UI's path: one upload action per study into the session folder, then a turn on the kept copies
    monkeypatch.setenv("DOKUEI_HOME", str(home))
    settings = Settings.load(home=home)
    from dokuei.agent.graph import Agent, sqlite_checkpointer

    session = home / "uploads" / "ui-session"
    studies = [st.ingest_upload([(p, f"CT/{p.name}") for p in sorted(series.iterdir())], session,
                                remove_sources=False),
               st.ingest_upload([(ecg, "ecg.dcm")], session, remove_sources=False)]
    st.assign_roles(studies)
    agent = Agent(settings, checkpointer=sqlite_checkpointer(settings.checkpoint_db))
    turn = agent.ask(question, attachments=st.attachments_in_role_order(studies), session_id="ui-session")
    assert any(r.tool == "analyze_ecg" and r.status.value == "ok" for r in turn.results)  # the copy is usable

    assert {"audit", "exports", "sessions.sqlite", "uploads", "artifacts", "turns"} <= {p.name for p in home.iterdir()}
    assert _hits(home) == {}
