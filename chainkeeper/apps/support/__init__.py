"""The customer-service assistant (issue 16), built on the chain's stages.

- ``assistants``: the assistant as a registered object (its deployment, its released
  knowledge base, its settings and out-of-scope thresholds): ``create_support_app``,
  ``change_support_app``, ``calibrate_support_app``, ``find_support_apps``;
- ``conversations``: one message's path (intent, scope, articles, decision):
  ``handle_message``;
- ``handoff``: the hand-off queue, an agent's answer and the labelled rows it becomes:
  ``handoff_queue``, ``claim_conversation``, ``resolve_conversation``,
  ``export_resolutions``, ``trace_message``;

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
    from chainkeeper.apps.support.assistants import (
        SupportApp,
        calibrate_support_app,
        change_support_app,
        create_support_app,
        find_support_apps,
        show_support_app,
    )
    from chainkeeper.apps.support.conversations import SupportReply, authenticate_app_key, handle_message
    from chainkeeper.apps.support.embedding import SentenceEncoder, folder_digest
    from chainkeeper.apps.support.handoff import (
        OUT_OF_SCOPE,
        claim_conversation,
        export_resolutions,
        find_conversations,
        handoff_queue,
        resolve_conversation,
        show_conversation,
        trace_message,
    )
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
    "SupportApp": "assistants", "calibrate_support_app": "assistants", "change_support_app": "assistants",
    "create_support_app": "assistants", "find_support_apps": "assistants", "show_support_app": "assistants",
    "SupportReply": "conversations", "authenticate_app_key": "conversations", "handle_message": "conversations",
    "OUT_OF_SCOPE": "handoff", "claim_conversation": "handoff", "export_resolutions": "handoff",
    "find_conversations": "handoff", "handoff_queue": "handoff", "resolve_conversation": "handoff",
    "show_conversation": "handoff", "trace_message": "handoff",
    "SentenceEncoder": "embedding", "folder_digest": "embedding",
    "KnowledgeHit": "index", "KnowledgeIndex": "index", "KnowledgeIndexInfo": "index", "KnowledgeSearch": "index",
    "build_knowledge_index": "index", "evaluate_knowledge_index": "index", "retrieval_metrics": "index",
    "search_knowledge": "index",
    "KNOWLEDGE_FIELDS": "knowledge", "Article": "knowledge", "import_knowledge_base": "knowledge",
    "read_articles": "knowledge", "write_articles": "knowledge",
}
__all__ = ["SupportApp", "calibrate_support_app", "change_support_app", "create_support_app", "find_support_apps",
           "show_support_app", "SupportReply", "authenticate_app_key", "handle_message", "OUT_OF_SCOPE",
           "claim_conversation", "export_resolutions", "find_conversations", "handoff_queue", "resolve_conversation",
           "show_conversation", "trace_message",
           "SentenceEncoder", "folder_digest", "KnowledgeHit", "KnowledgeIndex", "KnowledgeIndexInfo",
           "KnowledgeSearch", "build_knowledge_index", "evaluate_knowledge_index", "retrieval_metrics",
           "search_knowledge", "KNOWLEDGE_FIELDS", "Article", "import_knowledge_base", "read_articles",
           "write_articles"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
