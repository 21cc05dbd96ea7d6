"""Knowledge bases: answer articles, imported and released through the data stage.

A knowledge base is a file of articles, one row each, with five fields:

    article_id   unique id of the article (letters, digits, ``_ . : -``)
    title        a short headline, often the customer's question
    text         the article's body: the answer, 1-3 sentences
    label        the intent the article answers (a label of the intent classifier)
    language     the article's language code ("en", "zh", ...)

It is imported as a source (``data.import_file``: CSV, TSV, JSON Lines, JSON or Parquet,
with title, language and article_id kept as each row's metadata) and frozen as a dataset
version like any other rows: cleaned (personal data redacted), hashed, and released by a
data steward's approver. A knowledge base *is* a released dataset version; the index of
``index.py`` is built from its rows.

``read_articles`` checks a file before anything is stored, so a file with a missing field
is refused naming the field and the line, and leaves no source behind.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chainkeeper.core.errors import InvalidInput, NotFound
from chainkeeper.data import (
    DatasetVersion,
    ParsedSource,
    Source,
    create_dataset_version,
    detect_format,
    import_file,
    read_delimited,
    read_json,
    read_jsonl,
    read_parquet,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["Article", "KNOWLEDGE_FIELDS", "METADATA_FIELDS", "read_articles", "write_articles",
           "import_knowledge_base"]

# The fields of a knowledge-base row; text and label are the data stage's own columns.
KNOWLEDGE_FIELDS = ("article_id", "title", "text", "label", "language")
METADATA_FIELDS = ("title", "language", "article_id")
KNOWLEDGE_FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
_ARTICLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_HINT = ("Each row needs article_id, title, text (the answer), label (its intent) and language "
         "(docs: the support assistant's knowledge base).")
# What the data stage's readers say about a row, in the words of this format.
_REASON_FIELD = {"empty_text": "text", "empty_label": "label"}


@dataclass(frozen=True)
class Article:
    """One answer article (``text`` is its body, ``intent`` the label it answers)."""

    article_id: str
    title: str
    text: str
    intent: str
    language: str

    def row(self) -> dict[str, str]:
        """The article as a knowledge-base row (``KNOWLEDGE_FIELDS``)."""
        return {"article_id": self.article_id, "title": self.title, "text": self.text, "label": self.intent,
                "language": self.language}


def read_articles(path: Path) -> list[Article]:
    """Read and check a knowledge-base file (pure but for reading the file).

    Args:
        path: a CSV, TSV, JSON Lines, JSON or Parquet file with the fields of
            ``KNOWLEDGE_FIELDS`` (other columns are ignored).

    Returns:
        The articles, in file order.

    Raises:
        NotFound: there is no such file.
        InvalidInput: an unknown format; a missing or empty field (named, with the row's
            line); a malformed article id or language code; an article id used twice.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFound(f"There is no knowledge-base file {path}.", hint="Check the path.")
    fmt = detect_format(path)
    if fmt not in KNOWLEDGE_FORMATS:
        raise InvalidInput(f"{path.name} is a {fmt} file; a knowledge base is one of {', '.join(KNOWLEDGE_FORMATS)}.",
                           hint=_HINT)
    parsed = _parse(path, fmt)
    articles: list[Article] = []
    seen: dict[str, int] = {}
    for record in parsed.records:
        where = f"{path.name}, row at {record.origin}"
        if record.quarantine_reason is not None:
            field = _REASON_FIELD.get(record.quarantine_reason)
            what = f"has no {field!r}" if field else f"cannot be read ({record.quarantine_reason})"
            raise InvalidInput(f"{where} {what}.", hint=_HINT)
        meta = record.meta or {}
        values = {name: "" if meta.get(name) is None else str(meta[name]).strip() for name in METADATA_FIELDS}
        for name in METADATA_FIELDS:
            if not values[name]:
                raise InvalidInput(f"{where} has no {name!r}.", hint=_HINT)
        article_id, language = values["article_id"], values["language"]
        if not _ARTICLE_ID.match(article_id):
            raise InvalidInput(f"{where}: article_id {article_id[:80]!r} is not an id.",
                               hint="Use letters, digits and _ . : - (at most 128 characters).")
        if not _LANGUAGE.match(language):
            raise InvalidInput(f"{where}: language {language[:40]!r} is not a language code.",
                               hint="Use a code such as en, zh or pt-BR.")
        if article_id in seen:
            raise InvalidInput(f"{where}: article_id {article_id!r} is used twice (first at row {seen[article_id]}).",
                               hint="Give every article its own id.")
        seen[article_id] = record.line
        assert record.label is not None  # a row without a label is quarantined above
        articles.append(Article(article_id=article_id, title=values["title"], text=record.text.strip(),
                                intent=record.label, language=language))
    return articles


def _parse(path: Path, fmt: str) -> ParsedSource:
    data = path.read_bytes()
    # Every other column is kept as metadata (metadata_columns=None), so a missing title is
    # this module's to name rather than the reader's.
    if fmt in ("csv", "tsv"):
        return read_delimited(data, name=path.name, suffix=".tsv" if fmt == "tsv" else path.suffix.lower(),
                              text_column="text", label_column="label", metadata_columns=None)
    reader = {"jsonl": read_jsonl, "json": read_json, "parquet": read_parquet}[fmt]
    return reader(data, name=path.name, text_column="text", label_column="label", metadata_columns=None)


def write_articles(articles: Iterable[Article], path: Path) -> Path:
    """Write articles as a knowledge-base file the data stage imports.

    Args:
        articles: the articles.
        path: where to write; ``.csv`` writes CSV (a header row of ``KNOWLEDGE_FIELDS``),
            ``.jsonl`` JSON Lines (one object per article). The folder is created.

    Returns:
        ``path``.

    Raises:
        InvalidInput: another extension.
    """
    path = Path(path)
    rows = [a.row() for a in articles]
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise InvalidInput(f"Cannot write a knowledge base as {path.name!r}.", hint="Name a .csv or .jsonl file.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        if suffix == ".csv":
            writer = csv.DictWriter(fh, fieldnames=KNOWLEDGE_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        else:
            fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


def import_knowledge_base(ctx: Context, path: Path, *, name: str, actor: Actor,
                          recipe: Sequence[str] | None = None) -> tuple[Source, DatasetVersion]:
    """Import a knowledge-base file and freeze it as the next (draft) version of dataset ``name``.

    Every row goes to the "train" split (a knowledge base is not split); the version is
    cleaned with the data stage's default recipe (personal data redacted) unless
    ``recipe`` says otherwise. Releasing it is the data stage's release, approved as
    any dataset's.

    Args:
        ctx: the stores.
        path: the knowledge-base file (see ``read_articles``).
        name: the dataset's name, which is its project.
        actor: who imports it (data.import, and dataset.create in project ``name``).
        recipe: the cleaning steps, or None for the default.

    Returns:
        The source and the new draft version.

    Raises:
        NotFound, InvalidInput: as ``read_articles``; nothing is stored.
        Forbidden: the actor may not import, or not create versions of ``name``.
    """
    # Decide and check everything first: a refused or bad import leaves no source behind.
    authorize(ctx.db, actor, "data.import")
    authorize(ctx.db, actor, "dataset.create", project=name)
    read_articles(path)
    source = import_file(ctx, Path(path), actor=actor, label_column="label", split="train",
                         metadata_columns=list(METADATA_FIELDS))
    version = create_dataset_version(ctx, name=name, source_ids=[source.id], actor=actor,
                                     recipe=list(recipe) if recipe is not None else None)
    return source, version

