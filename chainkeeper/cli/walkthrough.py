"""The people, the hand-offs and the shared steps of the quickstarts (``cli.quickstart``,
``cli.quickstart_ner``): each person a real user with a real token, each gated step asked
by one and approved by a second entitled person, each step printed with who did it in
which role; freezing, releasing, training as a job and deploying are the same for a
classifier and a tagger."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.panel import Panel

from chainkeeper import api, chain, data, registry, serving, training
from chainkeeper.cli.governance import render_lineage
from chainkeeper.cli.jobs import follow_job
from chainkeeper.cli.state import console
from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput, NotFound
from chainkeeper.core.jobs import get_job
from chainkeeper.core.settings import default_base_model
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.ledger import verify_ledger
from chainkeeper.governance.users import authenticate_token, create_user, get_user, issue_token

if TYPE_CHECKING:
    from chainkeeper.data import DatasetVersion, Source
    from chainkeeper.registry import ModelVersion
    from chainkeeper.serving import Deployment
    from chainkeeper.training import Run, TrainConfig

# Steps of a quickstart, as printed ("[5/9] train ...").
STEPS = 9


@dataclass(frozen=True)
class Cast:
    """The people of the quickstart, each a real user acting with a real token."""

    steward: Actor  # imports, cleans, freezes the dataset version
    steward_approver: Actor  # a second data_steward who approves the release
    engineer: Actor  # trains and registers; asks for promotion
    release_manager: Actor  # approves the promotion; asks for the deployment
    release_approver: Actor  # a second release_manager who approves the deployment
    annotator_a: Actor  # labels a queue of the annotation slice
    annotator_b: Actor  # labels the other queue; the overlap items are in both
    operator: Actor  # sends the traffic, gives feedback, checks drift, sets the alert rule
    auditor: Actor
    support_agent: Actor  # answers the conversations a support assistant hands over (--app support)
    tokens: dict[str, str]


CAST = {
    "steward": ("sofia", "data_steward"),
    "steward_approver": ("dara", "data_steward"),
    "engineer": ("emil", "ml_engineer"),
    "release_manager": ("rhea", "release_manager"),
    "release_approver": ("remy", "release_manager"),
    "annotator_a": ("ana", "annotator"),
    "annotator_b": ("ben", "annotator"),
    "operator": ("omar", "operator"),
    "auditor": ("ada", "auditor"),
    "support_agent": ("sage", "support_agent"),
}


def ensure_cast(ctx: Context) -> Cast:
    """Create the quickstart's users on first use and give each a fresh one-day token."""
    actors, tokens = {}, {}
    for part, (name, role) in CAST.items():
        try:
            get_user(ctx.db, name)
        except NotFound:
            create_user(ctx.db, name, roles=[role], display_name=f"{name} ({role})")
        secret = issue_token(ctx.db, name, name="quickstart", expires_in=timedelta(days=1)).secret
        actors[part], tokens[part] = authenticate_token(ctx.db, secret), secret
    return Cast(**actors, tokens=tokens)


# When the walk-through started (time.monotonic()): ``start_clock`` sets it, each step line shows the time since.
_CLOCK: list[float] = []


def start_clock() -> None:
    _CLOCK[:] = [time.monotonic()]


def elapsed() -> str:
    """Wall time since ``start_clock``, e.g. "2 min 05 s"."""
    return _duration(time.monotonic() - _CLOCK[0]) if _CLOCK else "0 s"


def step(n: int, stage: str, actor: Actor, text: str, *, part: str = "", of: int = STEPS) -> None:
    """Print a step of the walk-through: who did it, in which role, what happened, and when
    (the wall time since the start, so a newcomer sees where the minutes go). ``part`` names
    a walk-through that follows the chain's (``[support 2/6]``), ``of`` its number of steps."""
    role = ", ".join(sorted(actor.roles))
    console.print(f"[bold cyan]\\[{part + ' ' if part else ''}{n}/{of}] {stage}[/] [dim]{actor.name} ({role})[/] "
                  f"{text} [dim](at {elapsed()})[/]")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def handoff(ctx: Context, action: str, object_id: int, requester: Actor, approver: Actor, comment: str, *,
             payload: dict[str, Any] | None = None) -> None:
    """A gated step: one person asks, the checks run, a second entitled person approves."""
    request = request_approval(ctx, action, object_id, actor=requester, comment=comment, payload=payload)
    checks = ", ".join(f"{c['name']} {'ok' if c['passed'] else 'FAILED'}" for c in request.checks)
    decision = decide(ctx, request.id, actor=approver, approve=True, comment=comment)
    console.print(f"      approval {request.id}: {action} asked by {requester.name}, checks ({checks}), "
                  f"{decision.state} by {approver.name}")


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def base_model_name(base_model: str | Path) -> str:
    """How a step names the base model: the shipped MiniLM by name, any other by its path."""
    return "all-MiniLM-L6-v2 (offline)" if Path(base_model) == default_base_model() else str(base_model)


def print_sources(sources: list[Source]) -> None:
    for s in sources:
        console.print(f"      {Path(s.uri).name}: {s.rows_accepted:,} accepted, {s.rows_quarantined} quarantined, "
                      f"sha256 {s.sha256[:12]}")


def freeze(ctx: Context, name: str, sources: list[Source], cast: Cast, *, unit: str) -> DatasetVersion:
    """Step 2: clean and freeze the sources as a dataset version, with the recipe's report."""
    version = data.create_dataset_version(ctx, name=name, source_ids=[s.id for s in sources], actor=cast.steward)
    step(2, "clean", cast.steward, f"dataset {version.name} v{version.version} ({version.content_hash[:12]})")
    for report in version.recipe:
        console.print(f"      {report['name']:<16} {report['rows_in']:>7,} → {report['rows_out']:>7,} {unit}"
                      f" ({report['changed']:,} changed)")
    return version


def release(ctx: Context, version: DatasetVersion, cast: Cast, *, comment: str, labels: str) -> DatasetVersion:
    """Step 4: the release asked by the steward, approved by a second one."""
    handoff(ctx, "dataset.release", version.id, cast.steward, cast.steward_approver, comment)
    version = data.get_dataset_version(ctx.db, version.id)
    per_split = version.stats.get("rows_per_split", {})
    step(4, "release data", cast.steward_approver, f"released v{version.version}: {len(version.labels)} {labels}, "
         + ", ".join(f"{k} {v:,}" for k, v in per_split.items()))
    return version


def train(ctx: Context, version: DatasetVersion, config: TrainConfig, cast: Cast, *, what: str) -> Run:
    """Step 5: a training run queued as a job, run by a local worker, followed with a progress bar.

    Raises:
        InvalidInput: the job did not succeed (its error, and where its log is).
    """
    run = training.start_training_run(ctx, dataset_version_id=version.id, config=config, actor=cast.engineer)
    step(5, "train", cast.engineer, f"run {run.id}: {what} {base_model_name(run.base_model)} "
         f"(epochs {config.epochs}, lr {config.learning_rate}, batch {config.batch_size}) as job {run.job_id}")
    assert run.job_id is not None
    thread = threading.Thread(target=Worker(ctx).run_one, name="quickstart-worker", daemon=True)
    thread.start()
    follow_job(ctx.db, run.job_id, show_logs=False)
    thread.join()
    job = get_job(ctx.db, run.job_id)
    if job.state != "succeeded":
        raise InvalidInput(f"Training job {job.id} {job.state}: {job.error or job.message}.",
                           hint=f"See 'chainkeeper jobs logs {job.id}'.")
    return training.get_run(ctx.db, run.id)


def deploy(ctx: Context, model: ModelVersion, cast: Cast, name: str) -> Deployment:
    """Step 7: the deployment asked by one release_manager, approved by another."""
    handoff(ctx, "deployment.create", model.id, cast.release_manager, cast.release_approver, "go live",
            payload={"name": name})
    deployment = serving.get_deployment_by_name(ctx.db, name)
    model = registry.get_model_version(ctx.db, model.id)
    step(7, "deploy", cast.release_approver, f"model v{model.version} ({model.stage}) serves deployment "
         f"'{deployment.name}'")
    return deployment


# What the operator's traffic is: (predict URL, ctx, dataset version id, token) -> what was
# measured, with "requests" and "predictions" counts among it.
Probe = Callable[[str, Context, int, str], dict[str, Any]]


def serve(ctx: Context, deployment: Deployment, version: DatasetVersion, cast: Cast, probe: Probe) -> dict[str, Any]:
    """Steps 8-9: serve the deployment over HTTP on loopback while the operator sends traffic."""
    server = api.start_server_in_thread(api.create_app(ctx), host="127.0.0.1", port=0)
    try:
        step(8, "serve", cast.operator, f"listening on {server.url}")
        results = probe(f"{server.url}/v1/deployments/{deployment.name}/predict", ctx, version.id,
                        cast.tokens["operator"])
    finally:
        server.stop()
    step(9, "monitor", cast.operator, f"{results['requests']} HTTP requests served {results['predictions']:,} texts, "
         "each logged with its request id")
    return results


def summarise(ctx: Context, cast: Cast, results: dict[str, Any], monitored: dict[str, Any], *, headline: list[str],
              live: str, title: str, footer: Sequence[str] = ()) -> None:
    """The end of a quickstart: the first prediction traced back to its files and approvers,
    then a panel of what was measured (``headline`` first, ``live`` the feedback figure) with
    the drift checks, the ledger's verdict, the total time and how to trace it yourself."""
    console.print(render_lineage(chain.lineage_of(ctx, "prediction", results["first_request_id"], actor=cast.auditor)))
    verdict = verify_ledger(ctx.db)
    drifted = (", ".join(monitored["drifted"]) or "none") if monitored["drift_checks"] else "skipped (too few texts)"
    console.print(Panel.fit("\n".join([
        *headline,
        f"latency: p50 {results['p50_ms']:.1f} ms, p95 {results['p95_ms']:.1f} ms (one text per request)",
        f"{live}; drift checks fired: {drifted}",
        f"audit ledger: {verdict.entries:,} entries, {'intact' if verdict.ok else 'BROKEN'}; "
        f"the whole chain took {elapsed()}",
        f"Trace it yourself: chainkeeper lineage prediction {results['first_request_id']}",
        *footer]), title=title))
