"""Hyper-parameter search with Optuna, its study kept in Chainkeeper's own database.

``start_search`` validates a search space (``lr=1e-5:5e-4:log``, ``batch_size=16:64``,
``schedule=linear,cosine``) against the task the dataset version trains, and queues a
``search`` job. The handler runs the trials in the worker: each trial trains a fresh
model of that task with the suggested values (the task's own trainer: a classifier, a
token tagger, or a masked/causal language model), reports the target dev metric at every
evaluation (``eval_every_steps``) and is pruned by a median pruner when it falls behind
the trials before it. What is optimised follows the task (``search_target``):

    sequence-classification   dev macro-F1 (or the configured metric)   maximised
    token-classification      dev entity-level F1 (seqeval)             maximised
    masked-lm / causal-lm     dev loss (perplexity = exp(loss))         minimised

Every trial is recorded as a run of its search (``runs.start_trial_run``: the search
job's id, the trial number, the trial's config, its dev metrics or why it was pruned),
so ``train list`` and ``show_search`` list the trials next to ordinary runs.

The study lives in the metadata store (``optuna.storages.RDBStorage`` on
``settings.resolved_database_url``, SQLite or PostgreSQL), so a reviewer can reopen it;
the best trial's config then becomes a normal training run of the same task, with its
own job, metrics and model.

Optuna keeps its own tables (``studies``, ``trials``…) next to ours. It must not touch
our Alembic revision: with ``alembic_version`` already set, Optuna leaves it alone, and
``skip_compatibility_check`` stops it from comparing our revision with its own.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chainkeeper.core.errors import InvalidInput, JobCancelled
from chainkeeper.core.jobs import Job, JobHandle, get_job, submit_job
from chainkeeper.data import get_dataset_version, project_of_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.permissions import authorize_object
from chainkeeper.training.config import TrainConfig, parse_train_config
from chainkeeper.training.runs import (
    FROM_SCRATCH,
    LANGUAGE_MODEL_TASKS,
    TASK_CAUSAL_LM,
    TASK_MASKED_LM,
    TASK_SEQUENCE_CLASSIFICATION,
    TASK_TOKEN_CLASSIFICATION,
    Run,
    RunState,
    base_and_task,
    check_corpus,
    check_released,
    check_taggable,
    check_trainable,
    finish_trial_run,
    list_runs,
    start_training_run,
    start_trial_run,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.training.pretraining import Objective

JOB_KIND = "search"
# Short names a user types on the command line.
ALIASES = {"lr": "learning_rate", "bs": "batch_size", "wd": "weight_decay"}


@dataclass(frozen=True)
class Dimension:
    """One searched option: a float or int range (log-scaled or not), or choices."""

    name: str
    kind: str  # "float" | "int" | "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log,
                "choices": list(self.choices)}


def parse_space(specs: Sequence[str]) -> list[Dimension]:
    """Parse ``name=low:high[:log]`` ranges and ``name=a,b,c`` choices.

    Integer bounds make an integer range; ``lr``, ``bs``, ``wd`` abbreviate
    ``learning_rate``, ``batch_size``, ``weight_decay``.

    Raises:
        InvalidInput: an unknown option, a malformed spec, or low >= high (the message
            quotes the spec).
    """
    out: list[Dimension] = []
    for spec in specs:
        key, sep, body = spec.partition("=")
        name = ALIASES.get(key.strip(), key.strip())
        if not sep or not body:
            raise InvalidInput(f"Search dimension {spec!r} is not name=low:high[:log] or name=a,b,c.",
                               hint="For example: --space lr=1e-5:5e-4:log --space schedule=linear,cosine")
        if name not in TrainConfig.model_fields:
            raise InvalidInput(f"Search dimension {spec!r} names no training option {name!r}.",
                               hint=f"Options: {', '.join(TrainConfig.model_fields)}.")
        if ":" in body:
            parts = body.split(":")
            log = len(parts) == 3 and parts[2] == "log"
            if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
                raise InvalidInput(f"Search dimension {spec!r}: expected low:high or low:high:log.")
            try:
                is_int = all(p.lstrip("-").isdigit() for p in parts[:2])
                low, high = (int(parts[0]), int(parts[1])) if is_int else (float(parts[0]), float(parts[1]))
            except ValueError:
                raise InvalidInput(f"Search dimension {spec!r}: the bounds must be numbers.") from None
            if not low < high or (log and low <= 0):
                raise InvalidInput(f"Search dimension {spec!r}: needs low < high (and low > 0 on a log scale).")
            out.append(Dimension(name, "int" if is_int else "float", low, high, log))
        else:
            choices = tuple(_scalar(v) for v in body.split(","))
            out.append(Dimension(name, "choice", choices=choices))
    if not out:
        raise InvalidInput("A search needs at least one dimension.", hint="For example: --space lr=1e-5:5e-4:log")
    return out


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Target:
    """What a search optimises: one dev metric of the task the data trains, and which
    way is better."""

    task: str
    metric: str  # a key of the dev metrics: "macro_f1"/"accuracy", "f1" (entity level), "loss"
    direction: Literal["maximize", "minimize"]  # Optuna's way of saying which way is better

    def describe(self) -> str:
        """The target in words, for the CLI and the job log."""
        names = {"macro_f1": "macro-F1", "accuracy": "accuracy", "f1": "entity-level F1", "loss": "loss"}
        way = "maximised" if self.direction == "maximize" else "minimised"
        return f"dev {names[self.metric]} of {self.task} ({way})"


def search_target(task: str, config: TrainConfig) -> Target:
    """The dev metric a search of this task optimises.

    Classification maximises the configured ``early_stopping_metric`` (macro-F1 by
    default), tagging the entity-level F1 NER is judged on, language modelling minimises
    the dev loss (perplexity is ``exp(loss)``, so both rank trials alike).
    """
    if task == TASK_TOKEN_CLASSIFICATION:
        return Target(task, "f1", "maximize")
    if task in LANGUAGE_MODEL_TASKS:
        return Target(task, "loss", "minimize")
    return Target(task, config.early_stopping_metric, "maximize")


# Options no search may vary: they change what the trials are compared on.
NEVER_SEARCHED = {"task": "a study compares trials of one task",
                  "early_stopping_metric": "it picks the metric trials are compared on; fix it with --set"}
_SINGLE_LABEL = "search trials train single-label classifiers"
_NO_POOLING = "a tagger and a language model score tokens, they pool nothing"
_NO_HEAD = "a language model has no freshly initialised head"
_UNLABELLED = "a language model's text is its own label"
_NO_MASKING = "only masked-LM training masks tokens"
_NO_SLICES = "per-slice metrics are computed for text classification only"
_ONE_TAG = "a tagger gives one tag per word"
_LANGUAGE_MODEL = {"pooling": _NO_POOLING, "head_lr_multiplier": _NO_HEAD, "head_dropout": _NO_HEAD,
                   "attention_dropout": "language-model training sets only dropout", "class_weights": _UNLABELLED,
                   "labels": _UNLABELLED, "multi_label_separator": _UNLABELLED, "multi_label_threshold": _UNLABELLED,
                   "slice_column": _NO_SLICES}
# Options each task's trainer never reads, with the reason: searching them spends trials on noise.
UNREAD_BY_TASK: dict[str, dict[str, str]] = {
    TASK_SEQUENCE_CLASSIFICATION: {"mlm_probability": _NO_MASKING, "multi_label_separator": _SINGLE_LABEL,
                                   "multi_label_threshold": _SINGLE_LABEL},
    TASK_TOKEN_CLASSIFICATION: {"pooling": _NO_POOLING, "class_weights": "the tagger's loss is unweighted",
                                "mlm_probability": _NO_MASKING, "multi_label_separator": _ONE_TAG,
                                "multi_label_threshold": _ONE_TAG, "slice_column": _NO_SLICES},
    TASK_MASKED_LM: _LANGUAGE_MODEL,
    TASK_CAUSAL_LM: {**_LANGUAGE_MODEL, "mlm_probability": "causal-LM training predicts each next token, masks none"},
}


def unsearchable_options(task: str, config: TrainConfig) -> dict[str, str]:
    """The options a search of this task must not vary, each with the reason."""
    out = {**NEVER_SEARCHED, **UNREAD_BY_TASK[task]}
    if config.from_scratch is not None:
        out["dropout"] = "a model built from scratch keeps its architecture's default dropout"
    return out


def check_space(space: Sequence[Dimension], task: str, config: TrainConfig) -> None:
    """Check every dimension can be searched for this task, and that its bounds or
    choices are valid values of the option (``parse_train_config`` judges them).

    Raises:
        InvalidInput: an option the task does not read, or a bound or choice out of the
            option's range; the message names the option.
    """
    refused = unsearchable_options(task, config)
    for dim in space:
        if dim.name in refused:
            searchable = sorted(set(TrainConfig.model_fields) - set(refused) - {"from_scratch"})
            raise InvalidInput(f"Search dimension {dim.name!r} cannot be searched for {task}: {refused[dim.name]}.",
                               hint=f"Options searchable for {task}: {', '.join(searchable)}.")
        for value in (dim.low, dim.high) if dim.kind != "choice" else dim.choices:
            try:
                parse_train_config({**config.model_dump(), dim.name: value})
            except InvalidInput as err:
                raise InvalidInput(f"Search dimension {dim.name!r}: {err.message}", hint=err.hint) from None


def start_search(ctx: Context, *, dataset_version_id: int, config: TrainConfig, space: Sequence[Dimension],
                 trials: int, actor: Actor, base_model: Path | None = None, allow_draft: str | None = None) -> int:
    """Queue a hyper-parameter search; returns its job id.

    The task follows the dataset version as for a run (``resolve_task``): text
    classification, token classification, or masked/causal language modelling on an
    unlabelled version; ``search_target`` says what each optimises.

    Args:
        config: the values every trial starts from (searched dimensions override them).
        space: the searched dimensions (``parse_space``), checked by ``check_space``.
        trials: how many trials to run (1-1000).
        actor: who starts it (``run.create`` in the dataset version's project); the best
            trial's run is created in their name, with their roles.
        base_model: a local model folder; default the configured base. Unused when
            ``config.from_scratch`` pre-trains a new model.
        allow_draft: search on a version that is not released, for this reason (as
            ``start_training_run``): every trial and the best config's run carry it.

    Raises:
        Forbidden: the actor may not create runs in the dataset version's project.
        NotFound: no such dataset version.
        Conflict: the version is not released and no override was given.
        InvalidInput: trials out of range, an override without a reason, a base model or
            dataset that cannot train the task, or a dimension the task cannot search
            (nothing is queued then).
    """
    authorize_object(ctx.db, actor, "run.create", lambda: project_of_dataset_version(ctx.db, dataset_version_id))
    override = check_released(get_dataset_version(ctx.db, dataset_version_id), allow_draft)
    if not 1 <= trials <= 1000:
        raise InvalidInput(f"trials={trials} is out of range.", hint="Use 1 to 1000 trials.")
    base, task = base_and_task(ctx, dataset_version_id, config, base_model)
    if task == TASK_SEQUENCE_CLASSIFICATION and config.multi_label_separator is not None:
        raise InvalidInput("A search trains single-label classifiers; multi_label_separator is not supported.",
                           hint="Search without it, then start a multi-label run with the best values.")
    check_data(ctx, task, dataset_version_id)
    check_space(space, task, config)
    target = search_target(task, config)
    params = {"dataset_version_id": dataset_version_id, "config": config.model_dump(mode="json"),
              "space": [d.to_json() for d in space], "trials": trials,
              "base_model": str(base) if base is not None else None,
              "target": {"task": target.task, "metric": target.metric, "direction": target.direction},
              "created_by": actor.name, "roles": sorted(actor.roles),
              # Project-bound roles too: the best trial's run is authorised like the search was.
              "scoped_roles": sorted([role, project] for role, project in actor.scoped_roles),
              "allow_draft": override,
              # Unique across databases that were reset: job ids restart, study names must not clash.
              "study": f"chainkeeper-search-{uuid.uuid4().hex[:12]}"}
    job = submit_job(ctx, JOB_KIND, params, actor=actor.name, max_attempts=1,
                     project=project_of_dataset_version(ctx.db, dataset_version_id))
    with ctx.db.session() as s:
        append_entry(s, actor, "run.create", "search", job.id, after={"space": params["space"], "trials": trials},
                     details={"dataset_version_id": dataset_version_id, "task": task, "metric": target.metric,
                              **({"draft_override": override} if override is not None else {})})
    return job.id


def check_data(ctx: Context, task: str, dataset_version_id: int) -> None:
    """Check the dataset version can train the task, as ``start_training_run`` does.

    Raises:
        InvalidInput: see ``check_trainable``, ``check_taggable``, ``check_corpus``.
    """
    if task == TASK_SEQUENCE_CLASSIFICATION:
        check_trainable(ctx, dataset_version_id)
    elif task == TASK_TOKEN_CLASSIFICATION:
        check_taggable(ctx, dataset_version_id)
    else:
        check_corpus(ctx, dataset_version_id)


@contextlib.contextmanager
def open_storage(url: str) -> Iterator[Any]:
    """The Optuna storage on Chainkeeper's database (see the module docstring); its
    connections are closed when the block ends."""
    import optuna

    storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True)
    try:
        yield storage
    finally:
        storage.remove_session()
        storage.engine.dispose()


def _suggest(trial: Any, dim: Mapping[str, Any]) -> Any:
    if dim["kind"] == "float":
        return trial.suggest_float(dim["name"], dim["low"], dim["high"], log=dim["log"])
    if dim["kind"] == "int":
        return trial.suggest_int(dim["name"], int(dim["low"]), int(dim["high"]), log=dim["log"])
    return trial.suggest_categorical(dim["name"], list(dim["choices"]))


def run_search_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Run the trials of a search, then start the best trial's config as a normal run.

    Returns:
        ``{"study", "task", "metric", "direction", "trials", "pruned", "best_value",
        "best_params", "run_id"}``.

    Raises:
        InvalidInput: no dev split to score trials on, or every trial failed.
    """
    import optuna
    import torch

    p = job.params
    base_config = parse_train_config(p["config"])
    # A search queued before tasks were recorded searched a classifier.
    target = Target(**p.get("target", {"task": TASK_SEQUENCE_CLASSIFICATION,
                                       "metric": base_config.early_stopping_metric, "direction": "maximize"}))
    torch.set_num_threads(ctx.settings.torch_threads or os.cpu_count() or 1)
    trials = _trial_runner(ctx, target, int(p["dataset_version_id"]), p["base_model"], base_config)
    job.log(f"searching {p['trials']} trials of {target.task} for the best {target.describe()}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with open_storage(ctx.settings.resolved_database_url) as storage:
        return _search(ctx, job, storage, target, base_config, trials)


# One trial: train a fresh model with this config, call ``report(step, value)`` with the
# target metric at every dev evaluation, and return the final dev metrics.
Report = Callable[[int, float], None]


@dataclass(frozen=True)
class TrialRunner:
    """How a task trains and scores one trial; the data is read once, for all trials."""

    train_rows: int  # sizes the default evaluation interval
    run: Callable[[TrainConfig, Report, Callable[[], bool]], Mapping[str, Any]]


def _trial_runner(ctx: Context, target: Target, version_id: int, base: str | None,
                  base_config: TrainConfig) -> TrialRunner:
    if target.task == TASK_TOKEN_CLASSIFICATION:
        return _tagger_trials(ctx, version_id, Path(str(base)), base_config)
    if target.task in LANGUAGE_MODEL_TASKS:
        return _language_model_trials(ctx, version_id, None if base is None else Path(base), base_config,
                                      "causal-lm" if target.task == TASK_CAUSAL_LM else "masked-lm")
    return _classifier_trials(ctx, version_id, Path(str(base)), base_config)


def _require_dev(version_id: int, has_dev: bool) -> None:
    if not has_dev:
        raise InvalidInput(f"Dataset version {version_id} has no dev rows to score trials on.",
                           hint="Create a dataset version with a dev split.")


def _evaluations(score: Callable[[], Mapping[str, Any]], metric: str, report: Report,
                 stopping: Callable[[Mapping[str, Any]], float]) -> Callable[[int], float]:
    """The loop's ``on_eval``: score dev, report the target metric to the trial (which
    may prune it), and return what early stopping watches, as the task's run does."""

    def on_eval(step: int) -> float:
        metrics = score()
        report(step, float(metrics[metric]))
        return stopping(metrics)

    return on_eval


def _classifier_trials(ctx: Context, version_id: int, base: Path, base_config: TrainConfig) -> TrialRunner:
    from chainkeeper.training.jobs import check_label_map, evaluate_split, load_split
    from chainkeeper.training.loop import seed_everything, train_classifier
    from chainkeeper.training.model import ClassifierMeta, TextClassifier
    from chainkeeper.training.vocabulary import extend_vocabulary, learn_new_rows

    train, dev = load_split(ctx, version_id, "train"), load_split(ctx, version_id, "dev")
    _require_dev(version_id, bool(dev.texts))
    labels = check_label_map(check_trainable(ctx, version_id), base_config.labels, {"train": train, "dev": dev})
    index = {label: i for i, label in enumerate(labels)}
    train_ids = [index[y] for y in train.labels]
    metric = base_config.early_stopping_metric

    def run(config: TrainConfig, report: Report, should_stop: Callable[[], bool]) -> Mapping[str, Any]:
        seed_everything(config.seed)  # before from_base: the head's initialisation is seeded too
        meta = ClassifierMeta(labels=labels, pooling=config.pooling, max_length=config.max_length)
        model, tokenizer = TextClassifier.from_base(base, meta, dropout=config.dropout,
                                                    attention_dropout=config.attention_dropout,
                                                    head_dropout=config.head_dropout)
        extension = None
        if config.extend_vocab:  # as the run will: see training.vocabulary
            tokenizer, extension = extend_vocabulary(model.encoder, tokenizer, train.texts, seed=config.seed)

        def score() -> dict[str, Any]:
            return evaluate_split(model, tokenizer, dev, batch_size=config.eval_batch_size)

        with learn_new_rows(model.encoder, extension):
            train_classifier(model, tokenizer, train.texts, train_ids, config, should_stop=should_stop,
                             on_eval=_evaluations(score, metric, report, lambda m: float(m[metric])))
        return score()

    return TrialRunner(len(train.texts), run)


def _tagger_trials(ctx: Context, version_id: int, base: Path, base_config: TrainConfig) -> TrialRunner:
    from chainkeeper.training.loop import seed_everything
    from chainkeeper.training.tagging_job import check_tag_map, load_tagged_split
    from chainkeeper.training.tokens import (
        TokenTagger,
        entity_metrics,
        predict_tags,
        train_token_tagger,
    )
    from chainkeeper.training.vocabulary import extend_vocabulary, learn_new_rows

    train, dev = load_tagged_split(ctx, version_id, "train"), load_tagged_split(ctx, version_id, "dev")
    _require_dev(version_id, bool(dev.sentences))
    tags = check_tag_map(check_taggable(ctx, version_id), base_config.labels, {"train": train, "dev": dev})

    def run(config: TrainConfig, report: Report, should_stop: Callable[[], bool]) -> Mapping[str, Any]:
        seed_everything(config.seed)
        model, tokenizer = TokenTagger.from_base(base, tags, dropout=config.dropout,
                                                 attention_dropout=config.attention_dropout,
                                                 head_dropout=config.head_dropout, max_length=config.max_length)
        extension = None
        if config.extend_vocab:  # as the run will: see training.vocabulary
            tokenizer, extension = extend_vocabulary(model.encoder, tokenizer,
                                                     [" ".join(words) for words in train.sentences], seed=config.seed)

        def score() -> dict[str, Any]:
            predicted = predict_tags(model, tokenizer, dev.sentences, max_length=config.max_length,
                                     batch_size=config.eval_batch_size)
            return entity_metrics(dev.tags, predicted, tags)

        def stopping(m: Mapping[str, Any]) -> float:  # as the tagging run: entity F1 unless accuracy was asked
            return float(m["token"]["accuracy"] if config.early_stopping_metric == "accuracy" else m["f1"])

        with learn_new_rows(model.encoder, extension):
            train_token_tagger(model, tokenizer, train.sentences, train.tags, config, should_stop=should_stop,
                               on_eval=_evaluations(score, "f1", report, stopping))
        return score()

    return TrialRunner(len(train.sentences), run)


def _language_model_trials(ctx: Context, version_id: int, base: Path | None, base_config: TrainConfig,
                           objective: Objective) -> TrialRunner:
    """Trials of masked or causal LM pre-training, each scored by its dev loss.

    Every trial's dev loss is measured at the base config's ``mlm_probability``: a
    masked-LM loss depends on how much is masked, so trials that vary the training
    masking rate are still compared on the same task. A from-scratch search trains the
    corpus tokenizer once; every trial builds its model on it.
    """
    from chainkeeper.training.loop import seed_everything
    from chainkeeper.training.pretraining import (
        build_scratch_model,
        build_tokenizer,
        evaluate_language_model,
        load_language_model,
        train_language_model,
    )
    from chainkeeper.training.pretraining_job import load_texts

    check_corpus(ctx, version_id)
    train, dev = load_texts(ctx, version_id, "train"), load_texts(ctx, version_id, "dev")
    _require_dev(version_id, bool(dev))
    scratch = base_config.from_scratch
    corpus_tokenizer = None
    if scratch is not None:
        seed_everything(base_config.seed)
        corpus_tokenizer = build_tokenizer(train, scratch.tokenizer, scratch.vocab_size, base_config.max_length)

    def run(config: TrainConfig, report: Report, should_stop: Callable[[], bool]) -> Mapping[str, Any]:
        seed_everything(config.seed)
        if corpus_tokenizer is not None and scratch is not None:
            model, tokenizer = build_scratch_model(corpus_tokenizer, objective, scratch, config.max_length), \
                corpus_tokenizer
        else:
            model, tokenizer = load_language_model(Path(str(base)), objective, dropout=config.dropout)

        def score() -> dict[str, Any]:
            return evaluate_language_model(model, tokenizer, dev, objective=objective, max_length=config.max_length,
                                           mlm_probability=base_config.mlm_probability,
                                           batch_size=config.eval_batch_size, seed=config.seed)

        train_language_model(model, tokenizer, train, config, objective, should_stop=should_stop,
                             on_eval=_evaluations(score, "loss", report, lambda m: -float(m["loss"])))
        return score()

    return TrialRunner(len(train), run)


def _search(ctx: Context, job: JobHandle, storage: Any, target: Target, base_config: TrainConfig,
            trials: TrialRunner) -> dict[str, Any]:
    import optuna

    p = job.params
    name, metric = str(p["study"]), target.metric
    version_id = int(p["dataset_version_id"])
    study = optuna.create_study(
        storage=storage, study_name=name, direction=target.direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=base_config.seed),
        # The pruner compares each trial with the median of the others in the study's direction.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )

    def objective(trial: optuna.Trial) -> float:
        job.check_cancelled()
        values = {**base_config.model_dump(), **{d["name"]: _suggest(trial, d) for d in p["space"]}}
        if values.get("eval_every_steps") is None:  # pruning needs intermediate values
            values["eval_every_steps"] = max(1, TrainConfig(**values).total_steps(trials.train_rows) // 4)
        config = parse_train_config(values)
        run = start_trial_run(ctx.db, search_job_id=job.job.id, trial=trial.number, dataset_version_id=version_id,
                              task=target.task, base_model=p["base_model"] or FROM_SCRATCH, config=config,
                              created_by=p["created_by"], draft_override=p.get("allow_draft"))

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"dev {metric} {value:.4f} at step {step}")

        try:
            dev = trials.run(config, report, lambda: job.cancel_requested)
            job.check_cancelled()
        except optuna.TrialPruned as exc:
            finish_trial_run(ctx.db, run.id, RunState.PRUNED, metrics={"pruned": str(exc)})
            raise
        except BaseException as exc:
            cancelled = isinstance(exc, JobCancelled)
            finish_trial_run(ctx.db, run.id, RunState.CANCELLED if cancelled else RunState.FAILED,
                             metrics={} if cancelled else {"error": (str(exc) or type(exc).__name__)[:2000]})
            raise
        value = float(dev[metric])
        finish_trial_run(ctx.db, run.id, RunState.SUCCEEDED, metrics={"dev": dict(dev)})
        job.log(f"trial {trial.number} (run {run.id}): dev {metric} {value:.4f} with "
                f"{ {d['name']: values[d['name']] for d in p['space']} }")
        return value

    def progress(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        job.progress(100.0 * (trial.number + 1) / int(p["trials"]), f"trial {trial.number + 1}/{p['trials']}: "
                     f"{trial.state.name.lower()}")

    study.optimize(objective, n_trials=int(p["trials"]), callbacks=[progress], catch=())
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    if not done:
        raise InvalidInput(f"No trial of study {name} completed ({pruned} pruned).",
                           hint="Widen the space or run more trials.")
    best = study.best_trial
    best_config = parse_train_config({**base_config.model_dump(), **best.params})
    job.log(f"best trial {best.number}: dev {metric} {best.value:.4f}, {best.params}")
    run = start_training_run(ctx, dataset_version_id=version_id, config=best_config,
                             actor=Actor(p["created_by"], frozenset(p.get("roles", [])),
                                         frozenset((role, project) for role, project in p.get("scoped_roles", []))),
                             base_model=Path(p["base_model"]) if p["base_model"] is not None else None,
                             allow_draft=p.get("allow_draft"), search_job_id=job.job.id)
    job.log(f"the best config is training as run {run.id} ({run.task})")
    return {"study": name, "task": target.task, "metric": metric, "direction": target.direction,
            "trials": len(study.trials), "pruned": pruned,
            "best_value": float(best.value) if best.value is not None and math.isfinite(best.value) else None,
            "best_params": dict(best.params), "run_id": run.id}


@dataclass(frozen=True)
class SearchReport:
    """A search as its reader sees it: the job (state, progress, result), what it
    optimises, and its runs: the trials in trial order, then the best config's run."""

    job: Job
    target: Target | None
    trials: list[Run]
    best_run: Run | None


def show_search(ctx: Context, job_id: int, *, actor: Actor) -> SearchReport:
    """A search job with its trials, each a run of the search.

    Args:
        job_id: the search job's id (``start_search`` answers it).
        actor: who asks (``run.read`` in the search's project: its trials are runs).

    Raises:
        Forbidden: the actor may not read runs of the search's project. NotFound: no such job.
        InvalidInput: the job is not a search.
    """
    authorize_object(ctx.db, actor, "run.read", lambda: get_job(ctx.db, job_id).project)
    job = get_job(ctx.db, job_id)
    if job.kind != JOB_KIND:
        raise InvalidInput(f"Job {job_id} is a {job.kind!r} job, not a search.",
                           hint="List searches with 'chainkeeper jobs list'; their kind is 'search'.")
    runs = list_runs(ctx.db, None, search_job_id=job_id)
    target = job.params.get("target")
    return SearchReport(job=job, target=Target(**target) if target else None,
                        trials=sorted((r for r in runs if r.trial is not None), key=lambda r: r.trial or 0),
                        best_run=next((r for r in runs if r.trial is None), None))
