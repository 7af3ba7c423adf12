"""A Japanese font for plots and PDFs, from a PyPI package that ships one (no system font needed).

``japanize-matplotlib`` carries IPAexGothic (``ipaexg.ttf``, IPA Font License v1.0). The package is
located, never imported (its module imports ``distutils``), so only the font file is used.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FONT_PACKAGE = "japanize_matplotlib"
FONT_FILE = "fonts/ipaexg.ttf"
FONT_FAMILY = "IPAexGothic"


@cache
def japanese_font_path() -> Path | None:
    spec = importlib.util.find_spec(FONT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        log.warning("no Japanese font: install %s (pip) for Japanese text in plots and PDFs", FONT_PACKAGE)
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FONT_FILE
    return path if path.is_file() else None


@cache
def use_japanese_font_in_matplotlib() -> bool:
    """Register the font with matplotlib and make it the default sans-serif; False when absent."""
    path = japanese_font_path()
    if path is None:
        return False
    from matplotlib import font_manager, rcParams

    font_manager.fontManager.addfont(str(path))
    rcParams["font.family"] = "sans-serif"
    rcParams["font.sans-serif"] = [FONT_FAMILY, *rcParams["font.sans-serif"]]
    return True


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, with the Japanese font as the default when installed.

    Every server-side figure (overlays, montages) is drawn through this, so Japanese labels render as
    text and never as empty boxes.
    """
    import matplotlib

    matplotlib.use("Agg")
    use_japanese_font_in_matplotlib()
    import matplotlib.pyplot as plt

    return plt
