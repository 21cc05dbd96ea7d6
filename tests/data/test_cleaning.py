"""Cleaning steps on hand-made rows: normalisation, empty rows, duplicates and conflicts."""

from __future__ import annotations

import json
from dataclasses import asdict

import pyarrow as pa
import pytest

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data.cleaning import BASIC_RECIPE, STEPS, apply_recipe, dedup_exact, drop_empty, normalize_text


def rows(texts: list[str | None], labels: list[str] | None = None, splits: list[str | None] | None = None) -> pa.Table:
    columns: dict[str, list[object]] = {"text": list(texts), "label": labels or ["x"] * len(texts)}
    if splits is not None:
        columns["split"] = list(splits)
    return pa.table(columns, schema=pa.schema([(name, pa.string()) for name in columns]))


@pytest.mark.parametrize(("before", "after"), [
    pytest.param("ＡＢＣ　１２３", "ABC 123", id="full-width-to-half-width"),
    pytest.param("转账失败，怎么办？", "转账失败,怎么办?", id="full-width-punctuation"),
    pytest.param("  where\tis \n\n my   card  ", "where is my card", id="whitespace-collapsed"),
    pytest.param("lost\u00a0card\u3000now", "lost card now", id="unicode-spaces"),
    pytest.param("pi\u200bn\x00 code\x07", "pin code", id="control-and-zero-width-removed"),
    pytest.param("ﬁnal café", "final café", id="compatibility-ligature"),
    pytest.param("already clean", "already clean", id="unchanged"),
])
def test_normalize_text_applies_nfkc_and_collapses_whitespace(before: str, after: str) -> None:
    table, report = normalize_text(rows([before]))

    assert table.column("text").to_pylist() == [after]
    assert report.changed == (before != after)


def test_normalize_text_reports_examples_and_keeps_other_columns() -> None:
    table, report = normalize_text(rows(["Ｈｉ", "ok", None, " a  b ", "ｃ", "ｄ"], labels=list("abcdef")))

    assert table.column("text").to_pylist() == ["Hi", "ok", None, "a b", "c", "d"]
    assert table.column("label").to_pylist() == list("abcdef")
    assert (report.rows_in, report.rows_out, report.changed) == (6, 6, 4)
    assert report.examples == [{"before": "Ｈｉ", "after": "Hi"}, {"before": " a  b ", "after": "a b"},
                               {"before": "ｃ", "after": "c"}]


def test_drop_empty_removes_null_empty_and_blank_texts() -> None:
    table, report = drop_empty(rows(["keep", "", None, "   ", "also"]))

    assert table.column("text").to_pylist() == ["keep", "also"]
    assert (report.rows_in, report.rows_out, report.changed) == (5, 2, 3)
    assert [e["before"] for e in report.examples] == ["", None, "   "]


def test_dedup_keeps_the_first_row_and_counts_a_label_conflict() -> None:
    table, report = dedup_exact(rows(["a", "b", "a", "a", "c"], labels=["x", "y", "x", "z", "y"]))

    assert table.column("text").to_pylist() == ["a", "b", "c"]
    assert table.column("label").to_pylist() == ["x", "y", "y"]
    assert report.details == {"duplicates": 2, "conflicts": 1, "declared_repeats": 0}
    assert report.examples[1] == {"before": "a", "after": None, "label": "z", "kept_label": "x", "conflict": True}


def test_dedup_never_drops_a_declared_split_row_and_removes_its_undeclared_copy() -> None:
    # A benchmark's test rows stay whole; the training copy goes, so test texts never leak into training.
    table, report = dedup_exact(rows(["q", "r", "q", "s", "s"], labels=["x", "x", "x", "y", "y"],
                                     splits=[None, None, "test", "test", "test"]))

    assert table.to_pylist() == [{"text": "r", "label": "x", "split": None},
                                 {"text": "q", "label": "x", "split": "test"},
                                 {"text": "s", "label": "y", "split": "test"},
                                 {"text": "s", "label": "y", "split": "test"}]
    assert report.details == {"duplicates": 1, "conflicts": 0, "declared_repeats": 1}


def test_basic_recipe_catches_duplicates_that_differ_only_in_width_and_spacing() -> None:
    table, reports = apply_recipe(rows(["Card ２ days late", "card 2 days late", " Card  2 days late ", "", "pin"],
                                       labels=["a", "a", "b", "a", "c"]), BASIC_RECIPE)

    assert table.column("text").to_pylist() == ["Card 2 days late", "card 2 days late", "pin"]
    assert [(r.name, r.rows_in, r.rows_out) for r in reports] == [
        ("normalize_text", 5, 5), ("drop_empty", 5, 4), ("dedup_exact", 4, 3)]
    assert reports[2].details["conflicts"] == 1


def test_reports_serialise_to_json() -> None:
    _, reports = apply_recipe(rows(["Ａ", "A", ""]), BASIC_RECIPE)

    restored = json.loads(json.dumps([asdict(r) for r in reports]))

    assert [r["name"] for r in restored] == BASIC_RECIPE
    assert restored[2]["details"]["duplicates"] == 1


def test_unknown_step_is_refused_before_any_step_runs() -> None:
    with pytest.raises(InvalidInput, match="'lowercase'") as caught:
        apply_recipe(rows(["x"]), ["normalize_text", "lowercase"])

    assert all(step in (caught.value.hint or "") for step in STEPS)


def test_a_recipe_given_as_a_string_is_refused() -> None:
    with pytest.raises(InvalidInput, match="list of step names"):
        apply_recipe(rows(["x"]), "normalize_text")


def test_steps_need_a_text_column() -> None:
    with pytest.raises(InvalidInput, match="needs a 'text' column"):
        normalize_text(pa.table({"sentence": ["x"]}))
