"""The one exception of the export package (its own module, so the package's modules and its API do not
import each other in a circle)."""


class ExportError(Exception):
    """An export that cannot be written; the message is Japanese and shown as is."""
