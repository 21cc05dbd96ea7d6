"""Task kinds: unlabelled text and CoNLL token labels become dataset versions training can pick."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.data.ingest import import_csv, import_file
from chainkeeper.data.quality import get_quality_report, render_quality_html
from chainkeeper.data.tables import SqlDatasetVersion
from chainkeeper.data.versions import (
    DatasetTask,
    count_dataset_versions,
    create_dataset_version,
    get_dataset_version,
    read_dataset_rows,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries

STEWARD = Actor(name="dana", roles=frozenset({"data_steward"}))

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def conll_source(ctx: Context, tmp_path: Path, sentences: int = 12) -> int:
    """A CoNLL file: the sample's sentences plus numbered ones (so there are enough to split)."""
    extra = "".join(f"\nShare{i} NN B-NP O\nrose{i} VBD B-VP O\nin IN B-PP O\nParis NNP B-NP B-LOC\n"
                    for i in range(sentences))
    path = tmp_path / "ner.conll"
    path.write_text(CONLL + extra, encoding="utf-8")
    return import_file(ctx, path, actor=STEWARD).id


def folder_source(ctx: Context, tmp_path: Path, documents: int = 10) -> int:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(documents):
        (folder / f"doc{i:02d}.txt").write_text(f"Document {i}:  the  bank opened a branch in town {i}.\n",
                                                 encoding="utf-8")
    (folder / "copy.txt").write_text("Document 0:  the  bank opened a branch in town 0.\n", encoding="utf-8")
    return import_file(ctx, folder, actor=STEWARD).id


def labelled_source(ctx: Context, tmp_path: Path) -> int:
    rows = [f"{label} text {i},{label}" for label in ("a", "b") for i in range(10)]
    path = tmp_path / "labelled.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return import_csv(ctx, path, actor=STEWARD).id


def test_a_folder_of_texts_becomes_an_unlabelled_version(any_ctx: Context, tmp_path: Path) -> None:
    version = create_dataset_version(any_ctx, name="corpus", source_ids=[folder_source(any_ctx, tmp_path)],
                                     actor=STEWARD)

    assert version.task == DatasetTask.UNLABELLED and version.schema["task"] == "unlabelled"
    assert version.labels == [] and version.stats["rows"] == 10  # the copy went in dedup_exact
    assert version.stats["duplicates_removed"] == 1
    assert sum(version.stats["rows_per_split"].values()) == 10 and version.stats["rows_per_split"]["train"] >= 8
    rows = read_dataset_rows(any_ctx, version.id)
    assert rows.column("label").null_count == 10
    assert "Document 3: the bank opened a branch in town 3." in rows.column("text").to_pylist()  # normalised
    assert "tokens" not in rows.column_names
    report = get_quality_report(any_ctx, version.id)
    assert report["task"] == "unlabelled" and "the rows are unlabelled text" in render_quality_html(report)


def test_conll_sentences_become_a_token_classification_version(any_ctx: Context, tmp_path: Path) -> None:
    version = create_dataset_version(any_ctx, name="ner", source_ids=[conll_source(any_ctx, tmp_path)], actor=STEWARD)

    assert version.task == DatasetTask.TOKEN_CLASSIFICATION
    assert version.labels == ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER", "O"]
    # The repeated "Peter Blackburn" sentence went in dedup_exact (the default TOKEN_RECIPE).
    assert [s["name"] for s in version.recipe] == ["drop_empty", "redact_pii", "dedup_exact"]
    assert version.stats["rows"] == 15 and version.stats["duplicates_removed"] == 1
    rows = read_dataset_rows(any_ctx, version.id)
    first = rows.slice(0, 1).to_pylist()[0]
    assert first["tokens"] == ["EU", "rejects", "German", "call", "."]
    assert first["tags"] == ["B-ORG", "O", "B-MISC", "O", "O"]
    assert first["text"] == "EU rejects German call ." and first["label"] is None
    assert all(len(t) == len(g) for t, g in zip(rows.column("tokens").to_pylist(), rows.column("tags").to_pylist(),
                                                strict=True))
    # Tag counts are per token, each in its sentence's split.
    counted = sum(sum(c.values()) for c in version.stats["label_counts"].values())
    assert counted == sum(len(t) for t in rows.column("tokens").to_pylist())
    report = get_quality_report(any_ctx, version.id)
    assert report["task"] == "token_classification" and report["label_distribution"] == version.stats["label_counts"]
    page = render_quality_html(report)
    assert "Tag distribution (tokens)" in page and "B-PER" in page


def test_token_version_content_hash_covers_the_tags(ctx: Context, tmp_path: Path) -> None:
    a = create_dataset_version(ctx, name="ner", source_ids=[conll_source(ctx, tmp_path)], actor=STEWARD)
    relabelled = tmp_path / "b"
    relabelled.mkdir()
    path = relabelled / "ner.conll"
    path.write_text((tmp_path / "ner.conll").read_text().replace("B-ORG", "B-LOC"), encoding="utf-8")
    b = create_dataset_version(ctx, name="ner", source_ids=[import_file(ctx, path, actor=STEWARD).id], actor=STEWARD)

    assert read_dataset_rows(ctx, a.id).column("text").equals(read_dataset_rows(ctx, b.id).column("text"))
    assert a.content_hash != b.content_hash


def test_any_source_can_feed_an_unlabelled_version(ctx: Context, tmp_path: Path) -> None:
    version = create_dataset_version(ctx, name="pretrain", source_ids=[labelled_source(ctx, tmp_path),
                                     conll_source(ctx, tmp_path)], actor=STEWARD, task="unlabelled")

    rows = read_dataset_rows(ctx, version.id)
    assert version.task == DatasetTask.UNLABELLED and rows.num_rows == 20 + 15
    assert rows.column("label").null_count == rows.num_rows and "tags" not in rows.column_names


@pytest.mark.parametrize(("make", "kwargs", "message"), [
    pytest.param(lambda c, p: [labelled_source(c, p), folder_source(c, p)], {}, "different kinds of rows",
                 id="labelled-and-unlabelled"),
    pytest.param(lambda c, p: [conll_source(c, p)], {"task": "text_classification"}, "token_classification rows",
                 id="token-rows-as-text-classification"),
    pytest.param(lambda c, p: [conll_source(c, p)], {"recipe": ["normalize_text", "dedup_exact"]},
                 "would no longer match the tokens", id="text-rewriting-step-on-tokens"),
    pytest.param(lambda c, p: [folder_source(c, p)], {"task": "summarisation"}, "Unknown task kind",
                 id="unknown-task"),
])
def test_versions_that_cannot_hold_one_task_are_refused_and_nothing_is_stored(ctx: Context, tmp_path: Path, make,
                                                                             kwargs, message) -> None:
    ids = make(ctx, tmp_path)
    entries = len(list_entries(ctx.db))

    with pytest.raises(InvalidInput, match=message) as caught:
        create_dataset_version(ctx, name="mixed", source_ids=ids, actor=STEWARD, **kwargs)

    assert caught.value.hint
    assert count_dataset_versions(ctx.db) == 0 and len(list_entries(ctx.db)) == entries


def test_versions_made_before_task_kinds_read_as_text_classification(ctx: Context, tmp_path: Path) -> None:
    version = create_dataset_version(ctx, name="intents", source_ids=[labelled_source(ctx, tmp_path)], actor=STEWARD)
    assert version.task == DatasetTask.TEXT_CLASSIFICATION

    with ctx.db.session() as s:
        row = s.get(SqlDatasetVersion, version.id)
        row.schema = {k: v for k, v in row.schema.items() if k != "task"}
    assert get_dataset_version(ctx.db, version.id).task == DatasetTask.TEXT_CLASSIFICATION


@pytest.mark.datasets
def test_conll2003_dev_becomes_a_token_version_with_the_nine_bio_tags(ctx: Context, datasets_dir: Path) -> None:
    source = import_file(ctx, datasets_dir / "conll2003" / "dev.txt", actor=STEWARD, format="conll")
    version = create_dataset_version(ctx, name="conll2003-dev", source_ids=[source.id], actor=STEWARD)

    assert version.task == DatasetTask.TOKEN_CLASSIFICATION
    assert version.labels == ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"]
    assert version.stats["rows"] + version.stats["duplicates_removed"] == 3250


@pytest.mark.datasets
def test_conll2003_with_declared_splits_drops_repeats_and_keeps_each_sentence_in_one_split(
        ctx: Context, datasets_dir: Path) -> None:
    # Issue 14 item 12: the declared training file's repeated sentences were all kept ("removed 0 duplicates").
    ids = [import_file(ctx, datasets_dir / "conll2003" / f"{split}.txt", actor=STEWARD, format="conll",
                       split=split).id for split in ("train", "dev", "test")]
    version = create_dataset_version(ctx, name="conll2003", source_ids=ids, actor=STEWARD)

    dedup = next(s for s in version.recipe if s["name"] == "dedup_exact")
    print(f"\nCoNLL-2003: {version.stats['rows_per_split']}, dedup {dedup['details']}, "
          f"splits {version.stats['split_assignment']}")
    assert dedup["details"]["removed_from"].get("train", 0) > 0
    assert version.stats["duplicates_removed"] == dedup["details"]["duplicates"] > 0
    assert version.stats["leakage"]["texts"] == 0
