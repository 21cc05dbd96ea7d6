"""Connectors: each format imports with its rows' origins; bad input is quarantined or refused, leaving nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput, NotFound
from chainkeeper.data.connectors import read_conll, sniff_delimiter
from chainkeeper.data.ingest import import_file
from chainkeeper.data.sources import count_sources, read_source_rows
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.tables import SqlAuditEntry

STEWARD = Actor(name="dana", roles=frozenset({"data_steward"}))


def write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def audit_count(ctx: Context) -> int:
    with ctx.db.session() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(SqlAuditEntry)) or 0)


def all_rows(ctx: Context, source_id: int) -> list[dict[str, object]]:
    return read_source_rows(ctx, source_id, include_quarantined=True).to_pylist()


def test_tsv_is_read_by_extension_and_records_format_and_origin(any_ctx: Context, tmp_path: Path) -> None:
    path = write(tmp_path / "intents.tsv", "text\tlabel\nhello, there\tgreet\nbye\tleave\n")

    source = import_file(any_ctx, path, actor=STEWARD)

    assert (source.format, source.encoding, source.rows_accepted, source.created_by) == ("tsv", "utf-8", 2, "dana")
    assert source.options["delimiter"] == "\t"
    assert [r["origin"] for r in all_rows(any_ctx, source.id)] == ["intents.tsv:2", "intents.tsv:3"]
    assert read_source_rows(any_ctx, source.id).column("text").to_pylist() == ["hello, there", "bye"]


def test_semicolon_csv_delimiter_is_sniffed() -> None:
    assert sniff_delimiter("text;label\nhola;greet\nadios;leave\n", suffix=".csv") == ";"


def test_gbk_csv_is_decoded_and_the_encoding_recorded(ctx: Context, tmp_path: Path) -> None:
    path = write(tmp_path / "zh.csv", "text,label\n我的卡丢了,lost_card\n", encoding="gbk")

    source = import_file(ctx, path, actor=STEWARD)

    assert source.encoding == "gb18030"
    assert read_source_rows(ctx, source.id).column("text").to_pylist() == ["我的卡丢了"]


def test_ragged_csv_rows_are_quarantined_with_reason_and_kept(ctx: Context, tmp_path: Path) -> None:
    path = write(tmp_path / "ragged.csv", "text,label\nfine,a\nshort\ntoo,many,fields\nok,b\n")

    source = import_file(ctx, path, actor=STEWARD)

    assert (source.rows_accepted, source.rows_quarantined) == (2, 2)
    reasons = {r["origin"]: r["quarantine_reason"] for r in all_rows(ctx, source.id)}
    assert reasons == {"ragged.csv:2": None, "ragged.csv:3": "missing_fields", "ragged.csv:4": "extra_fields",
                       "ragged.csv:5": None}


def test_jsonl_lines_that_are_not_json_are_quarantined(any_ctx: Context, tmp_path: Path) -> None:
    lines = [json.dumps({"text": "hi", "label": "greet", "lang": "en"}), "{not json", "[1, 2]",
             json.dumps({"text": "", "label": "x"}), "", json.dumps({"text": "bye", "label": "leave"})]
    path = write(tmp_path / "rows.jsonl", "\n".join(lines) + "\n")

    source = import_file(any_ctx, path, actor=STEWARD)

    assert (source.format, source.rows_accepted, source.rows_quarantined) == ("jsonl", 2, 3)
    got = [(r["origin"], r["quarantine_reason"]) for r in all_rows(any_ctx, source.id)]
    assert got == [("rows.jsonl:1", None), ("rows.jsonl:2", "invalid_json"), ("rows.jsonl:3", "not_an_object"),
                   ("rows.jsonl:4", "empty_text"), ("rows.jsonl:6", None)]


def test_parquet_rows_have_their_row_index_as_origin(ctx: Context, tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"body": ["a", None, "c"], "intent": ["x", "y", "z"]}), path)

    source = import_file(ctx, path, actor=STEWARD, text_column="body", label_column="intent")

    assert (source.format, source.rows_accepted, source.rows_quarantined) == ("parquet", 2, 1)
    rows = all_rows(ctx, source.id)
    assert [(r["origin"], r["label"], r["quarantine_reason"]) for r in rows] == [
        ("rows.parquet#0", "x", None), ("rows.parquet#1", "y", "empty_text"), ("rows.parquet#2", "z", None)]


def test_folder_of_text_files_is_one_document_each_with_relative_path(ctx: Context, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    write(folder / "a.txt", "First document.\nTwo lines.")
    write(folder / "sub" / "b.txt", "Second document.")
    write(folder / "empty.txt", "  \n")
    write(folder / "image.png", b"\x89PNG\x00\x00")

    source = import_file(ctx, folder, actor=STEWARD)

    assert (source.format, source.rows_accepted, source.rows_quarantined) == ("folder", 2, 1)
    rows = all_rows(ctx, source.id)
    assert [(r["origin"], r["label"], r["quarantine_reason"]) for r in rows] == [
        ("a.txt", None, None), ("empty.txt", None, "empty_text"), ("sub/b.txt", None, None)]
    assert rows[0]["text"] == "First document.\nTwo lines."


def test_conll_sentences_become_token_and_tag_lists() -> None:
    data = (b"-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
            b"Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n")

    parsed = read_conll(data, name="x.conll")

    assert [(r.line, r.tokens, r.tags) for r in parsed.records] == [
        (3, ["EU", "rejects"], ["B-ORG", "O"]), (7, ["Peter", "Blackburn"], ["B-PER", "I-PER"])]
    assert parsed.records[0].text == "EU rejects" and parsed.records[0].origin == "x.conll:3"


@pytest.mark.datasets
def test_conll2003_dev_imports_3250_sentences(ctx: Context, datasets_dir: Path) -> None:
    source = import_file(ctx, datasets_dir / "conll2003" / "dev.txt", actor=STEWARD, format="conll")

    assert (source.format, source.rows_accepted, source.rows_quarantined) == ("conll", 3250, 0)
    rows = read_source_rows(ctx, source.id, include_quarantined=True)
    first = rows.slice(0, 1).to_pylist()[0]
    assert len(first["tokens"]) == len(first["tags"]) > 0 and first["origin"].startswith("dev.txt:")


@pytest.mark.datasets
def test_financial_phrasebank_imports_every_row_with_its_line(ctx: Context, datasets_dir: Path) -> None:
    path = datasets_dir / "financial_sentiment" / "train.csv"
    source = import_file(ctx, path, actor=STEWARD, label_column="label")

    assert (source.format, source.rows_quarantined) == ("csv", 0)
    rows = all_rows(ctx, source.id)
    assert len(rows) == source.rows_accepted > 1_500  # quoted texts with commas stay one field each
    assert {r["label"] for r in rows} == {"negative", "neutral", "positive"}
    assert rows[0]["origin"] == "train.csv:2" and rows[0]["text"].startswith("According to Gran")


def test_conll_txt_is_recognised_by_its_docstart_line(ctx: Context, tmp_path: Path) -> None:
    path = write(tmp_path / "ner.txt", "-DOCSTART- -X- O O\n\nParis NNP B-NP B-LOC\n")

    assert import_file(ctx, path, actor=STEWARD).format == "conll"


@pytest.mark.parametrize(("name", "content", "kwargs", "error", "match"), [
    ("empty.csv", b"", {}, InvalidInput, "is empty"),
    ("binary.csv", b"PK\x03\x04\x00\x00binary", {}, InvalidInput, "NUL bytes"),
    ("nolabel.csv", b"text,intent\nhi,greet\n", {}, InvalidInput, "no column 'label'"),
    ("nolabel.jsonl", b'{"text": "hi", "intent": "greet"}\n', {}, InvalidInput, "no key 'label'"),
    ("allbad.jsonl", b"{broken\n{also broken\n", {}, InvalidInput, "no usable rows"),
    ("fake.parquet", b"not parquet at all", {}, InvalidInput, "not a readable Parquet"),
    ("data.xlsx", b"whatever", {}, InvalidInput, "Cannot tell the format"),
    ("data.csv", b"text,label\nhi,greet\n", {"format": "yaml"}, InvalidInput, "Unknown format"),
])
def test_bad_input_is_refused_and_leaves_nothing_behind(ctx: Context, tmp_path: Path, name: str, content: bytes,
                                                        kwargs: dict[str, str], error: type[Exception],
                                                        match: str) -> None:
    path = write(tmp_path / name, content)
    before = (count_sources(ctx.db), audit_count(ctx))

    with pytest.raises(error, match=match) as caught:
        import_file(ctx, path, actor=STEWARD, **kwargs)  # type: ignore[arg-type]

    assert caught.value.hint  # type: ignore[attr-defined]
    assert (count_sources(ctx.db), audit_count(ctx)) == before


def test_missing_folder_is_not_found_and_leaves_nothing(ctx: Context, tmp_path: Path) -> None:
    before = (count_sources(ctx.db), audit_count(ctx))

    with pytest.raises(NotFound, match="There is no folder"):
        import_file(ctx, tmp_path / "nowhere", actor=STEWARD, format="folder")

    assert (count_sources(ctx.db), audit_count(ctx)) == before


def test_import_is_audited_with_format_and_schema(ctx: Context, tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"body": "hi"}\n')

    source = import_file(ctx, path, actor=STEWARD, text_column="body", label_column=None)

    with ctx.db.session() as s:
        entry = s.scalars(sa.select(SqlAuditEntry).where(SqlAuditEntry.object_id == str(source.id))).one()
        assert (entry.action, entry.details["format"]) == ("source.import", "jsonl")
        assert entry.details["schema"] == {"text": "body", "label": None, "tokens": None, "tags": None,
                                           "metadata": []}


def test_other_fields_are_kept_as_row_metadata_and_declared_ones_checked(ctx: Context, tmp_path: Path) -> None:
    csv_path = write(tmp_path / "m.csv", "id,text,label,channel\n7,hello,greet,email\n8,bye,leave,chat\n")
    jsonl_path = write(tmp_path / "m.jsonl", json.dumps({"text": "hi", "label": "greet", "lang": "en"}) + "\n")

    source = import_file(ctx, csv_path, actor=STEWARD)
    only_channel = import_file(ctx, csv_path, actor=STEWARD, metadata_columns=["channel"])
    from_jsonl = import_file(ctx, jsonl_path, actor=STEWARD)

    assert [json.loads(r["meta"]) for r in all_rows(ctx, source.id)] == [
        {"id": "7", "channel": "email"}, {"id": "8", "channel": "chat"}]
    assert source.options["schema"]["metadata"] == ["id", "channel"]
    assert json.loads(all_rows(ctx, only_channel.id)[0]["meta"]) == {"channel": "email"}
    assert json.loads(all_rows(ctx, from_jsonl.id)[0]["meta"]) == {"lang": "en"}
    with pytest.raises(InvalidInput, match="no column 'region'"):
        import_file(ctx, csv_path, actor=STEWARD, metadata_columns=["region"])
