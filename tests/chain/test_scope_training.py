"""Training services decide in the run's (or dataset version's) project: an actor whose
roles are all bound to another project is refused, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.training import (
    TrainConfig,
    cancel_run,
    compare_runs,
    find_runs,
    parse_space,
    reproduce_run,
    run_points,
    run_report_html,
    show_run,
    show_search,
    start_search,
    start_training_run,
)
from tests.chain.conftest import Projects, ScopeCase, table_counts


def _listed(found: list[object]) -> None:
    if not found:  # a list is refused by leaving out what the actor may not see
        raise Forbidden("nothing of project news listed")


CASES: dict[Callable[..., object], ScopeCase] = {
    start_training_run: lambda ctx, p, tmp: start_training_run(
        ctx, dataset_version_id=p.dataset.id, config=TrainConfig(epochs=1), actor=p.outsider),
    start_search: lambda ctx, p, tmp: start_search(
        ctx, dataset_version_id=p.dataset.id, config=TrainConfig(epochs=1), space=parse_space(["lr=1e-4:1e-2:log"]),
        trials=2, actor=p.outsider),
    reproduce_run: lambda ctx, p, tmp: reproduce_run(ctx, p.run.id, actor=p.outsider),
    cancel_run: lambda ctx, p, tmp: cancel_run(ctx, p.run.id, actor=p.outsider),
    find_runs: lambda ctx, p, tmp: _listed(find_runs(ctx, actor=p.outsider)),
    show_run: lambda ctx, p, tmp: show_run(ctx, p.run.id, actor=p.outsider),
    run_points: lambda ctx, p, tmp: run_points(ctx, p.run.id, actor=p.outsider),
    run_report_html: lambda ctx, p, tmp: run_report_html(ctx, p.run.id, actor=p.outsider),
    compare_runs: lambda ctx, p, tmp: compare_runs(ctx, p.run.id, p.run.id, actor=p.outsider),
    # The run's train job lives in project news: refused before its kind is looked at.
    show_search: lambda ctx, p, tmp: show_search(ctx, p.run.job_id or 0, actor=p.outsider),
}


@pytest.mark.parametrize("function", list(CASES), ids=lambda f: f.__name__)
def test_an_actor_of_another_project_is_refused(ctx: Context, projects: Projects, tmp_path: Path,
                                                function: Callable[..., object]) -> None:
    before = table_counts(ctx)
    with pytest.raises(Forbidden):
        CASES[function](ctx, projects, tmp_path)
    assert table_counts(ctx) == before


def test_an_actor_of_the_project_reads_and_trains_in_it(ctx: Context, projects: Projects) -> None:
    insider = projects.insider
    assert [r.id for r in find_runs(ctx, actor=insider)] == [projects.run.id]
    assert show_run(ctx, projects.run.id, actor=insider) == projects.run
    same = compare_runs(ctx, projects.run.id, projects.run.id, actor=insider)
    assert same["splits"]["test"]["accuracy"]["delta"] == 0
    run = start_training_run(ctx, dataset_version_id=projects.dataset.id, config=TrainConfig(epochs=1), actor=insider)
    assert run.state == "queued" and run.created_by == insider.name
    assert cancel_run(ctx, run.id, actor=insider).state == "cancelled"
    with pytest.raises(InvalidInput, match="not a search"):  # allowed in, then told what the job is
        show_search(ctx, projects.run.job_id or 0, actor=insider)


def test_a_made_up_run_is_not_found_for_a_reader_and_refused_for_a_non_reader(ctx: Context,
                                                                               projects: Projects) -> None:
    with pytest.raises(NotFound):
        show_run(ctx, 987654, actor=projects.insider)
    annotator_only = Actor("ann", scoped_roles=frozenset({("annotator", "news")}))
    with pytest.raises(Forbidden):
        show_run(ctx, 987654, actor=annotator_only)
