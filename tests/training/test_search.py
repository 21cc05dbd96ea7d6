"""Hyper-parameter search: the space parser, and a real Optuna study of tiny-model trials
stored in the same database (SQLite and PostgreSQL), whose best trial becomes a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobState, get_job
from chainkeeper.core.worker import Worker
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import RunState, find_runs, get_run
from chainkeeper.training.search import Dimension, open_storage, parse_space, show_search, start_search
from tests.training.test_runs import ALICE, _dataset_version


def test_parse_space_reads_ranges_log_scales_ints_and_choices() -> None:
    space = parse_space(["lr=1e-5:5e-4:log", "batch_size=4:16", "schedule=linear,cosine"])
    assert space == [Dimension("learning_rate", "float", 1e-5, 5e-4, True),
                     Dimension("batch_size", "int", 4, 16, False),
                     Dimension("schedule", "choice", choices=("linear", "cosine"))]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        pytest.param("lr=5e-4:1e-5", "low < high", id="reversed"),
        pytest.param("lr=0:1e-3:log", "low > 0", id="log-from-zero"),
        pytest.param("learning_rat=1e-5:1e-3", "no training option", id="unknown-option"),
        pytest.param("lr", "not name=", id="no-equals"),
        pytest.param("lr=a:b", "must be numbers", id="not-numbers"),
    ],
)
def test_bad_search_dimensions_are_refused_with_the_spec(spec: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_space([spec])
    assert fragment in err.value.message


@pytest.mark.slow
def test_a_search_stores_its_study_in_our_database_and_trains_the_best_trial(
        any_ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    import optuna

    version_id = _dataset_version(any_ctx, tmp_path)
    base = TrainConfig(epochs=2, batch_size=8, head_lr_multiplier=1.0, dropout=0.0, max_length=16,
                       eval_every_steps=2, log_every_steps=4)
    job_id = start_search(any_ctx, dataset_version_id=version_id, config=base, trials=3, actor=ALICE,
                          space=parse_space(["lr=1e-4:1e-2:log"]), base_model=tiny_model_dir)
    job = Worker(any_ctx).run_one()
    assert job is not None and job.id == job_id and job.state == JobState.SUCCEEDED, job and job.error
    result = job.result or {}
    assert result["trials"] == 3 and 1e-4 <= result["best_params"]["learning_rate"] <= 1e-2

    # The study is in the metadata store, readable by anyone with the database URL.
    with open_storage(any_ctx.settings.resolved_database_url) as storage:
        study = optuna.load_study(study_name=result["study"], storage=storage)
        assert len(study.trials) == 3 and study.best_value == pytest.approx(result["best_value"])
        assert all(t.intermediate_values for t in study.trials)  # reported per evaluation (pruning input)

    # Every trial is a run of the search (issue 14, item 9), and so is the best config's run.
    found = show_search(any_ctx, job_id, actor=ALICE)
    assert [r.trial for r in found.trials] == [0, 1, 2]
    assert all(r.search_job_id == job_id == r.job_id and r.model_artifact is None for r in found.trials)
    assert {r.state for r in found.trials} <= {RunState.SUCCEEDED, RunState.PRUNED}
    assert max(r.metrics["dev"]["macro_f1"] for r in found.trials if r.state == RunState.SUCCEEDED) \
        == pytest.approx(result["best_value"])
    assert found.best_run is not None and found.best_run.id == result["run_id"] and found.best_run.trial is None
    listed = find_runs(any_ctx, actor=ALICE, search_job_id=job_id)
    assert {r.id for r in listed} == {r.id for r in found.trials} | {result["run_id"]}

    # The best trial is a normal run, queued in the author's name, with the best values.
    run = get_run(any_ctx.db, result["run_id"])
    assert run.state == RunState.QUEUED and run.created_by == "alice"
    assert run.config["learning_rate"] == pytest.approx(result["best_params"]["learning_rate"])
    assert Worker(any_ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]
    assert get_job(any_ctx.db, job_id).attempts == 1
    # Optuna's tables sit beside ours without touching our schema revision.
    open_context(any_ctx.settings).close()


def test_a_search_without_trials_or_a_model_tokenizer_is_refused(ctx: Context, tmp_path: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    with pytest.raises(InvalidInput, match="trials=0"):
        start_search(ctx, dataset_version_id=version_id, config=TrainConfig(), trials=0, actor=ALICE,
                     space=parse_space(["lr=1e-5:1e-3"]))
