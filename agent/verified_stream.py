"""Streaming an LLM answer without ever showing an unverified sentence.

Design (stop 16): a streamed draft marked 下書き would put unchecked numbers in front of a clinician
for seconds before the verifier replaces them, and a number once read cannot be unread. So the stream
is gated per sentence: a sentence is released to the sink only when it is complete (the next one has
begun, or the model finished) and the whole released prefix passes :func:`verify_answer` against the
same numbered sources the final check uses. The first failing sentence closes the gate for that draft:
nothing after it is shown, the sink is told the draft was withdrawn, and the answer the graph finally
accepts (rewrite or deterministic composer) is what the caller prints as the answer.

The verifier is per sentence (numbers, units, grades, findings, citations) plus a script check, so a
prefix that passes holds only sentences the final check also passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal, TextIO

from dokuei.agent.compose import Source, cite_the_only_source, split_sentences
from dokuei.agent.verify import verify_answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamEvent:
    """``sentence``: a verified sentence to show; ``withdrawn``: the rest of this draft failed the check
    (``text`` says why, in Japanese); ``done``: this draft ended with every sentence shown."""

    kind: Literal["sentence", "withdrawn", "done"]
    text: str


DraftSink = Callable[[StreamEvent], None]

#: the sink of the turn being answered (the CLI or one UI request); None: compose does not stream
DRAFT_SINK: ContextVar[DraftSink | None] = ContextVar("dokuei_draft_sink", default=None)


@contextmanager
def streaming_to(sink: DraftSink) -> Iterator[None]:
    """Within this block, LLM answers of this context stream their verified sentences to ``sink``."""
    token = DRAFT_SINK.set(sink)
    try:
        yield
    finally:
        DRAFT_SINK.reset(token)


@dataclass
class SentenceGate:
    """Feed it the model's pieces; it hands verified complete sentences to ``sink``."""

    sources: list[Source]
    sink: DraftSink
    buffer: str = ""
    released: int = 0  # sentences already shown
    shown: list[str] = field(default_factory=list)  # as shown (a single source's [1] added)
    closed: bool = False
    started_s: float = field(default_factory=time.perf_counter)
    #: seconds from the gate's creation to its first released sentence (time to first verified text)
    first_sentence_s: float | None = None

    def feed(self, piece: str) -> None:
        self.buffer += piece
        self._release(final=False)

    def finish(self) -> None:
        self._release(final=True)
        if not self.closed:
            self.sink(StreamEvent("done", ""))

    def _release(self, final: bool) -> None:
        if self.closed:
            return
        sentences = split_sentences(self.buffer)
        complete = sentences if final else sentences[:-1]  # the last one may still get its [n] or 。
        while self.released < len(complete):
            nxt = cite_the_only_source(complete[self.released], self.sources)
            if not nxt.strip():
                self.released += 1
                self.shown.append(nxt)
                continue
            report = verify_answer("".join([*self.shown, nxt]), self.sources)
            if not report.ok:
                log.info("streamed draft withdrawn at sentence %d: %s", self.released + 1, report.issues)
                self.closed = True
                self.sink(StreamEvent("withdrawn", "; ".join(report.issues[:3])))
                return
            if self.first_sentence_s is None:
                self.first_sentence_s = time.perf_counter() - self.started_s
            self.released += 1
            self.shown.append(nxt)
            self.sink(StreamEvent("sentence", nxt))


def stream_verified(pieces: Iterable[str], sources: list[Source], sink: DraftSink) -> str:
    """Consume a model stream through a :class:`SentenceGate`; return the whole draft text."""
    gate = SentenceGate(sources, sink)
    for piece in pieces:
        gate.feed(piece)
    gate.finish()
    return gate.buffer


class TerminalSink:
    """Writes verified sentences to a text stream as they arrive (the CLI uses stderr, so that stdout
    keeps only the final answer or its JSON); a withdrawn draft is announced, never left standing."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = False

    def __call__(self, event: StreamEvent) -> None:
        if event.kind == "sentence":
            if not self.started:
                self.out.write("【検証済みの文から順に表示】\n")
                self.started = True
            self.out.write(event.text)
        elif event.kind == "withdrawn":
            self.out.write("\n【この下書きの続きは検証に通らなかったため表示しません。確定した回答を下に示します】\n")
            self.started = False
        elif self.started:
            self.out.write("\n")
            self.started = False
        self.out.flush()
