"""``chainkeeper worker``, ``scheduler``, ``serve`` and ``up``: the long-running processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import typer

from chainkeeper import api
from chainkeeper.chain import open_context as open_chain_context
from chainkeeper.cli.state import console, open_context, print_first_start, settings_of
from chainkeeper.core.scheduler import Scheduler
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


def _start_scheduler(ctx: typer.Context) -> tuple[threading.Thread, Scheduler]:
    """The scheduler of 'up': a thread of this process with its own store connection."""
    c = open_chain_context(settings_of(ctx))
    loop = Scheduler(c)

    def run() -> None:
        try:
            loop.run_forever()
        finally:
            c.close()

    thread = threading.Thread(target=run, name="chainkeeper-scheduler", daemon=True)
    thread.start()
    return thread, loop


_PROCESSES_HELP = ("Server processes answering on the port, each with its own copy of the deployed models "
                   "(one per core answers the most) \\[env: CHAINKEEPER_SERVE_PROCESSES].")


def _run_server(ctx: typer.Context, host: str, port: int, processes: int | None) -> None:
    """One process serving in the foreground, or a group of them (``api.serve_group``)."""
    settings = settings_of(ctx)
    processes = processes or settings.serve_processes
    with open_context(ctx) as c:  # a store that cannot be opened is reported here, once
        if processes == 1:
            api.serve(api.create_app(c), host, port)
            return
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
    _run_server(ctx, host or settings.host, port if port is not None else settings.port, processes)


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

    Ctrl+C (SIGINT) and SIGTERM stop the server, then the scheduler and the workers (each
    finishes or gives up its job within a grace period); a worker also stops when this
    process dies without a chance to stop it (SIGKILL, a crash).
    """
    settings = settings_of(ctx)
    host, port = host or settings.host, port if port is not None else settings.port
    api.check_port_free(host, port)
    print_first_start(initialise(settings))
    # uvicorn handles SIGTERM itself and then raises it again: let that second delivery
    # unwind this frame (as Ctrl+C's KeyboardInterrupt does), so the workers are stopped.
    signal.signal(signal.SIGTERM, _raise_terminated)
    children: list[subprocess.Popen[bytes]] = []
    terminated = False
    scheduling: tuple[threading.Thread, Scheduler] | None = None
    try:
        if with_scheduler:
            scheduling = _start_scheduler(ctx)
        for _ in range(workers):
            children.append(subprocess.Popen(
                [sys.executable, "-m", "chainkeeper.cli.main", "--home", str(settings.home), "worker",
                 "--stop-with-parent", str(os.getpid())], env=os.environ.copy()))
        console.print(f"Chainkeeper is up: [bold]http://{host}:{port}/[/]  ({workers} worker(s)"
                      + (", scheduler" if with_scheduler else "") + "; Ctrl+C to stop)")
        _run_server(ctx, host, port, processes)
    except _Terminated:
        terminated = True
    finally:
        if scheduling is not None:
            scheduling[1].stopping.set()
            scheduling[0].join(timeout=STOP_GRACE_S)
        _stop_children(children)
    if terminated:  # end as SIGTERM ends a process, now that nothing is left behind
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


class _Terminated(BaseException):
    """SIGTERM reached ``up``: unwinds it like KeyboardInterrupt (no ``except Exception`` stops it)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each worker, then wait for it (bounded), then SIGKILL."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=STOP_GRACE_S + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=STOP_GRACE_S)
