"""Checkpoint and resume: a real worker is killed mid-run, and the retried job carries on."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.jobs import JobState, get_job, job_logs, reap_stale_jobs
from chainkeeper.core.worker import Worker
from chainkeeper.training.checkpoints import CHECKPOINT_FILE, load_checkpoint, run_folder
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import RunState, get_run, start_training_run
from tests.core.test_jobs import _env
from tests.training.test_runs import ALICE, _dataset_version

# Enough steps that the killed worker is surely mid-run when the first checkpoint lands.
LONG = TrainConfig(max_steps=120, batch_size=4, learning_rate=2e-3, head_lr_multiplier=1.0, dropout=0.0,
                   log_every_steps=10, max_length=16, checkpoint_every_steps=20, warmup_ratio=0.0)


@pytest.mark.slow
def test_a_run_resumes_from_its_checkpoint_after_its_worker_is_killed(ctx: Context, tmp_path: Path,
                                                                        tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    run = start_training_run(ctx, dataset_version_id=version_id, config=LONG, actor=ALICE,
                             base_model=tiny_model_dir)
    checkpoint = run_folder(ctx.settings.home, run.id) / CHECKPOINT_FILE
    stderr = tmp_path / "worker.err"
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "worker", "--max-jobs", "1"],
                                env=_env(ctx), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 180  # a busy shared machine starts Python slowly
        while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()  # SIGKILL mid-run: no clean-up, no final write
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert checkpoint.is_file(), stderr.read_text()
    assert get_run(ctx.db, run.id).state == RunState.RUNNING
    saved_step = load_checkpoint(checkpoint.parent)["step"]  # type: ignore[index]
    assert 0 < saved_step < LONG.max_steps  # type: ignore[operator]

    time.sleep(ctx.settings.stale_after_s + 0.2)
    assert [j.id for j in reap_stale_jobs(ctx.db, stale_after=timedelta(seconds=ctx.settings.stale_after_s))] \
        == [run.job_id]
    retried = Worker(ctx).run_one()
    assert retried is not None and retried.state == JobState.SUCCEEDED, retried and retried.error
    assert retried.attempts == 2
    lines = [line for _, _, line in job_logs(ctx.db, run.job_id)]  # type: ignore[arg-type]
    resumed = [int(m.group(1)) for line in lines if (m := re.match(r"resumed from step (\d+)", line))]
    assert resumed and resumed[0] > 0

    # The same run without interruption: same steps, (float-noise) same metrics.
    plain = start_training_run(ctx, dataset_version_id=version_id, config=LONG, actor=ALICE,
                               base_model=tiny_model_dir)
    assert Worker(ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]
    a, b = get_run(ctx.db, run.id).metrics, get_run(ctx.db, plain.id).metrics
    assert a["train"]["steps"] == b["train"]["steps"] == LONG.max_steps
    assert a["train"]["resumed_from_step"] == resumed[0] and b["train"]["resumed_from_step"] is None
    assert a["train"]["final_loss"] == pytest.approx(b["train"]["final_loss"], rel=1e-3, abs=1e-4)
    assert a["test"]["accuracy"] == pytest.approx(b["test"]["accuracy"], abs=0.05)
    assert not checkpoint.exists()  # a succeeded run drops its checkpoint
    assert get_job(ctx.db, plain.job_id).attempts == 1  # type: ignore[arg-type]
