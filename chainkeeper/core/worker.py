"""The local worker: claims jobs from the metadata store and runs them.

One worker runs one job at a time. While a job runs, a heartbeat thread stamps it every
``heartbeat_s`` and picks up cancel requests; every idle loop the worker also reaps jobs
whose own worker died, so one live worker is enough to recover the queue.

How a handler is *executed* is an ``Executor``: in this process by default; a Ray-backed
executor can send the same handler to a cluster.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
import uuid
from datetime import timedelta
from typing import Any, Protocol, TypedDict

from chainkeeper.core.context import Context
from chainkeeper.core.errors import ChainkeeperError, Conflict, JobCancelled, StoreError
from chainkeeper.core.jobs import (
    Job,
    JobHandle,
    JobState,
    append_log,
    claim_next_job,
    finish_job,
    heartbeat,
    reap_stale_jobs,
    register_worker,
    worker_heartbeat,
)

log = logging.getLogger("chainkeeper.worker")


class _Outcome(TypedDict, total=False):
    """What ``finish_job`` stores of a finished job: its result or its error."""

    result: dict[str, Any]
    error: str


class Executor(Protocol):
    def execute(self, ctx: Context, job: JobHandle) -> dict[str, Any]:
        """Run the job's handler to completion and return its result."""
        ...


class InProcessExecutor:
    """Runs the handler in the worker's own process (the embedded default)."""

    def execute(self, ctx: Context, job: JobHandle) -> dict[str, Any]:
        return ctx.wiring.job_handler(job.job.kind)(ctx, job)


class _Heartbeat(threading.Thread):
    def __init__(self, ctx: Context, handle: JobHandle, interval: float) -> None:
        super().__init__(name=f"heartbeat-{handle.id}", daemon=True)
        self.ctx, self.handle, self.interval = ctx, handle, interval
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                # Both the job and the worker prove they are alive: a long job must not
                # make its busy worker look dead on the overview.
                worker_heartbeat(self.ctx.db, self.handle.worker_id, "busy")
                if heartbeat(self.ctx.db, self.handle.id, self.handle.worker_id):
                    self.handle.cancel_requested = True
            except Conflict:
                # Reaped and given to someone else: stop the work here.
                self.handle.cancel_requested = True
                return
            except StoreError as exc:  # a blip: try again next beat
                log.warning("heartbeat for job %s failed: %s", self.handle.id, exc)


class Worker:
    def __init__(self, ctx: Context, *, worker_id: str | None = None, executor: Executor | None = None,
                 kinds: list[str] | None = None) -> None:
        self.ctx = ctx
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.executor = executor or InProcessExecutor()
        self.kinds = kinds
        self.stopping = threading.Event()
        register_worker(ctx.db, self.id, socket.gethostname(), os.getpid())

    def reap(self) -> list[Job]:
        return reap_stale_jobs(self.ctx.db, stale_after=timedelta(seconds=self.ctx.settings.stale_after_s))

    def run_one(self) -> Job | None:
        """Claim and run one job; return it finished, or None when the queue is empty."""
        job = claim_next_job(self.ctx.db, self.id, kinds=self.kinds)
        if job is None:
            return None
        worker_heartbeat(self.ctx.db, self.id, "busy")
        handle = JobHandle(self.ctx.db, job, self.id)
        beat = _Heartbeat(self.ctx, handle, self.ctx.settings.heartbeat_s)
        beat.start()
        log.info("job %s (%s) started, attempt %s", job.id, job.kind, job.attempts)
        kwargs: _Outcome
        try:
            result = self.executor.execute(self.ctx, handle)
            state, kwargs = JobState.SUCCEEDED, {"result": result}
        except JobCancelled:
            state, kwargs = JobState.CANCELLED, {}
        except ChainkeeperError as exc:
            state, kwargs = JobState.FAILED, {"error": str(exc)}
        except Exception as exc:  # a bug in a handler must not kill the worker
            append_log(self.ctx.db, job.id, traceback.format_exc())
            state, kwargs = JobState.FAILED, {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            beat.stop.set()
            beat.join()
        try:
            finished = finish_job(self.ctx.db, job.id, self.id, state, **kwargs)
        except Conflict as exc:
            log.warning("%s", exc)
            return job
        worker_heartbeat(self.ctx.db, self.id, "idle")
        log.info("job %s %s", job.id, finished.state)
        return finished

    def run_forever(self, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Loop until stopped; return the number of jobs run."""
        done = 0
        while not self.stopping.is_set():
            self.reap()
            job = self.run_one()
            if job is not None:
                done += 1
                if max_jobs is not None and done >= max_jobs:
                    break
                continue
            if exit_when_idle:
                break
            worker_heartbeat(self.ctx.db, self.id, "idle")
            self.stopping.wait(self.ctx.settings.worker_poll_s)
        worker_heartbeat(self.ctx.db, self.id, "stopped")
        return done
