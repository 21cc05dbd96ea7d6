"""Entity spans as BIO tags (pure): how span annotations leave the annotation stage.

A span is ``[start, end, label]`` in characters (end exclusive). ``bio_tags`` splits the
text at whitespace and tags each token ``B-label`` (the first token a span touches),
``I-label`` (the following ones) or ``O``: the CoNLL convention that training's NER
metrics (seqeval) read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["tokenize", "bio_tags"]

_TOKEN = re.compile(r"\S+")


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Whitespace tokens with their character offsets ``(token, start, end)``."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def bio_tags(text: str, spans: Sequence[Sequence[Any]]) -> tuple[list[str], list[str]]:
    """The tokens of ``text`` and their BIO tags under ``spans``.

    Args:
        text: the item's text.
        spans: non-overlapping ``[start, end, label]`` character spans.

    Returns:
        ``(tokens, tags)`` of equal length. A token that a span covers only in part
        still takes the span's tag (annotators select whole words, a stray character
        should not drop the entity).
    """
    tokens = tokenize(text)
    tags = ["O"] * len(tokens)
    for start, end, label in sorted(tuple(span) for span in spans):
        inside = [i for i, (_, t_start, t_end) in enumerate(tokens) if t_start < end and t_end > start]
        for n, i in enumerate(inside):
            tags[i] = f"{'B' if n == 0 else 'I'}-{label}"
    return [t for t, _, _ in tokens], tags
