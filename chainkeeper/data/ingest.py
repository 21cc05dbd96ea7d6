"""Import a CSV file as a source: decode, parse, quarantine bad rows, store, record.

The file is read whole (a million short rows is ~100 MB), hashed, decoded (UTF-8, with or
without a BOM; GB18030 when UTF-8 fails, which covers files saved by Chinese Excel) and
parsed with the ``csv`` module. We use ``csv`` rather than ``pyarrow.csv`` because we need
the line where each row starts, and quoted fields may span lines (BANKING77 has some).
A million short rows import in about 5 seconds end to end (parse, Parquet, store).

Bad input raises before anything is stored. Rows that cannot be used (no text, no label,
a broken field count) are kept in the rows artefact with a ``quarantine_reason`` and
counted as ``rows_quarantined``; see ``sources.py`` for the artefact's layout.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput, NotFound
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

__all__ = ["SPLITS", "import_csv", "get_source", "list_sources", "count_sources", "read_source_rows", "Source"]

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
# Long texts (documents, transcripts) exceed csv's default 128 KiB field limit.
_FIELD_SIZE_LIMIT = min(sys.maxsize, 2**31 - 1)


@dataclass(frozen=True)
class ParsedRows:
    """The rows of a CSV file as columns (what ``parse_csv_text`` returns)."""

    text: list[str]
    label: list[str]
    line: list[int]
    quarantine_reason: list[str | None]


def decode_csv_bytes(data: bytes, *, name: str) -> tuple[str, str]:
    """Decode the bytes of a CSV file.

    Args:
        data: the file's bytes.
        name: how to name the file in an error message.

    Returns:
        (text, encoding) where encoding is "utf-8", "utf-8-sig" (UTF-8 with a BOM) or "gb18030".

    Raises:
        InvalidInput: the file is empty, binary, UTF-16, or neither UTF-8 nor GB18030.
    """
    if not data.strip():
        raise InvalidInput(f"{name} is empty.", hint="Export the data again with a header row (text,label) and rows.")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InvalidInput(f"{name} is UTF-16 text, not UTF-8.",
                           hint="Save it as 'CSV UTF-8' (in Excel: Save As > CSV UTF-8) and import it again.")
    if b"\x00" in data:
        raise InvalidInput(f"{name} is not a CSV file: it contains NUL bytes (a binary file?).",
                           hint="Export the data as a comma-separated text file with a header row.")
    try:
        if data.startswith(codecs.BOM_UTF8):
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "utf-8-sig"
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{name} cannot be decoded: byte {data[utf8_error.start]:#04x} at offset {utf8_error.start} "
                "is not UTF-8, and the file is not GB18030 either.",
                hint="Convert it to UTF-8 (e.g. 'iconv -f <its encoding> -t utf-8 in.csv > out.csv').",
            ) from None


def parse_csv_text(text: str, *, name: str, text_column: str, label_column: str) -> ParsedRows:
    """Parse decoded CSV text into columns, quarantining rows that cannot be used (pure).

    Args:
        text: the decoded file.
        name: how to name the file in an error message.
        text_column: header name of the text column.
        label_column: header name of the label column.

    Returns:
        Every data row in file order; ``quarantine_reason`` is None for accepted rows.

    Raises:
        InvalidInput: no header, a missing column, no data rows, or malformed CSV.
    """
    if csv.field_size_limit() < _FIELD_SIZE_LIMIT:
        csv.field_size_limit(_FIELD_SIZE_LIMIT)  # process-wide, but only ever raised
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InvalidInput(f"{name} is not a readable CSV file: {exc} (line 1).",
                           hint="Check the quoting of the header row.") from None
    columns = [c.strip() for c in header or []]
    text_idx = _column_index(columns, text_column, name=name, option="text_column")
    label_idx = _column_index(columns, label_column, name=name, option="label_column")
    width = len(columns)

    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    reasons: list[str | None] = []
    previous_end = reader.line_num
    try:
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not record:
                continue  # a blank line is not a row
            reason: str | None = None
            if len(record) < width:
                reason = "missing_fields"
            elif len(record) > width and any(f.strip() for f in record[width:]):
                # Usually an unquoted comma inside the text: the text would be cut short.
                reason = "extra_fields"
            row_text = record[text_idx] if text_idx < len(record) else ""
            row_label = record[label_idx].strip() if label_idx < len(record) else ""
            if reason is None and not row_text.strip():
                reason = "empty_text"
            elif reason is None and not row_label:
                reason = "empty_label"
            texts.append(row_text)
            labels.append(row_label)
            lines.append(start)
            reasons.append(reason)
    except csv.Error as exc:
        raise InvalidInput(f"{name} is not a readable CSV file: {exc} (line {reader.line_num}).",
                           hint="Check the quoting around that line; fields with commas or newlines need quotes.") \
            from None
    if not texts:
        raise InvalidInput(f"{name} has a header but no data rows.", hint="Check that you exported the right file.")
    return ParsedRows(text=texts, label=labels, line=lines, quarantine_reason=reasons)


def _column_index(columns: list[str], wanted: str, *, name: str, option: str) -> int:
    if wanted in columns:
        return columns.index(wanted)
    found = ", ".join(repr(c) for c in columns) or "none"
    hint = f"Pass {option}= with one of the columns found, or rename the column in the file."
    if len(columns) == 1 and any(sep in columns[0] for sep in (";", "\t", "|")):
        hint = "The header looks like it uses another delimiter; save the file comma-separated."
    raise InvalidInput(f"{name} has no column {wanted!r} (columns found: {found}).", hint=hint)


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


def import_csv(ctx: Context, path: Path, *, actor: Actor, text_column: str = "text", label_column: str = "label",
               split: str | None = None, limit: int | None = None, seed: int = 13) -> Source:
    """Import a CSV file of labelled texts as a source.

    Args:
        ctx: the stores.
        path: the CSV file (UTF-8, UTF-8 with BOM, or GB18030), with a header row.
        actor: who imports it (recorded as created_by and in the audit ledger).
        text_column: header name of the text column.
        label_column: header name of the label column.
        split: the split every row of this file belongs to ("train", "dev" or "test"),
            e.g. "test" for a benchmark's test file; None lets the dataset version assign it.
        limit: keep a seeded random sample of this many accepted rows (in file order);
            every quarantined row is still kept and counted.
        seed: the seed of that sample.

    Returns:
        The recorded source.

    Raises:
        NotFound: the file does not exist.
        InvalidInput: a folder, an empty, binary or undecodable file, malformed CSV, a
            missing column, no usable rows, or a bad ``split``/``limit``. Nothing is stored.
    """
    if split is not None and split not in SPLITS:
        raise InvalidInput(f"Unknown split {split!r}.", hint=f"Use one of: {', '.join(SPLITS)} (or none).")
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}.", hint="Leave it out to import every row.")
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder, not a CSV file.", hint="Pass the path of the .csv file inside it.")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"There is no file {path}.", hint="Check the path (relative paths start from the "
                       "current folder).") from None
    except PermissionError:
        raise InvalidInput(f"{path} cannot be read: permission denied.", hint="Check the file's permissions.") \
            from None

    text, encoding = decode_csv_bytes(data, name=str(path))
    parsed = parse_csv_text(text, name=str(path), text_column=text_column, label_column=label_column)
    del text
    accepted = [i for i, reason in enumerate(parsed.quarantine_reason) if reason is None]
    if not accepted:
        raise InvalidInput(f"{path} has no usable rows: all {len(parsed.text):,} rows lack a text or a label.",
                           hint=f"Check that {text_column!r} and {label_column!r} are the right columns.")
    kept = set(accepted[i] for i in sample_positions(len(accepted), limit, seed=seed)) if limit else None
    keep = [i for i, reason in enumerate(parsed.quarantine_reason) if reason is not None or kept is None or i in kept]

    reasons: dict[str, int] = {}
    for i in keep:
        if (r := parsed.quarantine_reason[i]) is not None:
            reasons[r] = reasons.get(r, 0) + 1
    rows_quarantined = sum(reasons.values())
    table = pa.table({
        "text": [parsed.text[i] for i in keep],
        "label": [parsed.label[i] for i in keep],
        "line": [parsed.line[i] for i in keep],
        "split": [split] * len(keep),
        "quarantine_reason": [parsed.quarantine_reason[i] for i in keep],
    }, schema=SOURCE_SCHEMA.with_metadata({"chainkeeper.format": SOURCE_FORMAT, "chainkeeper.encoding": encoding}))
    digest = ctx.artifacts.put_bytes(_parquet_bytes(table))
    sha256 = hashlib.sha256(data).hexdigest()

    with ctx.db.session() as s:
        row = SqlSource(kind="csv", uri=str(path), sha256=sha256, rows_accepted=len(keep) - rows_quarantined,
                        rows_quarantined=rows_quarantined, rows_artifact=digest, created_by=actor.name)
        s.add(row)
        s.flush()
        append_entry(s, actor, "source.import", "source", row.id,
                     after={"uri": row.uri, "sha256": sha256, "rows_artifact": digest},
                     details={"encoding": encoding, "rows_accepted": row.rows_accepted, "quarantined": reasons,
                              "split": split, "limit": limit, "seed": seed if limit else None})
        source = to_source(row)
    log.info("imported %s (%s): %d rows accepted, %d quarantined %s", path, encoding, source.rows_accepted,
             rows_quarantined, reasons)
    return source


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())
