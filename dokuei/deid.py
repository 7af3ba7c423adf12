"""De-identification of the DICOM that dokuei keeps on disk: DICOM PS3.15 Annex E, Basic Profile.

The attribute table (Table E.1-1, basic-profile column, 655 attributes) is data in
``deid_basic_profile.csv`` beside this module, with its source named there. On top of the basic profile
dokuei applies two of the standard's options, because the tools read those values from the kept copy:

- **Retain Patient Characteristics Option** (K) for Patient's Age, Sex, Size and Weight only: the age/sex
  norms (sarcopenia, checkup cut-offs) and height-normalised indices (SMI) need them; none identifies.
- **Retain Longitudinal Temporal Information with Modified Dates Option** (C) for dates (VR DA and DT):
  every date of one patient moves back by the same keyed number of days (1–3650), so baseline, prior and
  current keep their order and intervals while no real date is stored. Patient's Birth Date is never
  shifted (it stays Z). Times (TM) follow the basic profile.

Where the profile allows a choice, the stricter one is taken (X over Z over D), except Patient ID, which
gets a keyed consistent dummy (D) so that one patient's studies still pair, and Contrast/Bolus Agent,
which keeps a dummy (D) only when it was filled so that "contrast given" survives. UIDs (U) are replaced
by ``2.25.<decimal of HMAC-SHA256(key, uid)>``: the same UID always maps to the same new UID, so a series'
slices, a SEG's references and a follow-up's Frame of Reference still pair. Private attributes, curves
(50xx) and overlay data and comments (60xx) are removed; sequences are cleaned item by item. The result is
marked (Patient Identity Removed = YES, De-identification Method and its code sequence, CID 7050).

This module imports pydicom only; the key comes from the caller (a per-install secret file by default).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from dokuei.atomic import atomic_file

log = logging.getLogger(__name__)

PROFILE_CSV = Path(__file__).with_name("deid_basic_profile.csv")
KEY_FILE_NAME = ".deid.key"

#: Retain Patient Characteristics Option: the subset dokuei's tools read (keywords)
RETAINED_CHARACTERISTICS = frozenset({"PatientAge", "PatientSex", "PatientSize", "PatientWeight"})
#: never shifted under the Modified Dates option: a birth date identifies, and no tool needs it
NOT_SHIFTED = frozenset({"PatientBirthDate"})
#: Z/D attributes that get a keyed or fixed dummy instead of an empty value
DUMMY_INSTEAD_OF_EMPTY = frozenset({"PatientID", "ContrastBolusAgent"})
MAX_SHIFT_DAYS = 3650
#: file-meta application entity titles, removed as well (stricter than the profile)
META_AE_TITLES = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle")
DEID_METHOD = ("DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile; Retain Patient "
               "Characteristics Option (age, sex, size, weight); Retain Longitudinal Temporal Information "
               "with Modified Dates Option (dokuei)")
#: CID 7050 codes (DCM) for the profile and the two options applied
METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"),
                ("113108", "Retain Patient Characteristics Option"),
                ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))


@dataclass(frozen=True)
class Rule:
    group: str  # 4 hex digits, or "50xx" / "60xx" for a repeating group
    element: str
    action: str  # as in Table E.1-1: D, Z, X, U, Z/D, X/Z, X/D, X/Z/D, X/Z/U*
    keyword: str
    name: str


@lru_cache(maxsize=1)
def basic_profile() -> dict[int, Rule]:
    """Table E.1-1's basic-profile column, keyed by tag (repeating groups under their first group)."""
    rules: dict[int, Rule] = {}
    with PROFILE_CSV.open(encoding="utf-8") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        for row in rows:
            rule = Rule(row["group"], row["element"], row["action"], row["keyword"], row["name"])
            if "x" in rule.group:
                continue  # matched by _repeating_rule
            rules[int(rule.group + rule.element, 16)] = rule
    return rules


def _repeating_removed(tag: int) -> bool:
    """50xx curve data (the whole group) and 60xx overlay data / comments: X."""
    group, element = tag >> 16, tag & 0xFFFF
    return (0x5000 <= group <= 0x501E and group % 2 == 0) or (
        0x6000 <= group <= 0x601E and group % 2 == 0 and element in (0x3000, 0x4000))


def key_for(folder: Path, configured: str | None = None) -> str:
    """The de-identification key: the configured secret, else ``<folder>/.deid.key`` (created 0600).

    One key per installation keeps UIDs, patient ids and date shifts consistent across sessions, so a
    follow-up uploaded next month still pairs with its baseline; without the key nothing maps back."""
    if configured:
        return configured
    path = folder / KEY_FILE_NAME
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key)
        return key


def _mac(key: str, purpose: str, value: str) -> bytes:
    return hmac.new(key.encode(), f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def mapped_uid(uid: str, key: str) -> str:
    """A keyed, consistent replacement UID in the 2.25 (UUID-derived) root: at most 44 characters."""
    return "2.25." + str(int.from_bytes(_mac(key, "uid", uid.strip())[:16], "big"))


def pseudonym(patient_id: str, key: str) -> str:
    """The dummy Patient ID: the same patient always gets the same one."""
    return "p_" + _mac(key, "patient", patient_id.strip()).hex()[:20]


def shift_days(patient_id: str, key: str) -> int:
    """How many days this patient's dates move back (1–3650), the same for each of their studies."""
    return 1 + int.from_bytes(_mac(key, "date-shift", patient_id.strip())[:8], "big") % MAX_SHIFT_DAYS


def _shift_da(value: str, days: int) -> str:
    raw = value.strip()
    try:
        day = date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))
    except (ValueError, IndexError):
        return ""  # an unreadable date is emptied, never kept
    return (day - timedelta(days=days)).strftime("%Y%m%d") + raw[8:] if len(raw) >= 8 else ""


def _dummy(vr: str) -> Any:
    if vr in ("PN",):
        return "ANONYMOUS"
    if vr in ("DA",):
        return "19000101"
    if vr in ("TM",):
        return "000000"
    if vr in ("DT",):
        return "19000101000000"
    if vr in ("IS", "DS"):
        return "0"
    if vr in ("US", "SS", "UL", "SL", "UV", "SV", "AT"):
        return 0
    if vr in ("FL", "FD"):
        return 0.0
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    return "ANONYMIZED"


@dataclass(frozen=True)
class _Context:
    key: str
    days: int


def deidentify(ds: Any, key: str) -> Any:
    """De-identify a pydicom Dataset in place (and its file meta); returns it for chaining."""
    patient_id = str(ds.get("PatientID", "") or "")
    ctx = _Context(key, shift_days(patient_id, key))
    _clean(ds, ctx)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = mapped_uid(str(meta.MediaStorageSOPInstanceUID), key)
        for keyword in META_AE_TITLES:  # not in the table, but an AE title names a station
            if keyword in meta:
                del meta[keyword]
    _mark(ds)
    return ds


def _clean(ds: Any, ctx: _Context) -> None:
    from pydicom.sequence import Sequence

    ds.remove_private_tags()
    rules = basic_profile()
    for elem in list(ds):
        tag = int(elem.tag)
        if _repeating_removed(tag) or tag >> 16 == 0:  # command elements never belong in a stored file
            del ds[elem.tag]
            continue
        if tag >> 16 == 2:
            continue  # file meta inside a dataset is handled with ds.file_meta
            del ds[elem.tag]
            continue
        rule = rules.get(tag)
        if rule is None:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    _clean(item, ctx)
            continue
        keyword = rule.keyword or elem.keyword
        if keyword in RETAINED_CHARACTERISTICS:
            continue  # Retain Patient Characteristics Option: K
        if elem.VR in ("DA", "DT") and keyword not in NOT_SHIFTED and elem.value not in (None, ""):
            values = elem.value if elem.VM > 1 else [elem.value]  # Modified Dates Option: C
            shifted = [_shift_da(str(v), ctx.days) for v in values]
            elem.value = shifted if elem.VM > 1 else shifted[0]
            continue
        action = rule.action
        if action == "U":
            if elem.VR == "UI" and elem.value not in (None, ""):
                values = elem.value if elem.VM > 1 else [elem.value]
                mapped = [mapped_uid(str(v), ctx.key) for v in values]
                elem.value = mapped if elem.VM > 1 else mapped[0]
            elif elem.VR == "SQ":
                for item in elem.value or []:
                    _clean(item, ctx)
            continue
        if keyword in DUMMY_INSTEAD_OF_EMPTY:
            if keyword == "PatientID":
                elem.value = pseudonym(str(elem.value or ""), ctx.key)
            elif elem.value not in (None, ""):
                elem.value = "ANONYMIZED"
            continue
        if "X" in action:
            del ds[elem.tag]
        elif "Z" in action:
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif elem.VR == "UI":  # D on a UID: a keyed replacement is the consistent dummy
            elem.value = mapped_uid(str(elem.value or ""), ctx.key)
        elif elem.VR == "SQ":  # D on a sequence: one empty (dummy) item, nothing of the original
            from pydicom.dataset import Dataset

            elem.value = Sequence([Dataset()])
        else:
            elem.value = _dummy(elem.VR)


def _mark(ds: Any) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEID_METHOD[:64]
    codes = []
    for value, meaning in METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


def deidentify_file(path: Path, key: str, out: Path | None = None) -> Path:
    """Read a DICOM file whole, de-identify it and write it to ``out`` (default: over itself), 0600."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    deidentify(ds, key)
    target = out or path
    with atomic_file(target, mode=0o600) as fh:
        ds.save_as(fh, enforce_file_format=False)
    return target
