"""Exports of a turn for the hospital: FHIR R4 bundle (EHR) and plain text for pasting into 電子カルテ."""
