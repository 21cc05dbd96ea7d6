"""Connectors: turn a file of one format into rows with an origin, quarantining what cannot be used.

Every connector is values in, values out: it takes the file's bytes (or a folder's files)
and returns ``ParsedSource`` — one ``Record`` per data row, in file order, with where the
row came from (``origin``: ``file:line``, ``file#row``, a relative path) and, for rows that
cannot be used, a ``quarantine_reason``. Nothing here touches the stores; ``ingest.py``
validates the whole result, then stores it in one transaction.

Formats: CSV/TSV (delimiter by extension or sniffed), JSON Lines, Parquet, a folder of
text files (one document each) and CoNLL column files (one row per sentence, with
``tokens`` and ``tags``).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from chainkeeper.core.errors import InvalidInput, NotFound

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "folder", "conll")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
               ".parquet": "parquet", ".pq": "parquet", ".conll": "conll", ".conllu": "conll"}
# Text files a folder import reads; others (images, .DS_Store) are not documents.
FOLDER_SUFFIXES = (".txt", ".md", ".text")
# Long texts (documents, transcripts) exceed csv's default 128 KiB field limit.
_FIELD_SIZE_LIMIT = min(sys.maxsize, 2**31 - 1)
# More columns (or JSON keys) than any text dataset has: a file with more is refused before its
# header is stored anywhere (a million-column header once made a 10 MB source record and ledger entry).
MAX_COLUMNS = 1000
# Candidate delimiters for sniffing: what spreadsheets and databases export.
_SNIFF_DELIMITERS = ",;\t|"


# The options of an import as the two shells name them: a hint names both, since this
# layer does not know whether a person typed a command or called the API (issue 14).
_OPTIONS = {"format": ("--format", "format"), "text_column": ("--text-column", "text_column"),
            "label_column": ("--label-column", "label_column"),
            "metadata_columns": ("--metadata-column", "metadata_columns"), "split": ("--split", "split")}


def option_hint(name: str, value: str = "") -> str:
    """How to pass an import option, in the words of the command line and of the API (pure).

    Args:
        name: the option's parameter name (``format``, ``text_column``, ...).
        value: an example value, or "" for a placeholder.

    Returns:
        E.g. "--format conll (command line) or format=conll (API)".
    """
    cli, api = _OPTIONS.get(name, (f"--{name.replace('_', '-')}", name))
    shown = value or "…"
    return f"{cli} {shown} (command line) or {api}={shown} (API)"


@dataclass(frozen=True, slots=True)
class Record:
    """One data row as read from a source, before it is stored (slots: a million of them fit in ~100 MB)."""

    text: str
    label: str | None
    line: int
    origin: str
    quarantine_reason: str | None = None
    meta: dict[str, Any] | None = None
    tokens: list[str] | None = None
    tags: list[str] | None = None


@dataclass(frozen=True)
class ParsedSource:
    """What a connector read: the rows, and how the file was decoded."""

    format: str
    encoding: str | None
    records: list[Record] = field(default_factory=list)
    options: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedRows:
    """The rows of a CSV file as columns (what ``parse_csv_text`` returns)."""

    text: list[str]
    label: list[str]
    line: list[int]
    quarantine_reason: list[str | None]
    # Per row, the metadata fields (column -> value); None when there are none.
    meta: list[dict[str, str]] | None = None


def decode_text_bytes(data: bytes, *, name: str, kind: str = "CSV") -> tuple[str, str]:
    """Decode the bytes of a text file (CSV, JSON Lines, CoNLL, a document).

    Args:
        data: the file's bytes.
        name: how to name the file in an error message.
        kind: what the file should be, for messages ("CSV", "JSON Lines", ...).

    Returns:
        (text, encoding) where encoding is "utf-8", "utf-8-sig" (UTF-8 with a BOM) or "gb18030".

    Raises:
        InvalidInput: the file is empty, binary, UTF-16, or neither UTF-8 nor GB18030.
    """
    if not data.strip():
        raise InvalidInput(f"{name} is empty.",
                           hint="Export the data again (a CSV needs a header row, e.g. text,label).")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InvalidInput(f"{name} is UTF-16 text, not UTF-8.",
                           hint="Save it as 'CSV UTF-8' (in Excel: Save As > CSV UTF-8) and import it again.")
    if b"\x00" in data:
        raise InvalidInput(f"{name} is not a {kind} file: it contains NUL bytes (a binary file?).",
                           hint=f"Export the data as text, or name the file's real format: {option_hint('format')}.")
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


def parse_csv_text(text: str, *, name: str, text_column: str, label_column: str | None,
                   delimiter: str = ",", metadata_columns: Sequence[str] | None = ()) -> ParsedRows:
    """Parse decoded CSV text into columns, quarantining rows that cannot be used (pure).

    Args:
        text: the decoded file.
        name: how to name the file in an error message.
        text_column: header name of the text column.
        label_column: header name of the label column; None for unlabelled text.
        delimiter: the field delimiter.
        metadata_columns: columns kept as each row's metadata; None infers them (every
            other named column); empty keeps none.

    Returns:
        Every data row in file order; ``quarantine_reason`` is None for accepted rows.

    Raises:
        InvalidInput: no header, a missing column, no data rows, or malformed CSV.
    """
    if csv.field_size_limit() < _FIELD_SIZE_LIMIT:
        csv.field_size_limit(_FIELD_SIZE_LIMIT)  # process-wide, but only ever raised
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InvalidInput(f"{name} is not a readable CSV file: {exc} (line 1).",
                           hint="Check the quoting of the header row.") from None
    columns = [c.strip() for c in header or []]
    _check_width(len(columns), name=name, what="columns in its header")
    text_idx = _column_index(columns, text_column, name=name, option="text_column")
    label_idx = (_column_index(columns, label_column, name=name, option="label_column")
                 if label_column is not None else None)
    width = len(columns)
    meta_idx = _metadata_indices(columns, metadata_columns, {text_column, label_column}, name=name)
    metas: list[dict[str, str]] | None = [] if meta_idx else None

    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    reasons: list[str | None] = []
    # Labels repeat: one string object per distinct label instead of one per row
    # (a million rows of 77 intents: ~60 MB less).
    distinct_labels: dict[str, str] = {}
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
            row_label = record[label_idx].strip() if label_idx is not None and label_idx < len(record) else ""
            if reason is None and not row_text.strip():
                reason = "empty_text"
            elif reason is None and label_idx is not None and not row_label:
                reason = "empty_label"
            texts.append(row_text)
            labels.append(distinct_labels.setdefault(row_label, row_label))
            lines.append(start)
            reasons.append(reason)
            if metas is not None:
                metas.append({c: record[i] for c, i in meta_idx if i < len(record)})
    except csv.Error as exc:
        raise InvalidInput(f"{name} is not a readable CSV file: {exc} (line {reader.line_num}).",
                           hint="Check the quoting around that line; fields with commas or newlines need quotes.") \
            from None
    if not texts:
        raise InvalidInput(f"{name} has a header but no data rows.", hint="Check that you exported the right file.")
    return ParsedRows(text=texts, label=labels, line=lines, quarantine_reason=reasons, meta=metas)


def _metadata_indices(columns: list[str], wanted: Sequence[str] | None, taken: set[str | None], *,
                      name: str) -> list[tuple[str, int]]:
    if wanted is None:
        return [(c, i) for i, c in enumerate(columns) if c and c not in taken]
    return [(c, _column_index(columns, c, name=name, option="metadata_columns")) for c in wanted]


def _check_width(count: int, *, name: str, what: str) -> None:
    if count > MAX_COLUMNS:
        raise InvalidInput(f"{name} has {count:,} {what}; at most {MAX_COLUMNS:,} are accepted.",
                           hint="Export only the text, label and the metadata columns you need.")


def _column_index(columns: list[str], wanted: str, *, name: str, option: str) -> int:
    if wanted in columns:
        return columns.index(wanted)
    found = ", ".join(repr(c) for c in columns) or "none"
    hint = f"Name one of the columns found with {option_hint(option)}, or rename the column in the file."
    if len(columns) == 1 and any(sep in columns[0] for sep in (";", "\t", "|")):
        hint = "The header looks like it uses another delimiter; pass the delimiter or save the file comma-separated."
    raise InvalidInput(f"{name} has no column {wanted!r} (columns found: {found}).", hint=hint)


def detect_format(path: Path, declared: str | None = None) -> str:
    """The format of ``path``: ``declared`` if given, else from the extension (a folder is "folder").

    Args:
        path: the file or folder.
        declared: a format the caller named (one of FORMATS), or None.

    Returns:
        One of FORMATS.

    Raises:
        InvalidInput: an unknown declared format, or an extension no connector reads.
    """
    if declared is not None:
        if declared not in FORMATS:
            raise InvalidInput(f"Unknown format {declared!r}.", hint=f"Use one of: {', '.join(FORMATS)}.")
        return declared
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix == ".txt" and _looks_like_conll(path):
        return "conll"
    raise InvalidInput(f"Cannot tell the format of {path.name!r} from its extension {suffix or '(none)'!r}.",
                       hint=f"Name the format with {option_hint('format')}, one of: {', '.join(FORMATS)}.")


def _looks_like_conll(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return head.lstrip().startswith("-DOCSTART-")


def sniff_delimiter(text: str, *, suffix: str) -> str:
    """The delimiter of a delimited text file (pure).

    ``.tsv``/``.tab`` means a tab; otherwise the header and the first lines are sniffed among
    comma, semicolon, tab and pipe, falling back to a comma.

    Args:
        text: the decoded file.
        suffix: the file's extension, lower case with its dot.

    Returns:
        The delimiter character.
    """
    if suffix in (".tsv", ".tab"):
        return "\t"
    sample = text[:65536]
    try:
        return csv.Sniffer().sniff(sample, delimiters=_SNIFF_DELIMITERS).delimiter
    except csv.Error:
        return ","


def read_delimited(data: bytes, *, name: str, suffix: str, text_column: str, label_column: str | None,
                   delimiter: str | None = None, metadata_columns: Sequence[str] | None = None) -> ParsedSource:
    """Read a CSV or TSV file (pure).

    Args:
        data: the file's bytes.
        name: the file name, for origins and messages.
        suffix: its extension (lower case, with the dot).
        text_column: header of the text column.
        label_column: header of the label column; None for unlabelled text.
        delimiter: the delimiter; None to choose by extension or sniff.
        metadata_columns: columns kept as metadata; None = every other column.

    Returns:
        The rows; ragged rows are quarantined ("missing_fields", "extra_fields").

    Raises:
        InvalidInput: empty, binary or undecodable, no header, a missing column, no rows.
    """
    text, encoding = decode_text_bytes(data, name=name, kind="CSV")
    delim = delimiter or sniff_delimiter(text, suffix=suffix)
    parsed = parse_csv_text(text, name=name, text_column=text_column, label_column=label_column, delimiter=delim,
                            metadata_columns=metadata_columns)
    metas: Sequence[dict[str, str] | None] = parsed.meta or [None] * len(parsed.text)
    records = [Record(text=t, label=lab if label_column else None, line=ln, origin=f"{name}:{ln}", quarantine_reason=r,
                      meta=m)
               for t, lab, ln, r, m in zip(parsed.text, parsed.label, parsed.line, parsed.quarantine_reason, metas,
                                           strict=True)]
    return ParsedSource(format="tsv" if delim == "\t" else "csv", encoding=encoding, records=records,
                        options={"delimiter": delim})


def read_jsonl(data: bytes, *, name: str, text_column: str, label_column: str | None,
               metadata_columns: Sequence[str] | None = None) -> ParsedSource:
    """Read a JSON Lines file: one JSON object per line (pure).

    A file that is one JSON document of rows instead (an array of objects, an object of
    lists) is read by ``read_json``.

    Args:
        data: the file's bytes.
        name: the file name, for origins and messages.
        text_column: key of the text.
        label_column: key of the label; None for unlabelled text.
        metadata_columns: keys kept as metadata; None = every other key.

    Returns:
        The rows; a line that is not JSON ("invalid_json"), not an object ("not_an_object"),
        or lacks a text or label is quarantined with its line.

    Raises:
        InvalidInput: empty, binary or undecodable; no object has ``text_column`` or
            ``label_column`` (the key does not exist).
    """
    text, encoding = decode_text_bytes(data, name=name, kind="JSON Lines")
    if text.lstrip().startswith(("[", "{")) and _is_json_rows(text):
        # One JSON document of rows under a JSON Lines name: read it as what it is.
        return read_json(data, name=name, text_column=text_column, label_column=label_column,
                         metadata_columns=metadata_columns)
    records: list[Record] = []
    seen_text = seen_label = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        origin = f"{name}:{number}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            records.append(Record(text=raw, label=None, line=number, origin=origin, quarantine_reason="invalid_json"))
            continue
        if not isinstance(obj, dict):
            records.append(Record(text=raw, label=None, line=number, origin=origin, quarantine_reason="not_an_object"))
            continue
        seen_text |= text_column in obj
        seen_label |= label_column is not None and label_column in obj
        records.append(_json_record(obj, line=number, origin=origin, text_column=text_column,
                                    label_column=label_column, metadata_columns=metadata_columns))
    if not records:
        raise InvalidInput(f"{name} has no JSON lines.", hint="Check that you exported the right file.")
    _check_json_keys(records, name=name, seen_text=seen_text, seen_label=seen_label, text_column=text_column,
                     label_column=label_column)
    return ParsedSource(format="jsonl", encoding=encoding, records=records)


def _is_json_rows(text: str) -> bool:
    """Whether ``text`` is one JSON document shaped as rows (an array, or an object of lists)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(document, list) or (isinstance(document, dict) and bool(document)
                                          and all(isinstance(v, list) for v in document.values()))


def _json_record(obj: dict[str, Any], *, line: int, origin: str, text_column: str, label_column: str | None,
                 metadata_columns: Sequence[str] | None) -> Record:
    """One JSON object as a row; no text (or label) quarantines it."""
    _check_width(len(obj), name=origin, what="keys in one object")
    row_text, row_label = obj.get(text_column), obj.get(label_column) if label_column else None
    row_text = "" if row_text is None else str(row_text)
    row_label = None if row_label is None else str(row_label).strip()
    reason = None
    if not row_text.strip():
        reason = "empty_text"
    elif label_column and not row_label:
        reason = "empty_label"
    meta = {k: v for k, v in obj.items() if k not in (text_column, label_column)} if metadata_columns is None \
        else {k: obj[k] for k in metadata_columns if k in obj}
    return Record(text=row_text, label=row_label, line=line, origin=origin, quarantine_reason=reason,
                  meta=meta or None)


def _check_json_keys(records: list[Record], *, name: str, seen_text: bool, seen_label: bool, text_column: str,
                     label_column: str | None) -> None:
    valid = [r for r in records if r.quarantine_reason not in ("invalid_json", "not_an_object")]
    if valid and not seen_text:
        raise InvalidInput(f"{name} has no key {text_column!r} in any object.",
                           hint=f"Name the key that holds the text: {option_hint('text_column')}.")
    if valid and label_column and not seen_label:
        raise InvalidInput(f"{name} has no key {label_column!r} in any object.",
                           hint=f"Name the key that holds the label: {option_hint('label_column')} (--no-label / "
                                "no_label=true for unlabelled text).")


def read_json(data: bytes, *, name: str, text_column: str, label_column: str | None,
              metadata_columns: Sequence[str] | None = None) -> ParsedSource:
    """Read a JSON document of rows: an array of objects, or an object of equal-length lists (pure).

    ``[{"text": ..., "label": ...}, ...]`` gives one row per object (an element that is not
    an object is quarantined, "not_an_object"); ``{"text": [...], "label": [...]}`` one row
    per position, the lists read as columns. The origin of a row is its 0-based index, as
    for Parquet. A file that is not one JSON document but JSON Lines (a ``.json`` name is
    common for those too) is read as JSON Lines.

    Raises:
        InvalidInput: empty, binary or undecodable; a document of another shape (a number,
            an object that is not all lists, lists of different lengths); no row has the
            text or label key.
    """
    text, encoding = decode_text_bytes(data, name=name, kind="JSON")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return read_jsonl(data, name=name, text_column=text_column, label_column=label_column,
                          metadata_columns=metadata_columns)
    if isinstance(document, dict) and document and all(isinstance(v, list) for v in document.values()):
        lengths = {k: len(v) for k, v in document.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidInput(f"{name} is an object of lists of different lengths ({lengths}); its rows cannot be "
                               "lined up.", hint="Give every key a list of the same length, one value per row.")
        keys = list(document)
        document = [dict(zip(keys, values, strict=True)) for values in zip(*document.values(), strict=True)]
    if not isinstance(document, list):
        raise InvalidInput(f"{name} holds a JSON {type(document).__name__}, not rows.",
                           hint='Use an array of objects ([{"text": ..., "label": ...}, ...]), an object of lists '
                           '({"text": [...], "label": [...]}) or JSON Lines (one object per line).')
    if not document:
        raise InvalidInput(f"{name} has no rows.", hint="Check that you exported the right file.")
    records = []
    seen_text = seen_label = False
    for i, obj in enumerate(document):
        origin = f"{name}#{i}"
        if not isinstance(obj, dict):
            records.append(Record(text=json.dumps(obj, ensure_ascii=False), label=None, line=i, origin=origin,
                                  quarantine_reason="not_an_object"))
            continue
        seen_text |= text_column in obj
        seen_label |= label_column is not None and label_column in obj
        records.append(_json_record(obj, line=i, origin=origin, text_column=text_column, label_column=label_column,
                                    metadata_columns=metadata_columns))
    _check_json_keys(records, name=name, seen_text=seen_text, seen_label=seen_label, text_column=text_column,
                     label_column=label_column)
    return ParsedSource(format="json", encoding=encoding, records=records)


def read_parquet(data: bytes, *, name: str, text_column: str, label_column: str | None,
                 metadata_columns: Sequence[str] | None = None) -> ParsedSource:
    """Read a Parquet file; the origin of a row is its 0-based row index (pure).

    Raises:
        InvalidInput: not a Parquet file, a missing column, or no rows.
    """
    if not data:
        raise InvalidInput(f"{name} is empty.", hint="Export the data again.")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{name} is not a readable Parquet file: {exc}.",
                           hint=f"Check that the file is Parquet, or name its real format: "
                           f"{option_hint('format')}.") from None
    _check_width(table.num_columns, name=name, what="columns")
    wanted_meta = ([c for c in table.column_names if c not in (text_column, label_column)]
                   if metadata_columns is None else list(metadata_columns))
    for column, option in ((text_column, "text_column"), (label_column, "label_column"),
                           *((c, "metadata_columns") for c in wanted_meta)):
        if column is not None and column not in table.column_names:
            raise InvalidInput(f"{name} has no column {column!r} (columns found: {', '.join(table.column_names)}).",
                               hint=f"Name one of the columns found with {option_hint(option)}.")
    if table.num_rows == 0:
        raise InvalidInput(f"{name} has no rows.", hint="Check that you exported the right file.")
    texts = table.column(text_column).to_pylist()
    labels = table.column(label_column).to_pylist() if label_column else [None] * len(texts)
    metas = table.select(wanted_meta).to_pylist() if wanted_meta else [None] * len(texts)
    records = []
    for i, (t, lab, meta) in enumerate(zip(texts, labels, metas, strict=True)):
        t = "" if t is None else str(t)
        lab = None if lab is None else str(lab).strip()
        reason = "empty_text" if not t.strip() else ("empty_label" if label_column and not lab else None)
        records.append(Record(text=t, label=lab, line=i, origin=f"{name}#{i}", quarantine_reason=reason, meta=meta))
    return ParsedSource(format="parquet", encoding=None, records=records)


def read_folder(folder: Path) -> ParsedSource:
    """Read a folder of text files, one document each; origin = path relative to the folder.

    Args:
        folder: the folder (searched recursively for FOLDER_SUFFIXES files, in path order).

    Returns:
        The documents, unlabelled; an empty or undecodable file is quarantined.

    Raises:
        NotFound: the folder does not exist. InvalidInput: not a folder, or no text files.
    """
    if not folder.exists():
        raise NotFound(f"There is no folder {folder}.", hint="Check the path.")
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder.",
                           hint=f"Pass a folder of .txt files, or name a file's format: {option_hint('format')}.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
    if not files:
        raise InvalidInput(f"{folder} holds no text files ({', '.join(FOLDER_SUFFIXES)}).",
                           hint="Put one document per .txt file in the folder.")
    records = []
    encodings: set[str] = set()
    for path in files:
        rel = path.relative_to(folder).as_posix()
        try:
            text, encoding = decode_text_bytes(path.read_bytes(), name=rel, kind="text")
            encodings.add(encoding)
            records.append(Record(text=text, label=None, line=1, origin=rel))
        except InvalidInput as exc:
            reason = "empty_text" if "empty" in exc.message else "undecodable"
            records.append(Record(text="", label=None, line=1, origin=rel, quarantine_reason=reason))
    folder_encoding = encodings.pop() if len(encodings) == 1 else ("mixed" if encodings else None)
    return ParsedSource(format="folder", encoding=folder_encoding, records=records, options={"files": len(files)})


def read_conll(data: bytes, *, name: str, token_column: int = 0, tag_column: int = -1) -> ParsedSource:
    """Read a CoNLL column file: one row per sentence with ``tokens`` and ``tags`` (pure).

    Sentences are separated by blank lines; ``-DOCSTART-`` lines are document markers, not
    tokens. The origin of a sentence is the line of its first token. A token line with
    fewer columns than needed quarantines its sentence ("missing_fields").

    Args:
        data: the file's bytes.
        name: the file name, for origins and messages.
        token_column: the column of the token (0 = first).
        tag_column: the column of the tag (-1 = last, the NER tag in CoNLL-2003).

    Returns:
        One record per sentence; ``text`` is the tokens joined by spaces, ``label`` is None.

    Raises:
        InvalidInput: empty, binary or undecodable, or no sentences.
    """
    text, encoding = decode_text_bytes(data, name=name, kind="CoNLL")
    records: list[Record] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    broken = False

    def flush() -> None:
        nonlocal tokens, tags, broken
        if tokens or broken:
            records.append(Record(text=" ".join(tokens), label=None, line=start, origin=f"{name}:{start}",
                                  quarantine_reason="missing_fields" if broken else None, tokens=tokens, tags=tags))
        tokens, tags, broken = [], [], False

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("-DOCSTART-"):
            flush()
            continue
        if not tokens and not broken:
            start = number
        parts = line.split()
        needed = max(token_column, tag_column if tag_column >= 0 else -tag_column - 1) + 1
        if len(parts) < max(needed, 2):
            broken = True
            continue
        tokens.append(parts[token_column])
        tags.append(parts[tag_column])
    flush()
    if not records:
        raise InvalidInput(f"{name} has no sentences.", hint="A CoNLL file has one 'token ... tag' line per token "
                           "and a blank line after each sentence.")
    return ParsedSource(format="conll", encoding=encoding, records=records,
                        options={"token_column": token_column, "tag_column": tag_column})
