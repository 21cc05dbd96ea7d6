"""``chainkeeper worker``, ``scheduler``, ``serve`` and ``up``: the long-running processes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import typer

from chainkeeper import api
from chainkeeper.chain import open_context as open_chain_context
from chainkeeper.cli.state import console, open_context, print_first_start, settings_of
from chainkeeper.core.db import Database
from chainkeeper.core.jobs import mark_worker_lost
from chainkeeper.core.scheduler import Scheduler
from chainkeeper.core.settings import Settings
from chainkeeper.core.supervisor import Child, RestartPolicy, Supervisor, ThreadChild
from chainkeeper.core.worker import Worker
from chainkeeper.governance.bootstrap import initialise


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# How long a worker whose 'up' died may take to finish its job before it exits anyway
# (the job is then reaped and retried, as after any crash); 'up' waits as long on Ctrl+C.
STOP_GRACE_S = 10.0


def _stop_with_parent(parent: int, stopping: threading.Event, poll_s: float = 0.5) -> None:
    """Stop this worker when ``parent`` (the ``up`` that started it) is gone, however it
    ended (SIGKILL included): a thread notices this process being re-parented, asks the
    worker to stop, and ends the process if the job does not stop within the grace."""
    def watch() -> None:
        while os.getppid() == parent and not stopping.is_set():
            time.sleep(poll_s)
        if stopping.is_set() and os.getppid() == parent:
            return  # stopping for another reason; the worker ends by itself
        logging.getLogger(__name__).warning("process %d that started this worker is gone; stopping", parent)
        stopping.set()
        time.sleep(STOP_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker(
    ctx: typer.Context,
    max_jobs: int | None = typer.Option(None, help="Exit after this many jobs."),
    exit_when_idle: bool = typer.Option(False, help="Exit when the queue is empty."),
    parent: int | None = typer.Option(None, "--stop-with-parent", hidden=True,
                                      help="Stop when this process (the 'up' that started it) ends."),
) -> None:
    """Run a worker: claim queued jobs and run them until stopped (Ctrl+C or SIGTERM)."""
    settings = settings_of(ctx)
    _logging(settings.log_level)
    with open_context(ctx) as c:
        w = Worker(c)
        signal.signal(signal.SIGTERM, lambda *_: w.stopping.set())
        if parent is not None:
            _stop_with_parent(parent, w.stopping)
            # Ctrl+C in a terminal reaches the whole process group: 'up' stops its workers
            # itself (SIGTERM), after the server; they must not end first and be restarted.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        console.print(f"worker {w.id} waiting for jobs (Ctrl+C to stop)")
        try:
            done = w.run_forever(max_jobs=max_jobs, exit_when_idle=exit_when_idle)
        except KeyboardInterrupt:
            w.stopping.set()
            done = 0
    console.print(f"worker {w.id} stopped after {done} job(s)")


def scheduler(
    ctx: typer.Context,
    tick_s: float = typer.Option(1.0, min=0.05, max=60, help="How often it looks for due schedules (seconds)."),
) -> None:
    """Run the scheduler alone: queue each schedule's job when it is due, until stopped.

    'up' runs one already; more than one (on several machines) never queue a firing twice.
    """
    settings = settings_of(ctx)
    _logging(settings.log_level)
    with open_context(ctx) as c:
        loop = Scheduler(c, tick_s=tick_s)
        signal.signal(signal.SIGTERM, lambda *_: loop.stopping.set())
        console.print("scheduler running (Ctrl+C to stop); 'chainkeeper schedules list' shows what it fires")
        try:
            fired = loop.run_forever()
        except KeyboardInterrupt:
            loop.stopping.set()
            fired = 0
    console.print(f"scheduler stopped after {fired} firing(s)")


def _start_scheduler(settings: Settings) -> ThreadChild:
    """The scheduler of 'up': a thread of this process with its own store connection."""
    c = open_chain_context(settings)
    loop = Scheduler(c)

    def run() -> None:
        try:
            loop.run_forever()
        finally:
            c.close()

    return ThreadChild("chainkeeper-scheduler", run, loop.stopping.set)


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """A worker process of 'up'; it stops by itself when this process ends."""
    return subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(settings.home), "worker",
                             "--stop-with-parent", str(os.getpid())], env=os.environ.copy())


_PROCESSES_HELP = ("Server processes answering on the port, each with its own copy of the deployed models "
                   "(one per core answers the most) \\[env: CHAINKEEPER_SERVE_PROCESSES].")


def _run_server(settings: Settings, host: str, port: int, processes: int | None) -> None:
    """One process serving in the foreground, or a group of them (``api.serve_group``)."""
    processes = processes or settings.serve_processes
    c = open_chain_context(settings)  # a store that cannot be opened is reported here, once
    try:
        if processes == 1:
            api.serve(api.create_app(c), host, port)
            return
    finally:
        c.close()
    api.serve_group(settings.model_copy(update={"serve_processes": processes}), host, port)


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to bind \\[env: CHAINKEEPER_HOST]."),
    port: int | None = typer.Option(None, help="Port \\[env: CHAINKEEPER_PORT]."),
    processes: int | None = typer.Option(None, min=1, max=64, help=_PROCESSES_HELP),
) -> None:
    """Serve the API, the web UI and the deployed models (no worker)."""
    settings = settings_of(ctx)
    _logging(settings.log_level)
    _run_server(settings, host or settings.host, port if port is not None else settings.port, processes)


def up(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to bind \\[env: CHAINKEEPER_HOST]."),
    port: int | None = typer.Option(None, help="Port \\[env: CHAINKEEPER_PORT]."),
    workers: int = typer.Option(1, min=0, help="Local worker processes to start."),
    processes: int | None = typer.Option(None, min=1, max=64, help=_PROCESSES_HELP),
    with_scheduler: bool = typer.Option(True, "--scheduler/--no-scheduler",
                                        help="Run the scheduler of recurring jobs in this process."),
) -> None:
    """Start everything on this machine: store (migrated), API, web UI, the scheduler and a worker.

    The workers and the scheduler are supervised: one that dies (killed, crashed) is
    reaped and started again after a back-off, at most worker_restarts_per_minute times a
    minute, each time logged with its exit status or signal; /readyz answers 503 while no
    worker is alive. Ctrl+C (SIGINT) and SIGTERM stop the server, then the scheduler and
    the workers (each finishes or gives up its job within a grace period); a worker also
    stops when this process dies without a chance to stop it (SIGKILL, a crash).
    """
    settings = settings_of(ctx)
    _logging(settings.log_level)  # the supervisor says when and why a worker was restarted
    host, port = host or settings.host, port if port is not None else settings.port
    if workers and "ready_needs_worker" not in settings.model_fields_set:
        settings = settings.model_copy(update={"ready_needs_worker": True})
    api.check_port_free(host, port)
    print_first_start(initialise(settings))
    # uvicorn handles SIGTERM itself and then raises it again: let that second delivery
    # unwind this frame (as Ctrl+C's KeyboardInterrupt does), so the workers are stopped.
    signal.signal(signal.SIGTERM, _raise_terminated)
    store = Database(settings.resolved_database_url)  # where a dead worker is marked lost
    supervisor = Supervisor(RestartPolicy(max_per_minute=settings.worker_restarts_per_minute),
                            on_exit=lambda name, child, code: _record_exit(store, name, child))
    terminated = False
    try:
        if with_scheduler:
            supervisor.add("scheduler", lambda: _start_scheduler(settings))
        for i in range(workers):
            supervisor.add(f"worker {i + 1}", lambda: _start_worker(settings))
        supervisor.start()
        console.print(f"Chainkeeper is up: [bold]http://{host}:{port}/[/]  ({workers} worker(s)"
                      + (", scheduler" if with_scheduler else "") + "; Ctrl+C to stop)")
        _run_server(settings, host, port, processes)
    except _Terminated:
        terminated = True
    finally:
        _stop_children(supervisor.stop())
        store.dispose()
    if terminated:  # end as SIGTERM ends a process, now that nothing is left behind
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


def _record_exit(store: Database, name: str, child: Child) -> None:
    """A worker process that ended under 'up' no longer counts as alive (readiness, the
    overview) from now on, not only once its heartbeat is stale; its job is reaped after
    stale_after_s, by the worker that replaces it."""
    if isinstance(child, subprocess.Popen):
        mark_worker_lost(store, socket.gethostname(), child.pid)


class _Terminated(BaseException):
    """SIGTERM reached ``up``: unwinds it like KeyboardInterrupt (no ``except Exception`` stops it)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _stop_children(children: list[Child]) -> None:
    """Stop the scheduler thread; SIGTERM to each worker, then wait for it (bounded), then SIGKILL."""
    processes: list[subprocess.Popen[bytes]] = [c for c in children if isinstance(c, subprocess.Popen)]
    for child in processes:
        if child.poll() is None:
            child.terminate()
    for thread in children:
        if isinstance(thread, ThreadChild):
            thread.stop(timeout=STOP_GRACE_S)
    for child in processes:
        try:
            child.wait(timeout=STOP_GRACE_S + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=STOP_GRACE_S)
