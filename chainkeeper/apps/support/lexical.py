"""Lexical scores of questions against knowledge-base articles: character n-gram TF-IDF.

The offline MiniLM reads English; most Chinese characters are unknown tokens to its
vocabulary, so its vectors of a Chinese question say little. Characters need no
vocabulary: two texts that share character n-grams share words, in any script, and a
Chinese word is one to three characters. This scorer gives each article a TF-IDF vector
of its character 1- to 3-grams (scikit-learn's ``char_wb`` analyzer: n-grams inside
whitespace-separated words, each word padded with a space; a Chinese sentence is one
"word") and scores a question by the cosine of its vector with each article's (0..1).

Measured on the built-in sample's 150 test questions against its 40 articles (rank of the
first article of the question's intent): 1-3-grams alone rank the right article first for
0.77 of the English and 0.85 of the Chinese questions; 2-4-grams for 0.81 and 0.77, 1-2-grams
for 0.69 and 0.87, sublinear term frequencies change either by a question or two. Fused
with the dense score (``index``), 1-3-grams did best on Chinese and as well on English.

Text is read as NFKC, case-folded, with whitespace collapsed (full-width letters and
digits typed with a Chinese input method match their ASCII forms). The weights are the
usual smoothed TF-IDF: term count times ``ln((1 + n) / (1 + df)) + 1``, each vector of unit
length. An n-gram of a question that no article has counts in the question's length (with
the largest idf, that of df = 0) but matches nothing, so a question mostly made of words
the articles never use scores low against all of them.

The scorer is values in, values out: fitted on the articles' texts, and stored as its
vocabulary and idf (``to_bytes``, deterministic), from which it is rebuilt together with the
same texts (``from_bytes``).
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

from chainkeeper.core.errors import ArtifactError

__all__ = ["LEXICAL_KIND", "ANALYZER", "NGRAM_RANGE", "LexicalScorer", "normalise"]

LEXICAL_KIND = "chainkeeper.support.lexical/1"
ANALYZER = "char_wb"
NGRAM_RANGE = (1, 3)


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace runs as one space: the form both sides are compared in."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class LexicalScorer:
    """Character n-gram TF-IDF vectors of a fixed list of documents, and cosines against them."""

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray, documents: Sequence[str]) -> None:
        """Weigh ``documents`` with a given vocabulary and idf (``fit`` computes them).

        Args:
            vocabulary: the n-grams, one per column.
            idf: float, one per column.
            documents: the texts scored against, in order (an article's title and body).
        """
        if len(vocabulary) != len(idf):
            raise ValueError(f"{len(vocabulary)} n-grams but {len(idf)} idf values")
        self.vocabulary = list(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.documents = len(documents)
        self._columns = {gram: i for i, gram in enumerate(self.vocabulary)}
        self._analyze = _analyzer()
        # An n-gram no document has: df = 0, the largest idf.
        self._unseen_idf = math.log(1 + self.documents) + 1.0
        self._matrix_t = self._weigh(documents).T.tocsr()  # (V, n), columns of unit length

    @classmethod
    def fit(cls, documents: Sequence[str]) -> LexicalScorer:
        """The scorer of these documents: their n-grams and smoothed idf (pure, deterministic)."""
        counter = CountVectorizer(analyzer=ANALYZER, ngram_range=NGRAM_RANGE, preprocessor=normalise, lowercase=False)
        counts = counter.fit_transform(documents)
        vocabulary = [str(g) for g in counter.get_feature_names_out()]  # sorted: column i is vocabulary[i]
        df = np.bincount(counts.nonzero()[1], minlength=len(vocabulary))
        idf = np.log((1.0 + len(documents)) / (1.0 + df)) + 1.0
        return cls(vocabulary, idf, documents)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """The cosine of each text with each document.

        Args:
            texts: the questions.

        Returns:
            float64 array (len(texts), documents), values in 0..1 (0 for an empty text).
        """
        if not texts or not self.documents:
            return np.zeros((len(texts), self.documents))
        product = (self._weigh(texts) @ self._matrix_t).toarray()
        return np.clip(product, 0.0, 1.0)  # type: ignore[no-any-return]

    def to_bytes(self) -> bytes:
        """The stored form: analyzer, n-gram range, vocabulary and idf as JSON (same scorer, same bytes)."""
        return (json.dumps({"kind": LEXICAL_KIND, "analyzer": ANALYZER, "ngram_range": list(NGRAM_RANGE),
                            "normalise": "nfkc-casefold", "documents": self.documents,
                            "vocabulary": self.vocabulary, "idf": [float(v) for v in self.idf]},
                           ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, documents: Sequence[str]) -> LexicalScorer:
        """A stored scorer, rebuilt over the same documents it was fitted on.

        Raises:
            ArtifactError: not a stored lexical scorer of this recipe, or of another number of documents.
        """
        try:
            stored: dict[str, Any] = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ArtifactError(f"The stored lexical scorer is not JSON: {exc}") from None
        recipe = (stored.get("kind"), stored.get("analyzer"), stored.get("ngram_range"))
        if recipe != (LEXICAL_KIND, ANALYZER, list(NGRAM_RANGE)):
            raise ArtifactError(f"The stored lexical scorer is a {recipe}, not a {(LEXICAL_KIND, ANALYZER)} "
                                f"of {NGRAM_RANGE[0]}- to {NGRAM_RANGE[1]}-grams.")
        if stored.get("documents") != len(documents):
            raise ArtifactError(f"The stored lexical scorer was fitted on {stored.get('documents')} documents, "
                                f"the index holds {len(documents)}.")
        try:
            return cls(stored["vocabulary"], np.asarray(stored["idf"], dtype=np.float64), documents)
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"The stored lexical scorer is damaged: {exc}") from None

    def _weigh(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """TF-IDF rows of unit length; n-grams outside the vocabulary count only in the length."""
        indptr: list[int] = [0]
        indices: list[int] = []
        values: list[float] = []
        for text in texts:
            squared_unseen = 0.0
            row: list[tuple[int, float]] = []
            for gram, count in Counter(self._analyze(text)).items():
                column = self._columns.get(gram)
                if column is None:
                    squared_unseen += (count * self._unseen_idf) ** 2
                else:
                    row.append((column, count * float(self.idf[column])))
            row.sort()
            norm = math.sqrt(sum(v * v for _, v in row) + squared_unseen)
            indices += [c for c, _ in row]
            values += [v / norm for _, v in row] if norm else [0.0] * len(row)
            indptr.append(len(indices))
        return sparse.csr_matrix((np.asarray(values, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                                  np.asarray(indptr, dtype=np.int64)), shape=(len(texts), len(self.vocabulary)))


def _analyzer() -> Any:
    """The n-grams of a text, as the vectorizer the scorer was fitted with cuts them."""
    return CountVectorizer(analyzer=ANALYZER, ngram_range=NGRAM_RANGE, preprocessor=normalise,
                           lowercase=False).build_analyzer()
