"""The retraining loop: from a handed-over ticket to a candidate at the release gate.

Each step is the ML engineer's (``maintenance.retrain``) and reuses the stage that owns
the work; this module only chains them and records the outcome on the ticket. The data a
candidate learns from passes the data steward's gate first, as every dataset version
does, so no model reaches production trained on rows nobody released:

1. ``start_retraining``: the rows of the *latest released* version of the serving
   model's dataset (each split kept as it was) plus the deployment's feedback-labelled
   traffic (a text the released version holds in the split it has there, so no text is
   in two splits; the others ``train``/``test`` per label) become the next draft version of that
   dataset (``data.freeze_sources``, data's one freeze path), and its release is requested
   (``governance.approvals``, gate ``dataset.release``, with its quality report). A data
   steward who did not create it (so never this engineer) approves or rejects it.
2. ``train_on_released``: once that version is released, a training run on it is queued
   with the serving run's config and base model (``training.runs.start_training_run``);
   while it is a draft, or after its release was rejected, the step is refused.
3. ``evaluate_retraining``: once the run succeeded, the candidate and the serving
   version label the *same* test split of the new version; accuracy and macro-F1 are
   stored on the ticket overall, on the released rows and on the feedback rows.
4. ``hand_to_release_gate``: a candidate better than the serving version on the
   feedback rows is registered (``registry.versions``) and its promotion is requested
   (``governance.approvals``); a release manager who is not the run's author decides.
5. ``close_when_served``: once the deployment serves the candidate (a rollout by the
   release manager), an operator closes the ticket.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.data import (
    DatasetState,
    DatasetVersion,
    ParsedSource,
    Record,
    freeze_sources,
    get_dataset_version,
    list_dataset_versions,
    read_dataset_rows,
    row_identities,
    store_records,
    stratified_split,
    text_identities,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import (
    Approval,
    ApprovalState,
    list_approvals,
    request_approval,
)
from chainkeeper.governance.permissions import authorize, authorize_object
from chainkeeper.monitoring import (
    Ticket,
    TicketState,
    advance_ticket,
    close_ticket,
    get_ticket,
    labelled_predictions,
)
from chainkeeper.registry import ModelVersion, get_model_version, register_model_version
from chainkeeper.serving import current_route, get_deployment, project_of_deployment
from chainkeeper.training import (
    TrainConfig,
    classification_metrics,
    get_run,
    start_training_run,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from chainkeeper.core.context import Context

__all__ = [
    "FEEDBACK_TEST_SHARE",
    "Retraining",
    "RetrainingRun",
    "close_when_served",
    "compare_on_test_split",
    "evaluate_retraining",
    "feedback_rows",
    "hand_to_release_gate",
    "latest_released_version",
    "start_retraining",
    "train_on_released",
]

# Share of the feedback-labelled traffic kept out of training to judge the candidate.
FEEDBACK_TEST_SHARE = 0.3


@dataclass(frozen=True)
class Retraining:
    """What ``start_retraining`` set going: a draft version and the request to release it.

    ``feedback_train`` and ``feedback_test`` count the feedback rows in the version's train
    and test splits (a repeat of a released row of its split is not counted: de-duplication
    kept the released row).
    """

    ticket: Ticket
    dataset_version_id: int
    release_approval_id: int
    feedback_train: int
    feedback_test: int


@dataclass(frozen=True)
class RetrainingRun:
    """What ``train_on_released`` queued."""

    ticket: Ticket
    dataset_version_id: int
    run_id: int
    job_id: int | None


def latest_released_version(ctx: Context, name: str) -> DatasetVersion:
    """The newest released version of dataset ``name``.

    Raises:
        NotFound: the dataset has no released version.
    """
    for version in list_dataset_versions(ctx.db, name=name):
        if version.state == DatasetState.RELEASED:
            return version
    raise NotFound(f"Dataset {name!r} has no released version to retrain on.",
                   hint="Ask a data steward to release one (chainkeeper approvals).")


def _ticket_project(ctx: Context, ticket_id: int) -> str | None:
    """The project of a ticket: its deployment's (None for a ticket of no deployment)."""
    ticket = get_ticket(ctx.db, ticket_id)
    return project_of_deployment(ctx.db, ticket.deployment_id) if ticket.deployment_id is not None else None


def _authorize(ctx: Context, actor: Actor, ticket_id: int, *actions: str) -> None:
    """Each of ``actions`` in the ticket's project; the first refuses before the ticket is looked up."""
    for action in actions:
        authorize_object(ctx.db, actor, action, lambda: _ticket_project(ctx, ticket_id))


def feedback_rows(ctx: Context, deployment_id: int) -> list[tuple[str, str, str]]:
    """The deployment's served texts that carry a feedback label, as (request id, text, label)."""
    return [(r.request_id, r.input_text, r.truth) for r in labelled_predictions(ctx.db, deployment_id)
            if r.truth is not None]


def _serving(ctx: Context, ticket: Ticket) -> tuple[Any, ModelVersion, Any]:
    if ticket.deployment_id is None:
        raise Conflict(f"Ticket {ticket.id} names no deployment; there is no serving model to retrain.")
    deployment = get_deployment(ctx.db, ticket.deployment_id)
    version = get_model_version(ctx.db, deployment.model_version_id)
    return deployment, version, get_run(ctx.db, version.run_id)


def _store_rows(ctx: Context, rows: list[tuple[str, str, str]], *, uri: str, split: str, actor: Actor) -> int:
    """Store (origin, text, label) rows as one source of ``split``; return its id."""
    records = [Record(text=text, label=label, line=i + 1, origin=origin) for i, (origin, text, label) in
               enumerate(rows)]
    digest = hashlib.sha256("\n".join(f"{o}\t{t}\t{y}" for o, t, y in rows).encode()).hexdigest()
    source = store_records(ctx, ParsedSource(format="rows", encoding="utf-8", records=records), uri=uri,
                           sha256=digest, actor=actor, kind="retraining", split=split)
    return source.id


def start_retraining(ctx: Context, ticket_id: int, *, actor: Actor, test_share: float = FEEDBACK_TEST_SHARE,
                     seed: int = 13, comment: str = "") -> Retraining:
    """Build the retraining dataset version from a handed-over ticket and ask for its release.

    Args:
        ticket_id: a ticket handed over to ml_engineer.
        actor: the ML engineer (maintenance.retrain, dataset.release).
        test_share: share of each label's feedback rows kept for the test split.
        seed: seeds that split.
        comment: what the data steward should know (default: names the ticket).

    Returns:
        The new draft version, its pending release request and how many feedback rows
        went where.

    Raises:
        Forbidden: the actor may not retrain or ask for a dataset release. NotFound: no
            such ticket, or no released dataset version. Conflict: the ticket is not
            handed over, or the deployment has no feedback-labelled traffic.
            InvalidInput: a bad test share. Nothing is stored in any of these cases.
    """
    _authorize(ctx, actor, ticket_id, "maintenance.retrain")
    if not 0 < test_share < 1:
        raise InvalidInput(f"test_share must lie between 0 and 1, got {test_share}.", hint="The default is 0.3.")
    ticket = get_ticket(ctx.db, ticket_id)
    if ticket.state != TicketState.HANDED_OVER:
        raise Conflict(f"Ticket {ticket_id} is {ticket.state}; retraining starts from a ticket handed over to "
                       "ml_engineer.", hint="An operator hands it over: 'chainkeeper monitor tickets handover ID'.")
    deployment, serving, serving_run = _serving(ctx, ticket)
    reference = get_dataset_version(ctx.db, serving_run.dataset_version_id)
    # Checked before anything is stored: the request below needs it, per dataset project.
    authorize(ctx.db, actor, "dataset.release", project=reference.name)
    released = latest_released_version(ctx, reference.name)
    labelled = feedback_rows(ctx, deployment.id)
    if not labelled:
        raise Conflict(f"Deployment {deployment.name!r} has no feedback-labelled traffic to learn from.",
                       hint="Attach true labels to served request ids first (chainkeeper monitor feedback).")

    released_rows = read_dataset_rows(ctx, released.id)
    source_ids = _store_released_rows(ctx, released.id, released_rows, actor)
    assigned = _feedback_splits(released_rows, labelled, seed=seed, test_share=test_share)
    del released_rows
    feedback_sources = []
    for split in ("train", "dev", "test"):
        rows = [(f"prediction:{rid}", text, y) for (rid, text, y), s in zip(labelled, assigned, strict=True)
                if s == split]
        if rows:
            feedback_sources.append(_store_rows(ctx, rows, uri=f"chainkeeper:deployment/{deployment.name}/feedback"
                                                f"?split={split}", split=split, actor=actor))
    # data's one freeze path, as the engineer this loop authorised above (maintenance.retrain
    # in the ticket's project); the steward's release gate still stands before training.
    version = freeze_sources(ctx, name=released.name, source_ids=source_ids + feedback_sources,
                             actor=actor, seed=released.split_seed)
    # What went in: a feedback row repeating a released row of its split was de-duplicated away.
    frozen = read_dataset_rows(ctx, version.id).select(["split", "source_id"]).to_pylist()
    counts = {split: sum(1 for r in frozen if r["split"] == split and r["source_id"] in feedback_sources)
              for split in ("train", "test")}
    approval = request_approval(ctx, "dataset.release", version.id, actor=actor,
                                comment=comment or f"retraining data for maintenance ticket {ticket_id}: "
                                f"{released.name} v{released.version} plus {len(labelled)} feedback-labelled "
                                f"requests of deployment {deployment.name}")
    ticket = advance_ticket(ctx, ticket_id, actor=actor, to=TicketState.RETRAINING,
                            allowed_from=(TicketState.HANDED_OVER,), action="ticket.retrain",
                            details={"released_dataset_version_id": released.id, "dataset_version_id": version.id,
                                     "release_approval_id": approval.id, "feedback_source_ids": feedback_sources,
                                     "serving_model_version_id": serving.id, "feedback_rows": counts})
    return Retraining(ticket=ticket, dataset_version_id=version.id, release_approval_id=approval.id,
                      feedback_train=counts["train"], feedback_test=counts["test"])


def _feedback_splits(released: pa.Table, labelled: list[tuple[str, str, str]], *, seed: int,
                     test_share: float) -> list[str]:
    """The split of each feedback row: its text's split in the released rows, else train/test per label.

    Issue 14 item 2: feedback repeating a released test text went to train (and the other
    way round), so the retraining version had texts in both. The new texts are drawn once
    per distinct text, so repeated traffic lands in one split too.
    """
    known = dict(zip(row_identities(released).to_pylist(), released.column("split").to_pylist(), strict=True))
    keys = text_identities([text for _, text, _ in labelled])
    label_of: dict[str, str] = {}
    for key, (_, _, label) in zip(keys, labelled, strict=True):
        label_of.setdefault(key, label)
    fresh = [key for key in label_of if key not in known]
    drawn = dict(zip(fresh, stratified_split([label_of[k] for k in fresh], seed=seed,
                                             fractions={"train": 1 - test_share, "test": test_share}), strict=True))
    return [known.get(key) or drawn[key] for key in keys]


def _store_released_rows(ctx: Context, version_id: int, table: pa.Table, actor: Actor) -> list[int]:
    """Store the labelled rows of a released version (``table``) as one source per split; their ids."""
    columns = {name: table.column(name).to_pylist() for name in ("row_id", "text", "label", "split")}
    source_ids = []
    for split in ("train", "dev", "test"):
        rows = [(f"dataset_version:{version_id}#row{r}", t, y) for r, t, y, s in
                zip(columns["row_id"], columns["text"], columns["label"], columns["split"], strict=True)
                if s == split and y]
        if rows:
            source_ids.append(_store_rows(ctx, rows, uri=f"chainkeeper:dataset-version/{version_id}?split={split}",
                                          split=split, actor=actor))
    return source_ids


def _refuse_unreleased(ctx: Context, ticket_id: int, version: DatasetVersion) -> NoReturn:
    """Raise a Conflict that says where the version's release stands (it is not released)."""
    label = f"Dataset version {version.id} ({version.name} v{version.version})"
    requests = [a for a in list_approvals(ctx, object_kind="dataset_version", object_id=str(version.id))
                if a.action == "dataset.release"]
    latest = requests[0] if requests else None  # newest first
    if latest is not None and latest.state == ApprovalState.PENDING:
        raise Conflict(f"{label} is not released yet: release request {latest.id} awaits a data steward; "
                       f"ticket {ticket_id} trains only on released data.",
                       hint=f"A data steward decides: 'chainkeeper approvals show {latest.id}'.")
    if latest is not None and latest.state in (ApprovalState.REJECTED, ApprovalState.FAILED):
        raise Conflict(f"{label} is not released: release request {latest.id} was {latest.state} by "
                       f"{latest.decided_by} ({latest.decision_comment}); ticket {ticket_id} trains only on "
                       "released data.", hint=f"Address the steward's comment and ask again "
                       f"('chainkeeper data release-request {version.id}'), or close the ticket with a resolution.")
    raise Conflict(f"{label} is {version.state}, not released, and no release request is open; ticket "
                   f"{ticket_id} trains only on released data.",
                   hint=f"Ask for its release: 'chainkeeper data release-request {version.id}'.")


def train_on_released(ctx: Context, ticket_id: int, *, actor: Actor, config: TrainConfig | None = None,
                      base_model: Path | None = None) -> RetrainingRun:
    """Queue the training run on the retraining version, once a data steward released it.

    Args:
        ticket_id: a ticket whose retraining version ``start_retraining`` built.
        actor: the ML engineer (maintenance.retrain, run.create).
        config: the run's hyper-parameters; default the serving run's.
        base_model: the base model folder; default the serving run's.

    Returns:
        The ticket, the version trained on and the queued run with its job.

    Raises:
        Forbidden: the actor may not retrain or train. NotFound: no such ticket.
        Conflict: the ticket is not retraining or its run is queued already; the version
            is not released (its release request is pending, was rejected or is missing;
            the message says which and who decides). Nothing is stored then.
        InvalidInput: the config or base model cannot train this version.
    """
    _authorize(ctx, actor, ticket_id, "maintenance.retrain", "run.create")
    ticket = get_ticket(ctx.db, ticket_id)
    if ticket.state != TicketState.RETRAINING:
        raise Conflict(f"Ticket {ticket_id} is {ticket.state}, not retraining.",
                       hint="Start retraining first: 'chainkeeper monitor tickets retrain ID'.")
    if "run_id" in ticket.details:
        raise Conflict(f"Ticket {ticket_id} already trains run {ticket.details['run_id']}.",
                       hint=f"Follow it with 'chainkeeper jobs show {ticket.details['job_id']}', then evaluate it.")
    version = get_dataset_version(ctx.db, ticket.details["dataset_version_id"])
    if version.state != DatasetState.RELEASED:
        _refuse_unreleased(ctx, ticket_id, version)
    serving = get_model_version(ctx.db, ticket.details["serving_model_version_id"])
    serving_run = get_run(ctx.db, serving.run_id)
    run = start_training_run(ctx, dataset_version_id=version.id, config=config or serving_run.train_config,
                             actor=actor, base_model=base_model or Path(serving_run.base_model))
    ticket = advance_ticket(ctx, ticket_id, actor=actor, to=TicketState.RETRAINING,
                            allowed_from=(TicketState.RETRAINING,), action="ticket.train",
                            details={"run_id": run.id, "job_id": run.job_id, "released_by": version.released_by})
    return RetrainingRun(ticket=ticket, dataset_version_id=version.id, run_id=run.id, job_id=run.job_id)


def _load(ctx: Context, digest: str) -> tuple[Any, Any]:
    from chainkeeper.chain._training import TextClassifier  # loads torch

    return TextClassifier.load(ctx.artifacts.get_tree(digest, ctx.settings.home / "cache" / "models" / digest))


def _scores(truth: list[str], predicted: list[str]) -> dict[str, float | int]:
    if not truth:
        return {"rows": 0}
    metrics = classification_metrics(truth, predicted, sorted(set(truth) | set(predicted)))
    return {"rows": len(truth), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def compare_on_test_split(ctx: Context, dataset_version_id: int, model_artifacts: dict[str, str],
                          feedback_source_ids: list[int]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Label one test split with several models; score each overall, on feedback rows and on the rest.

    Args:
        dataset_version_id: whose test split.
        model_artifacts: name -> model folder digest (e.g. "serving", "candidate").
        feedback_source_ids: the sources whose rows are feedback-labelled traffic.

    Returns:
        ``{name: {"all"|"feedback"|"released": {"rows", "accuracy", "macro_f1"}}}``.

    Raises:
        InvalidInput: the version has no labelled test rows.
    """
    test = read_dataset_rows(ctx, dataset_version_id, "test")
    texts, truth = test.column("text").to_pylist(), test.column("label").to_pylist()
    sources = test.column("source_id").to_pylist()
    keep = [i for i, y in enumerate(truth) if y]
    if not keep:
        raise InvalidInput(f"Dataset version {dataset_version_id} has no labelled test rows to compare models on.")
    parts = {"all": keep, "feedback": [i for i in keep if sources[i] in feedback_source_ids],
             "released": [i for i in keep if sources[i] not in feedback_source_ids]}
    out = {}
    for name, digest in model_artifacts.items():
        from chainkeeper.chain._training import predict_labels  # loads torch

        model, tokenizer = _load(ctx, digest)
        predicted = dict(zip(keep, predict_labels(model, tokenizer, [texts[i] for i in keep]), strict=True))
        out[name] = {part: _scores([truth[i] for i in rows], [predicted[i] for i in rows])
                     for part, rows in parts.items()}
    return out


def evaluate_retraining(ctx: Context, ticket_id: int, *, actor: Actor) -> dict[str, Any]:
    """Score the candidate and the serving version on the same test split; store it on the ticket.

    Returns:
        ``{"serving": {...}, "candidate": {...}, "better_on_feedback": bool}`` (see
        ``compare_on_test_split``).

    Raises:
        Forbidden: may not retrain. NotFound: no such ticket.
        Conflict: the ticket has no retraining run (not started, or its data not yet
            released and trained on), or the run has not succeeded.
    """
    _authorize(ctx, actor, ticket_id, "maintenance.retrain")
    ticket = get_ticket(ctx.db, ticket_id)
    if ticket.state != TicketState.RETRAINING:
        raise Conflict(f"Ticket {ticket_id} is {ticket.state}, not retraining.",
                       hint="Start retraining first: 'chainkeeper monitor tickets retrain ID'.")
    if "run_id" not in ticket.details:
        raise Conflict(f"Ticket {ticket_id} has no training run yet; its data waits for a data steward's release.",
                       hint=f"Once released, train on it: 'chainkeeper monitor tickets train {ticket_id}'.")
    run = get_run(ctx.db, ticket.details["run_id"])
    if run.state != "succeeded" or not run.model_artifact:
        raise Conflict(f"Retraining run {run.id} is {run.state}; it can be evaluated once it succeeded.",
                       hint=f"Follow it with 'chainkeeper jobs show {run.job_id}'.")
    serving = get_model_version(ctx.db, ticket.details["serving_model_version_id"])
    scores = compare_on_test_split(ctx, ticket.details["dataset_version_id"],
                                   {"serving": serving.model_artifact, "candidate": run.model_artifact},
                                   list(ticket.details["feedback_source_ids"]))
    new, old = scores["candidate"]["feedback"], scores["serving"]["feedback"]
    comparison = {**scores, "better_on_feedback": bool(new.get("rows")) and new["macro_f1"] > old["macro_f1"]}
    advance_ticket(ctx, ticket_id, actor=actor, to=TicketState.RETRAINING, allowed_from=(TicketState.RETRAINING,),
                   action="ticket.evaluate", details={"comparison": comparison})
    return comparison


def hand_to_release_gate(ctx: Context, ticket_id: int, *, actor: Actor, comment: str = "") -> tuple[ModelVersion,
                                                                                                 Approval]:
    """Register the evaluated candidate and ask for its promotion to production.

    Raises:
        Forbidden: may not retrain, register or ask for promotion. NotFound: no such ticket.
        Conflict: not evaluated yet, or the candidate is not better than the serving
            version on the feedback rows (nothing is registered then).
    """
    _authorize(ctx, actor, ticket_id, "maintenance.retrain", "model.register")
    ticket = get_ticket(ctx.db, ticket_id)
    comparison = ticket.details.get("comparison")
    if ticket.state != TicketState.RETRAINING or comparison is None:
        raise Conflict(f"Ticket {ticket_id} has no evaluated candidate ({ticket.state}).",
                       hint="Evaluate the retraining run first: 'chainkeeper monitor tickets evaluate ID'.")
    if not comparison["better_on_feedback"]:
        new, old = comparison["candidate"]["feedback"], comparison["serving"]["feedback"]
        raise Conflict(f"The candidate of ticket {ticket_id} is not better than the serving version on the "
                       f"feedback rows (macro-F1 {new.get('macro_f1', 0):.4f} vs {old.get('macro_f1', 0):.4f}); "
                       "it is not sent to the release gate.",
                       hint="Collect more feedback-labelled traffic or change the config, then retrain.")
    serving = get_model_version(ctx.db, ticket.details["serving_model_version_id"])
    version = register_model_version(ctx, run_id=ticket.details["run_id"], name=serving.name, actor=actor)
    approval = request_approval(ctx, "model.promote", version.id, actor=actor,
                                comment=comment or f"retrained for maintenance ticket {ticket_id}")
    advance_ticket(ctx, ticket_id, actor=actor, to=TicketState.IN_RELEASE, allowed_from=(TicketState.RETRAINING,),
                   action="ticket.release", details={"model_version_id": version.id, "approval_id": approval.id})
    return version, approval


def close_when_served(ctx: Context, ticket_id: int, *, actor: Actor) -> Ticket:
    """Close a ticket in release once its deployment serves the retrained version (operator).

    Raises:
        Forbidden: may not manage alerts. NotFound: no such ticket.
        Conflict: the ticket is not in release, or the deployment does not serve the candidate yet.
    """
    _authorize(ctx, actor, ticket_id, "alert.manage")
    ticket = get_ticket(ctx.db, ticket_id)
    if ticket.state != TicketState.IN_RELEASE or ticket.deployment_id is None:
        raise Conflict(f"Ticket {ticket_id} is {ticket.state}; only a ticket whose candidate is in release can be "
                       "closed as served.", hint="Close it by hand with a resolution instead.")
    deployment = get_deployment(ctx.db, ticket.deployment_id)
    route = current_route(ctx.db, deployment.name)
    wanted = ticket.details["model_version_id"]
    if route.primary_version_id != wanted:
        raise Conflict(f"Deployment {deployment.name!r} still serves model version {route.primary_version_id}, "
                       f"not the retrained version {wanted}.",
                       hint="A release manager promotes it (approvals) and rolls it out (chainkeeper deploy).")
    return close_ticket(ctx, ticket_id, actor=actor,
                        resolution=f"deployment {deployment.name} serves retrained model version {wanted}")
