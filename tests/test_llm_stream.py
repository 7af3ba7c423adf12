"""Verified streaming: only sentences that pass the verifier reach the CLI/UI, and the graph streams
through the gate when a caller listens (scripted backend, offline)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from dokuei.agent.compose import number_sources
from dokuei.agent.graph import Agent
from dokuei.agent.llm import ChatReply, ScriptedBackend
from dokuei.agent.verified_stream import StreamEvent, TerminalSink, stream_verified, streaming_to
from dokuei.settings import Settings
from dokuei.tools.base import Citation, Provenance, ToolResult, ToolStatus


def _sources() -> Any:
    summary = "HbA1c 6.8 %: D 判定（要受診）。"
    result = ToolResult(tool="judge_checkup", status=ToolStatus.OK, summary_ja=summary, output={"hba1c_pct": 6.8},
                        citations=[Citation(id="c", kind="tool_result", label_ja="健診", text=summary)],
                        provenance=Provenance(tool="judge_checkup", tool_version="1.0.0"))
    return number_sources([result])


def _pieces(text: str, size: int = 3) -> Iterator[str]:
    for i in range(0, len(text), size):  # small pieces, as a model streams them
        yield text[i:i + size]


def test_gate_releases_verified_sentences_and_withdraws_at_an_unsupported_number() -> None:
    events: list[StreamEvent] = []
    draft = "HbA1c は 6.8 % です [1]。判定は D です [1]。空腹時血糖は 142 mg/dL です [1]。以上です。"
    text = stream_verified(_pieces(draft), _sources(), events.append)
    assert text == draft  # the graph still gets the whole draft for its own final check
    shown = [e.text for e in events if e.kind == "sentence"]
    assert shown == ["HbA1c は 6.8 % です [1]。", "判定は D です [1]。"]  # 142 is in no source: never shown
    assert events[-1].kind == "withdrawn" and "142" in events[-1].text


def test_gate_shows_nothing_before_a_sentence_is_complete_and_agrees_with_the_final_check() -> None:
    from dokuei.agent.verified_stream import SentenceGate
    from dokuei.agent.verify import verify_answer

    events: list[StreamEvent] = []
    gate = SentenceGate(_sources(), events.append)
    gate.feed("HbA1c は 6.8 % で")
    gate.feed("す [1]。")
    assert events == []  # the last sentence may still grow: nothing shown until the next one or the end
    gate.finish()
    assert [e.kind for e in events] == ["sentence", "done"]
    # with one source an uncited sentence is cited to it (compose.cite_the_only_source): gate and final
    # check agree, accepting a supported one and withdrawing an unsupported one
    from dokuei.agent.compose import cite_the_only_source

    for text, ok in (("HbA1c は 6.8 % です。", True), ("HbA1c は 7.9 % です。", False)):
        events.clear()
        stream_verified([text], _sources(), events.append)
        assert [e.kind for e in events] == (["sentence", "done"] if ok else ["withdrawn"])
        assert verify_answer(cite_the_only_source(text, _sources()), _sources()).ok is ok


def test_terminal_sink_marks_the_stream_and_a_withdrawal() -> None:
    out = io.StringIO()
    stream_verified(_pieces("HbA1c は 6.8 % です [1]。血红蛋白は正常です [1]。"), _sources(), TerminalSink(out))
    text = out.getvalue()
    assert text.startswith("【検証済みの文から順に表示】\nHbA1c は 6.8 % です [1]。")
    assert "血红蛋白" not in text and "検証に通らなかった" in text  # simplified Chinese: withdrawn, not shown


def test_agent_streams_through_the_gate_only_when_a_sink_listens(settings: Settings) -> None:
    class Streaming(ScriptedBackend):
        streamed = 0

        def stream(self, messages: Any) -> Iterator[str]:
            self.streamed += 1
            yield from _pieces(self.chat(messages).text)

    answer = "HbA1c は 6.8 % です [1]。"
    plan = ChatReply(text='{"c":[{"k":1}]}')  # the router's judge_checkup candidate; step 2 asks nothing
    backend = Streaming([plan, ChatReply(text=answer), plan, ChatReply(text=answer)], supports_json_schema=True)
    agent = Agent(settings, backend=backend)
    events: list[StreamEvent] = []
    with streaming_to(events.append):
        turn = agent.ask("HbA1c 6.8% は要受診ですか？", patient={"age_years": 55, "sex": "M"})
    assert backend.streamed == 1 and turn.composer == "scripted" and turn.verified
    assert [e.text for e in events if e.kind == "sentence"] == [answer]
    agent.ask("HbA1c 6.8% は要受診ですか？", patient={"age_years": 55, "sex": "M"})
    assert backend.streamed == 1  # no sink outside the block: compose used chat()


def test_ui_bubble_shows_only_verified_sentences_of_its_own_request(settings: Settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from dokuei.ui import stream as ui_stream

    def ask(text: str) -> str:  # stands in for agent.ask: compose streams through the sink bound to this request
        from dokuei.agent.verified_stream import DRAFT_SINK

        sink = DRAFT_SINK.get()
        assert sink is not None  # bound in the worker thread by ui_stream.submit
        return stream_verified(_pieces(text), _sources(), sink)

    with ThreadPoolExecutor(2) as pool:
        future, draft = ui_stream.submit(pool, ask, "HbA1c は 6.8 % です [1]。血糖は 142 mg/dL です [1]。")
        future.result()
    bubble = ui_stream.pending_markdown(draft, "待機中")
    assert bubble.startswith(ui_stream.HEADING_JA) and "6.8" in bubble
    assert "142" not in bubble and ui_stream.WITHDRAWN_JA in bubble
    assert ui_stream.pending_markdown(ui_stream.UiDraft(), "待機中") == "待機中"
