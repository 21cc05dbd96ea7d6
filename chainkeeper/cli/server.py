"""``chainkeeper worker``, ``serve`` and ``up``: the long-running processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import typer

from chainkeeper.api.app import create_app
from chainkeeper.api.server import check_port_free, serve_group
from chainkeeper.api.server import serve as run_server
from chainkeeper.cli.state import console, open_context, print_first_start, settings_of
from chainkeeper.core.worker import Worker
from chainkeeper.governance.bootstrap import initialise


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def worker(
    ctx: typer.Context,
    max_jobs: int | None = typer.Option(None, help="Exit after this many jobs."),
    exit_when_idle: bool = typer.Option(False, help="Exit when the queue is empty."),
) -> None:
    """Run a worker: claim queued jobs and run them until stopped (Ctrl+C)."""
    settings = settings_of(ctx)
    _logging(settings.log_level)
    with open_context(ctx) as c:
        w = Worker(c)
        signal.signal(signal.SIGTERM, lambda *_: w.stopping.set())
        console.print(f"worker {w.id} waiting for jobs (Ctrl+C to stop)")
        try:
            done = w.run_forever(max_jobs=max_jobs, exit_when_idle=exit_when_idle)
        except KeyboardInterrupt:
            w.stopping.set()
            done = 0
    console.print(f"worker {w.id} stopped after {done} job(s)")


_PROCESSES_HELP = ("Server processes answering on the port, each with its own copy of the deployed models "
                   "(one per core answers the most) [env: CHAINKEEPER_SERVE_PROCESSES].")


def _run_server(ctx: typer.Context, host: str, port: int, processes: int | None) -> None:
    """One process serving in the foreground, or a group of them (``api.server.serve_group``)."""
    settings = settings_of(ctx)
    processes = processes or settings.serve_processes
    with open_context(ctx) as c:  # a store that cannot be opened is reported here, once
        if processes == 1:
            run_server(create_app(c), host, port)
            return
    serve_group(settings.model_copy(update={"serve_processes": processes}), host, port)


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to bind [env: CHAINKEEPER_HOST]."),
    port: int | None = typer.Option(None, help="Port [env: CHAINKEEPER_PORT]."),
    processes: int | None = typer.Option(None, min=1, max=64, help=_PROCESSES_HELP),
) -> None:
    """Serve the API, the web UI and the deployed models (no worker)."""
    settings = settings_of(ctx)
    _logging(settings.log_level)
    _run_server(ctx, host or settings.host, port if port is not None else settings.port, processes)


def up(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to bind [env: CHAINKEEPER_HOST]."),
    port: int | None = typer.Option(None, help="Port [env: CHAINKEEPER_PORT]."),
    workers: int = typer.Option(1, min=0, help="Local worker processes to start."),
    processes: int | None = typer.Option(None, min=1, max=64, help=_PROCESSES_HELP),
) -> None:
    """Start everything on this machine: store (migrated), API, web UI and a worker."""
    settings = settings_of(ctx)
    host, port = host or settings.host, port if port is not None else settings.port
    check_port_free(host, port)
    print_first_start(initialise(settings))
    children = [
        subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(settings.home), "worker"],
                         env=os.environ.copy())
        for _ in range(workers)
    ]
    console.print(f"Chainkeeper is up: [bold]http://{host}:{port}/[/]  ({workers} worker(s); Ctrl+C to stop)")
    try:
        _run_server(ctx, host, port, processes)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
