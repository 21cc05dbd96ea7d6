"""Import a file as a source: read it with its connector, validate, quarantine bad rows, store, record.

``import_file`` is the one entry point: it picks the connector by ``format`` or by the
file's extension (see ``connectors.py``: CSV/TSV, JSON Lines, a JSON array of objects or
object of lists, Parquet, a folder of text files, CoNLL), then ``store_records`` writes
the rows artefact and the ``SqlSource`` row with its audit entry in one transaction.
``import_csv`` (the quickstart's) is ``import_file`` with format "csv". The file is read
whole (a million short CSV rows is ~100 MB) and hashed; a million short rows import in
about 5 seconds end to end.

Bad input raises before anything is stored, so a failed import leaves no source row.
Rows that cannot be used (no text, no label, a broken field count, a line that is not
JSON) are kept in the rows artefact with a ``quarantine_reason`` and counted as
``rows_quarantined``, with the count per reason in the source's
``options["quarantine_reasons"]``; see ``sources.py`` for the artefact's layout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from chainkeeper.core.errors import InvalidInput, NotFound
from chainkeeper.data.connectors import (
    FORMATS,
    ParsedSource,
    Record,
    decode_text_bytes,
    detect_format,
    parse_csv_text,
    read_conll,
    read_delimited,
    read_folder,
    read_json,
    read_jsonl,
    read_parquet,
)
from chainkeeper.data.sources import (
    SOURCE_FORMAT,
    SOURCE_SCHEMA,
    Source,
    count_sources,
    get_source,
    list_sources,
    read_source_rows,
    to_source,
)
from chainkeeper.data.tables import SqlSource
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["SPLITS", "FORMATS", "import_file", "import_csv", "store_records", "decode_csv_bytes", "parse_csv_text",
           "get_source", "list_sources", "count_sources", "read_source_rows", "Source"]

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


def decode_csv_bytes(data: bytes, *, name: str) -> tuple[str, str]:
    """Decode the bytes of a CSV file (kept for callers of the CSV-only import; see connectors)."""
    return decode_text_bytes(data, name=name, kind="CSV")


def sample_positions(count: int, limit: int | None, *, seed: int) -> list[int]:
    """Positions of a seeded random sample of ``limit`` out of ``count`` items, in order (pure).

    A random sample rather than the first rows: files are often grouped by label
    (BANKING77's train.csv is), and the first N rows would hold a handful of labels.

    Args:
        count: how many items there are.
        limit: how many to keep; None keeps all.
        seed: the sample's seed.

    Returns:
        Sorted positions in range(count).
    """
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(random.Random(seed).sample(range(count), limit))


def import_file(ctx: Context, path: Path, *, actor: Actor, format: str | None = None, text_column: str = "text",
                label_column: str | None = "label", split: str | None = None, limit: int | None = None,
                seed: int = 13, delimiter: str | None = None, uri: str | None = None,
                metadata_columns: list[str] | None = None) -> Source:
    """Import a file (or a folder of text files) as a source, with each row's origin.

    Args:
        ctx: the stores.
        path: the file or folder.
        actor: who imports it (``data.import``, from a global role: a source is not bound to
            a project; recorded as created_by and in the audit ledger).
        format: one of FORMATS; None picks it from the extension (a folder is "folder").
        text_column: the column/key of the text (CSV, TSV, JSON Lines, JSON, Parquet).
        label_column: the column/key of the label; None for unlabelled text. Folders and
            CoNLL files have no label column (CoNLL rows carry ``tokens`` and ``tags``).
        split: the split every row belongs to ("train", "dev", "test") or None.
        limit: keep a seeded random sample of this many accepted rows; quarantined rows are
            all kept and counted.
        seed: the seed of that sample.
        delimiter: the CSV delimiter; None chooses by extension or sniffs it.
        metadata_columns: the fields kept with each row as metadata (``meta``, JSON);
            None keeps every other column/key (CSV, TSV, JSON Lines, Parquet); [] none.
        uri: what to record as the source's location instead of the path (an upload's
            name, say, when ``path`` is a temporary copy).

    Returns:
        The recorded source (its counts say how many rows were accepted and quarantined).

    Raises:
        Forbidden: the actor may not import.
        NotFound: the file or folder does not exist.
        InvalidInput: an unknown format, an empty, binary or undecodable file, a missing
            column, no usable rows, or a bad ``split``/``limit``. Nothing is stored.
    """
    authorize(ctx.db, actor, "data.import")
    if split is not None and split not in SPLITS:
        raise InvalidInput(f"Unknown split {split!r}.", hint=f"Use one of: {', '.join(SPLITS)} (or none).")
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}.", hint="Leave it out to import every row.")
    path = Path(path).expanduser().resolve()
    if not path.exists():
        what = "folder" if format == "folder" else "file"
        raise NotFound(f"There is no {what} {path}.", hint="Check the path (relative paths start from the "
                       "current folder).")
    fmt = detect_format(path, format)
    if fmt == "folder":
        parsed = read_folder(path)
        sha256 = hashlib.sha256("\n".join(f"{r.origin}\t{r.text}" for r in parsed.records).encode()).hexdigest()
    else:
        if path.is_dir():
            raise InvalidInput(f"{path} is a folder, not a {fmt} file.",
                               hint=f"Pass the path of the .{fmt} file inside it, "
                               "or format='folder' for a folder of texts.")
        data = _read_bytes(path)
        sha256 = hashlib.sha256(data).hexdigest()
        name = path.name
        if fmt in ("csv", "tsv"):
            parsed = read_delimited(data, name=name, suffix=path.suffix.lower() if fmt == "csv" else ".tsv",
                                    text_column=text_column, label_column=label_column, delimiter=delimiter,
                                    metadata_columns=metadata_columns)
        elif fmt == "jsonl":
            parsed = read_jsonl(data, name=name, text_column=text_column, label_column=label_column,
                                metadata_columns=metadata_columns)
        elif fmt == "json":
            parsed = read_json(data, name=name, text_column=text_column, label_column=label_column,
                               metadata_columns=metadata_columns)
        elif fmt == "parquet":
            parsed = read_parquet(data, name=name, text_column=text_column, label_column=label_column,
                                  metadata_columns=metadata_columns)
        else:
            parsed = read_conll(data, name=name)
        del data  # ~100 MB at a million rows: not kept while the rows are stored
    return store_records(ctx, parsed, uri=uri or str(path), sha256=sha256,
                         actor=actor, split=split, limit=limit, seed=seed,
                         schema={"text": text_column if fmt not in ("folder", "conll") else "text",
                                 "label": label_column if fmt not in ("folder", "conll") else None,
                                 "tokens": "tokens" if fmt == "conll" else None,
                                 "tags": "tags" if fmt == "conll" else None,
                                 "metadata": _metadata_names(parsed)})


def _metadata_names(parsed: ParsedSource) -> list[str]:
    names: dict[str, None] = {}
    for r in parsed.records:
        names.update(dict.fromkeys(r.meta or ()))
    return list(names)


def import_csv(ctx: Context, path: Path, *, actor: Actor, text_column: str = "text", label_column: str = "label",
               split: str | None = None, limit: int | None = None, seed: int = 13) -> Source:
    """Import a CSV file of labelled texts as a source (``import_file`` with format "csv").

    Args:
        ctx: the stores.
        path: the CSV file (UTF-8, UTF-8 with BOM, or GB18030), with a header row.
        actor: who imports it.
        text_column: header name of the text column.
        label_column: header name of the label column.
        split: the split every row of this file belongs to, or None.
        limit: keep a seeded random sample of this many accepted rows.
        seed: the seed of that sample.

    Returns:
        The recorded source.

    Raises:
        Forbidden, NotFound, InvalidInput: as ``import_file``. Nothing is stored.
    """
    return import_file(ctx, path, actor=actor, format="csv", text_column=text_column, label_column=label_column,
                       split=split, limit=limit, seed=seed, delimiter=",", metadata_columns=[])


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise InvalidInput(f"{path} cannot be read: permission denied.", hint="Check the file's permissions.") \
            from None


def store_records(ctx: Context, parsed: ParsedSource, *, uri: str, sha256: str, actor: Actor, kind: str | None = None,
                  split: str | None = None, limit: int | None = None, seed: int = 13,
                  schema: dict[str, Any] | None = None) -> Source:
    """Validate parsed rows and store them as one source (artefact + row + audit entry).

    Args:
        ctx: the stores.
        parsed: what a connector (or the crawler) read.
        uri: where the rows came from (a path or URL).
        sha256: checksum of the input bytes.
        actor: who brings them in.
        kind: the source's kind; defaults to the format.
        split: the split of every row, or None.
        limit: keep a seeded random sample of this many accepted rows.
        seed: the seed of that sample.
        schema: the declared schema (text/label/tokens/tags fields), recorded with the source.

    Returns:
        The recorded source.

    Raises:
        InvalidInput: no usable rows (every row quarantined). Nothing is stored.
    """
    records = parsed.records
    accepted = [i for i, r in enumerate(records) if r.quarantine_reason is None]
    if not accepted:
        counts = _reason_counts(records)
        raise InvalidInput(f"{uri} has no usable rows: all {len(records):,} rows were set aside ({counts}).",
                           hint="Check the file and the text/label columns named.")
    kept = set(accepted[i] for i in sample_positions(len(accepted), limit, seed=seed)) if limit else None
    keep = [records[i] for i, r in enumerate(records) if r.quarantine_reason is not None or kept is None or i in kept]
    reasons = _reason_counts(keep)
    rows_quarantined = sum(reasons.values())
    has_tokens = any(r.tokens is not None for r in keep)
    columns: dict[str, Any] = {
        "text": [r.text for r in keep],
        "label": [r.label for r in keep],
        "line": [r.line for r in keep],
        "split": [split] * len(keep),
        "quarantine_reason": [r.quarantine_reason for r in keep],
        "origin": [r.origin for r in keep],
    }
    schema_ = SOURCE_SCHEMA
    if any(r.meta for r in keep):
        # Metadata fields vary by format and row, so they are kept as one JSON object per row.
        columns["meta"] = [json.dumps(r.meta, ensure_ascii=False, default=str) if r.meta else None for r in keep]
        schema_ = schema_.append(pa.field("meta", pa.string()))
    if has_tokens:
        columns["tokens"] = [r.tokens for r in keep]
        columns["tags"] = [r.tags for r in keep]
        schema_ = schema_.append(pa.field("tokens", pa.list_(pa.string())))
        schema_ = schema_.append(pa.field("tags", pa.list_(pa.string())))
    encoding = parsed.encoding or ""
    table = pa.table(columns, schema=schema_.with_metadata({"chainkeeper.format": SOURCE_FORMAT,
                                                           "chainkeeper.encoding": encoding,
                                                           "chainkeeper.input_format": parsed.format}))
    digest = ctx.artifacts.put_bytes(_parquet_bytes(table))
    declared = dict(schema or {"text": "text", "label": "label"})
    # The reasons are kept with the source so a list of sources can say why rows were set aside.
    options = {**parsed.options, "schema": declared, "quarantine_reasons": reasons}

    with ctx.db.session() as s:
        row = SqlSource(kind=kind or parsed.format, uri=uri, sha256=sha256,
                        rows_accepted=len(keep) - rows_quarantined,
                        rows_quarantined=rows_quarantined, rows_artifact=digest, created_by=actor.name,
                        format=parsed.format, encoding=parsed.encoding, options=options)
        s.add(row)
        s.flush()
        append_entry(s, actor, "source.import", "source", row.id,
                     after={"uri": row.uri, "sha256": sha256, "rows_artifact": digest},
                     details={"format": parsed.format, "encoding": parsed.encoding, "rows_accepted": row.rows_accepted,
                              "quarantined": reasons, "split": split, "limit": limit,
                              "seed": seed if limit else None, "schema": declared})
        source = to_source(row)
    log.info("imported %s (%s, %s): %d rows accepted, %d quarantined %s", uri, parsed.format, parsed.encoding,
             source.rows_accepted, rows_quarantined, reasons)
    return source


def _reason_counts(records: list[Record]) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for r in records:
        if r.quarantine_reason is not None:
            reasons[r.quarantine_reason] = reasons.get(r.quarantine_reason, 0) + 1
    return reasons


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())
