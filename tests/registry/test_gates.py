"""Release gates: thresholds per model name, stored results, and the promotion gate they block."""

from __future__ import annotations

from typing import Any

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, InvalidInput
from chainkeeper.governance.approvals import decide, get_approval, request_approval
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.registry.gates import (
    GateThresholds,
    evaluate_gates,
    get_gate_thresholds,
    latest_gate_results,
    run_gates,
    set_gate_thresholds,
)
from chainkeeper.registry.versions import get_model_version, register_model_version
from tests.governance.conftest import make_actor
from tests.model_rows import ENGINEER, RELEASER, in_production, insert_run


def _metrics(f1: float, **slices: float) -> dict[str, Any]:
    test: dict[str, Any] = {"accuracy": f1, "macro_f1": f1}
    if slices:
        test["slices"] = {k: {"macro_f1": v, "support": 10} for k, v in slices.items()}
    return {"test": test}


def _register(ctx: Context, name: str, metrics: dict[str, Any], author: str = ENGINEER.name) -> int:
    run_id = insert_run(ctx, model_artifact="a" * 64, metrics=metrics, author=author)
    return register_model_version(ctx, run_id=run_id, name=name, actor=ENGINEER).id


@pytest.mark.parametrize(
    ("metrics", "production", "same_split", "failed"),
    [
        pytest.param(_metrics(0.85), None, True, [], id="all-pass"),
        pytest.param(_metrics(0.75), None, True, ["min-macro-f1"], id="below-minimum"),
        pytest.param(_metrics(0.85, short=0.5, long=0.9), None, True, ["min-slice-macro-f1"], id="weak-slice"),
        pytest.param({"test": {"macro_f1": 0.85, "slices": {"text length": {"short": {"macro_f1": 0.5}}}}}, None, True,
                     ["min-slice-macro-f1"], id="weak-slice-per-dimension"),
        pytest.param(_metrics(0.85), _metrics(0.90), True, ["no-worse-than-production"], id="worse-than-prod"),
        pytest.param(_metrics(0.85), _metrics(0.86), True, [], id="within-allowed-drop"),
        pytest.param(_metrics(0.95), _metrics(0.90), False, ["no-worse-than-production"], id="other-split"),
        pytest.param({}, None, True, ["min-macro-f1"], id="no-evaluation"),
    ],
)
def test_gates_judge_metrics_against_thresholds(metrics: dict[str, Any], production: dict[str, Any] | None,
                                                 same_split: bool, failed: list[str]) -> None:
    thresholds = GateThresholds(name="intents", min_macro_f1=0.8, min_slice_macro_f1=0.6, max_drop_vs_production=0.02)
    outcomes = evaluate_gates(thresholds, metrics, production, same_split=same_split)
    assert [o.gate for o in outcomes] == ["min-macro-f1", "min-slice-macro-f1", "no-worse-than-production"]
    assert [o.gate for o in outcomes if not o.passed] == failed
    assert all(o.detail for o in outcomes)


def test_unset_thresholds_are_no_gates() -> None:
    assert evaluate_gates(GateThresholds(name="intents"), _metrics(0.1)) == []


def test_thresholds_are_set_partially_audited_and_validated(any_ctx: Context) -> None:
    assert get_gate_thresholds(any_ctx.db, "intents").min_macro_f1 is None
    set_gate_thresholds(any_ctx, "intents", actor=RELEASER, min_macro_f1=0.8)
    now = set_gate_thresholds(any_ctx, "intents", actor=RELEASER, max_drop_vs_production=0.01)
    assert (now.min_macro_f1, now.min_slice_macro_f1, now.max_drop_vs_production) == (0.8, None, 0.01)
    assert get_gate_thresholds(any_ctx.db, "intents") == now and now.updated_by == "rory"
    with pytest.raises(InvalidInput, match="between 0 and 1, got 80"):
        set_gate_thresholds(any_ctx, "intents", actor=RELEASER, min_macro_f1=80)
    assert get_gate_thresholds(any_ctx.db, "intents").min_macro_f1 == 0.8
    assert [e.action for e in list_entries(any_ctx.db, object_kind="gate_thresholds")] == ["gate.set", "gate.set"]


def test_gate_results_are_stored_and_compare_with_production_on_the_same_split(any_ctx: Context) -> None:
    production = in_production(any_ctx, "intents")  # test macro-F1 0.88 (tests/model_rows.METRICS)
    set_gate_thresholds(any_ctx, "intents", actor=RELEASER, min_macro_f1=0.8, max_drop_vs_production=0.02)
    weaker = _register(any_ctx, "intents", _metrics(0.84))
    results = run_gates(any_ctx, weaker, actor=ENGINEER)
    assert {r.gate: r.passed for r in results} == {"min-macro-f1": True, "no-worse-than-production": False}
    # insert_run gives every run its own dataset version: the split differs from production's.
    assert "another dataset version" in results[1].detail
    assert latest_gate_results(any_ctx.db, weaker) == results
    assert latest_gate_results(any_ctx.db, production.id) == []
    assert list_entries(any_ctx.db, object_kind="model_version")[-1].action == "gate.evaluate"


def test_a_failing_gate_blocks_the_promotion_request(any_ctx: Context) -> None:
    emil = make_actor(any_ctx, "emil", "ml_engineer")
    rhea = make_actor(any_ctx, "rhea", "release_manager")
    set_gate_thresholds(any_ctx, "intents", actor=rhea, min_macro_f1=0.9)
    weak = _register(any_ctx, "intents", _metrics(0.85), author="emil")
    request = request_approval(any_ctx, "model.promote", weak, actor=emil, comment="ready")
    gate_check = next(c for c in request.checks if c["name"] == "release-gates")
    assert not gate_check["passed"] and "0.8500 is below the minimum 0.9000" in gate_check["detail"]
    with pytest.raises(Conflict, match="check release-gates failed"):
        decide(any_ctx, request.id, actor=rhea, approve=True, comment="looks fine")
    assert get_model_version(any_ctx.db, weak).stage == "candidate"
    assert latest_gate_results(any_ctx.db, weak)[0].passed is False


def test_a_gate_set_after_the_request_is_checked_when_the_request_is_approved(any_ctx: Context) -> None:
    """Issue 15, item 3: a promotion asked with no gate, approved after a gate the model fails
    was set, must not reach production on the request's stale "release-gates ok"."""
    emil = make_actor(any_ctx, "emil", "ml_engineer")
    rhea = make_actor(any_ctx, "rhea", "release_manager")
    weak = _register(any_ctx, "intents", _metrics(0.248), author="emil")
    request = request_approval(any_ctx, "model.promote", weak, actor=emil, comment="ready")
    assert all(c["passed"] for c in request.checks)
    set_gate_thresholds(any_ctx, "intents", actor=rhea, min_macro_f1=0.99)
    with pytest.raises(Conflict, match="check release-gates no longer passes") as refused:
        decide(any_ctx, request.id, actor=rhea, approve=True, comment="looks fine")
    assert "0.2480 is below the minimum 0.9900" in refused.value.message and refused.value.hint
    assert get_model_version(any_ctx.db, weak).stage == "candidate"
    decided = get_approval(any_ctx, request.id)
    assert decided.state == "failed" and "not executed" in (decided.decision_comment or "")
    assert not next(c for c in decided.checks if c["name"] == "release-gates")["passed"]  # as at the decision
    entry = list_entries(any_ctx.db, object_kind="approval")[-1]
    assert entry.action == "approval.approve" and entry.details["checks_at_decision"] == decided.checks
    assert verify_ledger(any_ctx.db).ok


def test_a_passing_gate_lets_the_promotion_through(any_ctx: Context) -> None:
    emil = make_actor(any_ctx, "emil", "ml_engineer")
    rhea = make_actor(any_ctx, "rhea", "release_manager")
    set_gate_thresholds(any_ctx, "intents", actor=rhea, min_macro_f1=0.8)
    good = _register(any_ctx, "intents", _metrics(0.85), author="emil")
    request = request_approval(any_ctx, "model.promote", good, actor=emil, comment="ready")
    assert all(c["passed"] for c in request.checks)
    decide(any_ctx, request.id, actor=rhea, approve=True, comment="gates passed")
    assert get_model_version(any_ctx.db, good).stage == "production"
    assert verify_ledger(any_ctx.db).ok


def test_slices_per_dimension_are_named_with_their_dimension() -> None:
    thresholds = GateThresholds(name="intents", min_slice_macro_f1=0.6)
    metrics = {"test": {"macro_f1": 0.9, "slices": {"text length": {"short": {"macro_f1": 0.5},
                                                                    "long": {"macro_f1": 0.9}}}}}
    (outcome,) = evaluate_gates(thresholds, metrics)
    assert not outcome.passed and "text length: short" in outcome.detail and outcome.value == 0.5
