"""Organisation names from the NER tagger → one stable key per organisation, and its display name.

The tagger returns the surface form a text used ("NOKIA", "Nokia Oyj", "Nokia
Corporation", "ＮＯＫＩＡ"); the monitor counts, trends and alerts per organisation, so
those must be one key (issue 17). ``entity_key`` builds it, values in, values out:

1. Unicode NFKC: full-width letters, digits and punctuation become their ASCII forms
   ("ＮＯＫＩＡ" → "NOKIA", "（集团）" → "(集团)"), ligatures and compatibility forms fold.
2. Accents on Latin letters dropped ("Société Générale" = "Societe Generale"); marks on
   other scripts are kept (a Japanese dakuten changes the word).
3. Case-folded; "&" is the word "and"; apostrophes and dots vanish inside a word
   ("McDonald's" = "McDonalds", "S.A." = "SA"); every other punctuation mark is a space
   ("Rolls-Royce" = "Rolls Royce"); spaces collapse.
4. A leading "the" goes ("The Coca-Cola Company" = "Coca-Cola").
5. Legal-form suffixes go, repeatedly, from the end (``LEGAL_SUFFIXES``: Inc, Corp,
   Corporation, Co, Company, Ltd, Limited, plc, AG, SA, NV, BV, SE, Oyj, Oy, AB, publ, ASA,
   GmbH, LLC, LP, LLP, SpA, …; "JPMorgan Chase & Co." = "JPMorgan Chase"), and so do the
   Chinese and Japanese ones at the end of the last word (``CJK_SUFFIXES``: 股份有限公司,
   有限公司, 公司, 集团, 控股, 株式会社, …; 株式会社 also as a prefix). A name is never
   reduced to nothing: "Inc." alone stays "inc".

Decided: **"Holdings", "Holding" and "Group" are dropped too**, and so are 控股 and 集团:
news writes "Tencent Holdings", "Tencent" and 腾讯控股有限公司 for one listed company, and
a sentiment surge about "Alibaba Group" is one about "Alibaba". The cost is that a holding
company and a same-named operating company share a key (rare in headlines; a different
name, "Alphabet" vs "Google", stays different). Words that are part of a name are never
dropped: "Apple Hospitality REIT" is not "Apple Inc.", "Bank", "Motor", "Airlines",
"Partners" and "Capital" stay. Suffixes go only from the end and never from a one-word
name ("Co-operative Bank" keeps "co", "AB" alone stays "ab"); Norwegian "AS" is not in
the list because "as" is an English word that ends tagger spans.

``EntityNames`` counts the surface forms seen per key, so the caller shows the most
frequent one ("Nokia" rather than "NOKIA OYJ") and can list all of them; its state is plain
JSON.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from chainkeeper.core.errors import InvalidInput

__all__ = ["CJK_SUFFIXES", "LEGAL_SUFFIXES", "MAX_NAME_CHARS", "EntityNames", "clean_surface", "entity_key"]

MAX_NAME_CHARS = 300

# Legal forms and corporate-structure words dropped from the end of a name (after case
# folding and punctuation removal, so "S.A." is "sa", "Co.," is "co").
LEGAL_SUFFIXES: frozenset[str] = frozenset({
    # English-speaking
    "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "plc", "llc", "lp", "llp",
    "pty", "pte",
    # European
    "ag", "sa", "nv", "bv", "se", "oyj", "oy", "ab", "publ", "asa", "gmbh", "kgaa", "spa", "srl", "sas", "sarl",
    "sab", "de", "cv", "sl", "aps", "kk",
    # structure words (decided above)
    "holding", "holdings", "group",
})
# "de" and "cv" only ever go as part of Mexican "S.A.B. de C.V." at the end: see _drop_suffixes.
_ONLY_AFTER = {"de": {"sab", "sa"}, "cv": {"de"}}

CJK_SUFFIXES: tuple[str, ...] = (
    # longest first: the first that matches is cut, then the loop looks again
    "股份有限公司", "有限责任公司", "有限責任公司", "股份公司", "有限公司", "控股集团", "控股集團",
    "集团公司", "集團公司", "集团", "集團", "控股", "公司", "株式会社", "有限会社", "주식회사",
)
CJK_PREFIXES: tuple[str, ...] = ("株式会社", "有限会社", "주식회사")

_APOSTROPHES_DOTS = re.compile(r"['’‘`´.]")
_NON_WORD = re.compile(r"[^\w]+")


def _strip_latin_accents(text: str) -> str:
    out: list[str] = []
    base_is_latin = False
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            if base_is_latin:
                continue
        else:
            base_is_latin = ord(ch) < 0x250
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _checked(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidInput(f"An organisation name must be text, got {type(name).__name__}: {name!r}.")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"Organisation name of {len(name)} characters is longer than {MAX_NAME_CHARS}: "
                           f"{name[:40]!r}…", hint="That is not a name the tagger found: skip the span.")
    return name


def clean_surface(name: str) -> str:
    """The surface form to show: NFKC, whitespace collapsed, surrounding punctuation gone; case kept."""
    text = unicodedata.normalize("NFKC", _checked(name))
    text = " ".join(text.split())
    return text.strip(" \t,;:!?\"'()[]{}<>«»“”‘’-–—·")


def _drop_cjk(tokens: list[str]) -> None:
    """Cut CJK legal suffixes from the last word (and a leading 株式会社), never to nothing."""
    changed = True
    while changed and tokens:
        changed = False
        last = tokens[-1]
        for suffix in CJK_SUFFIXES:
            if last.endswith(suffix):
                rest = last[: -len(suffix)]
                if rest:
                    tokens[-1] = rest
                    changed = True
                elif len(tokens) > 1:
                    tokens.pop()
                    changed = True
                break
    if tokens:
        for prefix in CJK_PREFIXES:
            if tokens[0].startswith(prefix):
                rest = tokens[0][len(prefix):]
                if rest:
                    tokens[0] = rest
                elif len(tokens) > 1:
                    tokens.pop(0)
                break


def _drop_suffixes(tokens: list[str]) -> None:
    """Drop legal suffixes (and a dangling "and" of "& Co") from the end, keeping one word at least."""
    while len(tokens) > 1:
        last = tokens[-1]
        if last in LEGAL_SUFFIXES:
            allowed_before = _ONLY_AFTER.get(last)
            if allowed_before is not None and tokens[-2] not in allowed_before:
                return
            tokens.pop()
        elif last == "and" and len(tokens) > 2:
            tokens.pop()
        else:
            return
        _drop_cjk(tokens)


def entity_key(name: str) -> str:
    """The stable key of an organisation name ("Nokia Oyj", "NOKIA", "Nokia Corporation" → "nokia").

    Raises ``InvalidInput`` for a non-string, an over-long string or one with no letter or digit.
    """
    text = unicodedata.normalize("NFKC", _checked(name))
    text = _strip_latin_accents(text).casefold()
    text = text.replace("&", " and ")
    text = _APOSTROPHES_DOTS.sub("", text)
    tokens = [t for t in _NON_WORD.sub(" ", text).replace("_", " ").split() if t]
    if not tokens:
        raise InvalidInput(f"Organisation name {name!r} has no letter or digit.",
                           hint="Skip that span of the tagger's output.")
    if tokens[0] == "the" and len(tokens) > 1:
        tokens.pop(0)
    _drop_cjk(tokens)
    _drop_suffixes(tokens)
    return " ".join(tokens)


class EntityNames:
    """Surface forms seen per entity key; ``display`` is the most frequent one (first seen wins a tie)."""

    def __init__(self) -> None:
        self._forms: dict[str, Counter[str]] = {}

    def add(self, name: str, count: int = 1) -> str:
        """Count one more sighting of ``name``; returns its key."""
        if not isinstance(count, int) or count < 1:
            raise InvalidInput(f"A sighting count must be a positive whole number, got {count!r}.")
        key = entity_key(name)
        self._forms.setdefault(key, Counter())[clean_surface(name)] += count
        return key

    def add_many(self, names: Iterable[str]) -> list[str]:
        return [self.add(name) for name in names]

    def __contains__(self, key: object) -> bool:
        return key in self._forms

    def __len__(self) -> int:
        return len(self._forms)

    def keys(self) -> list[str]:
        return sorted(self._forms)

    def display(self, key: str) -> str:
        """The most frequent surface form of ``key``; the key itself if none was seen."""
        forms = self._forms.get(key)
        return forms.most_common(1)[0][0] if forms else key

    def forms(self, key: str) -> list[tuple[str, int]]:
        """All surface forms of ``key`` with their counts, most frequent first."""
        forms = self._forms.get(key)
        return forms.most_common() if forms else []

    def state(self) -> dict[str, Any]:
        return {"version": 1, "forms": {key: dict(forms) for key, forms in sorted(self._forms.items())}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EntityNames:
        if not isinstance(state, Mapping) or state.get("version") != 1 or not isinstance(state.get("forms"), Mapping):
            raise InvalidInput("Entity-name state is not version 1 of EntityNames.state().",
                               hint="Start from an empty EntityNames.")
        names = cls()
        for key, forms in state["forms"].items():
            if not isinstance(forms, Mapping) or not all(isinstance(c, int) and c > 0 for c in forms.values()):
                raise InvalidInput(f"Entity-name state is damaged at key {key!r}.",
                                   hint="Start from an empty EntityNames.")
            names._forms[str(key)] = Counter({str(form): int(c) for form, c in forms.items()})
        return names
