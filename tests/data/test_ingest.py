"""Importing CSV files as sources: encodings, line numbers, quarantine, sampling, errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import ChainkeeperError, InvalidInput, NotFound
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.sources import count_sources, get_source, list_sources, read_source_rows
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries

STEWARD = Actor(name="dana", roles=frozenset({"data_steward"}))


def write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def test_import_stores_accepted_rows_with_their_line_numbers(any_ctx: Context, tmp_path: Path) -> None:
    # Row 2 spans two physical lines, so the row after it starts on line 5, not 4.
    csv_path = write(tmp_path / "intents.csv",
                     'text,label\nwhere is my card,card_arrival\n"lost it\non the bus",lost_card\n'
                     "new pin please, change_pin \n")

    source = import_csv(any_ctx, csv_path, actor=STEWARD)

    assert (source.kind, source.uri, source.name) == ("csv", str(csv_path.resolve()), "intents.csv")
    assert source.sha256 == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert (source.rows_accepted, source.rows_quarantined, source.created_by) == (3, 0, "dana")
    rows = read_source_rows(any_ctx, source.id)
    assert rows.column_names == ["text", "label", "line", "split"]
    assert rows.to_pylist() == [
        {"text": "where is my card", "label": "card_arrival", "line": 2, "split": None},
        {"text": "lost it\non the bus", "label": "lost_card", "line": 3, "split": None},
        {"text": "new pin please", "label": "change_pin", "line": 5, "split": None},
    ]
    assert get_source(any_ctx.db, source.id) == source
    assert list_sources(any_ctx.db) == [source]
    assert [e.action for e in list_entries(any_ctx.db, object_kind="source")] == ["source.import"]


def test_import_reads_utf8_with_a_byte_order_mark(ctx: Context, tmp_path: Path) -> None:
    csv_path = write(tmp_path / "bom.csv", "\ufefftext,label\ncafé card,card_arrival\n")

    rows = read_source_rows(ctx, import_csv(ctx, csv_path, actor=STEWARD).id)

    assert rows.column("text").to_pylist() == ["café card"]
    assert rows.schema.metadata[b"chainkeeper.encoding"] == b"utf-8-sig"


def test_import_falls_back_to_gb18030_for_chinese_excel_exports(ctx: Context, tmp_path: Path) -> None:
    csv_path = write(tmp_path / "gbk.csv", "text,label\n我的银行卡什么时候到？,card_arrival\n卡丢了,lost_card\n",
                     encoding="gb18030")

    source = import_csv(ctx, csv_path, actor=STEWARD)

    rows = read_source_rows(ctx, source.id)
    assert rows.column("text").to_pylist() == ["我的银行卡什么时候到？", "卡丢了"]
    assert rows.schema.metadata[b"chainkeeper.encoding"] == b"gb18030"


def test_rows_without_text_or_label_are_quarantined_and_kept_for_review(any_ctx: Context, tmp_path: Path) -> None:
    csv_path = write(tmp_path / "holes.csv",
                     "text,label\nok row,a\n   ,a\nno label,\nshort\n\nsplit, by, comma,b\nlast,b\n")

    source = import_csv(any_ctx, csv_path, actor=STEWARD)

    assert (source.rows_accepted, source.rows_quarantined) == (2, 4)
    everything = read_source_rows(any_ctx, source.id, include_quarantined=True)
    assert everything.column("quarantine_reason").to_pylist() == [
        None, "empty_text", "empty_label", "missing_fields", "extra_fields", None]
    assert everything.column("line").to_pylist() == [2, 3, 4, 5, 7, 8]  # the blank line 6 is no row
    assert read_source_rows(any_ctx, source.id).column("text").to_pylist() == ["ok row", "last"]


def test_declared_split_is_stored_on_every_row(ctx: Context, tmp_path: Path) -> None:
    csv_path = write(tmp_path / "test.csv", "text,label\na,x\nb,y\n")

    source = import_csv(ctx, csv_path, actor=STEWARD, split="test")

    assert read_source_rows(ctx, source.id).column("split").to_pylist() == ["test", "test"]


def test_limit_takes_a_seeded_sample_in_file_order_spread_over_labels(ctx: Context, tmp_path: Path) -> None:
    # Grouped by label, like BANKING77's train.csv: the first 50 rows hold one label.
    lines = [f"text {label} {i},label_{label}" for label in range(10) for i in range(50)]
    csv_path = write(tmp_path / "grouped.csv", "text,label\n" + "\n".join(lines) + "\n")

    def sample(seed: int) -> list[int]:
        source = import_csv(ctx, csv_path, actor=STEWARD, limit=50, seed=seed)
        assert source.rows_accepted == 50
        return read_source_rows(ctx, source.id).column("line").to_pylist()  # type: ignore[no-any-return]

    first, again, other = sample(13), sample(13), sample(14)
    assert first == again
    assert first != other
    assert first == sorted(first)
    assert len({(line - 2) // 50 for line in first}) >= 8  # labels seen in the sample


@pytest.mark.parametrize(("content", "kwargs", "error", "words"), [
    (None, {}, NotFound, "no file"),
    ("", {}, InvalidInput, "is empty"),
    ("text,label\n", {}, InvalidInput, "no data rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, InvalidInput, "NUL bytes"),
    (b"text,label\n\xff\xfe\xff caf\xe9,x\n", {}, InvalidInput, "cannot be decoded"),
    ("utterance,intent\nhi,greet\n", {}, InvalidInput, "columns found: 'utterance', 'intent'"),
    ("text,intent\nhi,greet\n", {}, InvalidInput, "no column 'label'"),
    ("text;label\nhi;greet\n", {}, InvalidInput, "no column 'text'"),
    ("text,label\n,x\n  ,y\n", {}, InvalidInput, "no usable rows"),
    ("text,label\nhi,greet\n", {"split": "validation"}, InvalidInput, "Unknown split 'validation'"),
    ("text,label\nhi,greet\n", {"limit": 0}, InvalidInput, "limit must be at least 1"),
], ids=["missing-file", "empty-file", "header-only", "binary", "undecodable", "no-text-column",
        "no-label-column", "semicolons", "all-rows-empty", "bad-split", "zero-limit"])
def test_bad_files_are_refused_and_nothing_is_stored(ctx: Context, tmp_path: Path, content: str | bytes | None,
                                                     kwargs: dict[str, object], error: type[ChainkeeperError],
                                                     words: str) -> None:
    path = tmp_path / "input.csv"
    if content is not None:
        write(path, content)

    with pytest.raises(error) as caught:
        import_csv(ctx, path, actor=STEWARD, **kwargs)  # type: ignore[arg-type]

    assert words in caught.value.message
    assert caught.value.hint  # every refusal says what to do next
    assert list_sources(ctx.db) == []


def test_missing_column_leaves_the_store_empty_on_every_backend(any_ctx: Context, tmp_path: Path) -> None:
    path = write(tmp_path / "wrong.csv", "sentence,label\nhi,greet\n")

    with pytest.raises(InvalidInput, match="columns found: 'sentence', 'label'"):
        import_csv(any_ctx, path, actor=STEWARD)

    assert count_sources(any_ctx.db) == 0
    assert list_entries(any_ctx.db, object_kind="source") == []


def test_a_folder_is_refused_with_a_hint(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is a folder") as caught:
        import_csv(ctx, tmp_path, actor=STEWARD)

    assert ".csv file inside it" in (caught.value.hint or "")


def test_rows_artifact_is_parquet_in_the_artifact_store(ctx: Context, tmp_path: Path) -> None:
    source = import_csv(ctx, write(tmp_path / "a.csv", "text,label\nhello,greet\n"), actor=STEWARD)

    path = ctx.artifacts.path_of(source.rows_artifact)  # type: ignore[attr-defined]

    assert pq.read_table(path).column_names == ["text", "label", "line", "split", "quarantine_reason", "origin"]


def test_package_exports_resolve_without_loading_pyarrow_up_front() -> None:
    # The schema imports chainkeeper.data.tables, so the package must stay light (shells start fast).
    code = ("import sys, chainkeeper.data as d, chainkeeper.core.schema; assert 'pyarrow' not in sys.modules; "
            "assert all(getattr(d, name) is not None for name in d.__all__); assert 'pyarrow' in sys.modules")

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
