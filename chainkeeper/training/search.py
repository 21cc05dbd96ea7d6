"""Hyper-parameter search with Optuna, its study kept in Chainkeeper's own database.

``start_search`` validates a search space (``lr=1e-5:5e-4:log``, ``batch_size=16:64``,
``schedule=linear,cosine``) and queues a ``search`` job. The handler runs the trials in
the worker: each trial trains the classifier with the suggested values, reports the dev
metric at every evaluation (``eval_every_steps``) and is pruned by a median pruner when
it falls behind the trials before it. The study lives in the metadata store
(``optuna.storages.RDBStorage`` on ``settings.resolved_database_url``, SQLite or
PostgreSQL), so a reviewer can reopen it; the best trial's config then becomes a normal
training run, with its own job, metrics and model.

Optuna keeps its own tables (``studies``, ``trials``…) next to ours. It must not touch
our Alembic revision: with ``alembic_version`` already set, Optuna leaves it alone, and
``skip_compatibility_check`` stops it from comparing our revision with its own.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobHandle, submit_job
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.training.config import TrainConfig, parse_train_config
from chainkeeper.training.runs import check_base_model, check_trainable

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

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


def start_search(ctx: Context, *, dataset_version_id: int, config: TrainConfig, space: Sequence[Dimension],
                 trials: int, actor: Actor, base_model: Path | None = None) -> int:
    """Queue a hyper-parameter search; returns its job id.

    Args:
        config: the values every trial starts from (searched dimensions override them).
        space: the searched dimensions (``parse_space``).
        trials: how many trials to run (1-1000).
        actor: who starts it; the best trial's run is created in their name.

    Raises:
        InvalidInput: trials out of range, a base model or dataset that cannot train
            (nothing is queued then).
    """
    if not 1 <= trials <= 1000:
        raise InvalidInput(f"trials={trials} is out of range.", hint="Use 1 to 1000 trials.")
    base = Path(base_model) if base_model is not None else ctx.settings.resolved_base_model
    check_base_model(base, config)
    check_trainable(ctx, dataset_version_id)
    params = {"dataset_version_id": dataset_version_id, "config": config.model_dump(mode="json"),
              "space": [d.to_json() for d in space], "trials": trials, "base_model": str(base),
              "created_by": actor.name, "roles": sorted(actor.roles),
              # Unique across databases that were reset: job ids restart, study names must not clash.
              "study": f"chainkeeper-search-{uuid.uuid4().hex[:12]}"}
    job = submit_job(ctx.db, JOB_KIND, params, actor=actor.name, max_attempts=1)
    with ctx.db.session() as s:
        append_entry(s, actor, "run.create", "search", job.id, after={"space": params["space"], "trials": trials},
                     details={"dataset_version_id": dataset_version_id})
    return job.id


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
        ``{"study", "trials", "pruned", "best_value", "best_params", "run_id"}``.

    Raises:
        InvalidInput: no dev split to score trials on, or every trial failed.
    """
    import optuna
    import torch

    from chainkeeper.training.jobs import load_split

    p = job.params
    version_id = int(p["dataset_version_id"])
    base_config = parse_train_config(p["config"])
    torch.set_num_threads(ctx.settings.torch_threads or os.cpu_count() or 1)
    labels = check_trainable(ctx, version_id)
    train, dev = load_split(ctx, version_id, "train"), load_split(ctx, version_id, "dev")
    if not dev.texts:
        raise InvalidInput(f"Dataset version {version_id} has no labelled dev rows to score trials on.",
                           hint="Create a dataset version with a dev split.")
    name = str(p["study"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with open_storage(ctx.settings.resolved_database_url) as storage:
        return _search(ctx, job, storage, name, base_config, labels, train, dev)


def _search(ctx: Context, job: JobHandle, storage: Any, name: str, base_config: TrainConfig, labels: list[str],
            train: Any, dev: Any) -> dict[str, Any]:
    import optuna

    from chainkeeper.training.jobs import evaluate_split
    from chainkeeper.training.loop import seed_everything, train_classifier
    from chainkeeper.training.model import ClassifierMeta, TextClassifier
    from chainkeeper.training.runs import start_training_run

    p = job.params
    version_id = int(p["dataset_version_id"])
    index = {label: i for i, label in enumerate(labels)}
    train_ids = [index[y] for y in train.labels]
    metric_name = base_config.early_stopping_metric
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=base_config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )

    def objective(trial: optuna.Trial) -> float:
        job.check_cancelled()
        values = {**base_config.model_dump(), **{d["name"]: _suggest(trial, d) for d in p["space"]}}
        if values.get("eval_every_steps") is None:  # pruning needs intermediate values
            values["eval_every_steps"] = max(1, TrainConfig(**values).total_steps(len(train.texts)) // 4)
        config = parse_train_config(values)
        seed_everything(config.seed)
        meta = ClassifierMeta(labels=labels, pooling=config.pooling, max_length=config.max_length)
        model, tokenizer = TextClassifier.from_base(Path(p["base_model"]), meta, dropout=config.dropout,
                                                    attention_dropout=config.attention_dropout,
                                                    head_dropout=config.head_dropout)

        def report(step: int) -> float:
            value = float(evaluate_split(model, tokenizer, dev, batch_size=config.eval_batch_size)[metric_name])
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"dev {metric_name} {value:.4f} at step {step}")
            return value

        train_classifier(model, tokenizer, train.texts, train_ids, config,
                         should_stop=lambda: job.cancel_requested, on_eval=report)
        job.check_cancelled()
        value = float(evaluate_split(model, tokenizer, dev, batch_size=config.eval_batch_size)[metric_name])
        job.log(f"trial {trial.number}: dev {metric_name} {value:.4f} with "
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
    job.log(f"best trial {best.number}: dev {metric_name} {best.value:.4f}, {best.params}")
    run = start_training_run(ctx, dataset_version_id=version_id, config=best_config,
                             actor=Actor(p["created_by"], frozenset(p.get("roles", []))),
                             base_model=Path(p["base_model"]))
    job.log(f"the best config is training as run {run.id}")
    return {"study": name, "trials": len(study.trials), "pruned": pruned,
            "best_value": float(best.value) if best.value is not None and math.isfinite(best.value) else None,
            "best_params": dict(best.params), "run_id": run.id}
