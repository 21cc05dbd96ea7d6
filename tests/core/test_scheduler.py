"""The scheduler: recurring jobs fired apart from the workers, once per firing across
schedulers, surviving restarts, with missed firings coalesced."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, InvalidInput, NotFound
from chainkeeper.core.jobs import JobState, claim_next_job, get_job, list_jobs, submit_job
from chainkeeper.core.scheduler import (
    Scheduler,
    create_schedule,
    delete_schedule,
    fire_due_schedules,
    get_schedule,
    list_schedules,
    next_fire_time,
    set_paused,
)
from chainkeeper.core.settings import Settings
from chainkeeper.core.worker import Worker

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now_s", "expected_s"),
    [
        pytest.param(0, 60, id="on-time"),
        pytest.param(59.9, 60, id="late-within-period"),
        pytest.param(60, 120, id="exactly-one-period-late"),
        pytest.param(3 * 3600 + 5, 3 * 3600 + 60, id="three-hours-down-coalesce-to-one"),
    ],
)
def test_the_next_firing_is_the_first_point_of_the_grid_after_now(now_s: float, expected_s: float) -> None:
    assert next_fire_time(T0, 60, T0 + timedelta(seconds=now_s)) == T0 + timedelta(seconds=expected_s)


def test_a_delayed_job_waits_without_holding_up_the_jobs_behind_it(any_ctx: Context) -> None:
    later = submit_job(any_ctx, "sleep", {}, actor="t", not_before=utcnow() + timedelta(hours=1))
    now = submit_job(any_ctx, "sleep", {}, actor="t")
    claimed = claim_next_job(any_ctx.db, "w")
    assert claimed is not None and claimed.id == now.id
    assert claim_next_job(any_ctx.db, "w") is None
    assert get_job(any_ctx.db, later.id).state == JobState.QUEUED


def test_a_firing_queues_one_job_and_waits_while_it_is_unfinished(ctx: Context) -> None:
    schedule = create_schedule(ctx, "nap", "sleep", {"steps": 1, "step_s": 0.01}, every_s=60, actor="sam",
                               project="news", first_at=T0)
    (first,) = fire_due_schedules(ctx.db, now=T0 + timedelta(seconds=1))
    job = get_job(ctx.db, first.job_id or 0)
    assert (job.kind, job.params, job.project, job.created_by) == ("sleep", {"steps": 1, "step_s": 0.01}, "news",
                                                                   "sam")
    # Due again, but its job has not run: no second copy piles up in the queue.
    (waiting,) = fire_due_schedules(ctx.db, now=T0 + timedelta(seconds=61))
    assert waiting.job_id is None and waiting.waiting_for == job.id
    assert Worker(ctx).run_one() is not None
    (second,) = fire_due_schedules(ctx.db, now=T0 + timedelta(seconds=121))
    assert second.job_id not in (None, job.id)
    stored = get_schedule(ctx.db, schedule.id)
    assert (stored.runs, stored.skipped, stored.last_job_id) == (2, 1, second.job_id)
    assert stored.next_run_at == T0 + timedelta(seconds=180)


def test_a_schedule_survives_a_restart_and_missed_firings_coalesce(settings: Settings) -> None:
    ctx = open_context(settings)
    schedule = create_schedule(ctx, "nap", "sleep", {}, every_s=60, actor="sam", first_at=T0)
    assert len(fire_due_schedules(ctx.db, now=T0)) == 1
    Worker(ctx).run_one()
    ctx.close()

    again = open_context(settings)  # a new process would see the same
    try:
        assert get_schedule(again.db, schedule.id).next_run_at == T0 + timedelta(seconds=60)
        assert fire_due_schedules(again.db, now=T0 + timedelta(seconds=30)) == []
        # Down for an hour: one firing now, not sixty.
        assert len(fire_due_schedules(again.db, now=T0 + timedelta(seconds=3605))) == 1
        assert get_schedule(again.db, schedule.id).next_run_at == T0 + timedelta(seconds=3660)
        assert [j.kind for j in list_jobs(again.db)] == ["sleep", "sleep"]
    finally:
        again.close()


def test_a_paused_schedule_does_not_fire_until_resumed(ctx: Context) -> None:
    schedule = create_schedule(ctx, "nap", "sleep", {}, every_s=60, actor="sam", first_at=T0)
    assert set_paused(ctx.db, schedule.id, paused=True).paused
    assert fire_due_schedules(ctx.db, now=T0 + timedelta(days=1)) == []
    set_paused(ctx.db, schedule.id, paused=False)
    assert len(fire_due_schedules(ctx.db, now=T0 + timedelta(days=1))) == 1
    delete_schedule(ctx.db, schedule.id)
    with pytest.raises(NotFound, match="no schedule"):
        get_schedule(ctx.db, schedule.id)
    assert len(list_jobs(ctx.db)) == 1  # its job stays


def test_bad_schedules_are_refused(ctx: Context) -> None:
    create_schedule(ctx, "nap", "sleep", {}, every_s=60, actor="sam")
    with pytest.raises(Conflict, match="'nap' exists already"):
        create_schedule(ctx, "nap", "sleep", {}, every_s=60, actor="sam")
    with pytest.raises(InvalidInput, match="every 1 s to"):
        create_schedule(ctx, "fast", "sleep", {}, every_s=0.01, actor="sam")
    with pytest.raises(InvalidInput, match="Unknown job kind 'nope'"):
        create_schedule(ctx, "x", "nope", {}, every_s=60, actor="sam")
    assert [s.name for s in list_schedules(ctx.db)] == ["nap"]


# A scheduler process: fires at a fixed time, as fast as it can, and prints each job it queued.
_FIRER = """
import sys
from datetime import datetime
from chainkeeper.core.db import Database
from chainkeeper.core.scheduler import fire_due_schedules
db = Database(sys.argv[1])
now = datetime.fromisoformat(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()  # start together
for _ in range(3):
    for firing in fire_due_schedules(db, now=now, limit=1):
        print(firing.job_id, flush=True)
    for firing in fire_due_schedules(db, now=now):
        print(firing.job_id, flush=True)
"""


def test_two_schedulers_fire_each_due_schedule_exactly_once(any_ctx: Context) -> None:
    ids = {create_schedule(any_ctx, f"s{i}", "sleep", {}, every_s=60, actor="t", first_at=T0).id for i in range(40)}
    procs = [subprocess.Popen([sys.executable, "-c", _FIRER, any_ctx.db.url, (T0 + timedelta(seconds=5)).isoformat()],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    queued = [[int(line) for line in p.communicate(timeout=120)[0].split()] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert not set(queued[0]) & set(queued[1]), "a firing was queued by both schedulers"
    jobs = list_jobs(any_ctx.db, limit=1000)
    assert len(jobs) == len(ids) == len(queued[0]) + len(queued[1])
    assert {s.runs for s in list_schedules(any_ctx.db)} == {1}


def test_the_scheduler_loop_fires_due_schedules_and_keeps_the_system_ones(ctx: Context) -> None:
    schedule = create_schedule(ctx, "nap", "sleep", {"steps": 1, "step_s": 0.0}, every_s=1, actor="sam")
    loop = Scheduler(ctx, tick_s=0.05)
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and get_schedule(ctx.db, schedule.id).runs < 2:
            Worker(ctx).run_one()
            time.sleep(0.05)
    finally:
        loop.stopping.set()
        thread.join(10)
    assert not thread.is_alive()
    assert get_schedule(ctx.db, schedule.id).runs >= 2
    # The chain's wiring names the prediction log's retention as a system schedule.
    retention = {s.name: s for s in list_schedules(ctx.db)}["prediction-log-retention"]
    assert retention.kind == "predictions.purge" and retention.created_by == "system"
    Worker(ctx).run_forever(exit_when_idle=True)
    purge = get_job(ctx.db, retention.last_job_id or 0)
    assert purge.state == JobState.SUCCEEDED and purge.result is not None and purge.result["deleted"] == 0


def test_the_scheduler_command_fires_alone_and_stops_on_sigterm(ctx: Context, settings: Settings) -> None:
    schedule = create_schedule(ctx, "nap", "sleep", {}, every_s=3600, actor="sam")
    proc = subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(settings.home), "scheduler",
                             "--tick-s", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and get_schedule(ctx.db, schedule.id).runs == 0:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "scheduler stopped after" in out and "Traceback" not in out
    # Its first tick fired the due schedule and the system's retention schedule it created.
    assert sorted(j.kind for j in list_jobs(ctx.db)) == ["predictions.purge", "sleep"]
    assert get_schedule(ctx.db, schedule.id).runs == 1  # an hour to the next firing
