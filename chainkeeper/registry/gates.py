"""Release gates: the evaluation thresholds a model version must meet before production.

Thresholds are set per model name by a release manager who holds
``model.promote.approve`` in the name's project (``versions.project_of_model_name``: the
project of the name's oldest version):

- ``min_macro_f1``: the version's test macro-F1 must be at least this;
- ``min_slice_macro_f1``: no declared slice (``metrics["test"]["slices"]``) below this;
- ``max_drop_vs_production``: the test macro-F1 may trail the version now in production
  by at most this many points (0.02 = two points), on the same dataset version's split;

A token tagger (test metrics with entity-level ``f1`` and ``per_type``, see
``is_tagger_metrics``) is judged on what NER is judged on, with the same thresholds:
``min_macro_f1`` is the floor of its test entity F1 (seqeval, micro over entities; gate
``min-entity-f1``), ``min_slice_macro_f1`` the floor of every entity type's F1 (its
types are its slices; gate ``min-type-f1``), and ``max_drop_vs_production`` compares
entity F1. So one name's thresholds need no new field, and a release manager sets them
with the same command;
- ``max_p95_latency_ms`` (with ``latency_batch_size``, default 1) turns on the
  *deployment tests* on the version's exported artefact: it loads, answers golden
  examples as the registered PyTorch model does, stays under the latency budget, rejects
  malformed input; and the served form loses at most ``max_export_delta_points``
  accuracy points (default 0.5) against PyTorch. Serving owns the exported artefact, so
  serving does them (``serving.deployment_tests``), registered by the chain's wiring as
  the hook ``DEPLOYMENT_TESTS_HOOK``.

``evaluate_gates`` is pure (values in, outcomes out); ``evaluate_release_gates`` reads
the registry, evaluates and stores every outcome (``gate_results``) with an audit
entry, so a decision can be shown and questioned later; ``run_gates`` does it for an
actor who may ask for promotion. The promotion gate (``chain.gates.check_release_gates``)
evaluates them when promotion is requested: a failing gate fails the request's checks,
and a request with a failed check cannot be approved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.governance.actors import SYSTEM, Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize_object
from chainkeeper.registry.hooks import DEPLOYMENT_TESTS_HOOK
from chainkeeper.registry.tables import SqlGateResult, SqlGateThresholds
from chainkeeper.registry.versions import (
    ModelVersion,
    Stage,
    get_model_version,
    list_model_versions,
    project_of_model_name,
    project_of_model_version,
    validate_model_name,
)
from chainkeeper.training import get_run

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = [
    "GateOutcome",
    "GateReport",
    "GateResult",
    "GateThresholds",
    "UNCHANGED",
    "evaluate_gates",
    "evaluate_release_gates",
    "flat_slices",
    "get_gate_thresholds",
    "is_tagger_metrics",
    "latest_gate_results",
    "run_gates",
    "set_gate_thresholds",
    "show_gates",
]



@dataclass(frozen=True)
class GateThresholds:
    """A model name's thresholds; None means the gate is not set."""

    name: str
    min_macro_f1: float | None = None
    min_slice_macro_f1: float | None = None
    max_drop_vs_production: float | None = None
    max_p95_latency_ms: float | None = None
    latency_batch_size: int | None = None
    max_export_delta_points: float | None = None
    updated_by: str | None = None

    @property
    def deployment_tests(self) -> bool:
        """Whether versions of this name must pass the deployment tests (a budget is set)."""
        return self.max_p95_latency_ms is not None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class GateOutcome:
    """One gate's verdict on one version (pure result of ``evaluate_gates``)."""

    gate: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass(frozen=True)
class GateResult:
    """A stored outcome: which version, when and for whom it was evaluated."""

    id: int
    model_version_id: int
    gate: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    evaluated_by: str
    evaluated_at: datetime


def _check_fraction(field: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{field} must be between 0 and 1, got {value}.",
                           hint="Give scores as fractions, e.g. 0.8 for 80 %.")


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


# Default of ``set_gate_thresholds``' values: keep what is stored (None unsets a gate).
UNCHANGED: Any = _Unchanged()

# The thresholds a release manager sets; how each is checked when given (None always passes).
_FIELDS = ("min_macro_f1", "min_slice_macro_f1", "max_drop_vs_production", "max_p95_latency_ms",
           "latency_batch_size", "max_export_delta_points")


def _check_value(field: str, value: Any) -> None:
    if value is None:
        return
    if field == "max_p95_latency_ms" and not (isinstance(value, int | float) and 0 < value <= 600_000):
        raise InvalidInput(f"max_p95_latency_ms must be a positive number of milliseconds, got {value!r}.",
                           hint="e.g. 50 for a 50 ms p95 budget.")
    elif field == "latency_batch_size" and (isinstance(value, bool) or not isinstance(value, int)
                                            or not 1 <= value <= 512):
        raise InvalidInput(f"latency_batch_size must be a whole number from 1 to 512, got {value!r}.",
                           hint="The batch size the latency budget holds for, e.g. 1 or 8.")
    elif field == "max_export_delta_points" and not (isinstance(value, int | float) and 0 <= value <= 100):
        raise InvalidInput(f"max_export_delta_points must be between 0 and 100 points, got {value!r}.",
                           hint="The default is 0.5 points of accuracy.")
    elif field in ("min_macro_f1", "min_slice_macro_f1", "max_drop_vs_production"):
        _check_fraction(field, value)


def set_gate_thresholds(ctx: Context, name: str, *, actor: Actor, min_macro_f1: float | None = UNCHANGED,
                        min_slice_macro_f1: float | None = UNCHANGED,
                        max_drop_vs_production: float | None = UNCHANGED,
                        max_p95_latency_ms: float | None = UNCHANGED, latency_batch_size: int | None = UNCHANGED,
                        max_export_delta_points: float | None = UNCHANGED) -> GateThresholds:
    """Set some or all release thresholds of model ``name``.

    Args:
        name: the model name the thresholds hold for.
        actor: who sets them: a release manager, ``model.promote.approve`` in the name's
            project (a name with no version yet needs a global role).
        min_macro_f1, min_slice_macro_f1, max_drop_vs_production: fractions in [0, 1].
        max_p95_latency_ms: the deployment tests' latency budget (ms); setting it turns
            the deployment tests on.
        latency_batch_size: the batch size the budget holds for (1-512, default 1).
        max_export_delta_points: accuracy points the served export may lose (default 0.5).
            For each value None unsets it; ``UNCHANGED`` (the default) keeps the stored value.

    Returns:
        The thresholds now in force.

    Raises:
        InvalidInput: a malformed name or a value out of its range.
        Forbidden: the actor may not approve promotions in the name's project.
    """
    validate_model_name(name)
    values = {"min_macro_f1": min_macro_f1, "min_slice_macro_f1": min_slice_macro_f1,
              "max_drop_vs_production": max_drop_vs_production, "max_p95_latency_ms": max_p95_latency_ms,
              "latency_batch_size": latency_batch_size, "max_export_delta_points": max_export_delta_points}
    given = {field: value for field, value in values.items() if value is not UNCHANGED}
    for field, value in given.items():
        _check_value(field, value)
    authorize_object(ctx.db, actor, "model.promote.approve", lambda: project_of_model_name(ctx.db, name))
    with ctx.db.session() as s:
        row = s.scalars(sa.select(SqlGateThresholds).where(SqlGateThresholds.name == name)).one_or_none()
        before = _thresholds_snapshot(row) if row is not None else None
        if row is None:
            row = SqlGateThresholds(name=name, **dict.fromkeys(_FIELDS))
            s.add(row)
        for field, value in given.items():
            setattr(row, field, value)
        row.updated_by, row.updated_at = actor.name, utcnow()
        s.flush()
        append_entry(s, actor, "gate.set", "gate_thresholds", name, before=before, after=_thresholds_snapshot(row),
                     details=_thresholds_snapshot(row))
        return _to_thresholds(row)


def _thresholds_snapshot(row: SqlGateThresholds) -> dict[str, Any]:
    return {"name": row.name, **{field: getattr(row, field) for field in _FIELDS}}


def _to_thresholds(row: SqlGateThresholds) -> GateThresholds:
    return GateThresholds(name=row.name, **{field: getattr(row, field) for field in _FIELDS},
                          updated_by=row.updated_by, updated_at=row.updated_at)


def get_gate_thresholds(db: Database, name: str) -> GateThresholds:
    """The thresholds of model ``name`` (all unset when none were ever set)."""
    with db.session() as s:
        row = s.scalars(sa.select(SqlGateThresholds).where(SqlGateThresholds.name == name)).one_or_none()
        return _to_thresholds(row) if row is not None else GateThresholds(name=name)


# --- the pure part ---------------------------------------------------------------------


def flat_slices(slices: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Slice metrics as ``{name: {"macro_f1", "accuracy"?, "support"?}}`` (pure).

    Training stores slices per dimension (``{"text length": {"short": {...}}}``); older or
    hand-made metrics hold them flat (``{"short": {...}}``). Both read the same here, a
    nested one named ``"dimension: group"``.
    """
    out: dict[str, Mapping[str, Any]] = {}
    for name, value in (slices or {}).items():
        if not isinstance(value, Mapping):
            continue
        if "macro_f1" in value:
            out[str(name)] = value
            continue
        for group, inner in value.items():
            if isinstance(inner, Mapping) and "macro_f1" in inner:
                out[f"{name}: {group}"] = inner
    return out


def is_tagger_metrics(metrics: Mapping[str, Any]) -> bool:
    """Whether the metrics are a token tagger's: entity-level ``f1`` and ``per_type`` on the
    test split (``training.tokens.entity_metrics``), no text-level macro-F1 (pure)."""
    test = metrics.get("test") or {}
    return isinstance(test, Mapping) and "per_type" in test and "f1" in test and "macro_f1" not in test


def _macro_f1(metrics: Mapping[str, Any]) -> float | None:
    """The headline test score: macro-F1 of a classifier, entity F1 (micro, seqeval) of a tagger."""
    test = metrics.get("test") or {}
    value = test.get("f1") if is_tagger_metrics(metrics) else test.get("macro_f1")
    return float(value) if value is not None else None


def _type_scores(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A tagger's test F1 per entity type, for the types the test split holds (pure)."""
    per_type = (metrics.get("test") or {}).get("per_type") or {}
    return {str(kind): float(v.get("f1-score", 0.0)) for kind, v in per_type.items()
            if isinstance(v, Mapping) and float(v.get("support", 1)) > 0}


def evaluate_gates(thresholds: GateThresholds, metrics: Mapping[str, Any],
                   production_metrics: Mapping[str, Any] | None = None, *,
                   same_split: bool = True) -> list[GateOutcome]:
    """Judge a version's metrics against thresholds (pure).

    Args:
        thresholds: the model name's thresholds; unset gates are skipped.
        metrics: the version's metrics (``{"test": {"macro_f1", "slices"?: ...}}``, see ``flat_slices``).
        production_metrics: the metrics of the version in production, or None if none is.
        same_split: whether both were evaluated on the same dataset version's test split.

    Returns:
        One outcome per set gate, in a fixed order.
    """
    out: list[GateOutcome] = []
    f1 = _macro_f1(metrics)
    tagger = is_tagger_metrics(metrics)
    score = "entity F1" if tagger else "macro-F1"
    if thresholds.min_macro_f1 is not None:
        limit = thresholds.min_macro_f1
        gate = "min-entity-f1" if tagger else "min-macro-f1"
        if f1 is None:
            out.append(GateOutcome(gate, False, None, limit, f"no test {score} is recorded"))
        else:
            verdict = "meets" if f1 >= limit else "is below"
            out.append(GateOutcome(gate, f1 >= limit, f1, limit,
                                   f"test {score} {f1:.4f} {verdict} the minimum {limit:.4f}"))
    if thresholds.min_slice_macro_f1 is not None and tagger:
        out.append(_type_floor(thresholds.min_slice_macro_f1, _type_scores(metrics)))
    elif thresholds.min_slice_macro_f1 is not None:
        limit = thresholds.min_slice_macro_f1
        slices = flat_slices((metrics.get("test") or {}).get("slices"))
        scores = {k: float(v["macro_f1"]) for k, v in slices.items()}
        if not scores:
            out.append(GateOutcome("min-slice-macro-f1", True, None, limit, "no slices are declared"))
        else:
            worst = min(scores, key=lambda k: scores[k])
            low = sorted(k for k, v in scores.items() if v < limit)
            detail = (f"slices below {limit:.4f}: {', '.join(low)} (worst {worst!r} at {scores[worst]:.4f})" if low
                      else f"all {len(scores)} slices reach {limit:.4f} (worst {worst!r} at {scores[worst]:.4f})")
            out.append(GateOutcome("min-slice-macro-f1", not low, scores[worst], limit, detail))
    if thresholds.max_drop_vs_production is not None:
        limit = thresholds.max_drop_vs_production
        prod = _macro_f1(production_metrics) if production_metrics is not None else None
        if production_metrics is None or prod is None:
            out.append(GateOutcome("no-worse-than-production", True, None, limit,
                                   f"no version with a test {score} is in production to compare with"))
        elif is_tagger_metrics(production_metrics) != tagger:
            out.append(GateOutcome("no-worse-than-production", False, None, limit,
                                   "the production version is a " + ("classifier" if tagger else "tagger")
                                   + f" and this one is not: its {score} cannot be compared"))
        elif not same_split:
            out.append(GateOutcome("no-worse-than-production", False, None, limit,
                                   "the production version was evaluated on another dataset version's test split; "
                                   "the scores are not comparable"))
        elif f1 is None:
            out.append(GateOutcome("no-worse-than-production", False, None, limit, f"no test {score} is recorded"))
        else:
            drop = prod - f1
            out.append(GateOutcome("no-worse-than-production", drop <= limit + 1e-12, drop, limit,
                                   f"test {score} {f1:.4f} vs production {prod:.4f}: drop {drop:+.4f} "
                                   f"(at most {limit:.4f} allowed)"))
    return out


def _type_floor(limit: float, scores: Mapping[str, float]) -> GateOutcome:
    """The per-entity-type floor of a tagger: every type of the test split reaches ``limit`` (pure)."""
    if not scores:
        return GateOutcome("min-type-f1", False, None, limit, "no per-type test entity F1 is recorded")
    worst = min(scores, key=lambda k: scores[k])
    low = sorted(k for k, v in scores.items() if v < limit)
    detail = (f"entity types below {limit:.4f}: {', '.join(low)} (worst {worst!r} at {scores[worst]:.4f})" if low
              else f"all {len(scores)} entity types reach {limit:.4f} (worst {worst!r} at {scores[worst]:.4f})")
    return GateOutcome("min-type-f1", not low, scores[worst], limit, detail)


# --- stored evaluation -----------------------------------------------------------------


def run_gates(ctx: Context, model_version_id: int, *, actor: Actor) -> list[GateResult]:
    """Evaluate a version against its name's thresholds now, for an actor who may ask for
    its promotion (``model.promote`` in the version's project); see ``evaluate_release_gates``.

    Raises:
        Forbidden: the actor may not ask for promotions in the version's project.
        NotFound: no such version.
    """
    authorize_object(ctx.db, actor, "model.promote", lambda: project_of_model_version(ctx.db, model_version_id))
    return evaluate_release_gates(ctx, model_version_id, evaluated_by=actor)


def evaluate_release_gates(ctx: Context, model_version_id: int, *, evaluated_by: Actor = SYSTEM) -> list[GateResult]:
    """Evaluate a version against its name's thresholds and store every outcome.

    A store-level step for callers that already decided (the promotion request's check,
    ``run_gates``). With a latency budget set, the deployment tests run on the version's
    exported artefact too (the ``DEPLOYMENT_TESTS_HOOK``; they load models, so take seconds).

    Args:
        model_version_id: the version to judge.
        evaluated_by: on whose behalf (the requester of a promotion, or the system).

    Returns:
        The stored results (empty when no threshold is set for the name).

    Raises:
        NotFound: no such version.
        ConfigError: deployment tests are due and the context was opened without the
            chain's wiring.
    """
    version = get_model_version(ctx.db, model_version_id)
    thresholds = get_gate_thresholds(ctx.db, version.name)
    live = [v for v in list_model_versions(ctx.db, version.name, stage=Stage.PRODUCTION) if v.id != version.id]
    production = live[0] if live else None
    same_split = True
    if production is not None:
        same_split = get_run(ctx.db, production.run_id).dataset_version_id == get_run(
            ctx.db, version.run_id).dataset_version_id
    outcomes = evaluate_gates(thresholds, version.metrics, production.metrics if production else None,
                              same_split=same_split)
    if thresholds.deployment_tests:
        outcomes += ctx.wiring.hook(DEPLOYMENT_TESTS_HOOK)(ctx, version, thresholds)
    if not outcomes:  # no thresholds set: nothing to judge, nothing to record
        return []
    now = utcnow()
    with ctx.db.session() as s:
        rows = [SqlGateResult(model_version_id=version.id, gate=o.gate, passed=o.passed, value=o.value,
                              threshold=o.threshold, detail=o.detail, evaluated_by=evaluated_by.name,
                              evaluated_at=now)
                for o in outcomes]
        s.add_all(rows)
        s.flush()
        append_entry(s, evaluated_by, "gate.evaluate", "model_version", version.id,
                     after=[{"gate": o.gate, "passed": o.passed} for o in outcomes],
                     details={"compared_with": production.id if production else None,
                              "passed": all(o.passed for o in outcomes)})
        return [_to_result(r) for r in rows]


def _to_result(row: SqlGateResult) -> GateResult:
    return GateResult(id=row.id, model_version_id=row.model_version_id, gate=row.gate, passed=row.passed,
                      value=row.value, threshold=row.threshold, detail=row.detail, evaluated_by=row.evaluated_by,
                      evaluated_at=row.evaluated_at)


def latest_gate_results(db: Database, model_version_id: int) -> list[GateResult]:
    """The results of the most recent evaluation of a version (empty if never evaluated)."""
    with db.session() as s:
        last = s.scalar(sa.select(sa.func.max(SqlGateResult.evaluated_at))
                        .where(SqlGateResult.model_version_id == model_version_id))
        if last is None:
            return []
        rows = s.scalars(sa.select(SqlGateResult).where(SqlGateResult.model_version_id == model_version_id,
                                                         SqlGateResult.evaluated_at == last)
                         .order_by(SqlGateResult.id))
        return [_to_result(r) for r in rows]


@dataclass(frozen=True)
class GateReport:
    """A version, its name's thresholds and its latest gate results, as a reader sees them."""

    version: ModelVersion
    thresholds: GateThresholds
    results: list[GateResult]


def show_gates(ctx: Context, model_version_id: int, *, actor: Actor) -> GateReport:
    """A version's thresholds and latest gate results, for an actor who may read it
    (``model.read`` in the version's project).

    Raises:
        Forbidden: the actor may not read models of its project. NotFound: no such version.
    """
    authorize_object(ctx.db, actor, "model.read", lambda: project_of_model_version(ctx.db, model_version_id))
    version = get_model_version(ctx.db, model_version_id)
    return GateReport(version=version, thresholds=get_gate_thresholds(ctx.db, version.name),
                      results=latest_gate_results(ctx.db, version.id))
