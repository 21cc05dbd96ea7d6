"""What each gate checks and who it keeps out: the stage-specific side of approvals.

These functions read other stages only through their public functions. Each check
returns a ``CheckResult``; each exclusion rule returns (names, reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import CheckResult

if TYPE_CHECKING:
    from chainkeeper.core.context import Context


# --- dataset.release -------------------------------------------------------------------


def dataset_last_editors(ctx: Context, object_id: str) -> tuple[list[str], str]:
    from chainkeeper.data.versions import get_dataset_version

    version = get_dataset_version(ctx.db, int(object_id))
    return [version.created_by], f"{version.created_by} last edited the rows of dataset version {object_id}"


def check_dataset_is_draft(ctx: Context, object_id: int | str, payload: dict[str, Any]) -> CheckResult:
    from chainkeeper.data.versions import get_dataset_version

    version = get_dataset_version(ctx.db, int(object_id))
    train_rows = version.stats.get("rows_per_split", {}).get("train", 0)
    if version.state != "draft":
        return CheckResult("dataset-is-draft", False, f"dataset version {object_id} is already {version.state}")
    if train_rows == 0:
        return CheckResult("dataset-is-draft", False, "the version has no training rows")
    return CheckResult("dataset-is-draft", True, f"draft with {train_rows:,} training rows, "
                       f"{len(version.labels)} labels")


def check_dataset_quality_report(ctx: Context, object_id: int | str, payload: dict[str, Any]) -> CheckResult:
    from chainkeeper.core.errors import ChainkeeperError
    from chainkeeper.data.quality import get_quality_report
    from chainkeeper.data.versions import get_dataset_version

    version = get_dataset_version(ctx.db, int(object_id))
    if not version.stats.get("quality_report"):
        return CheckResult("quality-report", False, f"dataset version {object_id} has no stored quality report; "
                           "create the version again to produce one")
    try:
        report = get_quality_report(ctx, int(object_id))
    except ChainkeeperError as exc:  # missing or corrupted artefact: the approver must not see a stale page
        return CheckResult("quality-report", False, f"the quality report cannot be read: {exc}")
    pii = sum(report.get("pii_found", {}).values())
    return CheckResult("quality-report", True, f"report {version.stats['quality_report'][:12]}: "
                       f"{report['rows']:,} rows, {report['removed']['duplicates']:,} duplicates and "
                       f"{report['removed']['near_duplicates']:,} near-duplicates removed, {pii:,} PII redacted, "
                       f"{report['conflicts']:,} label conflicts")


# --- model.promote ---------------------------------------------------------------------


def model_run_authors(ctx: Context, object_id: str) -> tuple[list[str], str]:
    from chainkeeper.registry.versions import get_model_version
    from chainkeeper.training.runs import get_run

    model = get_model_version(ctx.db, int(object_id))
    run = get_run(ctx.db, model.run_id)
    return [run.created_by], f"{run.created_by} is the author of training run {run.id}"


def check_model_has_evaluation(ctx: Context, object_id: int | str, payload: dict[str, Any]) -> CheckResult:
    from chainkeeper.registry.versions import get_model_version

    model = get_model_version(ctx.db, int(object_id))
    test = model.metrics.get("test") or {}
    if "accuracy" not in test:
        return CheckResult("has-evaluation", False, "no evaluation on a held-out test split is recorded")
    return CheckResult("has-evaluation", True,
                       f"test accuracy {test['accuracy']:.3f}, macro-F1 {test.get('macro_f1', 0):.3f}")


def promote_to_production(ctx: Context, object_id: int, *, actor: Actor, comment: str = "") -> Any:
    from chainkeeper.registry.versions import get_model_version, transition_stage

    model = get_model_version(ctx.db, object_id)
    if model.stage == "candidate":
        transition_stage(ctx, object_id, "staging", actor=actor, comment=comment or "approved for production")
    return transition_stage(ctx, object_id, "production", actor=actor, comment=comment or "approved")


# --- deployment.create -----------------------------------------------------------------


def check_model_in_production(ctx: Context, object_id: int | str, payload: dict[str, Any]) -> CheckResult:
    from chainkeeper.registry.versions import get_model_version

    model = get_model_version(ctx.db, int(object_id))
    if model.stage != "production":
        return CheckResult("in-production", False, f"model version {object_id} is {model.stage}, not production")
    if not payload.get("name"):
        return CheckResult("in-production", False, "no deployment name given")
    return CheckResult("in-production", True, f"{model.name} v{model.version} is in production")


def deploy(ctx: Context, object_id: int, *, actor: Actor, name: str) -> Any:
    from chainkeeper.serving.deployments import deploy_model_version

    return deploy_model_version(ctx, name=name, model_version_id=object_id, actor=actor)
