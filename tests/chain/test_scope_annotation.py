"""The annotation stage decides in the object's project: an actor of another project is refused.

An annotation project belongs to its dataset version's project ("news" here). Label
schemas are shared definitions, so defining and listing them takes a global role: the
outsider, whose roles are all bound to "support", is refused there too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from chainkeeper.annotation import (
    Project,
    adjudicate_item,
    adjudication_queue,
    annotator_queue,
    assign_batches,
    attach_prelabels,
    change_schema,
    create_project,
    define_schema,
    export_project,
    find_projects,
    find_schemas,
    get_task,
    list_answers,
    list_decisions,
    prelabel_project,
    project_figures,
    resolve_disputes,
    row_lineage,
    save_annotation,
    show_project,
    submit_prelabel,
)
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden
from tests.chain.conftest import STEWARD, Projects, table_counts


@dataclass(frozen=True)
class Labelling:
    """An annotation project on the "news" dataset version, with its first item."""

    project: Project
    item_id: int


@pytest.fixture
def labelling(ctx: Context, projects: Projects) -> Labelling:
    schema = define_schema(ctx.db, name="sentiment", kind="single", labels=["negative", "neutral", "positive"],
                           actor=STEWARD)
    project = create_project(ctx, name="news-sentiment", dataset_version_id=projects.dataset.id,
                             schema_id=schema.id, actor=STEWARD)
    # The store's first project: its items are numbered from 1.
    return Labelling(project=project, item_id=1)


Case = Callable[[Context, Projects, Labelling], object]
CASES: dict[Callable[..., object], Case] = {
    define_schema: lambda ctx, p, a: define_schema(ctx.db, name="sentiment", kind="single", labels=["x"],
                                                   actor=p.outsider),
    find_schemas: lambda ctx, p, a: find_schemas(ctx.db, actor=p.outsider),
    create_project: lambda ctx, p, a: create_project(ctx, name="mine", dataset_version_id=p.dataset.id,
                                                     schema_id=a.project.schema_id, actor=p.outsider),
    find_projects: lambda ctx, p, a: find_projects(ctx, actor=p.outsider, dataset="news"),
    show_project: lambda ctx, p, a: show_project(ctx, a.project.id, actor=p.outsider),
    assign_batches: lambda ctx, p, a: assign_batches(ctx, a.project.id, annotators=[p.outsider.name],
                                                     actor=p.outsider),
    change_schema: lambda ctx, p, a: change_schema(ctx, a.project.id, a.project.schema_id, actor=p.outsider),
    annotator_queue: lambda ctx, p, a: annotator_queue(ctx, a.project.id, p.outsider),
    get_task: lambda ctx, p, a: get_task(ctx, a.project.id, a.item_id, p.outsider),
    save_annotation: lambda ctx, p, a: save_annotation(ctx, a.project.id, a.item_id, p.outsider,
                                                       expected_version=0, value={"label": "neutral"}),
    list_answers: lambda ctx, p, a: list_answers(ctx, a.project.id, p.outsider),
    adjudication_queue: lambda ctx, p, a: adjudication_queue(ctx, a.project.id, p.outsider),
    adjudicate_item: lambda ctx, p, a: adjudicate_item(ctx, a.project.id, a.item_id, p.outsider,
                                                       value={"label": "neutral"}, expected_version=0),
    resolve_disputes: lambda ctx, p, a: resolve_disputes(ctx, a.project.id, p.outsider),
    list_decisions: lambda ctx, p, a: list_decisions(ctx, a.project.id, p.outsider),
    project_figures: lambda ctx, p, a: project_figures(ctx, a.project.id, p.outsider),
    prelabel_project: lambda ctx, p, a: prelabel_project(ctx, a.project.id, p.model.id, p.outsider),
    attach_prelabels: lambda ctx, p, a: attach_prelabels(ctx, a.project.id, {0: "neutral"}, source="support_agent",
                                                         actor=p.outsider),
    submit_prelabel: lambda ctx, p, a: submit_prelabel(ctx, a.project.id, p.model.id, p.outsider),
    export_project: lambda ctx, p, a: export_project(ctx, a.project.id, p.outsider),
    row_lineage: lambda ctx, p, a: row_lineage(ctx, p.dataset.id, 0, p.outsider),
}


@pytest.mark.parametrize("function", list(CASES), ids=lambda f: f.__name__)
def test_an_actor_of_another_project_is_refused(ctx: Context, projects: Projects, labelling: Labelling,
                                                function: Callable[..., object]) -> None:
    before = table_counts(ctx)
    with pytest.raises(Forbidden):
        CASES[function](ctx, projects, labelling)
    assert table_counts(ctx) == before


def test_a_list_shows_an_outsider_none_of_another_projects_annotation(ctx: Context, projects: Projects,
                                                                      labelling: Labelling) -> None:
    assert find_projects(ctx, actor=projects.outsider) == []
    assert [p.id for p in find_projects(ctx, actor=projects.insider)] == [labelling.project.id]


def test_an_actor_of_the_project_may_run_its_annotation(ctx: Context, projects: Projects, labelling: Labelling,
                                                        tmp_path: Path) -> None:
    insider = projects.insider
    project = create_project(ctx, name="news-second-look", dataset_version_id=projects.dataset.id,
                             schema_id=labelling.project.schema_id, actor=insider)
    shown, schema = show_project(ctx, project.id, actor=insider)
    assert shown == project and schema.name == "sentiment"
    assert project_figures(ctx, project.id, insider)["progress"]["items"] == projects.dataset.stats["rows"]
    assert adjudication_queue(ctx, project.id, insider) == []
    # Schemas stay shared definitions: a project-bound steward uses them but does not define them.
    with pytest.raises(Forbidden):
        define_schema(ctx.db, name="mine", kind="single", labels=["x"], actor=insider)
