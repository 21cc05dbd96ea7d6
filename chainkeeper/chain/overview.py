"""The chain overview: what each link of the chain holds now, and the latest jobs.

The model behind the web UI's front page, above every stage because it reads them all.
It asks each stage's public count and list functions (never a table of its own), so the
page shows exactly what the CLI and the API would. The stages appear in the order of the
chain in DESIGN.md, each with the role that owns it. The clock is read once, in
``jobs_panel``, and carried as ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from chainkeeper.annotation import ProjectState, list_projects
from chainkeeper.core.db import utcnow
from chainkeeper.core.jobs import Job, count_jobs_by_state, list_workers
from chainkeeper.data import (
    DatasetState,
    count_dataset_versions,
    count_sources,
    list_dataset_versions,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import ApprovalState, list_approvals
from chainkeeper.governance.jobs import find_jobs
from chainkeeper.governance.ledger import count_entries
from chainkeeper.governance.permissions import authorize, is_allowed_somewhere
from chainkeeper.governance.roles import BuiltinRole
from chainkeeper.monitoring import count_predictions
from chainkeeper.registry import Stage, count_model_versions, list_model_versions
from chainkeeper.serving import DeploymentState, count_deployments, list_deployments
from chainkeeper.training import count_runs, list_runs

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

# A list function is asked for at most this many rows when the page needs only a
# summary of them (the one in production, the active deployments).
_SUMMARY_ROWS = 1000


@dataclass(frozen=True)
class StageCount:
    """One number on a stage card, e.g. ``StageCount("dataset versions", 3)``."""

    label: str
    value: int


@dataclass(frozen=True)
class StageCard:
    """One link of the chain as the overview shows it.

    ``role`` owns the stage (R in DESIGN.md's table); ``approver`` signs its hand-off
    (A) when that is someone else.
    """

    key: str
    title: str
    role: str
    what: str
    approver: str = ""
    counts: tuple[StageCount, ...] = ()
    note: str = ""

    @property
    def empty(self) -> bool:
        """A stage that holds nothing yet."""
        return all(c.value == 0 for c in self.counts)


@dataclass(frozen=True)
class WorkerInfo:
    """A worker that sent a heartbeat recently."""

    id: str
    hostname: str
    pid: int
    state: str
    heartbeat_at: datetime


@dataclass(frozen=True)
class JobsPanel:
    """The latest jobs, the number of jobs in each state, and the live workers."""

    jobs: tuple[Job, ...]
    counts_by_state: Mapping[str, int]
    workers: tuple[WorkerInfo, ...]
    now: datetime

    @property
    def total(self) -> int:
        return sum(self.counts_by_state.values())


@dataclass(frozen=True)
class ChainOverview:
    """Everything the front page shows, gathered in one pass."""

    stages: tuple[StageCard, ...]
    jobs: JobsPanel
    empty: bool = False


def chain_overview(ctx: Context, *, actor: Actor, job_limit: int = 10) -> ChainOverview:
    """Gather the chain's state from every stage's public functions.

    The stage cards count the whole system, so they need ``system.read`` in a global role;
    the jobs panel lists the jobs the actor may read.

    Args:
        ctx: the open stores.
        actor: who looks.
        job_limit: how many of the latest jobs to list.

    Returns:
        The stage cards in chain order, the jobs panel, and whether the chain is empty
        (nothing in any stage), in which case the page shows a getting-started hint.

    Raises:
        Forbidden: no global ``system.read``. StoreError: the metadata store cannot be read.
    """
    authorize(ctx.db, actor, "system.read")
    stages = (
        _collect_card(ctx),
        _annotate_card(ctx),
        _train_card(ctx),
        _release_card(ctx),
        _deploy_card(ctx),
        _monitor_card(ctx),
        _audit_card(ctx),
    )
    if is_allowed_somewhere(ctx.db, actor, "job.read"):
        panel = jobs_panel(ctx, actor=actor, limit=job_limit)
    else:  # the page is still theirs; the jobs panel is not (an annotator reads no jobs)
        panel = JobsPanel(jobs=(), counts_by_state={}, workers=(), now=utcnow())
    empty = all(card.empty for card in stages) and panel.total == 0
    return ChainOverview(stages=stages, jobs=panel, empty=empty)


def jobs_panel(ctx: Context, *, actor: Actor, limit: int = 10) -> JobsPanel:
    """The latest jobs (newest first), the count of jobs per state, and the live workers.

    A worker counts as live while its last heartbeat is younger than the
    ``stale_after_s`` setting, the same age after which the reaper gives up on its job.

    Args:
        ctx: the open stores.
        actor: who looks (``job.read``; only the jobs of projects they may read).
        limit: how many jobs to list.

    Returns:
        The panel, stamped with the time it was read (ages are computed against it).

    Raises:
        Forbidden: the actor may read jobs nowhere. StoreError: the metadata store cannot be read.
    """
    jobs = find_jobs(ctx, actor=actor, limit=limit)
    counts = count_jobs_by_state(ctx.db)
    workers = list_workers(ctx.db, alive_within=timedelta(seconds=ctx.settings.stale_after_s))
    return JobsPanel(
        jobs=tuple(jobs),
        counts_by_state=dict(counts),
        workers=tuple(sorted((_to_worker(w) for w in workers), key=lambda w: w.id)),
        now=utcnow(),
    )


# --- the stage cards, in chain order ---------------------------------------------------


def _collect_card(ctx: Context) -> StageCard:
    versions = list_dataset_versions(ctx.db, limit=_SUMMARY_ROWS)
    released = [v for v in versions if v.state == DatasetState.RELEASED]
    note = f"latest release: {released[0].name} v{released[0].version}" if released else ""
    return StageCard(
        key="collect", title="Collect & clean", role=BuiltinRole.DATA_STEWARD,
        what="Import files, clean them, freeze versioned datasets.",
        counts=(StageCount("sources", count_sources(ctx.db)),
                StageCount("dataset versions", count_dataset_versions(ctx.db))),
        note=note,
    )


def _annotate_card(ctx: Context) -> StageCard:
    projects = list_projects(ctx.db)
    open_projects = [p for p in projects if p.state == ProjectState.OPEN]
    return StageCard(
        key="annotate", title="Annotate", role=BuiltinRole.ANNOTATOR,
        what="Label rows and spans, measure agreement, adjudicate.",
        approver=BuiltinRole.DATA_STEWARD,
        counts=(StageCount("projects", len(projects)), StageCount("open", len(open_projects))),
        note="labelling: " + ", ".join(p.name for p in open_projects[:3]) if open_projects else "",
    )


def _train_card(ctx: Context) -> StageCard:
    runs = list_runs(ctx.db, limit=1)
    note = f"latest: run {runs[0].id} {runs[0].state}" if runs else ""
    return StageCard(
        key="train", title="Train", role=BuiltinRole.ML_ENGINEER,
        what="Fine-tune and evaluate models on a dataset version.",
        counts=(StageCount("runs", count_runs(ctx.db)),), note=note,
    )


def _release_card(ctx: Context) -> StageCard:
    production = list_model_versions(ctx.db, stage=Stage.PRODUCTION, limit=_SUMMARY_ROWS)
    note = "in production: " + ", ".join(f"{m.name} v{m.version}" for m in production[:3]) if production else ""
    return StageCard(
        key="release", title="Release model", role=BuiltinRole.ML_ENGINEER,
        what="Register model versions, gate and promote them.", approver=BuiltinRole.RELEASE_MANAGER,
        counts=(StageCount("model versions", count_model_versions(ctx.db)),
                StageCount("in production", len(production))),
        note=note,
    )


def _deploy_card(ctx: Context) -> StageCard:
    active = [d for d in list_deployments(ctx.db, limit=_SUMMARY_ROWS) if d.state == DeploymentState.ACTIVE]
    return StageCard(
        key="deploy", title="Deploy & serve", role=BuiltinRole.RELEASE_MANAGER,
        what="Roll model versions out behind an HTTP endpoint.",
        counts=(StageCount("deployments", count_deployments(ctx.db)), StageCount("active", len(active))),
        note="serving: " + ", ".join(d.name for d in active[:3]) if active else "",
    )


def _monitor_card(ctx: Context) -> StageCard:
    return StageCard(
        key="monitor", title="Monitor", role=BuiltinRole.OPERATOR,
        what="Log every prediction; watch latency, errors and drift.",
        counts=(StageCount("predictions served", count_predictions(ctx.db)),),
    )


def _audit_card(ctx: Context) -> StageCard:
    pending = list_approvals(ctx, state=ApprovalState.PENDING, limit=_SUMMARY_ROWS)
    return StageCard(
        key="audit", title="Audit", role=BuiltinRole.AUDITOR,
        what="Read everything, verify the hash-chained ledger.",
        counts=(StageCount("ledger entries", count_entries(ctx.db)), StageCount("approvals pending", len(pending))),
        note=f"oldest waiting: #{pending[-1].id} {pending[-1].action}" if pending else "",
    )


def _to_worker(row: Mapping[str, Any]) -> WorkerInfo:
    return WorkerInfo(id=row["id"], hostname=row["hostname"], pid=row["pid"], state=row["state"],
                      heartbeat_at=row["heartbeat_at"])
