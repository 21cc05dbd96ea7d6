"""Governance and chain services decide in the object's project: approvals, jobs, schedules,
lineage, ownership and the overview refuse an actor whose roles are bound to another."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from chainkeeper.chain import chain_overview, jobs_panel, lineage_of, owner_of, reassign_owner, run_row_lineage
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden
from chainkeeper.core.jobs import submit_job
from chainkeeper.core.scheduler import create_schedule
from chainkeeper.governance import (
    Actor,
    cancel_job,
    decide,
    find_approvals,
    find_jobs,
    find_schedules,
    pause_schedule,
    read_job_logs,
    remove_schedule,
    request_approval,
    requeue_job,
    resume_schedule,
    show_approval,
    show_job,
    show_schedule,
)
from tests.chain.conftest import ENGINEER, Projects, ScopeCase, table_counts


def _job(ctx: Context) -> int:
    return submit_job(ctx, "sleep", {}, actor="ned", project="news").id


def _schedule(ctx: Context) -> int:
    """A schedule of project news (its jobs would work there)."""
    return create_schedule(ctx, f"nap-{uuid.uuid4().hex[:8]}", "sleep", {}, every_s=60, actor="ned",
                           project="news").id


def _approval(ctx: Context, p: Projects) -> int:
    return request_approval(ctx, "model.promote", p.model.id, actor=ENGINEER, comment="fixture").id


CASES: dict[Callable[..., object], ScopeCase] = {
    show_job: lambda ctx, p, tmp: show_job(ctx, _job(ctx), actor=p.outsider),
    read_job_logs: lambda ctx, p, tmp: read_job_logs(ctx, _job(ctx), actor=p.outsider),
    cancel_job: lambda ctx, p, tmp: cancel_job(ctx, _job(ctx), actor=p.outsider),
    requeue_job: lambda ctx, p, tmp: requeue_job(ctx, _job(ctx), actor=p.outsider),
    request_approval: lambda ctx, p, tmp: request_approval(ctx, "model.promote", p.model.id, actor=p.outsider),
    show_approval: lambda ctx, p, tmp: show_approval(ctx, _approval(ctx, p), actor=p.outsider),
    decide: lambda ctx, p, tmp: decide(ctx, _approval(ctx, p), actor=p.outsider, approve=True, comment="no"),
    lineage_of: lambda ctx, p, tmp: lineage_of(ctx, "model_version", str(p.model.id), actor=p.outsider),
    run_row_lineage: lambda ctx, p, tmp: run_row_lineage(ctx, p.run.id, 0, p.outsider),
    owner_of: lambda ctx, p, tmp: owner_of(ctx, "deployment", p.deployment.id, actor=p.outsider),
    reassign_owner: lambda ctx, p, tmp: reassign_owner(ctx, "run", p.run.id, "sam", actor=p.outsider),
    chain_overview: lambda ctx, p, tmp: chain_overview(ctx, actor=p.outsider),
    show_schedule: lambda ctx, p, tmp: show_schedule(ctx, _schedule(ctx), actor=p.outsider),
    pause_schedule: lambda ctx, p, tmp: pause_schedule(ctx, _schedule(ctx), actor=p.outsider),
    resume_schedule: lambda ctx, p, tmp: resume_schedule(ctx, _schedule(ctx), actor=p.outsider),
    remove_schedule: lambda ctx, p, tmp: remove_schedule(ctx, _schedule(ctx), actor=p.outsider),
}

_SCHEDULES = (show_schedule, pause_schedule, resume_schedule, remove_schedule)


# A list answers an actor of another project with nothing of this one.
LISTS: dict[Callable[..., object], Callable[[Context, Projects, Actor], list[object]]] = {
    find_jobs: lambda ctx, p, actor: list(find_jobs(ctx, actor=actor)),
    jobs_panel: lambda ctx, p, actor: list(jobs_panel(ctx, actor=actor).jobs),
    find_approvals: lambda ctx, p, actor: list(find_approvals(ctx, actor=actor)),
    find_schedules: lambda ctx, p, actor: list(find_schedules(ctx, actor=actor)),
}


@pytest.mark.parametrize("function", list(LISTS), ids=lambda f: f.__name__)
def test_a_list_shows_an_actor_of_another_project_nothing_of_this_one(ctx: Context, projects: Projects,
                                                                       function: Callable[..., object]) -> None:
    _job(ctx), _approval(ctx, projects), _schedule(ctx)
    assert LISTS[function](ctx, projects, projects.outsider) == []
    assert LISTS[function](ctx, projects, projects.insider) != []


@pytest.mark.parametrize("function", list(CASES), ids=lambda f: f.__name__)
def test_an_actor_of_another_project_is_refused(ctx: Context, projects: Projects, tmp_path: Path,
                                                function: Callable[..., object]) -> None:
    case = CASES[function]
    # The objects a case makes for itself (a job, a request) are made before counting.
    if function in (show_job, read_job_logs, cancel_job, requeue_job, show_approval, decide, *_SCHEDULES):
        made = (_schedule(ctx) if function in _SCHEDULES else _job(ctx) if "job" in function.__name__
                else _approval(ctx, projects))
        case = _with(function, made)
    before = table_counts(ctx)
    with pytest.raises(Forbidden):
        case(ctx, projects, tmp_path)
    assert table_counts(ctx) == before


def _with(function: Callable[..., object], made: int) -> ScopeCase:
    if function is decide:
        return lambda ctx, p, tmp: decide(ctx, made, actor=p.outsider, approve=True, comment="no")
    return lambda ctx, p, tmp: function(ctx, made, actor=p.outsider)


def test_an_actor_of_the_same_project_is_allowed(ctx: Context, projects: Projects) -> None:
    job = _job(ctx)
    assert show_job(ctx, job, actor=projects.insider).project == "news"
    assert job in [j.id for j in find_jobs(ctx, actor=projects.insider)]
    # A training run's job is queued in its dataset's project, so the run's team sees it.
    assert show_job(ctx, projects.run.job_id, actor=projects.insider).project == "news"
    assert owner_of(ctx, "deployment", projects.deployment.id, actor=projects.insider).owner == "nora"
    assert lineage_of(ctx, "model_version", str(projects.model.id), actor=projects.insider).kind == "model_version"
    # The outsider sees none of project news's jobs.
    assert find_jobs(ctx, actor=projects.outsider) == []
    schedule = _schedule(ctx)
    assert pause_schedule(ctx, schedule, actor=projects.insider).paused
    assert not resume_schedule(ctx, schedule, actor=projects.insider).paused
    assert remove_schedule(ctx, schedule, actor=projects.insider).id == schedule
