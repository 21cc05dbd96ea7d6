"""Training runs: the record of one fine-tuning, from queued to a stored model.

A run names its dataset version, base model and config; ``start_training_run`` checks
that the data can be trained on, records the run as ``queued`` with an audit entry and
submits a ``train`` job whose handler (``chainkeeper.training.jobs``) does the work and
fills in metrics and the model artefact. The run mirrors its job's end state, so the
registry and lineage read runs, never jobs.

    queued ──▶ running ──▶ succeeded
       │          ├──────▶ failed
       └──────────┴──────▶ cancelled

Training takes released dataset versions: a draft has not passed the four-eyes release
gate. An experiment on a draft needs an explicit override with a reason
(``allow_draft``), recorded on the run and in the ledger; the ``model.promote`` gate
refuses its model while the version stays unreleased.

A hyper-parameter search (``search``) records each trial as a run of its search
(``search_job_id``, ``trial``), started ``running`` by the search job and ending
``succeeded`` (with its dev metrics, no model), ``pruned``, ``failed`` or ``cancelled``.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.core.jobs import JobState, request_cancel, submit_job
from chainkeeper.data import (
    DatasetState,
    DatasetVersion,
    get_dataset_version,
    list_dataset_versions,
    project_of_dataset_version,
    read_dataset_rows,
)
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize_object, projects_allowed
from chainkeeper.training.calibration import compare_metrics
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.report import render_report_html
from chainkeeper.training.tables import SqlRun, SqlRunPoint

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

TASK_SEQUENCE_CLASSIFICATION = "sequence-classification"
TASK_TOKEN_CLASSIFICATION = "token-classification"
TASK_MASKED_LM = "masked-lm"
TASK_CAUSAL_LM = "causal-lm"
LANGUAGE_MODEL_TASKS = frozenset({TASK_MASKED_LM, TASK_CAUSAL_LM})
# What a dataset version's kind (``DatasetVersion.task``) trains when the config says "auto".
TASK_OF_DATA = {"text_classification": TASK_SEQUENCE_CLASSIFICATION,
                "token_classification": TASK_TOKEN_CLASSIFICATION, "unlabelled": TASK_MASKED_LM}
# Recorded as the base model of a run that pre-trains a new model from scratch.
FROM_SCRATCH = "(from scratch)"
JOB_KIND = "train"


class RunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a search trial its pruner stopped early


FINISHED_RUN_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.PRUNED})


@dataclass(frozen=True)
class Run:
    """One training run as the rest of the system sees it (mirrors ``SqlRun``)."""

    id: int
    task: str
    dataset_version_id: int
    base_model: str
    config: dict[str, Any]
    state: RunState
    metrics: dict[str, Any]
    model_artifact: str | None  # manifest digest of the trained model folder
    job_id: int | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    # Seed, library and code versions, data and config hashes (see ``reproducibility``).
    reproducibility: dict[str, Any]
    # The reason given to train on an unreleased dataset version (None: it was released).
    draft_override: str | None = None
    # The search job this run belongs to, and its Optuna trial number (None: the best
    # config's run, or a run of no search).
    search_job_id: int | None = None
    trial: int | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES

    @property
    def origin(self) -> str:
        """Where the run came from, in words: "" for a plain run."""
        parts = []
        if self.search_job_id is not None:
            parts.append(f"trial {self.trial} of search {self.search_job_id}" if self.trial is not None
                         else f"best config of search {self.search_job_id}")
        if self.draft_override is not None:
            parts.append(f"trained on an unreleased dataset version (override: {self.draft_override})")
        return "; ".join(parts)

    @property
    def train_config(self) -> TrainConfig:
        """The stored config as the typed object (it was validated when stored)."""
        return TrainConfig(**self.config)


def _to_run(row: SqlRun) -> Run:
    return Run(
        id=row.id, task=row.task, dataset_version_id=row.dataset_version_id, base_model=row.base_model,
        config=dict(row.config or {}), state=RunState(row.state), metrics=dict(row.metrics or {}),
        model_artifact=row.model_artifact, job_id=row.job_id, created_by=row.created_by,
        created_at=row.created_at, finished_at=row.finished_at, reproducibility=dict(row.reproducibility or {}),
        draft_override=row.draft_override, search_job_id=row.search_job_id, trial=row.trial,
    )


def _not_found(run_id: int) -> NotFound:
    return NotFound(f"There is no training run {run_id}.", hint="List runs with 'chainkeeper runs list'.")


# --- starting --------------------------------------------------------------------------


def check_trainable(ctx: Context, dataset_version_id: int) -> list[str]:
    """Check a dataset version can train a classifier; return its label set.

    Args:
        dataset_version_id: the version to train on.

    Returns:
        The version's labels, sorted (the classifier's output order).

    Raises:
        NotFound: no such dataset version.
        InvalidInput: no labelled train rows, or fewer than two labels among them.
    """
    version = get_dataset_version(ctx.db, dataset_version_id)
    train = read_dataset_rows(ctx, dataset_version_id, "train")
    train_labels = {y for y in train.column("label").to_pylist() if y}
    name = f"dataset version {version.name} v{version.version} (id {version.id})"
    if not train_labels:
        raise InvalidInput(
            f"The {name} has no labelled rows in its train split.",
            hint="Annotate rows or create a version with a train split before training.",
        )
    if len(train_labels) < 2:
        raise InvalidInput(
            f"The train split of the {name} has a single label ({next(iter(train_labels))!r}); "
            "a classifier needs at least two.",
            hint="Add rows of other labels and create a new dataset version.",
        )
    return sorted(set(version.labels) | train_labels)


def check_released(version: DatasetVersion, allow_draft: str | None) -> str | None:
    """Check a dataset version may be trained on: released, or a draft with an override.

    Args:
        version: the dataset version.
        allow_draft: the reason for training on it although it is not released (an
            experiment); None to take released versions only.

    Returns:
        The override to record on the run: None for a released version, else the
        reason, stripped.

    Raises:
        Conflict: the version is not released and no override was given (the message
            says how to release it, or how to override).
        InvalidInput: an override with an empty reason.
    """
    if allow_draft is not None and not allow_draft.strip():
        raise InvalidInput("Training on an unreleased dataset version needs a reason.",
                           hint="Say why, e.g. --allow-draft 'compare tokenizers before the release review'.")
    if version.state == DatasetState.RELEASED:
        return None
    if allow_draft is None:
        raise Conflict(
            f"Dataset version {version.name} v{version.version} (id {version.id}) is {version.state}: training "
            "takes only released versions (a data steward's release, approved by another).",
            hint=f"Ask for its release ('chainkeeper data release-request {version.id}'), or run an experiment on "
            "the draft with --allow-draft REASON (audited; its model cannot be promoted while the data is "
            "unreleased).")
    return allow_draft.strip()


# Any of these in a model folder means a tokenizer can be loaded from it.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")


def check_base_model(base: Path, config: TrainConfig) -> None:
    """Check a base model folder can serve this config: it has a tokenizer and its
    position embeddings cover ``config.max_length``.

    Raises:
        InvalidInput: no config.json, no tokenizer files, or ``max_length`` above the
            model's ``max_position_embeddings`` (the message gives both numbers).
    """
    if not (base / "config.json").is_file():
        raise InvalidInput(
            f"Base model {base} is not a Hugging Face model folder (no config.json).",
            hint="Pass a local model folder, or unset it to use the offline MiniLM.",
        )
    if not any((base / name).is_file() for name in TOKENIZER_FILES):
        raise InvalidInput(
            f"Base model folder {base} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}).",
            hint="Copy the tokenizer files of the model into the folder (tokenizer.save_pretrained).",
        )
    model_config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    limit = model_config.get("max_position_embeddings")
    if isinstance(limit, int) and config.max_length > limit:
        raise InvalidInput(
            f"max_length={config.max_length} is above the base model's limit of {limit} positions "
            f"(max_position_embeddings in {base / 'config.json'}).",
            hint=f"Set max_length to at most {limit}.",
        )


def resolve_task(config: TrainConfig, data_task: str, base: Path | None) -> str:
    """The task a run trains: the config's, or (``auto``) the one the data is for.

    Args:
        config: the run's config (``task`` and ``from_scratch``).
        data_task: the dataset version's kind (``DatasetVersion.task``).
        base: the base model folder (a decoder makes unlabelled data causal-LM).

    Raises:
        InvalidInput: the task cannot be trained on this kind of data (e.g. token
            classification on a text-classification version).
    """
    task: str = config.task
    if task == "auto":
        task = TASK_OF_DATA.get(str(data_task), TASK_SEQUENCE_CLASSIFICATION)
        if task == TASK_MASKED_LM and config.from_scratch is None and base is not None:
            from chainkeeper.training.pretraining import is_decoder_folder

            task = TASK_CAUSAL_LM if is_decoder_folder(base) else TASK_MASKED_LM
        elif task == TASK_MASKED_LM and config.from_scratch is not None and config.from_scratch.tokenizer == "bpe":
            task = TASK_CAUSAL_LM
    needs = {TASK_SEQUENCE_CLASSIFICATION: "text_classification", TASK_TOKEN_CLASSIFICATION: "token_classification"}
    if task in needs and str(data_task) != needs[task]:
        raise InvalidInput(
            f"task={task!r} needs a {needs[task]} dataset version, and this one is {data_task}.",
            hint="Leave task at 'auto' to train what the data is for, or pick a version of the right kind.")
    if config.from_scratch is not None and task not in LANGUAGE_MODEL_TASKS:
        raise InvalidInput(f"from_scratch pre-trains a language model, but the data is for {task}.",
                           hint="Pre-train on an unlabelled version (or set task to masked-lm), then fine-tune.")
    return task


def base_and_task(ctx: Context, dataset_version_id: int, config: TrainConfig,
                  base_model: str | Path | None) -> tuple[Path | None, str]:
    """The checked base model folder (None when pre-training from scratch) and the task a
    run of ``config`` on the dataset version trains (``resolve_task``).

    Raises:
        NotFound: no such dataset version.
        InvalidInput: the base model is unusable (``check_base_model``) or the task does
            not fit the data.
    """
    version = get_dataset_version(ctx.db, dataset_version_id)
    base: Path | None = None
    if config.from_scratch is None:
        base = Path(base_model) if base_model is not None else ctx.settings.resolved_base_model
        check_base_model(base, config)
    return base, resolve_task(config, version.task, base)


def check_taggable(ctx: Context, dataset_version_id: int) -> list[str]:
    """Check a token-classification version can train a tagger; return its tag set.

    Raises:
        NotFound: no such dataset version.
        InvalidInput: no tagged sentences in the train split, or a single tag among them.
    """
    version = get_dataset_version(ctx.db, dataset_version_id)
    train = read_dataset_rows(ctx, dataset_version_id, "train")
    name = f"dataset version {version.name} v{version.version} (id {version.id})"
    tags = {t for row in (train.column("tags").to_pylist() if "tags" in train.column_names else []) for t in row or []}
    if not tags:
        raise InvalidInput(f"The {name} has no tagged sentences in its train split.",
                           hint="Create a version from a CoNLL source with a train split before training.")
    if len(tags) < 2:
        raise InvalidInput(f"The train split of the {name} uses a single tag ({next(iter(tags))!r}); "
                           "a tagger needs at least two.", hint="Tag some entities and create a new dataset version.")
    return sorted(set(version.labels) | tags)


def check_corpus(ctx: Context, dataset_version_id: int) -> int:
    """Check a version has text to pre-train on; return how many train texts it has.

    Raises:
        NotFound: no such dataset version.
        InvalidInput: the train split has no non-empty text.
    """
    version = get_dataset_version(ctx.db, dataset_version_id)
    rows = read_dataset_rows(ctx, dataset_version_id, "train")
    texts = [t for t in rows.column("text").to_pylist() if t and t.strip()]
    if not texts:
        raise InvalidInput(f"The train split of dataset version {version.name} v{version.version} "
                           f"(id {version.id}) has no text to pre-train on.",
                           hint="Create a version with train rows before pre-training.")
    return len(texts)


def start_training_run(
    ctx: Context, *, dataset_version_id: int, config: TrainConfig, actor: Actor, base_model: Path | None = None,
    allow_draft: str | None = None, search_job_id: int | None = None,
) -> Run:
    """Record a training run and queue the job that performs it.

    The task follows the dataset version (``resolve_task``): a text-classification
    version fine-tunes a classifier, a token-classification one a tagger, an unlabelled
    one pre-trains a language model (from the base, or ``config.from_scratch``).

    Args:
        dataset_version_id: the dataset version to train on (its train split; dev and
            test splits, when present, are evaluated); it must be released.
        config: the hyper-parameters, stored with the run.
        actor: who starts it (``run.create`` in the dataset version's project); becomes
            ``created_by``.
        base_model: a local Hugging Face model folder; default the configured base
            (``settings.resolved_base_model``). Unused when ``config.from_scratch``.
        allow_draft: train on a version that is not released, for this reason (an
            experiment): recorded on the run (``draft_override``) and in the ledger; the
            ``model.promote`` gate refuses the run's model while the version is unreleased.
        search_job_id: the search whose best config this run trains (set by the search job).

    Returns:
        The run, ``queued``, with its ``job_id``.

    Raises:
        Forbidden: the actor may not create runs in the dataset version's project.
        NotFound: no such dataset version.
        Conflict: the version is not released and no override was given (``check_released``).
        InvalidInput: an override without a reason, the base model folder is not a model
            or has no tokenizer, ``max_length`` exceeds its positions (see
            ``check_base_model``), the task does not fit the data, or the data cannot
            train it (``check_trainable``, ``check_taggable``, ``check_corpus``).
            Nothing is stored then.
    """
    authorize_object(ctx.db, actor, "run.create", lambda: project_of_dataset_version(ctx.db, dataset_version_id))
    override = check_released(get_dataset_version(ctx.db, dataset_version_id), allow_draft)
    base, task = base_and_task(ctx, dataset_version_id, config, base_model)
    if task == TASK_SEQUENCE_CLASSIFICATION:
        labels = check_trainable(ctx, dataset_version_id)
    elif task == TASK_TOKEN_CLASSIFICATION:
        labels = check_taggable(ctx, dataset_version_id)
    else:
        check_corpus(ctx, dataset_version_id)
        labels = []
    base_name = str(base) if base is not None else FROM_SCRATCH
    with ctx.db.session() as s:
        row = SqlRun(
            task=task, dataset_version_id=dataset_version_id, base_model=base_name,
            config=config.model_dump(mode="json"), state=RunState.QUEUED, metrics={}, created_by=actor.name,
            created_at=utcnow(), reproducibility={}, draft_override=override, search_job_id=search_job_id,
        )
        s.add(row)
        s.flush()
        run_id = row.id
        append_entry(s, actor, "run.create", "run", run_id,
                     after={"dataset_version_id": dataset_version_id, "base_model": base_name, "config": row.config,
                            "draft_override": override},
                     details={"labels": len(labels), "task": task, "search_job_id": search_job_id,
                              **({"draft_override": override} if override is not None else {})})
    try:
        job = submit_job(ctx, JOB_KIND, {"run_id": run_id}, actor=actor.name,
                         project=project_of_dataset_version(ctx.db, dataset_version_id),
                         max_attempts=ctx.settings.job_max_attempts)
    except BaseException:
        # The job could not be queued: the run must not sit "queued" forever.
        _set_state(ctx.db, run_id, RunState.FAILED, finished=True)
        raise
    with ctx.db.session() as s:
        stored = s.get(SqlRun, run_id)
        assert stored is not None  # created above, runs are never deleted
        stored.job_id = job.id
        return _to_run(stored)


# --- reading ---------------------------------------------------------------------------


def get_run(db: Database, run_id: int) -> Run:
    """Raises NotFound when there is no such run."""
    with db.session() as s:
        row = s.get(SqlRun, run_id)
        if row is None:
            raise _not_found(run_id)
        return _to_run(row)


def project_of_run(db: Database, run_id: int) -> str:
    """The project of a run: its dataset version's.

    Raises:
        NotFound: no such run.
    """
    return project_of_dataset_version(db, get_run(db, run_id).dataset_version_id)


def list_runs(db: Database, limit: int | None = 50, *, state: RunState | None = None,
              dataset_version_id: int | None = None, dataset_version_ids: Collection[int] | None = None,
              search_job_id: int | None = None) -> list[Run]:
    """The newest runs first (a store reader: services that decided who may read call it).

    Args:
        limit: at most this many (all when None).
        state: only runs in this state.
        dataset_version_id: only runs on this dataset version.
        dataset_version_ids: only runs on one of these dataset versions.
        search_job_id: only the runs of this search (its trials and its best config's run).
    """
    with db.session() as s:
        query = sa.select(SqlRun).order_by(SqlRun.id.desc())
        if limit is not None:
            query = query.limit(limit)
        if state is not None:
            query = query.where(SqlRun.state == state)
        if dataset_version_id is not None:
            query = query.where(SqlRun.dataset_version_id == dataset_version_id)
        if dataset_version_ids is not None:
            query = query.where(SqlRun.dataset_version_id.in_(list(dataset_version_ids)))
        if search_job_id is not None:
            query = query.where(SqlRun.search_job_id == search_job_id)
        return [_to_run(r) for r in s.scalars(query)]


def _dataset_versions_of_projects(db: Database, projects: Collection[str]) -> list[int]:
    """The ids of every dataset version of these projects (a project is a dataset's name)."""
    return [v.id for project in sorted(projects) for v in list_dataset_versions(db, name=project)]


def run_ids_of_projects(db: Database, projects: Collection[str]) -> list[int]:
    """The ids of every run on a dataset version of these projects (a store reader, for
    services listing what an actor with project-bound roles may read)."""
    within = _dataset_versions_of_projects(db, projects)
    with db.session() as s:
        return list(s.scalars(sa.select(SqlRun.id).where(SqlRun.dataset_version_id.in_(within))))


def find_runs(ctx: Context, *, actor: Actor, limit: int = 50, state: RunState | None = None,
              dataset_version_id: int | None = None, search_job_id: int | None = None) -> list[Run]:
    """The runs ``actor`` may read (``run.read``), newest first.

    Args:
        actor: who asks; only runs of the projects where they hold ``run.read`` are listed.
        limit: at most this many.
        state: only runs in this state.
        dataset_version_id: only runs on this dataset version.
        search_job_id: only the runs of this search job (its trials and best config's run).

    Raises:
        Forbidden: the actor may read runs in no project.
    """
    projects = projects_allowed(ctx.db, actor, "run.read")
    within = None if projects is None else _dataset_versions_of_projects(ctx.db, projects)
    return list_runs(ctx.db, limit, state=state, dataset_version_id=dataset_version_id, dataset_version_ids=within,
                     search_job_id=search_job_id)


def show_run(ctx: Context, run_id: int, *, actor: Actor) -> Run:
    """One run, for an actor who may read it (``run.read`` in its project).

    Raises:
        Forbidden: the actor may not read runs of its project. NotFound: no such run.
    """
    authorize_object(ctx.db, actor, "run.read", lambda: project_of_run(ctx.db, run_id))
    return get_run(ctx.db, run_id)


def count_runs(db: Database) -> int:
    with db.session() as s:
        return int(s.execute(sa.select(sa.func.count()).select_from(SqlRun)).scalar_one())


# --- changing state (the job handler and the cancel command) ---------------------------


def _set_state(db: Database, run_id: int, state: RunState, *, finished: bool = False, **values: Any) -> Run:
    """Move a run to a new state, recorded in the ledger as the worker acting for the
    run's author (the job runs on their behalf)."""
    with db.session() as s:
        row = s.get(SqlRun, run_id)
        if row is None:
            raise _not_found(run_id)
        before = {"state": row.state, "model_artifact": row.model_artifact}
        row.state = state
        for key, value in values.items():
            setattr(row, key, value)
        if finished:
            row.finished_at = utcnow()
        append_entry(s, Actor(f"worker (for {row.created_by})"), f"run.{state}", "run", run_id, role="worker",
                     before=before, after={"state": state, "model_artifact": row.model_artifact},
                     details={"job_id": row.job_id})
        return _to_run(row)


def record_reproducibility(db: Database, run_id: int, record: dict[str, Any]) -> None:
    """Store the run's reproducibility record (written by the job before it trains)."""
    with db.session() as s:
        row = s.get(SqlRun, run_id)
        if row is None:
            raise _not_found(run_id)
        row.reproducibility = dict(record)


def mark_run_running(db: Database, run_id: int) -> Run:
    """The job picked the run up (again, after a lost worker).

    Raises:
        NotFound: no such run.
        Conflict: the run already finished (a duplicate job must not retrain it).
    """
    run = get_run(db, run_id)
    if run.finished:
        raise Conflict(f"Training run {run_id} has already {run.state}; it will not be run again.",
                       hint="Start a new run instead.")
    return _set_state(db, run_id, RunState.RUNNING, metrics={})


def finish_run(db: Database, run_id: int, *, metrics: dict[str, Any], model_artifact: str) -> Run:
    """Record a succeeded run's metrics and model folder digest."""
    return _set_state(db, run_id, RunState.SUCCEEDED, finished=True, metrics=metrics, model_artifact=model_artifact)


def fail_run(db: Database, run_id: int, *, cancelled: bool, error: str | None = None) -> Run:
    """Record that a run stopped without a model (failed, or cancelled on request)."""
    run = get_run(db, run_id)
    metrics = dict(run.metrics)
    if error:
        metrics["error"] = error[:2000]
    return _set_state(db, run_id, RunState.CANCELLED if cancelled else RunState.FAILED, finished=True,
                      metrics=metrics)


def start_trial_run(db: Database, *, search_job_id: int, trial: int, dataset_version_id: int, task: str,
                    base_model: str, config: TrainConfig, created_by: str, draft_override: str | None) -> Run:
    """Record one trial of a search as a ``running`` run of that search (the search job
    calls it as a trial starts; the trial trains in the search's job, keeps no model).

    Args:
        search_job_id: the search job, which also runs the trial (``job_id``).
        trial: Optuna's trial number.
        created_by: the search's author (the trial runs on their behalf).
        draft_override: the search's override for an unreleased dataset version.

    Returns:
        The run, ``running``.
    """
    with db.session() as s:
        row = SqlRun(task=task, dataset_version_id=dataset_version_id, base_model=base_model,
                     config=config.model_dump(mode="json"), state=RunState.RUNNING, metrics={}, job_id=search_job_id,
                     created_by=created_by, created_at=utcnow(), reproducibility={}, draft_override=draft_override,
                     search_job_id=search_job_id, trial=trial)
        s.add(row)
        s.flush()
        append_entry(s, Actor(f"worker (for {created_by})"), "run.create", "run", row.id, role="worker",
                     after={"dataset_version_id": dataset_version_id, "config": row.config,
                            "draft_override": draft_override},
                     details={"task": task, "search_job_id": search_job_id, "trial": trial})
        return _to_run(row)


def finish_trial_run(db: Database, run_id: int, state: RunState, *, metrics: dict[str, Any]) -> Run:
    """Record how a trial ended: ``succeeded`` with its dev metrics, or ``pruned``,
    ``failed``, ``cancelled`` (``metrics`` then says why)."""
    return _set_state(db, run_id, state, finished=True, metrics=metrics)


def cancel_run(ctx: Context, run_id: int, *, actor: Actor) -> Run:
    """Stop a run: a queued one is cancelled at once, a running one at its next step.

    Args:
        run_id: the run to stop.
        actor: who asks (``run.cancel`` in the run's project); recorded in the audit ledger.

    Returns:
        The run after the request (``cancelled`` if it had not started yet).

    Raises:
        Forbidden: the actor may not cancel runs of its project.
        NotFound: no such run.
        Conflict: the run has already finished, or is a search trial (its search job
            is what stops).
    """
    authorize_object(ctx.db, actor, "run.cancel", lambda: project_of_run(ctx.db, run_id))
    run = get_run(ctx.db, run_id)
    if run.finished:
        raise Conflict(f"Training run {run_id} has already {run.state}; there is nothing to cancel.")
    if run.trial is not None:
        raise Conflict(f"Run {run_id} is trial {run.trial} of search job {run.search_job_id}; a trial stops with "
                       "its search.", hint=f"Cancel the search: 'chainkeeper jobs cancel {run.search_job_id}'.")
    if run.job_id is not None:
        job = request_cancel(ctx.db, run.job_id)
        cancelled_now = job.state == JobState.CANCELLED
    else:  # pragma: no cover - every run gets its job when it is started
        cancelled_now = True
    with ctx.db.session() as s:
        row = s.get(SqlRun, run_id)
        assert row is not None
        if cancelled_now and row.state == RunState.QUEUED:
            row.state = RunState.CANCELLED
            row.finished_at = utcnow()
        append_entry(s, actor, "run.cancel", "run", run_id, details={"state": row.state})
        return _to_run(row)


# --- reviewing -------------------------------------------------------------------------


def compare_runs(ctx: Context, run_a: int, run_b: int, *, actor: Actor) -> dict[str, Any]:
    """The headline metrics of two runs side by side, with ``delta = b - a``.

    Args:
        run_a: the reference run.
        run_b: the run compared with it.
        actor: who asks (``run.read`` in both runs' projects).

    Returns:
        ``{"a": run_a, "b": run_b, "splits": {split: {metric: {"a", "b", "delta"}}}}``.

    Raises:
        Forbidden: the actor may not read one of the runs. NotFound: either run does not exist.
    """
    a, b = show_run(ctx, run_a, actor=actor), show_run(ctx, run_b, actor=actor)
    return {"a": a.id, "b": b.id, "splits": compare_metrics(a.metrics, b.metrics)}


def run_report_html(ctx: Context, run_id: int, *, actor: Actor) -> str:
    """The run's evaluation as a self-contained HTML page (see ``training.report``).

    Raises:
        Forbidden: the actor may not read runs of its project (``run.read``). NotFound: no such run.
    """
    return render_report_html(asdict(show_run(ctx, run_id, actor=actor)))


# --- live curves -----------------------------------------------------------------------


def record_run_points(db: Database, run_id: int, step: int, values: dict[str, float]) -> None:
    """Store one step's curve values (loss, learning rate, samples/s, dev metrics...).

    Non-finite values are skipped: JSON clients and plots cannot carry them.
    """
    with db.session() as s:
        s.add_all(SqlRunPoint(run_id=run_id, step=step, name=name, value=float(value))
                  for name, value in values.items() if math.isfinite(value))


def clear_run_points(db: Database, run_id: int, *, after_step: int = 0) -> int:
    """Delete a run's points past ``after_step`` (a resumed run redraws from its
    checkpoint; a restarted one from 0). Returns how many were deleted."""
    with db.session() as s:
        # A DELETE answers a CursorResult (its rowcount); Session.execute is typed as the generic Result.
        result = cast(CursorResult[Any], s.execute(
            sa.delete(SqlRunPoint).where(SqlRunPoint.run_id == run_id, SqlRunPoint.step > after_step)))
        return int(result.rowcount or 0)


def run_points(ctx: Context, run_id: int, *, actor: Actor, name: str | None = None,
               after_id: int = 0) -> list[dict[str, Any]]:
    """A run's curve points in the order written.

    Args:
        actor: who asks (``run.read`` in the run's project).
        name: only this curve ("loss", "learning_rate", "samples_per_s", "dev_accuracy"...).
        after_id: only points newer than this id (poll with the last id seen).

    Returns:
        ``[{"id", "step", "name", "value"}]``.

    Raises:
        Forbidden: the actor may not read runs of its project. NotFound: no such run.
    """
    show_run(ctx, run_id, actor=actor)
    with ctx.db.session() as s:
        query = sa.select(SqlRunPoint).where(SqlRunPoint.run_id == run_id, SqlRunPoint.id > after_id)
        if name is not None:
            query = query.where(SqlRunPoint.name == name)
        return [{"id": p.id, "step": p.step, "name": p.name, "value": p.value}
                for p in s.scalars(query.order_by(SqlRunPoint.id))]
