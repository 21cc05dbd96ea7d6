"""The local worker: claims jobs from the metadata store and runs them.

One worker runs one job at a time. While a job runs, a heartbeat thread stamps it every
``heartbeat_s`` and picks up cancel requests; every idle loop the worker also reaps jobs
whose own worker died, so one live worker is enough to recover the queue.

A job that fails with an error that may pass — a full disk, a locked or unreachable
store, a passing I/O error (``core.storage_errors.is_transient``) — is queued again after
a back-off (``job_retry_delay_s``, doubling, at most ``job_retry_max_delay_s``) while it
has attempts left; any other error, a refused write included, fails it at once with its
message. A store that fails the worker's own bookkeeping makes it wait and try again.

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
    retry_delay,
    retry_job_later,
    worker_heartbeat,
)
from chainkeeper.core.storage_errors import is_transient, storage_error

log = logging.getLogger("chainkeeper.worker")

# The longest a worker waits before trying a failing store again.
_MAX_STORE_PAUSE_S = 30.0


class _Outcome(TypedDict, total=False):
    """What ``finish_job`` stores of a finished job: its result or its error."""

    result: dict[str, Any]
    error: str


def describe_failure(exc: Exception) -> tuple[str, bool]:
    """What a job's error says to a person, and whether it may pass (the job is retried).

    Our own errors say it already; an ``OSError`` of a full disk or a refused write is
    named as the store's would be; anything else is its type and text.
    """
    if isinstance(exc, ChainkeeperError):
        return str(exc), exc.transient
    if isinstance(exc, OSError):
        named = storage_error(exc, exc.filename, "the job")
        if named is not None:
            return str(named), named.transient
    return f"{type(exc).__name__}: {exc}", is_transient(exc)


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
        may_pass = False
        try:
            result = self.executor.execute(self.ctx, handle)
            state, kwargs = JobState.SUCCEEDED, {"result": result}
        except JobCancelled:
            state, kwargs = JobState.CANCELLED, {}
        except Exception as exc:  # a bug in a handler must not kill the worker
            error, may_pass = describe_failure(exc)
            if not isinstance(exc, ChainkeeperError):
                self._log_traceback(job.id)
            state, kwargs = JobState.FAILED, {"error": error}
        finally:
            beat.stop.set()
            beat.join()
        try:
            if may_pass:
                settings = self.ctx.settings
                delay = retry_delay(job.attempts, base_s=settings.job_retry_delay_s,
                                    max_s=settings.job_retry_max_delay_s)
                finished = retry_job_later(self.ctx.db, job.id, self.id, error=kwargs.get("error", ""),
                                           delay=timedelta(seconds=delay))
            else:
                finished = finish_job(self.ctx.db, job.id, self.id, state, **kwargs)
        except Conflict as exc:
            log.warning("%s", exc)
            return job
        except StoreError as exc:
            # The store itself failed (its disk is full): the job stays 'running' with no
            # heartbeat, so the reaper queues it again after stale_after_s.
            log.warning("job %s ended (%s) but the store could not record it: %s", job.id, state, exc)
            return job
        worker_heartbeat(self.ctx.db, self.id, "idle")
        log.info("job %s %s", job.id, finished.state)
        return finished

    def _log_traceback(self, job_id: int) -> None:
        try:
            append_log(self.ctx.db, job_id, traceback.format_exc())
        except StoreError as exc:  # the job's error is still recorded, or the reaper takes it
            log.warning("could not store the traceback of job %s: %s", job_id, exc)

    def run_forever(self, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Loop until stopped; return the number of jobs run."""
        done, pause = 0, self.ctx.settings.worker_poll_s
        while not self.stopping.is_set():
            try:
                self.reap()
                job = self.run_one()
                if job is None and not exit_when_idle:
                    worker_heartbeat(self.ctx.db, self.id, "idle")
            except StoreError as exc:
                if not exc.transient:
                    raise
                # A full disk or a store that does not answer: wait, longer each time.
                log.warning("the metadata store failed: %s; trying again in %.1f s", exc, pause)
                self.stopping.wait(pause)
                pause = min(pause * 2, _MAX_STORE_PAUSE_S)
                continue
            pause = self.ctx.settings.worker_poll_s
            if job is not None:
                done += 1
                if max_jobs is not None and done >= max_jobs:
                    break
                continue
            if exit_when_idle:
                break
            self.stopping.wait(self.ctx.settings.worker_poll_s)
        try:
            worker_heartbeat(self.ctx.db, self.id, "stopped")
        except StoreError as exc:
            log.warning("could not record that worker %s stopped: %s", self.id, exc)
        return done
