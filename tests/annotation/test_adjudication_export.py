"""Adjudication, agreement figures, export to a labelled dataset version, and lineage."""

from __future__ import annotations

import pytest

from chainkeeper.annotation.adjudication import adjudicate_item, adjudication_queue, list_decisions, resolve_disputes
from chainkeeper.annotation.export import export_project
from chainkeeper.annotation.figures import project_figures
from chainkeeper.annotation.projects import assign_batches, create_project, get_project
from chainkeeper.annotation.schemas import LabelSchema, define_schema
from chainkeeper.annotation.tasks import annotator_queue, save_annotation
from chainkeeper.annotation.trace import row_lineage
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput
from chainkeeper.data.versions import DatasetVersion, get_dataset_version, read_dataset_rows
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import resolve_task
from tests.annotation.conftest import ANA, BEN, ENGINEER, STEWARD


def _labelled_project(ctx: Context, version: DatasetVersion, schema: LabelSchema) -> tuple[int, dict[int, str]]:
    """Every item labelled by both annotators; ben disagrees on every third overlap item.
    Returns the project id and the gold label of each item."""
    project = create_project(ctx, name="p", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                             overlap_k=2, overlap_fraction=0.6)
    assign_batches(ctx, project.id, annotators=[ANA.name, BEN.name], actor=STEWARD)
    rows = read_dataset_rows(ctx, version.id).to_pylist()
    gold_by_row = {r["row_id"]: r["label"] for r in rows}
    gold = {}
    for actor in (ANA, BEN):
        for n, task in enumerate(annotator_queue(ctx, project.id, actor)):
            label = gold_by_row[task.row_id]
            gold[task.item_id] = label
            if actor is BEN and task.overlap and n % 3 == 0:
                label = "close_account" if label != "close_account" else "change_pin"
            save_annotation(ctx, project.id, task.item_id, actor, expected_version=0, value={"label": label},
                            seconds=4.0)
    return project.id, gold


def test_disagreements_go_to_the_steward_and_decisions_are_recorded(ctx: Context, version: DatasetVersion,
                                                                    schema: LabelSchema) -> None:
    project_id, gold = _labelled_project(ctx, version, schema)
    queue = adjudication_queue(ctx, project_id, STEWARD)
    assert queue and all(d.state == "disputed" and len(d.answers) == 2 for d in queue)
    with pytest.raises(Forbidden, match="annotation.adjudicate"):
        adjudication_queue(ctx, project_id, ANA)
    first = queue[0]
    with pytest.raises(Conflict, match="changed since you loaded it"):
        adjudicate_item(ctx, project_id, first.item_id, STEWARD, value={"label": gold[first.item_id]},
                        expected_version=first.version - 1)
    with pytest.raises(InvalidInput, match="not in schema"):
        adjudicate_item(ctx, project_id, first.item_id, STEWARD, value={"label": "nope"},
                        expected_version=first.version)
    decision = adjudicate_item(ctx, project_id, first.item_id, STEWARD, value={"label": gold[first.item_id]},
                               expected_version=first.version, note="ana followed the guidelines")
    assert decision.decided_by == "stella" and decision.method == "steward"
    # A majority vote of two disagreeing annotators is a tie: it decides nothing.
    tied = resolve_disputes(ctx, project_id, STEWARD, method="majority")
    assert tied["decided"] == [] and len(tied["left"]) == len(queue) - 1
    result = resolve_disputes(ctx, project_id, STEWARD, method="dawid_skene")
    assert sorted(result["decided"]) == sorted(d.item_id for d in queue[1:]) and result["left"] == []
    # Two annotators cannot tell Dawid-Skene who is right; it still estimates and records both.
    assert set(result["reliability"]) == {"ana", "ben"} and all(0 < r <= 1 for r in result["reliability"].values())
    assert adjudication_queue(ctx, project_id, STEWARD) == []
    entries = list_entries(ctx.db, object_kind="annotation_item", limit=1000)
    assert {(e.actor, e.details["method"]) for e in entries} == {("stella", "steward"), ("stella", "dawid_skene")}
    assert len(list_decisions(ctx, project_id, STEWARD)) == len(queue)
    assert verify_ledger(ctx.db).ok


def test_figures_measure_agreement_and_each_annotator(ctx: Context, version: DatasetVersion,
                                                      schema: LabelSchema) -> None:
    project_id, _ = _labelled_project(ctx, version, schema)
    figures = project_figures(ctx, project_id, STEWARD)
    progress, agreement = figures["progress"], figures["agreement"]
    assert progress["items"] == version.stats["rows"] and progress["disputed"] > 0
    assert progress["settled"] + progress["disputed"] == progress["items"]
    assert agreement["annotators"] == ["ana", "ben"] and agreement["overlap_items"] == round(progress["items"] * 0.6)
    assert 0 < agreement["cohen_kappa"]["ana|ben"] < 1 and 0 < agreement["percent_agreement"] < 1
    assert agreement["fleiss_kappa"] is not None and agreement["krippendorff_alpha"] is not None
    assert set(figures["annotators"]) == {"ana", "ben"}
    with pytest.raises(Forbidden):
        project_figures(ctx, project_id, ANA)


def test_export_makes_a_labelled_version_traceable_to_its_annotators(ctx: Context, version: DatasetVersion,
                                                                     schema: LabelSchema) -> None:
    project_id, gold = _labelled_project(ctx, version, schema)
    with pytest.raises(Conflict, match="still await adjudication"):
        export_project(ctx, project_id, STEWARD)
    for d in adjudication_queue(ctx, project_id, STEWARD):
        adjudicate_item(ctx, project_id, d.item_id, STEWARD, value={"label": gold[d.item_id]},
                        expected_version=d.version)
    with pytest.raises(Forbidden):
        export_project(ctx, project_id, ANA)
    labelled = export_project(ctx, project_id, STEWARD)
    assert (labelled.name, labelled.version, labelled.state) == ("intents", 2, "draft")
    rows = read_dataset_rows(ctx, labelled.id).to_pylist()
    parent = {r["row_id"]: r for r in read_dataset_rows(ctx, version.id).to_pylist()}
    assert len(rows) == version.stats["rows"]
    for r in rows:
        assert r["label"] == parent[r["parent_row_id"]]["label"] and r["text"] == parent[r["parent_row_id"]]["text"]
        assert r["schema_version"] == "intents v1" and r["labelled_at"] is not None
    overlap = [r for r in rows if len(r["annotators"]) == 2]
    assert overlap and all(r["agreement"] in (0.5, 1.0) for r in overlap)
    assert {r["method"] for r in rows} == {"single", "agreed", "steward"}
    assert labelled.stats["annotation"]["agreement"]["cohen_kappa"]["ana|ben"] is not None
    assert get_project(ctx.db, project_id).exported_version_id == labelled.id
    with pytest.raises(Conflict, match="exported already"):
        export_project(ctx, project_id, STEWARD)

    decided = next(r for r in rows if r["method"] == "steward")
    tree = row_lineage(ctx, labelled.id, decided["row_id"], ENGINEER)
    kinds = [(n.kind, n.attrs.get("annotator") or n.attrs.get("decided_by")) for n in tree.walk()]
    assert ("annotation", "ana") in kinds and ("annotation", "ben") in kinds and ("adjudication", "stella") in kinds
    with pytest.raises(InvalidInput, match="was not labelled by an annotation project"):
        row_lineage(ctx, version.id, 0, ENGINEER)


def test_nothing_to_export_is_a_clear_error(ctx: Context, version: DatasetVersion, schema: LabelSchema) -> None:
    project = create_project(ctx, name="p", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD)
    with pytest.raises(InvalidInput, match="Nothing to export"):
        export_project(ctx, project.id, STEWARD)
    assert get_project(ctx.db, project.id).state == "open"


def test_a_span_project_exports_bio_tags_and_span_f1(ctx: Context, version: DatasetVersion) -> None:
    schema = define_schema(ctx.db, name="ner", kind="spans", labels=["AMOUNT", "PLACE"], actor=STEWARD)
    project = create_project(ctx, name="spans", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                             overlap_k=2, overlap_fraction=1.0, row_filter={"limit": 3})
    assign_batches(ctx, project.id, annotators=[ANA.name, BEN.name], actor=STEWARD)
    for actor in (ANA, BEN):
        for task in annotator_queue(ctx, project.id, actor):
            end = task.text.find(" ") if " " in task.text else min(2, len(task.text))
            save_annotation(ctx, project.id, task.item_id, actor, expected_version=0,
                            value={"spans": [[0, end, "PLACE"]]})
    figures = project_figures(ctx, project.id, STEWARD)
    assert figures["agreement"]["span_f1"]["ana|ben"]["f1"] == 1.0
    labelled = export_project(ctx, project.id, STEWARD)
    rows = read_dataset_rows(ctx, labelled.id).to_pylist()
    assert len(rows) == 3 and all(r["tags"][0] == "B-PLACE" for r in rows)


def test_a_multi_label_project_compares_label_sets_and_exports_them(ctx: Context, version: DatasetVersion) -> None:
    schema = define_schema(ctx.db, name="topics", kind="multi", labels=["card", "money", "account"], actor=STEWARD)
    project = create_project(ctx, name="multi", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                             overlap_k=2, overlap_fraction=1.0, row_filter={"limit": 2})
    assign_batches(ctx, project.id, annotators=[ANA.name, BEN.name], actor=STEWARD)
    first, second = (t.item_id for t in annotator_queue(ctx, project.id, ANA))
    for actor, sets in ((ANA, (["money", "card"], ["account"])), (BEN, (["card", "money"], ["account", "card"]))):
        for item_id, labels in zip((first, second), sets, strict=True):
            save_annotation(ctx, project.id, item_id, actor, expected_version=0, value={"labels": labels})
    disputes = adjudication_queue(ctx, project.id, STEWARD)
    assert [d.item_id for d in disputes] == [second]  # the same set in another order is agreement
    assert resolve_disputes(ctx, project.id, STEWARD, method="majority")["left"] == [second]  # a tie
    adjudicate_item(ctx, project.id, second, STEWARD, value={"labels": ["account"]},
                    expected_version=disputes[0].version)
    rows = read_dataset_rows(ctx, export_project(ctx, project.id, STEWARD).id).to_pylist()
    assert sorted((r["label"], tuple(r["labels"])) for r in rows) == [("account", ("account",)),
                                                                      ("card|money", ("card", "money"))]


def test_the_chain_lineage_of_a_labelled_version_names_its_annotators(ctx: Context, version: DatasetVersion,
                                                                      schema: LabelSchema) -> None:
    from chainkeeper.chain.lineage import lineage_of

    project_id, gold = _labelled_project(ctx, version, schema)
    for d in adjudication_queue(ctx, project_id, STEWARD):
        adjudicate_item(ctx, project_id, d.item_id, STEWARD, value={"label": gold[d.item_id]},
                        expected_version=d.version)
    labelled = export_project(ctx, project_id, STEWARD)

    tree = lineage_of(ctx, "dataset_version", str(labelled.id), actor=ENGINEER)
    node = next(n for n in tree.walk() if n.kind == "annotation_project")
    rows = read_dataset_rows(ctx, labelled.id).to_pylist()
    assert node.attrs["annotators"] == {name: sum(name in r["annotators"] for r in rows) for name in ("ana", "ben")}
    assert node.attrs["adjudicators"] == {"stella": sum(r["decided_by"] == "stella" for r in rows)}
    assert "labelled by ana" in node.label and "adjudicated by stella" in node.label


def test_an_exported_span_project_is_token_classification_and_trains_a_tagger(ctx: Context,
                                                                             version: DatasetVersion) -> None:
    """Regression (issue 13): the export froze its own rows without the task, so a span
    project's version read back as text classification and training picked a classifier."""
    schema = define_schema(ctx.db, name="ner", kind="spans", labels=["PLACE"], actor=STEWARD)
    project = create_project(ctx, name="spans", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                             row_filter={"limit": 4})
    assign_batches(ctx, project.id, annotators=[ANA.name], actor=STEWARD)
    for task in annotator_queue(ctx, project.id, ANA):
        end = task.text.find(" ") if " " in task.text else min(2, len(task.text))
        save_annotation(ctx, project.id, task.item_id, ANA, expected_version=0, value={"spans": [[0, end, "PLACE"]]})
    exported = export_project(ctx, project.id, STEWARD)

    labelled = get_dataset_version(ctx.db, exported.id)
    assert labelled.task == "token_classification" and labelled.schema["task"] == "token_classification"
    assert "B-PLACE" in labelled.labels  # the tag set, as for an imported CoNLL version
    assert resolve_task(TrainConfig(task="auto"), labelled.task, None) == "token-classification"
    # The lineage columns stay as before.
    rows = read_dataset_rows(ctx, labelled.id).to_pylist()
    assert all(r["annotators"] == ["ana"] and r["method"] == "single" and r["label"] is None for r in rows)
    assert {r["parent_row_id"] for r in rows} <= {r["row_id"] for r in read_dataset_rows(ctx, version.id).to_pylist()}
    assert labelled.stats["annotation"]["project_id"] == project.id
