"""Gradio chat on this machine only: question + uploads + patient context → cited answer, sources,
tool trace and artifacts beside it. The UI reads ``TurnResult`` objects, never strings parsed back."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dokuei.settings import Settings

log = logging.getLogger(__name__)

TITLE = "dokuei（読影）臨床支援アシスタント"
EXAMPLES = [
    "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？",
    "過去のレポートで心拡大の記載があるものは？",
    "この心電図の所見は？",
    "この CT で L3 の骨格筋量とサルコペニアの判定は？",
    "前回と比べてリンパ節は？RECIST で評価して",
]


def _patient(age: float | None, sex: str | None, height: float | None, weight: float | None) -> dict[str, Any]:
    values = {"age_years": int(age) if age else None, "sex": {"男性": "M", "女性": "F"}.get(sex or ""),
              "height_cm": height or None, "weight_kg": weight or None}
    return {k: v for k, v in values.items() if v is not None}


def _sources_markdown(citations: list[dict[str, Any]]) -> str:
    if not citations:
        return "（出典なし）"
    lines = []
    for c in citations:
        text = " ".join(str(c.get("text", "")).split())
        lines.append(f"**[{c['number']}]** {c['label_ja']}  \n{text[:400]}")
    return "\n\n".join(lines)


def build_app(settings: Settings | None = None) -> Any:
    import gradio as gr

    from dokuei.agent.graph import Agent, sqlite_checkpointer

    settings = settings or Settings.load()
    agent = Agent(settings, checkpointer=sqlite_checkpointer(settings.checkpoint_db))

    def respond(message: str, history: list[dict[str, Any]], files: list[str] | None, session: str,
                age: float | None, sex: str | None, height: float | None,
                weight: float | None) -> Iterator[tuple[Any, ...]]:
        history = [*history, {"role": "user", "content": message}]
        pending = {"role": "assistant", "content": "ツールを選んで実行しています…"}
        yield [*history, pending], "", "", [], session
        try:
            turn = agent.ask(message, attachments=[str(f) for f in files or []],
                             patient=_patient(age, sex, height, weight), session_id=session)
        except Exception as exc:  # the session must survive any bad input
            log.exception("UI turn failed")
            answer = f"エラーが発生しました（{type(exc).__name__}）。入力を確認してください。詳細はログにあります。"
            yield [*history, {"role": "assistant", "content": answer}], "", "", [], session
            return
        trace = json.dumps(turn.to_json()["tool_calls"], ensure_ascii=False, indent=2, default=str)
        images = [a.path for r in turn.results for a in r.artifacts if a.kind == "image" and Path(a.path).exists()]
        note = "" if turn.verified else "\n\n（注意: 回答の一部が根拠の検証に通りませんでした）"
        yield ([*history, {"role": "assistant", "content": turn.answer_ja + note}],
               _sources_markdown(turn.citations), trace, images, session)

    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}\n院内でのみ動作します。回答の各記述には根拠の番号 [n] が付きます。")
        session = gr.State(lambda: uuid.uuid4().hex)
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="対話", height=520)
                question = gr.Textbox(label="質問", placeholder=EXAMPLES[0], lines=2)
                with gr.Row():
                    send = gr.Button("送信", variant="primary")
                    clear = gr.Button("新しいセッション")
                gr.Examples(EXAMPLES, inputs=question)
            with gr.Column(scale=2):
                files = gr.File(label="添付（DICOM / NIfTI / 心電図 / 画像 / レポート）", file_count="multiple",
                                type="filepath")
                with gr.Row():
                    age = gr.Number(label="年齢", precision=0)
                    sex = gr.Dropdown(["男性", "女性"], label="性別")
                with gr.Row():
                    height = gr.Number(label="身長 (cm)")
                    weight = gr.Number(label="体重 (kg)")
                sources = gr.Markdown(label="出典")
                gallery = gr.Gallery(label="画像（オーバーレイ・波形）", height=260)
                with gr.Accordion("ツールの実行記録", open=False):
                    trace = gr.Code(language="json", label="tool_calls")
        inputs = [question, chat, files, session, age, sex, height, weight]
        outputs = [chat, sources, trace, gallery, session]
        send.click(respond, inputs, outputs).then(lambda: "", None, question)
        question.submit(respond, inputs, outputs).then(lambda: "", None, question)
        clear.click(lambda: ([], "", "", [], uuid.uuid4().hex), None, outputs)
    return app


def launch(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 7860) -> None:
    settings = settings or Settings.load()
    app = build_app(settings)
    app.queue(default_concurrency_limit=2).launch(
        server_name=host, server_port=port, share=False, inbrowser=False, footer_links=[],
        allowed_paths=[str(settings.artifacts_dir)],
    )
