"""The knowledge-base index: a released dataset version's articles in a FAISS vector index.

One index per (knowledge-base dataset version, embedding model digest). It is built once
from the version's rows, stored in the artefact store as a folder (content-addressed,
``put_tree``), and loaded back by every later call, in this process or another: the same
version is never embedded twice by the same model. A new knowledge-base version, or
another model, gets an index of its own.

Each article is one unit vector: the mean of its title's and its body's MiniLM vectors,
normalised (measured on the built-in sample: it ranks the right intent's article first
more often than the body alone or title and body as one text). A search embeds the
question the same way and returns the top-k articles by cosine similarity, optionally
only those of one language.

FAISS (``faiss-cpu``) holds the vectors: an exact inner-product index (``IndexFlatIP``)
up to ``EXACT_UP_TO`` articles, which a knowledge base rarely exceeds and which answers
in well under a millisecond at that size; an HNSW graph above it.

Hybrid search (``KnowledgeIndex.search_texts``, which ``search_knowledge`` and
``evaluate_knowledge_index`` use): MiniLM's vocabulary is English, so it reads about 70 %
of a Chinese question's tokens as unknown and its cosine then says little. Each article
also gets a lexical vector (``lexical.LexicalScorer``: TF-IDF of the character 1- to
3-grams of its title and body), and an article's score for a question is

    score = (1 - w) * max(cosine, 0) + w * lexical,   w = 0.4 + 0.6 * unknown_share(question)

(``fusion_weight``): both parts are in 0..1, so is the score; callers may read it as a
confidence, 1 meaning the question is the article (same meaning, same character n-grams)
and 0 that it shares neither. The lexical part weighs 0.4 when the model knows every
token of the question and all of it when the model knows none. ``KnowledgeIndex.search``
stays dense only (``score`` = cosine, -1..1).

The score's scale depends on the question's language, so a confidence threshold is set
per language. Top-hit scores measured (10th / 50th / 90th percentile): the sample's English
test questions 0.54 / 0.66 / 0.76, its Chinese ones 0.18 / 0.24 / 0.32 (carried by the
lexical part: a paraphrase shares few exact n-grams with an article); off topic, BANKING77
questions of its 69 other intents 0.44 / 0.57 / 0.68 and eight made-up Chinese questions
(weather, poems...) 0.09 / 0.15 / 0.20, where the cosine alone gave them 0.57 / 0.64 / 0.72
against 0.65 / 0.73 / 0.80 on topic. Separating BANKING77's 8 sample intents from its
others by the top score: AUROC 0.86 fused, 0.87 cosine alone.

Measured on the built-in sample's 150 test questions (90 EN, 60 ZH) against its 40
articles, no language filter (recall@1 / recall@5 / MRR of the first article of the
question's intent), dense -> hybrid:

    EN  0.844 / 0.933 / 0.889  ->  0.867 / 0.933 / 0.903
    ZH  0.233 / 0.717 / 0.434  ->  0.883 / 0.917 / 0.904

and, as a check on questions not written with the sample's templates, on the 320
BANKING77 test questions of the 8 of its intents that are sample intents (EN only):
0.953 / 0.991 / 0.971 -> 0.956 / 0.991 / 0.974. Also measured, and not taken: reciprocal
rank fusion (1/(c + rank) summed, c = 1..60) gives EN 0.856-0.867 but ZH only 0.70-0.72
and BANKING77 0.89 recall@1: it counts the cosine's ranking of a Chinese question as much
as the lexical one. A fixed weight must be 0.7 or more to reach ZH 0.867, where BANKING77
recall@1 falls to 0.944 (0.925 at 0.8). The lexical base weight 0.2 / 0.3 / 0.4 / 0.5
gives ZH recall@1 0.850 / 0.867 / 0.883 / 0.883 and BANKING77 0.953 / 0.953 / 0.956 / 0.953.
Without per-question shares, ``search_texts`` uses the share the index recorded for the
articles in the question's language (0.716 for ZH on this sample): ZH 0.867 / 0.933 / 0.897.

The bundle's files:

    index.json      what it is: kind, dataset version id and content hash, model digest,
                    dimension, article count, FAISS index type, document recipe, lexical
                    and fusion recipe
    articles.jsonl  one article per vector position: article_id, intent, title, language, text
    vectors.faiss   the FAISS index (``faiss.serialize_index``)
    lexical.json    the lexical scorer: its n-gram vocabulary and idf (``LexicalScorer.to_bytes``)

A bundle stored before hybrid search has no ``lexical.json``; it still loads, and its
lexical scorer is fitted from its articles at load (milliseconds for a sample-sized base;
the recipe is deterministic, so it scores as a stored one would). It is not rebuilt or
re-stored: that would embed every article again for nothing.

Where an index is found: until the metadata store has a table for it (``support_indexes``:
dataset_version_id, model_digest, index_artifact, articles, built_by, built_at, unique on
the first two), the key -> artefact pointer is a small file under
``<home>/cache/support/indexes/``; losing it only costs a rebuild, which gives the same
bytes. Each build is recorded in the audit ledger ("support.index.build" on the dataset
version), so the index an answer came from is traceable to the data.

Services take the caller (``actor``) and decide: building and searching read the version's
rows, ``data.read`` in its project.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pyarrow as pa
import torch

from chainkeeper.apps.support.embedding import SentenceEncoder
from chainkeeper.apps.support.lexical import ANALYZER, NGRAM_RANGE, LexicalScorer
from chainkeeper.core.artifacts import ArtifactStore, atomic_write
from chainkeeper.core.errors import ArtifactError, Conflict, InvalidInput, NotFound
from chainkeeper.core.settings import default_base_model
from chainkeeper.data import (
    DatasetState,
    DatasetTask,
    DatasetVersion,
    get_dataset_version,
    project_of_dataset_version,
    read_dataset_rows,
    read_source_rows,
    redact_text,
    text_language,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize_object

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["INDEX_KIND", "EXACT_UP_TO", "MAX_K", "MAX_QUERY_CHARS", "LEXICAL_WEIGHT", "FUSION_POOL", "IndexedArticle",
           "KnowledgeHit", "KnowledgeIndex", "KnowledgeIndexInfo", "KnowledgeSearch", "build_vector_index",
           "fusion_weight", "retrieval_metrics", "build_knowledge_index", "search_knowledge",
           "evaluate_knowledge_index"]

INDEX_KIND = "chainkeeper.support.index/1"
DOCUMENT = "mean(title, text)"
# Up to this many articles the index is exact (a flat inner-product scan); above, HNSW.
EXACT_UP_TO = 50_000
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
MAX_K = 50
# A question is a few sentences; the model reads 256 tokens. Longer input is refused, not cut.
MAX_QUERY_CHARS = 4000
# Ranks looked at when measuring (an article past it counts as not found: MRR@100).
EVAL_DEPTH = 100
# Hybrid search: the lexical score's weight for a question the model reads in full; it rises
# linearly to 1 as the share of the question's tokens the model does not know rises to 1.
LEXICAL_WEIGHT = 0.4
# Hybrid search fuses the top this-many articles of each score (all of a smaller knowledge base).
FUSION_POOL = 100
_QUERY_CHUNK = 256  # questions scored lexically at once (a chunk x articles array)
_CACHE_ENTRIES = 8
_ENCODERS = 2
_FILES = {"meta": "index.json", "articles": "articles.jsonl", "vectors": "vectors.faiss", "lexical": "lexical.json"}
# A bundle stored before hybrid search: no lexical.json (its scorer is fitted from its articles at load).
_FILES_BEFORE_LEXICAL = {_FILES[name] for name in ("meta", "articles", "vectors")}


@dataclass(frozen=True)
class IndexedArticle:
    """An article as the index holds it (``text`` as cleaned and frozen in the version)."""

    article_id: str
    intent: str
    title: str
    language: str
    text: str
    row_id: int


@dataclass(frozen=True)
class KnowledgeHit:
    """One article found, its rank (1 = best) and score.

    ``score`` is, from ``KnowledgeIndex.search_texts`` (hybrid: ``search_knowledge``), the fused
    score in 0..1: ``(1 - w) * max(cosine, 0) + w * lexical`` (see ``fusion_weight``), with
    ``dense_score`` and ``lexical_score`` its two parts; from ``KnowledgeIndex.search`` (dense
    only) the cosine similarity (-1..1), and the two parts are None.
    """

    rank: int
    score: float
    article_id: str
    intent: str
    title: str
    language: str
    text: str
    dense_score: float | None = None
    lexical_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KnowledgeSearch:
    """The answer to one question: the articles found and the index that found them."""

    query: str
    hits: tuple[KnowledgeHit, ...]
    dataset_version_id: int
    index_artifact: str
    model_digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "hits": [h.to_dict() for h in self.hits],
                "dataset_version_id": self.dataset_version_id, "index_artifact": self.index_artifact,
                "model_digest": self.model_digest}


@dataclass(frozen=True)
class KnowledgeIndexInfo:
    """An index of a knowledge-base version: where it is stored and whether this call built it."""

    dataset_version_id: int
    index_artifact: str
    model_digest: str
    articles: int
    dim: int
    index_type: str
    built: bool
    seconds: float
    # Per article language, the share of tokens the model's vocabulary does not know.
    unknown_token_share: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class KnowledgeIndex:
    """A loaded index: its FAISS vectors, its lexical scorer, the article at each position, and
    what it was built from. Without a ``lexical`` scorer (an index stored before hybrid search,
    or one made in memory) the scorer is fitted from the articles: the recipe is deterministic,
    so the same articles give the same scorer as a stored one."""

    articles: list[IndexedArticle]
    vectors: Any  # faiss.Index
    meta: dict[str, Any]
    artifact: str = ""
    lexical: LexicalScorer | None = field(default=None, repr=False)
    _by_language: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _lexical: LexicalScorer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for language in sorted({a.language for a in self.articles}):
            self._by_language[language] = np.array(
                [i for i, a in enumerate(self.articles) if a.language == language], dtype=np.int64)
        self._lexical = self.lexical or LexicalScorer.fit([_lexical_document(a) for a in self.articles])
        self.lexical = self._lexical

    def search(self, queries: np.ndarray, k: int, *, language: str | None = None) -> list[list[KnowledgeHit]]:
        """The top ``k`` articles of each query vector (pure).

        Args:
            queries: float32 unit vectors, shape (q, dim).
            k: how many articles per query (fewer when the index has fewer).
            language: only articles in this language (none found when it has none).

        Returns:
            Per query, the hits best first.
        """
        if language is not None and language not in self._by_language:
            return [[] for _ in range(len(queries))]
        params = None
        if language is not None:
            # The selector must outlive the search: the parameters hold only a pointer to it.
            selector = faiss.IDSelectorBatch(self._by_language[language])
            params = faiss.SearchParameters()
            params.sel = selector
        scores, ids = self.vectors.search(np.ascontiguousarray(queries, dtype=np.float32),
                                          min(k, len(self.articles)), params=params)
        return [self._hits(row_scores, row_ids) for row_scores, row_ids in zip(scores, ids, strict=True)]

    def search_texts(self, texts: Sequence[str], vectors: np.ndarray, k: int, *, language: str | None = None,
                     unknown_shares: Sequence[float] | None = None) -> list[list[KnowledgeHit]]:
        """The top ``k`` articles of each question by the fused dense and lexical score (pure).

        The candidates of a question are the top ``FUSION_POOL`` articles by cosine (FAISS)
        and the top ``FUSION_POOL`` by lexical score (every article of a knowledge base that
        small); each gets both scores exactly, and they are ranked by
        ``(1 - w) * max(cosine, 0) + w * lexical`` with ``w = fusion_weight(unknown share)``,
        ties by position in the index.

        Args:
            texts: the questions.
            vectors: their float32 unit vectors by the index's model, shape (len(texts), dim).
            k: how many articles per question (fewer when the index has fewer).
            language: only articles in this language (none found when it has none).
            unknown_shares: per question, the share of its tokens the model does not know
                (``SentenceEncoder.unknown_share``); without it, the share the index
                recorded for the articles of the question's language (``text_language``),
                0 for a language it has no articles in.

        Returns:
            Per question, the hits best first; ``score`` is the fused score (0..1).

        Raises:
            InvalidInput: texts, vectors and shares of different lengths, or k below 1.
        """
        if len(vectors) != len(texts) or (unknown_shares is not None and len(unknown_shares) != len(texts)):
            raise InvalidInput(f"Got {len(texts)} questions, {len(vectors)} vectors and "
                               f"{'no' if unknown_shares is None else len(unknown_shares)} unknown-token shares.",
                               hint="Give one vector (and share, if any) per question, in the same order.")
        if k < 1:
            raise InvalidInput(f"k must be at least 1, got {k}.", hint="Ask for a few articles, e.g. k=5.")
        if not texts or (language is not None and language not in self._by_language):
            return [[] for _ in texts]
        allowed = self._by_language[language] if language is not None else np.arange(len(self.articles))
        depth = min(len(allowed), max(k, FUSION_POOL))
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        dense_ids = self._dense_ids(queries, depth, language)
        shares = list(unknown_shares) if unknown_shares is not None else [self._language_share(t) for t in texts]
        results: list[list[KnowledgeHit]] = []
        for start in range(0, len(texts), _QUERY_CHUNK):
            lexical = self._lexical.scores(texts[start:start + _QUERY_CHUNK])  # (chunk, articles)
            for i, lexical_row in enumerate(lexical, start=start):
                by_lexical = allowed[np.argsort(-lexical_row[allowed], kind="stable")[:depth]]
                candidates = np.union1d(dense_ids[i][dense_ids[i] >= 0], by_lexical)
                cosine = self.vectors.reconstruct_batch(candidates) @ queries[i]
                results.append(self._fused_hits(candidates, cosine, lexical_row[candidates], shares[i], k))
        return results

    def _dense_ids(self, queries: np.ndarray, depth: int, language: str | None) -> np.ndarray:
        params = None
        if language is not None:
            selector = faiss.IDSelectorBatch(self._by_language[language])  # must outlive the search
            params = faiss.SearchParameters()
            params.sel = selector
        _, ids = self.vectors.search(queries, depth, params=params)
        return ids  # type: ignore[no-any-return]

    def _fused_hits(self, candidates: np.ndarray, cosine: np.ndarray, lexical: np.ndarray, unknown_share: float,
                    k: int) -> list[KnowledgeHit]:
        weight = fusion_weight(unknown_share)
        dense = np.clip(cosine.astype(np.float64), 0.0, 1.0)
        fused = (1.0 - weight) * dense + weight * lexical
        best = np.lexsort((candidates, -fused))[:k]
        return [_hit(self.articles[int(candidates[j])], rank, float(fused[j]), dense=float(cosine[j]),
                     lexical=float(lexical[j])) for rank, j in enumerate(best, start=1)]

    def _language_share(self, text: str) -> float:
        shares: dict[str, float] = self.meta.get("unknown_token_share") or {}
        return float(shares.get(text_language(text), 0.0))

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[KnowledgeHit]:
        # FAISS pads with id -1 when fewer than k vectors pass the filter.
        found = [(float(score), int(i)) for score, i in zip(scores, ids, strict=True) if i >= 0]
        return [_hit(self.articles[i], rank, score) for rank, (score, i) in enumerate(found, start=1)]

    def save(self, folder: Path) -> None:
        """Write the bundle's files into ``folder`` (deterministic: the same index, the same bytes)."""
        (folder / _FILES["meta"]).write_text(json.dumps(self.meta, sort_keys=True, indent=1) + "\n", encoding="utf-8")
        (folder / _FILES["articles"]).write_text(
            "".join(json.dumps(asdict(a), ensure_ascii=False, sort_keys=True) + "\n" for a in self.articles),
            encoding="utf-8")
        (folder / _FILES["vectors"]).write_bytes(faiss.serialize_index(self.vectors).tobytes())
        (folder / _FILES["lexical"]).write_bytes(self._lexical.to_bytes())

    @classmethod
    def load(cls, artifacts: ArtifactStore, digest: str) -> KnowledgeIndex:
        """Read a stored bundle back (each file re-checked against its digest). A bundle stored
        before hybrid search has no ``lexical.json``: its lexical scorer is fitted from its articles.

        Raises:
            ArtifactError: the artefact is not an index bundle. NotFound, ArtifactCorrupted: from the store.
        """
        files = artifacts.read_manifest(digest)
        if set(files) not in (set(_FILES.values()), _FILES_BEFORE_LEXICAL):
            raise ArtifactError(f"Artefact {digest[:12]} is not a knowledge-base index.")
        meta = json.loads(artifacts.get_bytes(files[_FILES["meta"]]))
        if meta.get("kind") != INDEX_KIND:
            raise ArtifactError(f"Artefact {digest[:12]} is a {meta.get('kind')!r}, not a {INDEX_KIND!r}.")
        lines = artifacts.get_bytes(files[_FILES["articles"]]).decode("utf-8").splitlines()
        articles = [IndexedArticle(**json.loads(line)) for line in lines]
        raw = np.frombuffer(artifacts.get_bytes(files[_FILES["vectors"]]), dtype=np.uint8)
        lexical = None
        if _FILES["lexical"] in files:
            lexical = LexicalScorer.from_bytes(artifacts.get_bytes(files[_FILES["lexical"]]),
                                               [_lexical_document(a) for a in articles])
        return cls(articles=articles, vectors=faiss.deserialize_index(raw.copy()), meta=meta, artifact=digest,
                   lexical=lexical)


def _lexical_document(article: IndexedArticle) -> str:
    return f"{article.title}\n{article.text}"


def _hit(article: IndexedArticle, rank: int, score: float, *, dense: float | None = None,
         lexical: float | None = None) -> KnowledgeHit:
    return KnowledgeHit(rank=rank, score=round(score, 6), article_id=article.article_id, intent=article.intent,
                        title=article.title, language=article.language, text=article.text,
                        dense_score=None if dense is None else round(dense, 6),
                        lexical_score=None if lexical is None else round(lexical, 6))


def fusion_weight(unknown_share: float) -> float:
    """The lexical score's weight in the fused score of a question (pure).

    ``LEXICAL_WEIGHT`` for a question the model reads in full, rising linearly to 1 (lexical
    only) as the share of its tokens the model does not know rises to 1: the dense score
    counts only as far as the model can read the question.

    Args:
        unknown_share: 0..1 (values outside are clipped).
    """
    share = min(max(float(unknown_share), 0.0), 1.0)
    return LEXICAL_WEIGHT + (1.0 - LEXICAL_WEIGHT) * share


def build_vector_index(vectors: np.ndarray, *, exact_up_to: int = EXACT_UP_TO) -> tuple[Any, str]:
    """A FAISS inner-product index over unit vectors (pure).

    Args:
        vectors: float32, shape (n, dim), rows of unit length.
        exact_up_to: up to this many rows the index is exact (flat), above it HNSW.

    Returns:
        The index and its type ("flat" or "hnsw").
    """
    n, dim = vectors.shape
    index: faiss.Index
    if n <= exact_up_to:
        index, kind = faiss.IndexFlatIP(dim), "flat"
    else:
        graph = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        graph.hnsw.efSearch = HNSW_EF_SEARCH  # kept in the serialised index
        index, kind = graph, "hnsw"
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, kind


def retrieval_metrics(ranks: Sequence[int | None], *, k: int = 5) -> dict[str, float | int]:
    """Recall@1, recall@k and MRR from the rank of the first right article of each question (pure).

    Args:
        ranks: 1-based rank per question, None when no right article was found.
        k: the cut-off of the second recall.

    Returns:
        {"questions", "recall@1", f"recall@{k}", "mrr"} (0.0 for no questions).
    """
    n = len(ranks)
    found = [r for r in ranks if r is not None]
    if n == 0:
        return {"questions": 0, "recall@1": 0.0, f"recall@{k}": 0.0, "mrr": 0.0}
    return {"questions": n, "recall@1": sum(r == 1 for r in found) / n, f"recall@{k}": sum(r <= k for r in found) / n,
            "mrr": sum(1.0 / r for r in found) / n}


# --- services ----------------------------------------------------------------------------


def build_knowledge_index(ctx: Context, dataset_version_id: int, *, actor: Actor,
                          model_folder: Path | None = None) -> KnowledgeIndexInfo:
    """The index of a released knowledge-base version: built and stored once, then reused.

    Args:
        ctx: the stores.
        dataset_version_id: the knowledge base (a released dataset version imported with
            ``knowledge.import_knowledge_base``).
        actor: who asks (data.read in the version's project); a build is recorded in the
            ledger under their name.
        model_folder: the sentence model; default the offline all-MiniLM-L6-v2.

    Returns:
        Where the index is stored; ``built`` says whether this call embedded the articles.

    Raises:
        Forbidden: the actor may not read this dataset. NotFound: no such version.
        Conflict: the version is not released.
        InvalidInput: the version is not a knowledge base (no article fields, or not text
            classification). ConfigError: the model folder holds no sentence model.
    """
    started = time.perf_counter()
    authorize_object(ctx.db, actor, "data.read", lambda: project_of_dataset_version(ctx.db, dataset_version_id))
    version = get_dataset_version(ctx.db, dataset_version_id)
    encoder = _encoder(ctx, model_folder)
    index, built = _index_for(ctx, version, encoder, actor)
    return KnowledgeIndexInfo(dataset_version_id=version.id, index_artifact=index.artifact, model_digest=encoder.digest,
                              articles=len(index.articles), dim=int(index.meta["dim"]),
                              index_type=str(index.meta["index_type"]), built=built,
                              seconds=round(time.perf_counter() - started, 3),
                              unknown_token_share=dict(index.meta.get("unknown_token_share", {})))


def search_knowledge(ctx: Context, dataset_version_id: int, query: str, *, actor: Actor, k: int = 5,
                     language: str | None = None, model_folder: Path | None = None) -> KnowledgeSearch:
    """The articles of a knowledge base that best answer a question.

    Args:
        ctx: the stores.
        dataset_version_id: the knowledge base (a released dataset version); its index is
            built on first use.
        query: the customer's question.
        actor: who asks (data.read in the version's project).
        k: how many articles (1..``MAX_K``).
        language: only articles in this language (e.g. the question's); none when the
            knowledge base has none in it.
        model_folder: the sentence model; default the offline all-MiniLM-L6-v2.

    Returns:
        The hits, best first, by the hybrid score (``KnowledgeIndex.search_texts``; ``score``
        in 0..1, the question's own unknown-token share setting the lexical weight), and the
        index that answered.

    Raises:
        InvalidInput: an empty or too long question, a bad ``k``; as ``build_knowledge_index``.
        Forbidden, NotFound, Conflict: as ``build_knowledge_index``.
    """
    text = _check_query(query)
    if not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be between 1 and {MAX_K}, got {k}.", hint="Ask for a few articles, e.g. k=5.")
    authorize_object(ctx.db, actor, "data.read", lambda: project_of_dataset_version(ctx.db, dataset_version_id))
    version = get_dataset_version(ctx.db, dataset_version_id)
    encoder = _encoder(ctx, model_folder)
    index, _ = _index_for(ctx, version, encoder, actor)
    hits = index.search_texts([text], encoder.encode([text]), k, language=language,
                              unknown_shares=[encoder.unknown_share([text])])[0]
    return KnowledgeSearch(query=text, hits=tuple(hits), dataset_version_id=version.id, index_artifact=index.artifact,
                           model_digest=encoder.digest)


def evaluate_knowledge_index(ctx: Context, dataset_version_id: int, texts: Sequence[str], intents: Sequence[str], *,
                             actor: Actor, k: int = 5, model_folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """How often a knowledge base's index finds an article of the question's intent.

    For each question (e.g. the test texts of a labelled dataset), the rank of the first
    article whose intent is the question's label, among all articles (no language filter),
    by the hybrid search that ``search_knowledge`` answers with.

    Args:
        ctx: the stores.
        dataset_version_id: the knowledge base.
        texts: the questions.
        intents: the right intent of each.
        actor: who asks (data.read in the version's project).
        k: the cut-off of the second recall.
        model_folder: the sentence model; default the offline all-MiniLM-L6-v2.

    Returns:
        ``retrieval_metrics`` for "all" questions and per question language ("en", "zh").

    Raises:
        InvalidInput: texts and intents of different lengths, no questions, an empty one.
        Forbidden, NotFound, Conflict: as ``build_knowledge_index``.
    """
    if len(texts) != len(intents) or not texts:
        raise InvalidInput(f"Got {len(texts)} questions and {len(intents)} intents.",
                           hint="Give one intent per question, and at least one question.")
    questions = [_check_query(t) for t in texts]
    authorize_object(ctx.db, actor, "data.read", lambda: project_of_dataset_version(ctx.db, dataset_version_id))
    version = get_dataset_version(ctx.db, dataset_version_id)
    encoder = _encoder(ctx, model_folder)
    index, _ = _index_for(ctx, version, encoder, actor)
    results = index.search_texts(questions, encoder.encode(questions), EVAL_DEPTH,
                                 unknown_shares=[encoder.unknown_share([q]) for q in questions])
    ranks: dict[str, list[int | None]] = {"all": []}
    for question, intent, hits in zip(questions, intents, results, strict=True):
        rank = next((h.rank for h in hits if h.intent == intent), None)
        ranks["all"].append(rank)
        ranks.setdefault(text_language(question), []).append(rank)
    return {group: retrieval_metrics(found, k=k) for group, found in ranks.items()}


def _check_query(query: str) -> str:
    text = (query or "").strip()
    if not text:
        raise InvalidInput("The question is empty.", hint="Send the customer's message as text.")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"The question is {len(text):,} characters long; at most {MAX_QUERY_CHARS:,} are read.",
                           hint="Send one customer message, not a document.")
    return text


# --- encoders and indexes, kept per store ---------------------------------------------------


class _Lru:
    """At most ``size`` values by key, the least recently used dropped first; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.build_lock = threading.Lock()  # one build at a time per store: the second finds the first's
        self._values: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        with self.lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            return None

    def put(self, key: Any, value: Any) -> None:
        with self.lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)


def _encoder(ctx: Context, model_folder: Path | None) -> SentenceEncoder:
    folder = Path(model_folder or default_base_model()).expanduser().resolve()
    if not folder.is_dir():
        raise NotFound(f"There is no model folder {folder}.", hint="Name a local Hugging Face model folder.")
    cache: _Lru = ctx.state("apps.support.encoders", lambda: _Lru(_ENCODERS))
    encoder: SentenceEncoder | None = cache.get(folder)
    if encoder is None:
        with cache.build_lock:
            encoder = cache.get(folder)
            if encoder is None:
                if ctx.settings.torch_threads:
                    torch.set_num_threads(ctx.settings.torch_threads)
                    faiss.omp_set_num_threads(ctx.settings.torch_threads)
                encoder = SentenceEncoder(folder)
                cache.put(folder, encoder)
    return encoder


def _index_for(ctx: Context, version: DatasetVersion, encoder: SentenceEncoder,
               actor: Actor) -> tuple[KnowledgeIndex, bool]:
    """The version's index for this model: from memory, from the store, or built now (True)."""
    _check_knowledge_base(version)
    key = (version.id, version.content_hash, encoder.digest)
    cache: _Lru = ctx.state("apps.support.indexes", lambda: _Lru(_CACHE_ENTRIES))
    index: KnowledgeIndex | None = cache.get(key)
    if index is not None:
        return index, False
    with cache.build_lock:
        index = cache.get(key) or _stored_index(ctx, version, encoder.digest)
        built = index is None
        if index is None:
            index = _build(ctx, version, encoder, actor)
        cache.put(key, index)
    return index, built


def _check_knowledge_base(version: DatasetVersion) -> None:
    if version.state != DatasetState.RELEASED:
        raise Conflict(f"Dataset version {version.name} v{version.version} (id {version.id}) is {version.state}: "
                       "a knowledge base is a released dataset version.",
                       hint=f"Ask for its release ('chainkeeper data release-request {version.id}').")
    if version.task != DatasetTask.TEXT_CLASSIFICATION:
        raise InvalidInput(f"Dataset version {version.id} holds {version.task} rows, not articles with intents.",
                           hint="Import a knowledge-base file (article_id, title, text, label, language).")


def _pointer(ctx: Context, version_id: int, model_digest: str) -> Path:
    return ctx.settings.home / "cache" / "support" / "indexes" / f"{version_id}-{model_digest}.json"


def _stored_index(ctx: Context, version: DatasetVersion, model_digest: str) -> KnowledgeIndex | None:
    """The index a build stored earlier, if its pointer and bundle are there and match the version."""
    pointer = _pointer(ctx, version.id, model_digest)
    try:
        digest = json.loads(pointer.read_text(encoding="utf-8"))["index_artifact"]
        index = KnowledgeIndex.load(ctx.artifacts, digest)
    except (OSError, ValueError, KeyError, ArtifactError, NotFound):
        return None  # no pointer, or a bundle gone or damaged: build it again
    meta = index.meta
    if (meta.get("dataset_version_id"), meta.get("dataset_content_hash"), meta.get("model_digest")) != (
            version.id, version.content_hash, model_digest):
        return None  # a pointer left by another store sharing this home
    return index


def _build(ctx: Context, version: DatasetVersion, encoder: SentenceEncoder, actor: Actor) -> KnowledgeIndex:
    started = time.perf_counter()
    articles = _articles_of(ctx, version)
    titles = encoder.encode([a.title for a in articles])  # (n, dim)
    bodies = encoder.encode([a.text for a in articles])  # (n, dim)
    documents = titles + bodies
    documents /= np.linalg.norm(documents, axis=1, keepdims=True).clip(min=1e-12)
    vectors, index_type = build_vector_index(documents)
    meta = {"kind": INDEX_KIND, "dataset_version_id": version.id, "dataset_name": version.name,
            "dataset_version": version.version, "dataset_content_hash": version.content_hash,
            "model_digest": encoder.digest, "pooling": encoder.pooling, "max_length": encoder.max_length,
            "dim": encoder.dim, "articles": len(articles), "index_type": index_type, "document": DOCUMENT,
            "metric": "cosine", "faiss": faiss.__version__,
            "lexical": {"file": _FILES["lexical"], "analyzer": ANALYZER, "ngram_range": list(NGRAM_RANGE),
                        "document": "title + text", "weights": "tf-idf, smoothed idf, unit length"},
            "fusion": f"(1 - w) * max(cosine, 0) + w * lexical, w = {LEXICAL_WEIGHT} + "
                      f"{round(1 - LEXICAL_WEIGHT, 6)} * unknown_share(question)",
            # How much of each language the model cannot read: a warning sign for its retrieval.
            "unknown_token_share": {language: round(encoder.unknown_share(
                [t for a in articles if a.language == language for t in (a.title, a.text)]), 4)
                for language in sorted({a.language for a in articles})}}
    index = KnowledgeIndex(articles=articles, vectors=vectors, meta=meta)
    with tempfile.TemporaryDirectory(prefix="ck-index-") as tmp:
        index.save(Path(tmp))
        index.artifact = ctx.artifacts.put_tree(Path(tmp))
    seconds = round(time.perf_counter() - started, 3)
    with ctx.db.session() as s:
        append_entry(s, actor, "support.index.build", "dataset_version", version.id,
                     after={"index_artifact": index.artifact, "model_digest": encoder.digest},
                     details={"articles": len(articles), "index_type": index_type, "seconds": seconds})
    pointer = _pointer(ctx, version.id, encoder.digest)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(pointer, json.dumps({"index_artifact": index.artifact}).encode())
    return index


def _articles_of(ctx: Context, version: DatasetVersion) -> list[IndexedArticle]:
    """The version's rows as articles; title, language and article_id come from each row's
    source metadata (the snapshot keeps text, label and where each row came from)."""
    rows = read_dataset_rows(ctx, version.id)
    metas: dict[tuple[int, int], dict[str, Any]] = {}
    for source_id in sorted(set(rows.column("source_id").to_pylist())):
        source = read_source_rows(ctx, source_id, include_quarantined=True)
        if "meta" not in source.column_names:
            raise _not_a_knowledge_base(version, "its rows carry no title, language or article_id")
        for line, meta in zip(source.column("line").to_pylist(), source.column("meta").to_pylist(), strict=True):
            metas[(source_id, line)] = json.loads(meta) if meta else {}
    redact = version.stats.get("redaction", "on") == "on"
    articles = []
    for row in _rows(rows):
        meta = metas.get((row["source_id"], row["source_line"]), {})
        missing = [name for name in ("title", "language", "article_id") if not str(meta.get(name) or "").strip()]
        if missing:
            raise _not_a_knowledge_base(version, f"row {row['row_id']} has no {', '.join(missing)}")
        title = str(meta["title"]).strip()
        articles.append(IndexedArticle(article_id=str(meta["article_id"]).strip(), intent=str(row["label"]),
                                       title=redact_text(title)[0] if redact else title,
                                       language=str(meta["language"]).strip(), text=str(row["text"]),
                                       row_id=int(row["row_id"])))
    if not articles:
        raise _not_a_knowledge_base(version, "it has no rows")
    return articles


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.select(["row_id", "text", "label", "source_id", "source_line"]).to_pylist()  # type: ignore[no-any-return]


def _not_a_knowledge_base(version: DatasetVersion, why: str) -> InvalidInput:
    return InvalidInput(f"Dataset version {version.name} v{version.version} (id {version.id}) is not a knowledge "
                        f"base: {why}.", hint="Import the articles as a knowledge-base file (article_id, title, "
                        "text, label, language), e.g. with import_knowledge_base, and release that version.")


# Who builds an index the assistant needs and finds missing (normally ``create_support_app``
# built it under its creator's name): the ledger names the assistant, not a person.
_ASSISTANT = Actor(name="support-assistant", roles=frozenset())


def open_knowledge_index(ctx: Context, dataset_version_id: int, *,
                         model_folder: Path | None = None) -> tuple[KnowledgeIndex, SentenceEncoder]:
    """The loaded index of a knowledge-base version and its encoder, for a service that
    authorised its caller already (the support assistant's message path): cached, built
    on a miss.

    Raises:
        NotFound: no such version. Conflict, InvalidInput: as ``build_knowledge_index``.
    """
    version = get_dataset_version(ctx.db, dataset_version_id)
    encoder = _encoder(ctx, model_folder)
    index, _ = _index_for(ctx, version, encoder, _ASSISTANT)
    return index, encoder
