"""The customer-service assistant (issue 16), built on the chain's stages.

This package holds its first part, the knowledge base:

- ``knowledge``: the knowledge-base file (article_id, title, text, label = intent,
  language), checked by ``read_articles``, written by ``write_articles`` and imported as a
  dataset version by ``import_knowledge_base``: a knowledge base is a released dataset
  version of the data stage;
- ``embedding``: ``SentenceEncoder``, the offline all-MiniLM-L6-v2 with mean pooling and
  L2 normalisation (the sentence-transformers recipe, in transformers and torch);
- ``index``: a FAISS index per (knowledge-base version, model digest), stored in the
  artefact store and reused: ``build_knowledge_index``, ``search_knowledge``,
  ``evaluate_knowledge_index``;
- ``scope`` (imported from the module, numpy only): out-of-scope scores of a classifier's
  logits or of sentence embeddings, a threshold fitted on in-scope dev data, and their
  metrics; measured by ``benchmarks/support_oos.py``.

Names load on first use (PEP 562), so importing the package pulls in neither torch nor FAISS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.apps.support.embedding import SentenceEncoder, folder_digest
    from chainkeeper.apps.support.index import (
        KnowledgeHit,
        KnowledgeIndex,
        KnowledgeIndexInfo,
        KnowledgeSearch,
        build_knowledge_index,
        evaluate_knowledge_index,
        retrieval_metrics,
        search_knowledge,
    )
    from chainkeeper.apps.support.knowledge import (
        KNOWLEDGE_FIELDS,
        Article,
        import_knowledge_base,
        read_articles,
        write_articles,
    )

_EXPORTS = {
    "SentenceEncoder": "embedding", "folder_digest": "embedding",
    "KnowledgeHit": "index", "KnowledgeIndex": "index", "KnowledgeIndexInfo": "index", "KnowledgeSearch": "index",
    "build_knowledge_index": "index", "evaluate_knowledge_index": "index", "retrieval_metrics": "index",
    "search_knowledge": "index",
    "KNOWLEDGE_FIELDS": "knowledge", "Article": "knowledge", "import_knowledge_base": "knowledge",
    "read_articles": "knowledge", "write_articles": "knowledge",
}
__all__ = ["SentenceEncoder", "folder_digest", "KnowledgeHit", "KnowledgeIndex", "KnowledgeIndexInfo",
           "KnowledgeSearch", "build_knowledge_index", "evaluate_knowledge_index", "retrieval_metrics",
           "search_knowledge", "KNOWLEDGE_FIELDS", "Article", "import_knowledge_base", "read_articles",
           "write_articles"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
