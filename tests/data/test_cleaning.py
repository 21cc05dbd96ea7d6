"""Cleaning steps on hand-made rows: normalisation, empty rows, duplicates and conflicts."""

from __future__ import annotations

import json
from dataclasses import asdict

import pyarrow as pa
import pytest

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data.cleaning import (
    BASIC_RECIPE,
    STEPS,
    apply_recipe,
    check_recipe,
    dedup_exact,
    drop_empty,
    normalize_text,
    recipe_with_redaction,
    redact_pii,
)


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
    assert report.details == {"duplicates": 2, "conflicts": 1, "removed_from": {"undeclared": 2},
                              "repeats": [{"kept_in": "undeclared", "removed_from": "undeclared", "rows": 2,
                                           "why": "repeat within one split: the first row stays"}]}
    assert report.examples[1] == {"before": "a", "after": None, "removed_from": "undeclared",
                                  "kept_in": "undeclared", "label": "z", "kept_label": "x", "conflict": True}


def test_dedup_keeps_a_declared_row_over_its_undeclared_copy_and_removes_repeats_inside_a_split() -> None:
    # Issue 14 item 12: declaring the split switched de-duplication off inside it ("s" twice in test).
    table, report = dedup_exact(rows(["q", "r", "q", "s", "s"], labels=["x", "x", "x", "y", "y"],
                                     splits=[None, None, "test", "test", "test"]))

    assert table.to_pylist() == [{"text": "r", "label": "x", "split": None},
                                 {"text": "q", "label": "x", "split": "test"},
                                 {"text": "s", "label": "y", "split": "test"}]
    assert report.details["duplicates"] == 2
    assert report.details["removed_from"] == {"test": 1, "undeclared": 1}
    assert {(r["kept_in"], r["removed_from"], r["rows"]) for r in report.details["repeats"]} == {
        ("test", "test", 1), ("test", "undeclared", 1)}


def test_dedup_across_declared_splits_keeps_test_over_dev_over_train_and_says_why() -> None:
    table, report = dedup_exact(rows(["q", "q", "r", "r", "q"], splits=["train", "test", "train", "dev", "dev"]))

    assert table.to_pylist() == [{"text": "q", "label": "x", "split": "test"},
                                 {"text": "r", "label": "x", "split": "dev"}]
    repeats = {(r["kept_in"], r["removed_from"]): (r["rows"], r["why"]) for r in report.details["repeats"]}
    assert repeats == {
        ("test", "train"): (1, "declared test wins over declared train: the text stays in one split"),
        ("test", "dev"): (1, "declared test wins over declared dev: the text stays in one split"),
        ("dev", "train"): (1, "declared dev wins over declared train: the text stays in one split")}
    assert report.details["duplicates"] == 3 and report.details["removed_from"] == {"dev": 1, "train": 2}


def tokens_rows(sentences: list[tuple[list[str], list[str], str | None]]) -> pa.Table:
    return pa.table({"text": [" ".join(t) for t, _, _ in sentences], "label": pa.nulls(len(sentences), pa.string()),
                     "split": pa.array([s for _, _, s in sentences], pa.string()),
                     "tokens": [t for t, _, _ in sentences], "tags": [g for _, g, _ in sentences]})


def test_dedup_on_token_data_keys_by_tokens_and_tags_and_reports_tag_conflicts() -> None:
    # Issue 14 item 12: same tokens, other tags were collapsed to the first and called "0 label conflicts".
    eu, other = ["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]
    table, report = dedup_exact(tokens_rows([
        (eu, ["B-ORG", "O", "B-MISC", "O"], "train"),
        (other, ["B-PER", "I-PER"], "train"),
        (eu, ["B-ORG", "O", "B-MISC", "O"], "train"),   # a repeat: removed
        (eu, ["B-LOC", "O", "B-MISC", "O"], "train"),   # a conflict: kept and counted
        (other, ["B-PER", "I-PER"], "train"),           # a repeat: removed
    ]))

    assert table.column("tags").to_pylist() == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"],
                                                ["B-LOC", "O", "B-MISC", "O"]]
    assert report.details["duplicates"] == 2 and report.details["conflicts"] == 1
    assert report.examples[0] == {"text": "EU rejects German call", "tags": ["B-LOC", "O", "B-MISC", "O"],
                                  "kept_tags": ["B-ORG", "O", "B-MISC", "O"], "conflict": True}


def test_basic_recipe_catches_duplicates_that_differ_only_in_width_and_spacing() -> None:
    table, reports = apply_recipe(rows(["Card ２ days late", "card 2 days late", " Card  2 days late ", "", "pin"],
                                       labels=["a", "a", "b", "a", "c"]), BASIC_RECIPE)

    assert table.column("text").to_pylist() == ["Card 2 days late", "card 2 days late", "pin"]
    assert [(r.name, r.rows_in, r.rows_out) for r in reports] == [
        ("normalize_text", 5, 5), ("drop_empty", 5, 4), ("redact_pii", 4, 4), ("dedup_exact", 4, 3)]
    assert reports[3].details["conflicts"] == 1


def test_basic_recipe_redacts_personal_data_before_de_duplicating() -> None:
    # Issue 14 item 7: redaction is part of the default recipe; two texts differing only in the number are one.
    table, reports = apply_recipe(rows(["call me on 13800000000", "call me on 13912345678", "mail a@example.org"]),
                                  BASIC_RECIPE)

    assert table.column("text").to_pylist() == ["call me on [PHONE]", "mail [EMAIL]"]
    assert reports[2].details["pii_found"]["phone"] == 2 and reports[3].details["duplicates"] == 1


def test_token_redaction_replaces_whole_tokens_and_keeps_tags_aligned() -> None:
    table, report = redact_pii(tokens_rows([(["Call", "138", "0000", "0000", "or", "a@b.org"],
                                             ["O", "O", "O", "O", "O", "B-MISC"], None),
                                            (["Peter", "Blackburn"], ["B-PER", "I-PER"], None)]))

    assert table.column("tokens").to_pylist() == [["Call", "[PHONE]", "[PHONE]", "[PHONE]", "or", "[EMAIL]"],
                                                  ["Peter", "Blackburn"]]
    assert table.column("tags").to_pylist()[0] == ["O", "O", "O", "O", "O", "B-MISC"]
    assert table.column("text").to_pylist()[0] == "Call [PHONE] [PHONE] [PHONE] or [EMAIL]"
    assert report.details["pii_found"]["phone"] == 1 and report.details["rows_redacted"] == 1


def test_redaction_is_added_to_a_recipe_without_it_unless_turned_off() -> None:
    recipe = check_recipe(["normalize_text", "dedup_near", "dedup_exact"])

    assert [e["step"] for e in recipe_with_redaction(recipe, redact=True)] == [
        "normalize_text", "redact_pii", "dedup_near", "dedup_exact"]
    assert recipe_with_redaction(recipe, redact=False) == recipe
    with pytest.raises(InvalidInput, match="redaction is turned off"):
        recipe_with_redaction(check_recipe(["redact_pii"]), redact=False)


def test_reports_serialise_to_json() -> None:
    _, reports = apply_recipe(rows(["Ａ", "A", ""]), BASIC_RECIPE)

    restored = json.loads(json.dumps([asdict(r) for r in reports]))

    assert [r["name"] for r in restored] == BASIC_RECIPE
    assert restored[3]["details"]["duplicates"] == 1


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
