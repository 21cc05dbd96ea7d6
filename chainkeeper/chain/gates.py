"""The gate table: what each hand-off checks, who it keeps out, and what it executes.

Governance holds the approval mechanism (``governance.approvals``); the stages hold what
is approved. This module, above both, joins them: one ``Gate`` per gated action, built
from the stages' public functions. Each check returns a ``CheckResult``; each exclusion
rule returns (names, reason) — separation of duties: the last editor of a dataset version
may not release it, a run's author may not promote its model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainkeeper import data, registry, serving, training
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import CheckResult, Gate

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.registry import ModelVersion
    from chainkeeper.serving import Deployment


# --- dataset.release -------------------------------------------------------------------


def dataset_last_editors(ctx: Context, object_id: str) -> tuple[list[str], str]:
    version = data.get_dataset_version(ctx.db, int(object_id))
    return [version.created_by], f"{version.created_by} last edited the rows of dataset version {object_id}"


def check_dataset_is_draft(ctx: Context, object_id: str, payload: dict[str, Any]) -> CheckResult:
    version = data.get_dataset_version(ctx.db, int(object_id))
    train_rows = version.stats.get("rows_per_split", {}).get("train", 0)
    if version.state != "draft":
        return CheckResult("dataset-is-draft", False, f"dataset version {object_id} is already {version.state}")
    if train_rows == 0:
        return CheckResult("dataset-is-draft", False, "the version has no training rows")
    return CheckResult("dataset-is-draft", True, f"draft with {train_rows:,} training rows, "
                       f"{len(version.labels)} labels")


def check_dataset_quality_report(ctx: Context, object_id: str, payload: dict[str, Any]) -> CheckResult:
    version = data.get_dataset_version(ctx.db, int(object_id))
    if not version.stats.get("quality_report"):
        return CheckResult("quality-report", False, f"dataset version {object_id} has no stored quality report; "
                           "create the version again to produce one")
    try:
        report = data.get_quality_report(ctx, int(object_id))
    except ChainkeeperError as exc:  # missing or corrupted artefact: the approver must not see a stale page
        return CheckResult("quality-report", False, f"the quality report cannot be read: {exc}")
    pii = sum(report.get("pii_found", {}).values())
    return CheckResult("quality-report", True, f"report {version.stats['quality_report'][:12]}: "
                       f"{report['rows']:,} rows, {report['removed']['duplicates']:,} duplicates and "
                       f"{report['removed']['near_duplicates']:,} near-duplicates removed, {pii:,} PII redacted, "
                       f"{report['conflicts']:,} label conflicts")


def check_dataset_no_leakage(ctx: Context, object_id: str, payload: dict[str, Any]) -> CheckResult:
    """No text of the version is in two splits: a model would be scored on texts it learnt (issue 14)."""
    try:
        leakage = data.get_split_leakage(ctx, int(object_id))
    except ChainkeeperError as exc:  # a missing or corrupted snapshot cannot be checked, so it does not pass
        return CheckResult("no-leakage", False, f"the rows cannot be read to check the splits: {exc}")
    if not leakage["texts"]:
        return CheckResult("no-leakage", True, "no text is in more than one split")
    combos = ", ".join(f"{n:,} in {splits}" for splits, n in leakage["splits"].items())
    example = leakage["examples"][0] if leakage["examples"] else None
    shown = f"; e.g. {example['text'][:80]!r} is in {' and '.join(example['splits'])}" if example else ""
    return CheckResult("no-leakage", False, f"{leakage['texts']:,} texts ({leakage['rows']:,} rows) are in more than "
                       f"one split ({combos}){shown}: a model would be tested on texts it trained on; create the "
                       "version again from its sources (each text then gets one split) or remove the repeats")


def _release(ctx: Context, object_id: int, *, actor: Actor) -> Any:
    return data.release_dataset_version(ctx, object_id, actor=actor)


# --- model.promote ---------------------------------------------------------------------


def model_run_authors(ctx: Context, object_id: str) -> tuple[list[str], str]:
    model = registry.get_model_version(ctx.db, int(object_id))
    run = training.get_run(ctx.db, model.run_id)
    return [run.created_by], f"{run.created_by} is the author of training run {run.id}"


def check_model_has_evaluation(ctx: Context, object_id: str, payload: dict[str, Any]) -> CheckResult:
    """A held-out test evaluation is recorded: accuracy of a classifier, entity F1 of a tagger."""
    model = registry.get_model_version(ctx.db, int(object_id))
    test = model.metrics.get("test") or {}
    if registry.is_tagger_metrics(model.metrics):
        types = {k: float(v.get("f1-score", 0.0)) for k, v in (test.get("per_type") or {}).items()
                 if float(v.get("support", 1)) > 0}
        worst = min(types, key=lambda k: types[k]) if types else None
        return CheckResult("has-evaluation", True,
                           f"test entity F1 {test['f1']:.3f} (P {test.get('precision', 0):.3f}, "
                           f"R {test.get('recall', 0):.3f}) on {test.get('sentences', '?')} sentences"
                           + (f", weakest type {worst} at {types[worst]:.3f}" if worst is not None else ""))
    if "accuracy" not in test:
        return CheckResult("has-evaluation", False, "no evaluation on a held-out test split is recorded")
    return CheckResult("has-evaluation", True,
                       f"test accuracy {test['accuracy']:.3f}, macro-F1 {test.get('macro_f1', 0):.3f}")


def check_model_data_released(ctx: Context, object_id: str, payload: dict[str, Any]) -> CheckResult:
    """A model goes to production only from released data: a run started on a draft
    (``--allow-draft``) keeps its model out until that dataset version is released."""
    model = registry.get_model_version(ctx.db, int(object_id))
    run = training.get_run(ctx.db, model.run_id)
    version = data.get_dataset_version(ctx.db, run.dataset_version_id)
    name = f"dataset version {version.name} v{version.version} (id {version.id})"
    override = f" with the override {run.draft_override!r}" if run.draft_override is not None else ""
    if version.state != data.DatasetState.RELEASED:
        return CheckResult("data-released", False, f"training run {run.id} was started on {name}, which is "
                           f"{version.state}{override}; release the data through its gate, or retrain on a "
                           "released version")
    return CheckResult("data-released", True, f"trained on {name}, released by {version.released_by}"
                       + (f" after run {run.id} started on the draft{override}" if override else ""))


def check_release_gates(ctx: Context, object_id: str, payload: dict[str, Any]) -> CheckResult:
    """Run the model name's release gates; pass only if all pass."""
    results = registry.evaluate_release_gates(ctx, int(object_id))
    if not results:
        return CheckResult("release-gates", True, "no release thresholds are set for this model name")
    failed = [r for r in results if not r.passed]
    if failed:
        return CheckResult("release-gates", False, "; ".join(f"{r.gate}: {r.detail}" for r in failed))
    return CheckResult("release-gates", True, "; ".join(f"{r.gate}: {r.detail}" for r in results))


def promote_to_production(ctx: Context, object_id: int, *, actor: Actor, comment: str = "") -> ModelVersion:
    model = registry.get_model_version(ctx.db, object_id)
    if model.stage == "candidate":
        registry.transition_stage(ctx, object_id, "staging", actor=actor, comment=comment or "approved for production")
    return registry.transition_stage(ctx, object_id, "production", actor=actor, comment=comment or "approved")


# --- deployment.create -----------------------------------------------------------------


def check_model_in_production(ctx: Context, object_id: str, payload: dict[str, Any]) -> CheckResult:
    model = registry.get_model_version(ctx.db, int(object_id))
    if model.stage != "production":
        return CheckResult("in-production", False, f"model version {object_id} is {model.stage}, not production")
    if not payload.get("name"):
        return CheckResult("in-production", False, "no deployment name given")
    return CheckResult("in-production", True, f"{model.name} v{model.version} is in production")


def deploy(ctx: Context, object_id: int, *, actor: Actor, name: str) -> Deployment:
    return serving.deploy_model_version(ctx, name=name, model_version_id=object_id, actor=actor)


# --- the table -------------------------------------------------------------------------


def _dataset_project(ctx: Context, object_id: str) -> str:
    return data.project_of_dataset_version(ctx.db, int(object_id))


def _model_project(ctx: Context, object_id: str) -> str:
    return registry.project_of_model_version(ctx.db, int(object_id))


def gate_table() -> dict[str, Gate]:
    """Every gated action of the chain, by action."""
    gates = [
        Gate(action="dataset.release", object_kind="dataset_version", executor=_release,
             project_of=_dataset_project, excluded=dataset_last_editors,
             checks=(check_dataset_is_draft, check_dataset_quality_report, check_dataset_no_leakage)),
        Gate(action="model.promote", object_kind="model_version", executor=promote_to_production,
             project_of=_model_project, excluded=model_run_authors,
             checks=(check_model_has_evaluation, check_model_data_released, check_release_gates)),
        Gate(action="deployment.create", object_kind="model_version", executor=deploy,
             project_of=_model_project, checks=(check_model_in_production,)),
    ]
    return {gate.action: gate for gate in gates}
