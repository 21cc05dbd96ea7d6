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
                  ("old row", "x", "dev", 5)])
    b = snapshot([("card lost", "lost", "dev", 2), ("pin is blocked", "pin", "train", 3), ("fee?", "fees", "test", 4),
                  ("new row", "x", "train", 6)])

    diff = diff_tables(a, b, a_id=1, b_id=2)

    assert diff.counts == {"added": 1, "removed": 1, "changed": 1, "moved": 1, "label_changes": 1}
    assert diff.by_split["train"]["added"] == 1 and diff.by_split["train"]["changed"] == 1
    assert diff.by_split["dev"] == {"added": 0, "removed": 1, "changed": 0, "moved": 1, "label_changes": 0}
    assert diff.by_split["test"]["label_changes"] == 1
    assert diff.examples["changed"][0]["text_a"] == "pin blocked" and diff.examples["changed"][0]["text_b"] == \
        "pin is blocked"
    assert diff.examples["label_changes"][0] == {"text": "fee?", "label_b": "fees", "split_b": "test",
                                                 "label_a": "fee"}


def test_identical_versions_have_an_empty_diff() -> None:
    a = snapshot([("card lost", "lost", "train", 2), ("pin", "pin", "test", 3)])

    diff = diff_tables(a, a)

    assert diff.counts == dict.fromkeys(diff.counts, 0) and diff.by_split == {}


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

    # The second source's five repeats are removed by dedup; its new question is added.
    assert diff.counts["added"] == 1 and diff.counts["removed"] == 0
    assert diff.rows_b == diff.rows_a + 1 and (diff.a, diff.b) == (v1.id, v2.id)
    with pytest.raises(NotFound):
        diff_dataset_versions(any_ctx, v1.id, 999, actor=STEWARD)
