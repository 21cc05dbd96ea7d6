"""Diff between dataset versions: rows added, removed, changed, moved, label changes, by split."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import NotFound
from chainkeeper.data.diff import diff_dataset_versions, diff_tables
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.versions import create_dataset_version
from chainkeeper.governance.actors import Actor

STEWARD = Actor(name="dana", roles=frozenset({"data_steward"}))


def snapshot(rows: list[tuple[str, str, str, int]]) -> pa.Table:
    """Rows of (text, label, split, source_line), all from source 1."""
    return pa.table({"row_id": list(range(len(rows))), "text": [r[0] for r in rows], "label": [r[1] for r in rows],
                     "split": [r[2] for r in rows], "source_id": [1] * len(rows), "source_line": [r[3] for r in rows]})


def test_diff_counts_each_kind_of_change_by_split() -> None:
    a = snapshot([("card lost", "lost", "train", 2), ("pin blocked", "pin", "train", 3), ("fee?", "fee", "test", 4),
                  ("old row", "x", "dev", 5), ("top up", "top", "train", 6)])
    b = snapshot([("card lost", "lost", "dev", 2), ("pin  blocked", "pin", "train", 3), ("fee?", "fees", "test", 4),
                  ("new row", "x", "train", 6), ("top up", "top", "train", 9)])

    diff = diff_tables(a, b, a_id=1, b_id=2)

    assert diff.counts == {"added": 1, "removed": 1, "unchanged": 1, "changed": 1, "moved": 1, "label_changes": 1}
    assert diff.by_split["train"] == {"added": 1, "removed": 0, "unchanged": 1, "changed": 1, "moved": 0,
                                      "label_changes": 0}
    assert diff.by_split["dev"] == {"added": 0, "removed": 1, "unchanged": 0, "changed": 0, "moved": 1,
                                    "label_changes": 0}
    assert diff.by_split["test"]["label_changes"] == 1
    assert diff.examples["changed"][0]["text_a"] == "pin blocked" and diff.examples["changed"][0]["text_b"] == \
        "pin  blocked"
    assert diff.examples["label_changes"][0] == {
        "text_a": "fee?", "label_a": "fee", "split_a": "test", "source_a": 1, "line_a": 4,
        "text_b": "fee?", "label_b": "fees", "split_b": "test", "source_b": 1, "line_b": 4}
    assert diff.examples["added"] == [{"text_b": "new row", "label_b": "x", "split_b": "train", "source_b": 1,
                                       "line_b": 6}]


def test_rows_match_by_content_not_by_where_they_were_imported_from() -> None:
    # Issue 14 item 2: the retraining loop re-imports released rows as new sources; 'data diff 1 7' then
    # reported every row added and removed, none unchanged.
    a = snapshot([("card lost", "lost", "train", 2), ("pin blocked", "pin", "test", 3)])
    b = pa.table({"row_id": [0, 1, 2], "text": ["pin blocked", "card lost", "fresh feedback"],
                  "label": ["pin", "lost", "lost"], "split": ["test", "train", "train"], "source_id": [7, 7, 8],
                  "source_line": [2, 3, 2]})

    diff = diff_tables(a, b)

    assert diff.counts == {"added": 1, "removed": 0, "unchanged": 2, "changed": 0, "moved": 0, "label_changes": 0}


def test_token_versions_compare_tags() -> None:
    def tokens(tags: list[str]) -> pa.Table:
        return pa.table({"text": ["EU rejects"], "label": pa.nulls(1, pa.string()), "split": ["train"],
                         "tokens": [["EU", "rejects"]], "tags": [tags]})

    assert diff_tables(tokens(["B-ORG", "O"]), tokens(["B-ORG", "O"])).counts["unchanged"] == 1
    relabelled = diff_tables(tokens(["B-ORG", "O"]), tokens(["B-LOC", "O"]))
    assert relabelled.counts["label_changes"] == 1
    assert relabelled.examples["label_changes"][0]["label_b"] == "B-LOC O"


def test_identical_versions_have_only_unchanged_rows() -> None:
    a = snapshot([("card lost", "lost", "train", 2), ("pin", "pin", "test", 3)])

    diff = diff_tables(a, a)

    assert diff.counts == {**dict.fromkeys(diff.counts, 0), "unchanged": 2}
    assert diff.by_split == {"test": {**dict.fromkeys(diff.counts, 0), "unchanged": 1},
                             "train": {**dict.fromkeys(diff.counts, 0), "unchanged": 1}}


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f"{t},{lb}\n" for t, lb in rows), encoding="utf-8")
    return path


def test_stored_versions_diff_through_the_service(any_ctx: Context, tmp_path: Path) -> None:
    rows = [(f"question {i} about {lb}", lb) for lb in ("a", "b") for i in range(10)]
    first = import_csv(any_ctx, _csv(tmp_path / "one.csv", rows), actor=STEWARD)
    second = import_csv(any_ctx, _csv(tmp_path / "two.csv", rows[:5] + [("a brand new question", "b")]), actor=STEWARD)
    v1 = create_dataset_version(any_ctx, name="d", source_ids=[first.id], actor=STEWARD)
    v2 = create_dataset_version(any_ctx, name="d", source_ids=[first.id, second.id], actor=STEWARD)

    diff = diff_dataset_versions(any_ctx, v1.id, v2.id, actor=STEWARD)

    # The second source's five repeats are removed by dedup; its new question is added, the rest unchanged.
    assert diff.counts["added"] == 1 and diff.counts["removed"] == 0 and diff.counts["unchanged"] == 20
    assert diff.rows_b == diff.rows_a + 1 and (diff.a, diff.b) == (v1.id, v2.id)
    with pytest.raises(NotFound):
        diff_dataset_versions(any_ctx, v1.id, 999, actor=STEWARD)
