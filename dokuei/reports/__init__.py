"""Report-text domain logic: sections and sentences, critical-finding rules, impression drafts, structure.

Plain typed functions over strings and dataclasses; imports neither ``dokuei.tools`` nor ``dokuei.agent``.
Errors: :class:`dokuei.reports.text.ReportTextError` (``dokuei.errors`` does not exist on this branch yet;
the tools turn it into a failed result with its Japanese message).
"""
