import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.core.jobs import (
    JobState,
    claim_next_job,
    count_live_workers,
    get_job,
    job_logs,
    list_workers,
    mark_worker_lost,
    reap_stale_jobs,
    register_worker,
    request_cancel,
    retry_job,
    retry_job_later,
    submit_job,
    worker_heartbeat,
)
from chainkeeper.core.worker import Worker

# A worker process that claims jobs as fast as it can and prints each id it got.
_CLAIMER = """
import sys
from chainkeeper.core.db import Database
from chainkeeper.core.jobs import claim_next_job
db = Database(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # start together
while (job := claim_next_job(db, sys.argv[2])) is not None:
    print(job.id, flush=True)
"""


def test_two_workers_never_claim_the_same_job(any_ctx: Context) -> None:
    ids = {submit_job(any_ctx, "sleep", {}, actor="t").id for _ in range(60)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _CLAIMER, any_ctx.db.url, f"w{i}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    claimed = [[int(line) for line in p.communicate(timeout=60)[0].split()] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    first, second = set(claimed[0]), set(claimed[1])
    assert not first & second, "a job was given to both workers"
    assert first | second == ids
    assert len(claimed[0]) + len(claimed[1]) == len(ids)


def test_progress_and_result_are_recorded(any_ctx: Context) -> None:
    job = submit_job(any_ctx, "sleep", {"steps": 3, "step_s": 0.01}, actor="alice")
    done = Worker(any_ctx).run_one()
    assert done is not None and done.id == job.id
    assert done.state == JobState.SUCCEEDED and done.progress == 100.0
    assert done.result == {"slept_s": pytest.approx(0.03), "attempt": 1}
    assert done.finished_at is not None and done.started_at is not None


def test_cancel_a_queued_job_and_a_running_one(ctx: Context) -> None:
    queued = submit_job(ctx, "sleep", {}, actor="t")
    assert request_cancel(ctx.db, queued.id).state == JobState.CANCELLED
    assert Worker(ctx).run_one() is None  # nothing left to claim

    running = submit_job(ctx, "sleep", {"steps": 200, "step_s": 0.05}, actor="t")
    worker = Worker(ctx)
    import threading

    result: list = []
    t = threading.Thread(target=lambda: result.append(worker.run_one()))
    t.start()
    deadline = time.monotonic() + 10
    while get_job(ctx.db, running.id).state != JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    request_cancel(ctx.db, running.id)
    t.join(timeout=10)
    final = get_job(ctx.db, running.id)
    assert final.state == JobState.CANCELLED
    assert final.progress < 100.0
    with pytest.raises(Conflict, match="already cancelled"):
        request_cancel(ctx.db, running.id)


def test_a_killed_workers_job_is_detected_and_retried(ctx: Context, tmp_path: Path) -> None:
    job = submit_job(ctx, "sleep", {"steps": 100, "step_s": 0.03}, actor="t")
    stderr = tmp_path / "worker.err"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chainkeeper.cli.main", "worker", "--max-jobs", "1"],
            env=_env(ctx), stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while (state := get_job(ctx.db, job.id)).progress < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state.state == JobState.RUNNING, stderr.read_text()
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    # Nothing notices until the heartbeat is stale...
    assert reap_stale_jobs(ctx.db, stale_after=timedelta(seconds=60)) == []
    time.sleep(ctx.settings.stale_after_s + 0.2)
    reaped = reap_stale_jobs(ctx.db, stale_after=timedelta(seconds=ctx.settings.stale_after_s))
    assert [j.id for j in reaped] == [job.id]
    assert reaped[0].state == JobState.QUEUED and "stopped sending heartbeats" in reaped[0].message
    assert any("reaper" in line for _, _, line in job_logs(ctx.db, job.id))

    # ...and a live worker takes it again as attempt 2.
    retried = Worker(ctx).run_one()
    assert retried is not None and retried.state == JobState.SUCCEEDED and retried.attempts == 2


def test_a_job_out_of_attempts_stays_failed_and_can_be_retried_by_hand(ctx: Context) -> None:
    job = submit_job(ctx, "sleep", {}, actor="t", max_attempts=1)
    assert claim_next_job(ctx.db, "ghost") is not None
    reaped = reap_stale_jobs(ctx.db, stale_after=timedelta(seconds=1), now=utcnow() + timedelta(seconds=5))
    assert reaped[0].state == JobState.FAILED and "gave up after 1 attempts" in (reaped[0].error or "")
    assert retry_job(ctx.db, job.id).state == JobState.QUEUED
    assert Worker(ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]


def test_a_handler_error_fails_the_job_with_its_message(ctx: Context) -> None:
    job = submit_job(ctx, "sleep", {"steps": "many"}, actor="t")
    done = Worker(ctx).run_one()
    assert done is not None and done.id == job.id and done.state == JobState.FAILED
    assert "ValueError" in (done.error or "")


def test_unknown_kinds_and_ids(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="Known kinds"):
        submit_job(ctx, "fly", {}, actor="t")
    with pytest.raises(NotFound, match="no job 999"):
        get_job(ctx.db, 999)


def test_an_attempt_that_may_pass_is_queued_again_after_its_back_off(any_ctx: Context) -> None:
    job = submit_job(any_ctx, "sleep", {}, actor="t", max_attempts=2)
    assert claim_next_job(any_ctx.db, "w1") is not None
    with pytest.raises(Conflict, match="no longer held by worker w2"):
        retry_job_later(any_ctx.db, job.id, "w2", error="The disk is full.", delay=timedelta(seconds=1))

    waiting = retry_job_later(any_ctx.db, job.id, "w1", error="The disk is full.", delay=timedelta(seconds=1))
    assert waiting.state == JobState.QUEUED and waiting.worker_id is None and waiting.error is None
    assert waiting.message.startswith("attempt 1 failed: The disk is full. Retrying after")
    assert claim_next_job(any_ctx.db, "w1") is None  # not before its back-off
    time.sleep(1.1)
    assert claim_next_job(any_ctx.db, "w1") is not None  # attempt 2, the last

    failed = retry_job_later(any_ctx.db, job.id, "w1", error="The disk is full.", delay=timedelta(seconds=1))
    assert failed.state == JobState.FAILED and failed.error == "The disk is full." and failed.attempts == 2
    assert [line for _, _, line in job_logs(any_ctx.db, job.id)] == [
        "attempt 1 failed: The disk is full. Retrying in 1 s.", "attempt 2 failed: The disk is full. No attempts left."]


def test_a_worker_counts_as_alive_while_it_beats_and_not_once_lost_or_stopped(any_ctx: Context) -> None:
    window = timedelta(seconds=30)
    register_worker(any_ctx.db, "a", "host1", 101)
    register_worker(any_ctx.db, "b", "host1", 102)
    register_worker(any_ctx.db, "c", "host2", 101)
    assert count_live_workers(any_ctx.db, alive_within=window) == 3

    assert mark_worker_lost(any_ctx.db, "host1", 101) == 1  # only that host's process
    worker_heartbeat(any_ctx.db, "b", "stopped")
    assert count_live_workers(any_ctx.db, alive_within=window) == 1
    assert [w["id"] for w in list_workers(any_ctx.db, alive_within=window)] == ["c"]
    assert mark_worker_lost(any_ctx.db, "host1", 101) == 0  # already lost
    time.sleep(0.05)
    assert count_live_workers(any_ctx.db, alive_within=timedelta(milliseconds=10)) == 0  # heartbeat too old


def _env(ctx: Context) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    env.update({
        "CHAINKEEPER_HOME": str(ctx.settings.home),
        "CHAINKEEPER_DATABASE_URL": ctx.db.url,
        "CHAINKEEPER_HEARTBEAT_S": "0.2",
        "CHAINKEEPER_STALE_AFTER_S": "2",
    })
    return env
