"""Exports of a turn for the hospital: FHIR R4 bundle (EHR) and plain text for pasting into 電子カルテ."""


class ExportError(Exception):
    """An export that cannot be written; the message is Japanese and shown as is."""
