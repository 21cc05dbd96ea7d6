"""Registry services decide in the model version's project (its run's), and a model
name's in the project of its oldest version: an actor whose roles are all bound to
another project is refused, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden
from chainkeeper.governance.actors import Actor
from chainkeeper.registry import (
    collect_card_facts,
    evaluate_model_version,
    find_model_versions,
    list_model_evaluations,
    model_card,
    register_model_version,
    run_gates,
    set_gate_thresholds,
    show_gates,
    show_model_version,
    show_production,
    show_stage_history,
    transition_stage,
)
from tests.chain.conftest import Projects, ScopeCase, table_counts


def _listed(found: list[object]) -> None:
    if not found:  # a list is refused by leaving out what the actor may not see
        raise Forbidden("nothing of project news listed")


CASES: dict[Callable[..., object], ScopeCase] = {
    register_model_version: lambda ctx, p, tmp: register_model_version(
        ctx, run_id=p.run.id, name="news-other", actor=p.outsider),
    transition_stage: lambda ctx, p, tmp: transition_stage(ctx, p.model.id, "archived", actor=p.outsider),
    # Refused before the file is read (it need not exist).
    evaluate_model_version: lambda ctx, p, tmp: evaluate_model_version(ctx, p.model.id, tmp / "held-out.csv",
                                                                       actor=p.outsider),
    list_model_evaluations: lambda ctx, p, tmp: list_model_evaluations(ctx, p.model.id, actor=p.outsider),
    set_gate_thresholds: lambda ctx, p, tmp: set_gate_thresholds(ctx, p.model.name, actor=p.outsider,
                                                                 min_macro_f1=0.5),
    run_gates: lambda ctx, p, tmp: run_gates(ctx, p.model.id, actor=p.outsider),
    show_gates: lambda ctx, p, tmp: show_gates(ctx, p.model.id, actor=p.outsider),
    find_model_versions: lambda ctx, p, tmp: _listed(find_model_versions(ctx, actor=p.outsider)),
    show_model_version: lambda ctx, p, tmp: show_model_version(ctx, p.model.id, actor=p.outsider),
    show_stage_history: lambda ctx, p, tmp: show_stage_history(ctx, p.model.id, actor=p.outsider),
    show_production: lambda ctx, p, tmp: show_production(ctx, p.model.name, actor=p.outsider),
    model_card: lambda ctx, p, tmp: model_card(ctx, p.model.id, actor=p.outsider),
    collect_card_facts: lambda ctx, p, tmp: collect_card_facts(ctx, p.model.id, actor=p.outsider),
}


@pytest.mark.parametrize("function", list(CASES), ids=lambda f: f.__name__)
def test_an_actor_of_another_project_is_refused(ctx: Context, projects: Projects, tmp_path: Path,
                                                function: Callable[..., object]) -> None:
    before = table_counts(ctx)
    with pytest.raises(Forbidden):
        CASES[function](ctx, projects, tmp_path)
    assert table_counts(ctx) == before


def test_an_actor_of_the_project_reads_and_releases_in_it(ctx: Context, projects: Projects) -> None:
    insider = projects.insider
    assert [v.id for v in find_model_versions(ctx, actor=insider)] == [projects.model.id]
    assert show_model_version(ctx, projects.model.id, actor=insider) == projects.model
    history = show_production(ctx, projects.model.name, actor=insider)
    assert [p.model_version_id for p in history.periods] == [projects.model.id]
    thresholds = set_gate_thresholds(ctx, projects.model.name, actor=insider, min_macro_f1=0.5)
    assert thresholds.min_macro_f1 == 0.5
    assert [r.passed for r in run_gates(ctx, projects.model.id, actor=insider)] == [True]
    assert "# Model card: news-sentiment v1" in model_card(ctx, projects.model.id, actor=insider)


def test_a_name_without_versions_belongs_to_no_project(ctx: Context, projects: Projects) -> None:
    # Its thresholds are a global role's to set until a version is registered under it.
    with pytest.raises(Forbidden):
        set_gate_thresholds(ctx, "not-registered-yet", actor=projects.insider, min_macro_f1=0.5)
    releaser = Actor("nora", frozenset({"release_manager"}))
    assert set_gate_thresholds(ctx, "not-registered-yet", actor=releaser, min_macro_f1=0.5).min_macro_f1 == 0.5
