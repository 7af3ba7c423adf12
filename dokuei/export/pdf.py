"""A turn as a readable PDF for the chart: question, cited answer, measurement table, overlays, disclaimer.

Japanese text uses IPAexGothic from a PyPI package (``dokuei.fonts``), embedded as a subset by fpdf2.
Image artifacts are drawn from their files; no file name or server path is printed.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from dokuei.export.errors import ExportError
from dokuei.export.fhir import measurements
from dokuei.export.text import DISCLAIMER_JA, without_paths
from dokuei.field_labels import path_label_ja
from dokuei.fonts import FONT_FAMILY, japanese_font_path
from dokuei.tools.registry import tool_title_ja

_PAGE_WIDTH_MM = 180.0


def turn_pdf(turn: dict[str, Any], out: Path, question: str = "") -> Path:
    from fpdf import FPDF

    font = japanese_font_path()
    if font is None:
        raise ExportError("日本語フォント（japanize-matplotlib 同梱の IPAex ゴシック）が見つからないため"
                          " PDF を作成できません。")
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_font(FONT_FAMILY, fname=str(font))
    pdf.add_page()
    pdf.set_font(FONT_FAMILY, size=14)
    pdf.cell(0, 9, "dokuei 臨床支援結果", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT_FAMILY, size=8)
    pdf.cell(0, 5, f"作成 {datetime.now():%Y-%m-%d %H:%M}  バックエンド {turn.get('backend', '?')}  "
             f"検証 {'OK' if turn.get('verified') else '未通過'}", new_x="LMARGIN", new_y="NEXT")
    if question:
        _section(pdf, "質問", question)
    _section(pdf, "回答（[n] は出典番号）", without_paths(str(turn.get("answer_ja", ""))))
    rows = [(tool_title_ja(call["name"]), path_label_ja(call["output"], path), f"{value:g}", unit)
            for call in turn.get("tool_calls", [])
            if call.get("status") == "ok" and isinstance(call.get("output"), dict)
            for path, value, _, unit in measurements(call["output"])
            if not _absent_item(call["output"], path)]
    if rows:
        pdf.set_font(FONT_FAMILY, size=11)
        pdf.cell(0, 8, "計測値", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT_FAMILY, size=8)
        from fpdf.fonts import FontFace

        with pdf.table(col_widths=(40, 90, 25, 25), text_align=("LEFT", "LEFT", "RIGHT", "LEFT"),
                       headings_style=FontFace(emphasis=None)) as table:
            table.row(("ツール", "項目", "値", "単位"))
            for row in rows:
                table.row(row)
    for call in turn.get("tool_calls", []):
        for artifact in call.get("artifacts", []):
            path = Path(str(artifact.get("path", "")))
            if artifact.get("kind") == "image" and path.is_file() and path.suffix.lower() in (".png", ".jpg", ".jpeg"):
                pdf.set_font(FONT_FAMILY, size=9)
                pdf.multi_cell(0, 5, str(artifact.get("caption_ja", "")), new_x="LMARGIN", new_y="NEXT")
                pdf.image(str(path), w=_PAGE_WIDTH_MM * 0.8)
    _section(pdf, "注意", DISCLAIMER_JA)
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))
    return out


def _section(pdf: Any, title: str, body: str) -> None:
    pdf.set_font(FONT_FAMILY, size=11)
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT_FAMILY, size=9)
    pdf.multi_cell(0, 5, body, new_x="LMARGIN", new_y="NEXT")


_ITEM_FIELD = re.compile(r"^(\w+)\[(\d+)\]\.\w+$")


def _absent_item(output: dict[str, Any], path: str) -> bool:
    """A structure the segmentation did not find (``present: false``): its zero volume is no measurement."""
    match = _ITEM_FIELD.match(path)
    items = output.get(match.group(1)) if match else None
    if not (match and isinstance(items, list) and int(match.group(2)) < len(items)):
        return False
    item = items[int(match.group(2))]
    return isinstance(item, dict) and item.get("present") is False
