"""Lexical retrieval: Japanese-aware tokenizers, negation-scope removal, and a BM25 index on scipy.

Two tokenizers are provided and compared by ``bench/bench_reports.py``: janome (a morphological
analyser from PyPI, content words by part of speech) and character bigrams over Japanese runs (words
for Latin text in both). The winner on the benchmark is :data:`DEFAULT_TOKENIZER`.

Negated findings ("No pleural effusion.", 「胸水は認めない。」) are removed from the *indexed* text so that
a search for 胸水 does not rank every report that rules it out; the displayed passage is unchanged.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from dokuei.atomic import atomic_file
from dokuei.knowledge.normalize import nfkc

log = logging.getLogger(__name__)

#: measured in bench/bench_reports.py (see knowledge/README.md): bigrams retrieve as well as janome
#: on the synthetic Japanese archive and tokenize ~20x faster, so they are the default
DEFAULT_TOKENIZER = "bigram"

_LATIN = r"[a-z0-9]+(?:[.\-][a-z0-9]+)*"
_CJK = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々〆ヵヶー]+"
_TOKEN = re.compile(f"({_LATIN})|({_CJK})")
_EN_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "and",
        "or",
        "in",
        "on",
        "at",
        "to",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "with",
        "for",
        "by",
        "as",
        "there",
        "this",
        "that",
        "it",
        "its",
        "from",
        "which",
        "these",
        "those",
        "has",
        "have",
        "had",
    ]
)


def _joins(gap: str) -> bool:
    """Whether two Latin words separated by ``gap`` form a phrase (only blanks and stop words between)."""
    return not re.sub(r"[a-z]+", lambda w: "" if w.group(0) in _EN_STOP else w.group(0), gap).strip(" ,-/")


def bigram_tokens(text: str) -> list[str]:
    """Latin words and adjacent word pairs (``enlarged_heart``: lets expansions match phrases), and
    overlapping character bigrams of each Japanese run (a 1-char run stays whole)."""
    out: list[str] = []
    norm = nfkc(text).lower()
    prev, prev_end = "", -1
    for m in _TOKEN.finditer(norm):
        word = m.group(1)
        if word:
            if word in _EN_STOP:
                continue
            out.append(word)
            if prev and _joins(norm[prev_end : m.start()]):
                out.append(f"{prev}_{word}")
            prev, prev_end = word, m.end()
            continue
        prev, prev_end = "", -1
        run = m.group(2)
        if len(run) == 1:
            out.append(run)
        else:
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


def phrase_tokens(phrase: str) -> list[str]:
    """How an expansion phrase is searched: one word as itself, several words only as their pairs."""
    toks = bigram_tokens(phrase)
    pairs = [t for t in toks if "_" in t]
    return pairs or toks


_JANOME_KEEP = ("名詞", "動詞", "形容詞", "接頭詞")


@cache
def _janome() -> Any:
    from janome.tokenizer import Tokenizer

    return Tokenizer()


def janome_tokens(text: str) -> list[str]:
    """Content words (nouns, verbs, adjectives by base form) from janome; Latin words as in bigrams."""
    out: list[str] = []
    for m in _TOKEN.finditer(nfkc(text).lower()):
        if m.group(1):
            out.extend(t for t in bigram_tokens(m.group(1)))
            continue
        for tok in _janome().tokenize(m.group(2)):
            pos = tok.part_of_speech.split(",")
            if pos[0] not in _JANOME_KEEP or (pos[1] in ("非自立", "接尾") and pos[0] != "名詞"):
                continue
            out.append(tok.base_form if pos[0] in ("動詞", "形容詞") else tok.surface)
    return out


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"bigram": bigram_tokens, "janome": janome_tokens}

# --- negation scope ------------------------------------------------------------------------------
_EN_NEG = re.compile(
    r"\b(?:no|without|negative for|free of|absence of|not|resolved|removed)\b", re.IGNORECASE
)
_EN_NEG_END = re.compile(r"\b(?:but|however|although|except)\b|;", re.IGNORECASE)
_JA_NEG = re.compile(
    r"(?:認めない|認めません|認められない|認められません|認めず|指摘できない|指摘できず|"
    r"みられない|見られない|みられず|見られず|ありません|はない|なし|無し|消失|陰性|\(-\))"
)
_JA_CLAUSE = re.compile(r"(?<=が、)|(?<=るも、)|(?<=が,)")
_SENT = re.compile(r"(?<=[。．.!?！？])\s*|\n+")


def affirmed_text(text: str) -> str:
    """``text`` with negated findings removed (NegEx-like cue + scope, per sentence and clause)."""
    kept: list[str] = []
    for sentence in _SENT.split(text):
        if not sentence.strip():
            continue
        for clause in _JA_CLAUSE.split(sentence):
            if _JA_NEG.search(clause):
                continue
            m = _EN_NEG.search(clause)
            if m:
                end = _EN_NEG_END.search(clause, m.end())
                clause = clause[: m.start()] + (clause[end.start() :] if end else "")
            if clause.strip():
                kept.append(clause.strip())
    return " ".join(kept)


# --- BM25 -------------------------------------------------------------------------------------------
class BM25Index:
    """Okapi BM25 (k1=1.2, b=0.75) as a precomputed doc x term weight matrix in CSC form.

    A query's scores are one sparse column-slice sum, so a query over a million passages costs
    milliseconds. ``rows`` holds the caller's ids of the indexed passages, in matrix row order.
    """

    def __init__(
        self,
        weights: sparse.csc_matrix,
        vocab: dict[str, int],
        rows: np.ndarray,
        tokenizer: str,
        negation: bool,
    ) -> None:
        self.weights = weights
        self.vocab = vocab
        self.rows = rows
        self.tokenizer = tokenizer
        self.negation = negation

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    def tokenize(self, text: str) -> list[str]:
        return TOKENIZERS[self.tokenizer](text)

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        rows: Sequence[int] | np.ndarray,
        tokenizer: str = DEFAULT_TOKENIZER,
        negation: bool = True,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> BM25Index:
        tok = TOKENIZERS[tokenizer]
        vocab: dict[str, int] = {}
        indptr = [0]
        indices: list[int] = []
        counts: list[int] = []
        for text in texts:
            tf = Counter(tok(affirmed_text(text) if negation else text))
            for term, c in tf.items():
                indices.append(vocab.setdefault(term, len(vocab)))
                counts.append(c)
            indptr.append(len(indices))
        n_docs = len(indptr) - 1
        tf_m = sparse.csr_matrix(
            (np.asarray(counts, np.float32), np.asarray(indices, np.int32), np.asarray(indptr, np.int64)),
            shape=(n_docs, max(len(vocab), 1)),
        )
        doc_len = np.asarray(tf_m.sum(axis=1)).ravel()
        avgdl = float(doc_len.mean()) if n_docs else 1.0
        df = np.bincount(tf_m.indices, minlength=tf_m.shape[1]).astype(np.float32)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = np.repeat(k1 * (1 - b + b * doc_len / max(avgdl, 1e-9)), np.diff(tf_m.indptr)).astype(
            np.float32
        )
        tf_m.data = idf[tf_m.indices] * tf_m.data * (k1 + 1) / (tf_m.data + norm)
        return cls(tf_m.tocsc(), vocab, np.asarray(rows, np.int64), tokenizer, negation)

    def scores(self, query: str, extra_terms: Sequence[str] = ()) -> np.ndarray:
        """BM25 score of every row. ``extra_terms`` (e.g. cross-lingual synonyms) count once each."""
        terms = Counter(t for t in self.tokenize(query) if t in self.vocab)
        for text in extra_terms:
            for t in set(phrase_tokens(text) if self.tokenizer == "bigram" else self.tokenize(text)):
                if t in self.vocab and t not in terms:
                    terms[t] = 1
        if not terms:
            return np.zeros(self.size, np.float32)
        ids = np.fromiter((self.vocab[t] for t in terms), np.int64)
        weights = np.fromiter(terms.values(), np.float32)
        return np.asarray(self.weights[:, ids] @ weights).ravel()

    def top(
        self, query: str, k: int, mask: np.ndarray | None = None, extra_terms: Sequence[str] = ()
    ) -> list[tuple[int, float]]:
        """(row id, score) of the best ``k`` rows with a positive score, restricted to ``mask``."""
        s = self.scores(query, extra_terms)
        if mask is not None:
            s = np.where(mask, s, 0.0)
        k = min(k, int(np.count_nonzero(s)))
        if k <= 0:
            return []
        best = np.argpartition(-s, k - 1)[:k]
        best = best[np.argsort(-s[best], kind="stable")]
        return [(int(self.rows[i]), float(s[i])) for i in best]

    def save(self, path: Path) -> None:
        """Write both files atomically (a reader in another process never loads half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        w = self.weights
        with atomic_file(path.with_suffix(".npz")) as fh:
            np.savez(fh, data=w.data, indices=w.indices, indptr=w.indptr, shape=np.asarray(w.shape),
                     rows=self.rows)
        meta = {"tokenizer": self.tokenizer, "negation": self.negation, "vocab": self.vocab}
        with atomic_file(path.with_suffix(".json")) as fh:
            fh.write(json.dumps(meta, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> BM25Index:
        arrays = np.load(path.with_suffix(".npz"))
        meta = json.loads(path.with_suffix(".json").read_text())
        w = sparse.csc_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"])
        )
        return cls(w, meta["vocab"], arrays["rows"], meta["tokenizer"], meta["negation"])
