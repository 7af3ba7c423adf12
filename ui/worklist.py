"""The 見落とし防止 tab: the critical-finding worklist of the archive over a date range, filterable by category.

It runs the same tool as the chat (``check_missed_findings``), so the rows, the quoted evidence and the CSV are
the ones the agent cites. ``worklist_table`` is plain Python (tested without Gradio); ``build_worklist_tab``
is mounted inside the app's ``gr.Blocks`` by one call.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from dokuei.settings import Settings

log = logging.getLogger(__name__)

COLUMNS = ["レポート ID", "検査日", "モダリティ", "部位", "カテゴリ", "判定", "スコア", "根拠（原文）", "欄"]
_STATUS_JA = {"present": "あり", "suspected": "疑い", "unchanged_known": "既知・著変なし"}
ALL_CATEGORIES = "（すべて）"


def _day(text: str, what: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{what}「{text}」を YYYY-MM-DD として読めません。") from exc


def worklist_table(settings: Settings, date_from: str, date_to: str, category: str = ALL_CATEGORIES,
                   include_unchanged: bool = False) -> tuple[list[list[Any]], str, str | None]:
    """(rows for the table, a Japanese summary, the worklist CSV path or None)."""
    from dokuei.tools.check_missed_findings import CheckMissedFindings

    try:
        lo, hi = _day(date_from, "開始日"), _day(date_to, "終了日")
    except ValueError as exc:
        return [], str(exc), None
    period = "期間指定" if lo or hi else "アーカイブ全体"
    result = CheckMissedFindings(settings)({"date_from": lo, "date_to": hi, "period_ja": period,
                                            "include_unchanged": include_unchanged})
    if not result.ok or result.output is None:
        return [], result.summary_ja, None
    rows = [r for r in result.output["rows"] if category in (ALL_CATEGORIES, "", r["name_ja"])]
    table = [[r["report_id"], r["study_date"], r["modality"], r["body_part"], r["name_ja"],
              _STATUS_JA.get(r["status"], r["status"]), r["score"], r["evidence"],
              "所見" if r["section"] == "findings" else "診断"] for r in rows]
    return table, result.summary_ja, result.output["worklist_csv"]


def category_names() -> list[str]:
    from dokuei.reports.critical import load_categories

    return [ALL_CATEGORIES, *(c.name_ja for c in load_categories()[2])]


def build_worklist_tab(settings: Settings) -> None:
    """The 見落とし防止 tab; call inside ``gr.Blocks``."""
    import gradio as gr

    with gr.Tab("見落とし防止"):
        gr.Markdown("アーカイブのレポートを重大所見の規則で一括確認します（検査日で期間を指定、空欄なら全件）。"
                    "最終判断は読影医が行ってください。")
        with gr.Row():
            date_from = gr.Textbox(label="開始日（YYYY-MM-DD）", value=date.today().isoformat())
            date_to = gr.Textbox(label="終了日（YYYY-MM-DD）", value=date.today().isoformat())
            category = gr.Dropdown(category_names(), value=ALL_CATEGORIES, label="カテゴリ")
            unchanged = gr.Checkbox(label="既知・著変なしも表示", value=False)
        run = gr.Button("確認する", variant="primary")
        summary = gr.Markdown()
        table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, label="ワークリスト")
        csv_file = gr.File(label="ワークリスト CSV", interactive=False)
        run.click(lambda a, b, c, u: worklist_table(settings, a, b, c, u),
                  [date_from, date_to, category, unchanged], [table, summary, csv_file])
