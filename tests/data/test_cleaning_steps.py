"""The parameterised cleaning steps: markup, missing values, length, language, labels, conflicts, PII."""

from __future__ import annotations

import json
from dataclasses import asdict

import pyarrow as pa
import pytest

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data.cleaning import (
    FULL_RECIPE,
    apply_recipe,
    check_recipe,
    detect_script,
    filter_language,
    filter_length,
    html_to_text,
    label_conflicts,
    missing_values,
    normalize_labels,
    redact_pii,
    strip_html,
)


def rows(texts: list[str | None], labels: list[str | None] | None = None) -> pa.Table:
    return pa.table({"text": pa.array(texts, pa.string()),
                     "label": pa.array(labels if labels is not None else ["x"] * len(texts), pa.string())})


@pytest.mark.parametrize(("markup", "text"), [
    pytest.param("<p>My card&nbsp;is <b>lost</b></p>", "My card is lost", id="tags-and-nbsp"),
    pytest.param("fees &amp; charges &lt;3", "fees & charges <3", id="entities"),
    pytest.param("line<br>break<li>item</li>", "line break item", id="block-tags-separate-words"),
    pytest.param("<script>alert(1)</script>hello<style>p{}</style>", "hello", id="script-and-style-dropped"),
    pytest.param("&#21345;丢了", "卡丢了", id="numeric-entity-chinese"),
])
def test_html_to_text_keeps_only_visible_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


def test_strip_html_touches_only_rows_with_markup_and_reports_examples() -> None:
    table, report = strip_html(rows(["<i>a</i>", "plain", "x &gt; y", None]))

    assert table.column("text").to_pylist() == ["a", "plain", "x > y", None]
    assert (report.rows_in, report.rows_out, report.changed) == (4, 4, 2)
    assert report.examples[0] == {"before": "<i>a</i>", "after": "a"}


def test_missing_values_drop_fill_and_flag() -> None:
    data = rows(["a", None, "c", " "], ["x", "y", None, "z"])

    dropped, drop_report = missing_values(data)
    filled, _ = missing_values(data, policy="fill", columns=["label"], fill="unknown")
    flagged, flag_report = missing_values(data, policy="flag")

    assert dropped.column("text").to_pylist() == ["a"]
    assert drop_report.details == {"missing_text": 2, "missing_label": 1}
    assert filled.column("label").to_pylist() == ["x", "y", "unknown", "z"]
    assert flagged.column("missing").to_pylist() == [False, True, True, True]
    assert flag_report.rows_out == 4 and flag_report.changed == 3


def test_filter_length_counts_too_short_and_too_long() -> None:
    table, report = filter_length(rows(["a", "abcd", "abcdefgh", None]), min_chars=2, max_chars=5)

    assert table.column("text").to_pylist() == ["abcd"]
    assert report.details == {"too_short": 2, "too_long": 1}


def test_detect_script_tells_cjk_latin_other_and_none() -> None:
    scripts = detect_script(pa.array(["我的卡丢了", "my card is lost", "Моя карта", "1234 !!", "我的 card 丢了"]))

    assert scripts.to_pylist() == ["cjk", "latin", "other", "none", "cjk"]


def test_filter_language_keeps_the_chosen_scripts() -> None:
    table, report = filter_language(rows(["我的卡丢了", "lost card", "Моя карта"]), keep=["cjk"])

    assert table.column("text").to_pylist() == ["我的卡丢了"]
    assert report.details["script_other"] == 1 and report.examples[0]["script"] == "latin"


def test_normalize_labels_folds_case_strips_and_maps_aliases() -> None:
    table, report = normalize_labels(rows(["a", "b", "c", "d"], [" Lost_Card", "lost_card", "CARD LOST", "Fees"]),
                                     aliases={"card lost": "lost_card"})

    assert table.column("label").to_pylist() == ["lost_card", "lost_card", "lost_card", "fees"]
    assert report.details == {"labels_before": 4, "labels_after": 2} and report.changed == 3


@pytest.mark.parametrize(("policy", "texts", "labels"), [
    pytest.param("flag", ["a", "b", "a", "a"], ["x", "y", "z", "x"], id="flag-keeps-all"),
    pytest.param("keep-first", ["a", "b", "a"], ["x", "y", "x"], id="keep-first"),
    pytest.param("drop-all", ["b"], ["y"], id="drop-all"),
])
def test_label_conflict_policies(policy: str, texts: list[str], labels: list[str]) -> None:
    table, report = label_conflicts(rows(["a", "b", "a", "a"], ["x", "y", "z", "x"]), policy=policy)

    assert table.column("text").to_pylist() == texts
    assert table.column("label").to_pylist() == labels
    assert report.details == {"conflicts": 1, "conflict_rows": 3}
    assert report.examples == [{"text": "a", "labels": ["x", "z"]}]


def test_redact_pii_step_counts_per_type_and_never_shows_originals() -> None:
    table, report = redact_pii(rows(["mail anna@example.com", "no pii here", "card 4111 1111 1111 1111"]))

    assert table.column("text").to_pylist() == ["mail [EMAIL]", "no pii here", "card [CARD]"]
    assert report.details["pii_found"]["email"] == 1 and report.details["pii_found"]["card"] == 1
    assert report.details["rows_redacted"] == 2
    assert "anna@example.com" not in json.dumps(asdict(report))


def test_recipe_entries_take_parameters_and_reports_carry_them() -> None:
    _, reports = apply_recipe(rows(["hi", "hello there"]),
                              ["normalize_text", {"step": "filter_length", "min_chars": 3}])

    assert [(r.name, r.params, r.rows_out) for r in reports] == [("normalize_text", {}, 2), ("filter_length",
                                                                                            {"min_chars": 3}, 1)]


@pytest.mark.parametrize(("recipe", "message"), [
    pytest.param([{"step": "filter_length", "minimum": 3}], "'minimum'", id="unknown-parameter"),
    pytest.param([{"step": "redact_pii", "mode": "blur"}], "'blur'", id="bad-value"),
    pytest.param([{"step": "nope"}], "'nope'", id="unknown-step"),
    pytest.param([{"min_chars": 3}], "neither a step name", id="entry-without-step"),
    pytest.param([{"step": "filter_length", "min_chars": 9, "max_chars": 3}], "below min_chars", id="max-below-min"),
])
def test_bad_recipes_are_refused_before_any_step_runs(recipe: list[object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_recipe(recipe)  # type: ignore[arg-type]


def test_full_recipe_runs_and_its_reports_serialise_to_json() -> None:
    data = rows(["<b>Ｍｙ card</b> is lost, mail a@b.com", "My card is lost, mail a@b.com", "x", "", "卡丢了 怎么办"],
                ["Lost", "lost", "lost", "lost", "Lost "])

    table, reports = apply_recipe(data, FULL_RECIPE)

    assert table.column("text").to_pylist() == ["My card is lost, mail [EMAIL]", "卡丢了 怎么办"]
    assert set(table.column("label").to_pylist()) == {"lost"}
    json.dumps([asdict(r) for r in reports])
