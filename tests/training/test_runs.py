"""Training runs end to end: a dataset version, a queued run, a worker, a stored model."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, InvalidInput, JobCancelled, NotFound
from chainkeeper.core.jobs import (
    JobHandle,
    JobState,
    claim_next_job,
    count_jobs_by_state,
    get_job,
    job_logs,
    request_cancel,
)
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.jobs import RUN_FILE, run_training_job
from chainkeeper.training.model import TextClassifier
from chainkeeper.training.runs import (
    RunState,
    cancel_run,
    count_runs,
    get_run,
    list_runs,
    start_training_run,
)

ALICE = Actor("alice", frozenset({"data_steward", "ml_engineer"}))
# Approves releases (the gate keeps her apart from Alice, who built the versions).
RITA = Actor("rita", frozenset({"data_steward"}))
# Separable by words, so the tiny random model learns it in a few dozen steps.
_ROWS = [(f"my card payment failed {i}", "money") for i in range(12)] + \
        [(f"refund my bank transfer {i}", "money") for i in range(12)] + \
        [(f"heavy rain and wind tonight {i}", "weather") for i in range(12)] + \
        [(f"sunny and warm afternoon {i}", "weather") for i in range(12)]
FAST = TrainConfig(epochs=4, batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0, dropout=0.0,
                   log_every_steps=4, max_length=32)


def _dataset_version(ctx: Context, tmp_path: Path, rows: list[tuple[str, str]] = _ROWS, *,
                     released: bool = True) -> int:
    """A dataset version of ``rows``, released (training takes released versions) unless asked."""
    from chainkeeper.data.ingest import import_csv
    from chainkeeper.data.versions import create_dataset_version

    path = tmp_path / "rows.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    source = import_csv(ctx, path, actor=ALICE)
    version_id = create_dataset_version(ctx, name="toy", source_ids=[source.id], actor=ALICE).id
    return release(ctx, version_id) if released else version_id


def release(ctx: Context, version_id: int) -> int:
    """Release a version as the gate's executor would (the gate itself is tested in chain and data)."""
    from chainkeeper.data.versions import release_dataset_version

    return release_dataset_version(ctx, version_id, actor=RITA).id


def test_a_run_trains_evaluates_and_stores_a_loadable_model(any_ctx: Context, tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    version_id = _dataset_version(any_ctx, tmp_path)
    run = start_training_run(any_ctx, dataset_version_id=version_id, config=FAST, actor=ALICE,
                             base_model=tiny_model_dir)
    assert run.state == RunState.QUEUED and run.created_by == "alice" and run.job_id is not None
    assert get_job(any_ctx.db, run.job_id).params == {"run_id": run.id}

    job = Worker(any_ctx).run_one()

    assert job is not None and job.state == JobState.SUCCEEDED, job and job.error
    done = get_run(any_ctx.db, run.id)
    assert done.state == RunState.SUCCEEDED and done.finished_at is not None
    assert set(done.metrics) >= {"train", "dev", "test"}
    assert done.metrics["test"]["labels"] == ["money", "weather"]
    assert done.metrics["test"]["accuracy"] >= 0.75
    train = done.metrics["train"]
    assert train["steps"] == 4 * -(-train["rows"] // 8) and train["samples_per_s"] > 0
    assert train["final_loss"] < train["loss_curve"][0][1]
    assert job.result == {"run_id": run.id, "model_artifact": done.model_artifact,
                          "metrics": {s: {k: done.metrics[s][k] for k in ("accuracy", "macro_f1")}
                                      for s in ("dev", "test")}}
    assert job.progress == 100.0

    folder = any_ctx.artifacts.get_tree(done.model_artifact or "", tmp_path / "model")
    model, tokenizer = TextClassifier.load(folder)
    assert model.meta.labels == ["money", "weather"] and (folder / RUN_FILE).is_file()
    probs = model.predict_proba(tokenizer, ["refund my bank transfer", "heavy rain and wind tonight"])
    assert probs.argmax(dim=-1).tolist() == [0, 1]

    lines = [line for _, _, line in job_logs(any_ctx.db, job.id)]
    assert any("loss" in line and "lr" in line and "samples/s" in line for line in lines)
    assert any(line.startswith("test: accuracy") for line in lines)
    entries = list_entries(any_ctx.db, object_kind="run")
    assert [e.action for e in entries] == ["run.create", "run.running", "run.succeeded"]
    assert entries[-1].actor.startswith("worker (for ") and entries[-1].details == {"job_id": job.id}


def test_cancel_before_start_cancels_run_and_job_and_nothing_trains(ctx: Context, tmp_path: Path,
                                                                   tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    run = start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE,
                             base_model=tiny_model_dir)

    cancelled = cancel_run(ctx, run.id, actor=ALICE)

    assert cancelled.state == RunState.CANCELLED and cancelled.finished_at is not None
    assert get_job(ctx.db, run.job_id or 0).state == JobState.CANCELLED
    assert Worker(ctx).run_one() is None  # the queue is empty: the cancelled job is never claimed
    assert get_run(ctx.db, run.id).model_artifact is None
    with pytest.raises(Conflict, match="already cancelled"):
        cancel_run(ctx, run.id, actor=ALICE)


def test_cancel_requested_while_running_marks_run_cancelled(ctx: Context, tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    run = start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE,
                             base_model=tiny_model_dir)
    claimed = claim_next_job(ctx.db, "w1")
    assert claimed is not None
    request_cancel(ctx.db, claimed.id)  # a running job keeps running until it checks
    handle = JobHandle(ctx.db, get_job(ctx.db, claimed.id), "w1")

    with pytest.raises(JobCancelled):
        run_training_job(ctx, handle)

    after = get_run(ctx.db, run.id)
    assert after.state == RunState.CANCELLED and after.model_artifact is None


def test_unknown_dataset_version_is_not_found_and_stores_nothing(any_ctx: Context,
                                                                 tiny_model_dir: Path) -> None:
    with pytest.raises(NotFound) as err:
        start_training_run(any_ctx, dataset_version_id=987, config=FAST, actor=ALICE, base_model=tiny_model_dir)
    assert "987" in str(err.value)
    assert count_runs(any_ctx.db) == 0 and count_jobs_by_state(any_ctx.db) == {}


def test_single_label_data_is_refused_before_anything_is_stored(ctx: Context, tmp_path: Path,
                                                                tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path, [(f"text number {i}", "only") for i in range(20)])
    with pytest.raises(InvalidInput, match="single label"):
        start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE, base_model=tiny_model_dir)
    assert count_runs(ctx.db) == 0


def test_a_base_model_that_is_not_a_model_folder_is_refused(ctx: Context, tmp_path: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    with pytest.raises(InvalidInput, match="no config.json"):
        start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE, base_model=tmp_path)
    assert count_runs(ctx.db) == 0


def test_a_failing_job_marks_the_run_failed_with_the_reason(ctx: Context, tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    version_id = _dataset_version(ctx, tmp_path)
    run = start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE, base_model=base)
    (base / "model.safetensors").unlink()  # the weights vanish between queueing and running

    job = Worker(ctx).run_one()

    assert job is not None and job.state == JobState.FAILED
    failed = get_run(ctx.db, run.id)
    assert failed.state == RunState.FAILED and failed.finished_at is not None
    assert failed.metrics["error"]
    with pytest.raises(Conflict, match="already failed"):
        cancel_run(ctx, run.id, actor=ALICE)


def test_runs_are_listed_newest_first_and_counted(ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    first = start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE,
                               base_model=tiny_model_dir)
    second = start_training_run(ctx, dataset_version_id=version_id, config=TrainConfig(), actor=ALICE,
                                base_model=tiny_model_dir)
    assert [r.id for r in list_runs(ctx.db)] == [second.id, first.id]
    assert [r.id for r in list_runs(ctx.db, limit=1)] == [second.id]
    assert count_runs(ctx.db) == 2
    assert second.train_config == TrainConfig()
    with pytest.raises(NotFound, match="no training run 999"):
        get_run(ctx.db, 999)
