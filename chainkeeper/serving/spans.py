"""Entity spans from word tags: BIO/IOB2 decoding with character offsets (pure).

A tagger labels *words*; a caller wants *entities* with offsets into the text it sent.
The serving runtime (``serving.tagging``) cuts a text into words with the fast
tokenizer's pre-tokenizer (whitespace and punctuation, each CJK character a word), whose
offset mapping points into the original string; the first word piece's tag decides each
word, as in training. This module turns those per-word tags into spans:

- a span starts at ``B-X``, or at ``I-X`` after ``O`` or after a word of another type
  (IOB2 read leniently: a stray ``I-`` begins an entity instead of being dropped);
- ``I-X`` after a word of type X continues it; ``O`` ends it; a tag without a prefix
  (``PER``, the IO scheme) continues or starts a span of its type;
- a span runs from its first word's start to its last word's end, so the characters
  between its words (spaces, an apostrophe) are inside it and ``text == input[start:end]``;
- its score is the mean of its words' tag probabilities.

``windows`` cuts a long text into windows of whole words that fit the model's
``max_length``, so a text longer than the model reads is tagged through to its end, and
no offset ever points past the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chainkeeper.core.errors import InvalidInput

__all__ = [
    "NO_ENTITY",
    "Entity",
    "decode_entities",
    "entity_types",
    "split_tag",
    "summarize_entities",
    "validate_spans",
    "windows",
    "word_offsets",
]

# The summary label of a text in which the tagger found no entity (the tag set's own "O").
NO_ENTITY = "O"


@dataclass(frozen=True)
class Entity:
    """One entity found in a text: its type, character offsets, text and mean word probability."""

    type: str
    start: int
    end: int
    text: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_tag(tag: str) -> tuple[str, str | None]:
    """``("B", "PER")`` for ``B-PER``, ``("O", None)`` for ``O``, ``("I", "PER")`` for a bare ``PER`` (pure)."""
    if tag == NO_ENTITY or not tag:
        return NO_ENTITY, None
    prefix = tag[0].upper()
    if len(tag) > 2 and tag[1] in "-_" and prefix in "BIESLU":
        kind = tag[2:]
        # BIOES/BILOU taggers: an S-/U- word is a one-word entity (begins), E-/L- continues.
        return ("B" if prefix in "SU" else "I" if prefix in "EL" else prefix), kind
    return "I", tag


def entity_types(tags: Sequence[str]) -> list[str]:
    """The entity types of a tag set, sorted: ``["LOC", "PER"]`` for B-/I-PER, B-/I-LOC, O (pure)."""
    return sorted({kind for _, kind in map(split_tag, tags) if kind is not None})


def word_offsets(word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character span of each word from its pieces' offsets (pure).

    Args:
        word_ids: the word index of each piece (None for special tokens), as a fast
            tokenizer's encoding gives them.
        offsets: each piece's ``(start, end)`` in the original text.

    Returns:
        ``(start, end)`` per word, in word order: its first piece's start, its last piece's end.
    """
    spans: dict[int, tuple[int, int]] = {}
    for wid, (start, end) in zip(word_ids, offsets, strict=True):
        if wid is None:
            continue
        if wid in spans:
            first, last = spans[wid]
            spans[wid] = (min(first, start), max(last, end))
        else:
            spans[wid] = (start, end)
    return [spans[w] for w in sorted(spans)]


def windows(pieces_per_word: Sequence[int], max_pieces: int) -> list[tuple[int, int]]:
    """Cut words into consecutive windows of at most ``max_pieces`` pieces, never inside a word (pure).

    A single word with more pieces than fit is a window of its own (the runtime keeps its
    first ``max_pieces`` pieces: only the first decides the word's tag).

    Returns:
        ``(first_word, end_word)`` ranges covering every word once, in order.

    Raises:
        InvalidInput: ``max_pieces`` below 1.
    """
    if max_pieces < 1:
        raise InvalidInput(f"A window must hold at least one piece, got {max_pieces}.",
                           hint="Give the tagger a max_length of at least 3 (two special tokens).")
    out: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, n in enumerate(pieces_per_word):
        if i > start and used + n > max_pieces:
            out.append((start, i))
            start, used = i, 0
        used += n
    if start < len(pieces_per_word):
        out.append((start, len(pieces_per_word)))
    return out


def decode_entities(text: str, words: Sequence[tuple[int, int]], tags: Sequence[str],
                    scores: Sequence[float]) -> list[Entity]:
    """Entities of a text from its words' tags (BIO/IOB2, see the module's notes; pure).

    Args:
        text: the text as the caller sent it.
        words: each word's ``(start, end)`` in ``text`` (``word_offsets``).
        tags: each word's tag.
        scores: each word's tag probability.

    Returns:
        The entities in text order; ``entity.text == text[entity.start:entity.end]``.

    Raises:
        InvalidInput: the three sequences differ in length, or an offset lies outside ``text``.
    """
    if not len(words) == len(tags) == len(scores):
        raise InvalidInput(f"{len(words)} words, {len(tags)} tags and {len(scores)} scores do not line up.")
    out: list[Entity] = []
    current: tuple[str, int, list[int]] | None = None  # (type, first word, word indices)

    def close() -> None:
        if current is not None:
            kind, _, members = current
            start, end = words[members[0]][0], words[members[-1]][1]
            mean = sum(float(scores[i]) for i in members) / len(members)
            out.append(Entity(kind, start, end, text[start:end], round(mean, 6)))

    for i, ((start, end), tag) in enumerate(zip(words, tags, strict=True)):
        if not 0 <= start <= end <= len(text):
            raise InvalidInput(f"Word {i} spans {start}-{end}, outside a text of {len(text)} characters.")
        prefix, kind = split_tag(tag)
        if kind is None:
            close()
            current = None
        elif prefix == "B" or current is None or current[0] != kind:
            close()
            current = (kind, i, [i])
        else:
            current[2].append(i)
    close()
    return out


def summarize_entities(entities: Sequence[Mapping[str, Any] | Entity]) -> str:
    """A text's tagging in one label: its entity types, sorted and comma-separated, or
    ``"O"`` when it has none (pure); what the prediction log and its charts show."""
    kinds = sorted({e.type if isinstance(e, Entity) else str(e["type"]) for e in entities})
    return ",".join(kinds)[:255] if kinds else NO_ENTITY


def validate_spans(spans: Any, *, text_length: int, types: Sequence[str]) -> list[dict[str, Any]]:
    """Check spans a person or system gives as the truth for a text; return them normalised (pure).

    Args:
        spans: a list of ``{"type", "start", "end"}`` objects (other keys, such as
            ``text`` or ``score``, are ignored).
        text_length: characters of the text the spans point into.
        types: the entity types the model knows.

    Returns:
        ``[{"type", "start", "end"}]`` sorted by start.

    Raises:
        InvalidInput: not a list of such objects, an unknown type, offsets outside the text
            or empty, or two spans that overlap.
    """
    if not isinstance(spans, list):
        raise InvalidInput(f"Entity spans must be a list, got {type(spans).__name__}.",
                           hint='Send [{"type": "PER", "start": 0, "end": 5}, ...] ([] when there is none).')
    out: list[dict[str, Any]] = []
    for n, span in enumerate(spans):
        if not isinstance(span, Mapping) or not {"type", "start", "end"} <= set(span):
            raise InvalidInput(f"Span {n} is not an object with type, start and end: {span!r}.",
                               hint='Send {"type": "PER", "start": 0, "end": 5}.')
        kind, start, end = span["type"], span["start"], span["end"]
        if kind not in types:
            raise InvalidInput(f"Span {n} has type {kind!r}, which the model does not know.",
                               hint=f"Entity types: {', '.join(types)}.")
        if (isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int)
                or not 0 <= start < end <= text_length):
            raise InvalidInput(f"Span {n} runs from {start!r} to {end!r}; offsets must be whole numbers with "
                               f"0 <= start < end <= {text_length} (the text's length).",
                               hint="Count characters of the text as it was sent to predict, end exclusive.")
        out.append({"type": str(kind), "start": start, "end": end})
    out.sort(key=lambda s: (int(s["start"]), int(s["end"])))
    for a, b in zip(out, out[1:], strict=False):
        if int(b["start"]) < int(a["end"]):
            raise InvalidInput(f"Spans {a['start']}-{a['end']} and {b['start']}-{b['end']} overlap.",
                               hint="Give each character at most one entity.")
    return out
