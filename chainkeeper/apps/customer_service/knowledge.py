"""The built-in sample's knowledge base: short answer articles per intent, in English and Chinese.

``knowledge.json`` (written for Chainkeeper, shipped with the package) holds two articles per
intent of ``templates.json`` and language: a title, usually the customer's question, and a
body of one to three sentences. ``write_knowledge_base`` writes them as a knowledge-base
file the data stage imports (``apps.support.knowledge``: text = body, label = intent,
title, language and article_id as metadata), so the sample's knowledge base is imported,
cleaned and released like any other.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from chainkeeper.apps.support.knowledge import Article, write_articles

__all__ = ["load_knowledge", "write_knowledge_base"]


def load_knowledge() -> list[Article]:
    """The sample's articles, in file order (``knowledge.json``)."""
    resource = importlib.resources.files("chainkeeper.apps.customer_service") / "knowledge.json"
    document = json.loads(resource.read_text(encoding="utf-8"))
    return [Article(article_id=a["article_id"], title=a["title"], text=a["body"], intent=a["intent"],
                    language=a["language"]) for a in document["articles"]]


def write_knowledge_base(dest: Path, *, format: str = "csv") -> Path:
    """Write the sample's knowledge base as ``dest/knowledge.<format>``.

    Args:
        dest: the folder (created if missing; the file is replaced).
        format: "csv" or "jsonl".

    Returns:
        The file's path.

    Raises:
        InvalidInput: another format.
    """
    return write_articles(load_knowledge(), Path(dest) / f"knowledge.{format}")
