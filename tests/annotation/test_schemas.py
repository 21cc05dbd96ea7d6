"""Label schemas: versioned, checked, and never rewriting what was labelled."""

from __future__ import annotations

import pytest

from chainkeeper.annotation.export import export_project
from chainkeeper.annotation.projects import assign_batches, change_schema, create_project
from chainkeeper.annotation.schemas import LabelDef, check_value, define_schema, get_schema, list_schemas
from chainkeeper.annotation.spans import bio_tags
from chainkeeper.annotation.tasks import annotator_queue, save_annotation
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden, InvalidInput
from chainkeeper.data.versions import DatasetVersion, read_dataset_rows
from chainkeeper.governance.ledger import list_entries
from tests.annotation.conftest import ANA, BEN, STEWARD


def test_defining_a_schema_again_adds_a_version_with_descriptions(ctx: Context) -> None:
    first = define_schema(ctx.db, name="sentiment", kind="single", labels=["pos: glad", "neg: unhappy"],
                          guidelines="Read the whole message.", actor=STEWARD)
    second = define_schema(ctx.db, name="sentiment", kind="single",
                           labels=[{"name": "pos", "description": "glad"}, "neg", "neutral"], actor=STEWARD)
    assert (first.version, second.version) == (1, 2)
    assert first.labels == (LabelDef("pos", "glad"), LabelDef("neg", "unhappy"))
    assert get_schema(ctx.db, first.id).label_names == ["pos", "neg"]  # the old version is untouched
    assert [s.version for s in list_schemas(ctx.db, name="sentiment")] == [2, 1]
    assert [e.action for e in list_entries(ctx.db, object_kind="label_schema")] == ["annotation.schema.define"] * 2


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({"labels": []}, "at least one label", id="no-labels"),
        pytest.param({"labels": ["a", "a"]}, "more than once", id="repeated"),
        pytest.param({"labels": ["a|b"]}, "without '|'", id="pipe"),
        pytest.param({"kind": "regression"}, "Unknown schema kind", id="kind"),
        pytest.param({"name": "no spaces"}, "not valid", id="name"),
    ],
)
def test_a_bad_schema_is_refused_and_nothing_is_stored(ctx: Context, kwargs: dict, fragment: str) -> None:
    args = {"name": "s", "kind": "single", "labels": ["a", "b"], **kwargs}
    with pytest.raises(InvalidInput, match=fragment):
        define_schema(ctx.db, actor=STEWARD, **args)
    assert list_schemas(ctx.db) == []


def test_only_a_steward_defines_schemas(ctx: Context) -> None:
    with pytest.raises(Forbidden, match="annotation.manage"):
        define_schema(ctx.db, name="s", kind="single", labels=["a"], actor=ANA)


def test_answers_are_checked_against_each_kind(ctx: Context) -> None:
    single = define_schema(ctx.db, name="one", kind="single", labels=["a", "b"], actor=STEWARD)
    multi = define_schema(ctx.db, name="many", kind="multi", labels=["a", "b", "c"], actor=STEWARD)
    spans = define_schema(ctx.db, name="ner", kind="spans", labels=["PER", "LOC"], actor=STEWARD)
    assert check_value(single, {"label": "b"}, "t") == {"label": "b"}
    assert check_value(multi, {"labels": ["c", "a", "c"]}, "t") == {"labels": ["a", "c"]}
    text = "Anna flew to New York"
    assert check_value(spans, {"spans": [[13, 21, "LOC"], [0, 4, "PER"]]}, text) == {
        "spans": [[0, 4, "PER"], [13, 21, "LOC"]]}
    with pytest.raises(InvalidInput, match="'z' is not in schema one v1"):
        check_value(single, {"label": "z"}, "t")
    with pytest.raises(InvalidInput, match="one label per item"):
        check_value(single, {"labels": ["a"]}, "t")
    with pytest.raises(InvalidInput, match="outside the text"):
        check_value(spans, {"spans": [[0, 99, "PER"]]}, text)
    with pytest.raises(InvalidInput, match="overlap"):
        check_value(spans, {"spans": [[0, 4, "PER"], [2, 8, "LOC"]]}, text)


def test_spans_export_as_bio_tags() -> None:
    tokens, tags = bio_tags("Anna flew to New York .", [[0, 4, "PER"], [13, 21, "LOC"]])
    assert tokens == ["Anna", "flew", "to", "New", "York", "."]
    assert tags == ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]


def test_moving_a_project_to_a_new_schema_version_keeps_earlier_answers(ctx: Context,
                                                                        version: DatasetVersion) -> None:
    v1 = define_schema(ctx.db, name="coarse", kind="single", labels=["card", "money"], actor=STEWARD)
    project = create_project(ctx, name="p", dataset_version_id=version.id, schema_id=v1.id, actor=STEWARD,
                             row_filter={"limit": 4})
    assign_batches(ctx, project.id, annotators=[ANA.name, BEN.name], actor=STEWARD)
    for task in annotator_queue(ctx, project.id, ANA):
        save_annotation(ctx, project.id, task.item_id, ANA, expected_version=0, value={"label": "money"})
    v2 = define_schema(ctx.db, name="coarse", kind="single", labels=["card", "transfer"], actor=STEWARD)
    other = define_schema(ctx.db, name="fine", kind="single", labels=["card"], actor=STEWARD)
    with pytest.raises(InvalidInput, match="Pick a version of coarse"):
        change_schema(ctx, project.id, other.id, actor=STEWARD)
    change_schema(ctx, project.id, v2.id, actor=STEWARD)
    ben = annotator_queue(ctx, project.id, BEN)
    with pytest.raises(InvalidInput, match="'money' is not in schema coarse v2"):
        save_annotation(ctx, project.id, ben[0].item_id, BEN, expected_version=0, value={"label": "money"})
    for task in ben:
        save_annotation(ctx, project.id, task.item_id, BEN, expected_version=0, value={"label": "transfer"})
    # ana's answers were not rewritten: still "money", still under v1.
    assert {(t.answer.value["label"], t.answer.schema_id) for t in annotator_queue(ctx, project.id, ANA)} == {
        ("money", v1.id)}
    rows = read_dataset_rows(ctx, export_project(ctx, project.id, STEWARD).id).to_pylist()
    assert sorted((r["label"], r["schema_version"]) for r in rows) == [
        ("money", "coarse v1"), ("money", "coarse v1"), ("transfer", "coarse v2"), ("transfer", "coarse v2")]
