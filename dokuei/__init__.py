"""dokuei (読影): an on-premises Japanese clinical assistant.

The import package ``dokuei`` joins the repository's top-level folders (``agent/``, ``tools/``,
``knowledge/``, ``ui/``) under one name through symbolic links in ``dokuei/``, so that PyPI's
unrelated ``tools``/``agent``/``knowledge`` packages can never shadow them.
"""

from dokuei.offline import disable_telemetry

__version__ = "0.1.0"

disable_telemetry()
