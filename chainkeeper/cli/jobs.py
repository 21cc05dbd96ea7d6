"""``chainkeeper jobs``: list, show, follow, cancel and retry jobs."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from chainkeeper.cli.state import JSON_OPTION, console, current_actor, new_table, open_context, print_json
from chainkeeper.core.jobs import Job, get_job, job_logs
from chainkeeper.governance.jobs import (
    cancel_job,
    find_jobs,
    read_job_logs,
    requeue_job,
    show_job,
)

if TYPE_CHECKING:
    from chainkeeper.core.db import Database

app = typer.Typer(help="Long work (cleaning, training, export) and its progress.", no_args_is_help=True)

_STATE_STYLE = {"queued": "cyan", "running": "yellow", "succeeded": "green", "failed": "red", "cancelled": "magenta"}


def job_json(job: Job) -> dict[str, Any]:
    """A job's fields as the API answers them."""
    return {**asdict(job), "finished": job.finished}


def _state(job: Job) -> str:
    return f"[{_STATE_STYLE.get(job.state, 'white')}]{job.state}[/]"


@app.command("list")
def list_(ctx: typer.Context, limit: int = typer.Option(20, help="How many, newest first."),
          as_json: bool = JSON_OPTION) -> None:
    """The latest jobs."""
    with open_context(ctx) as c:
        jobs = find_jobs(c, actor=current_actor(ctx, c), limit=limit)
    if as_json:
        print_json([job_json(j) for j in jobs])
        return
    if not jobs:
        console.print("No jobs yet. Run 'chainkeeper quickstart' to see the chain run.")
        return
    table = new_table("id", "kind", "state", "progress", "message", "by", "created (UTC)")
    for j in jobs:
        table.add_row(str(j.id), j.kind, _state(j), f"{j.progress:.0f}%", j.message[:60], j.created_by,
                      f"{j.created_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, job_id: int, as_json: bool = JSON_OPTION) -> None:
    """One job in full."""
    with open_context(ctx) as c:
        j = show_job(c, job_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(job_json(j))
        return
    console.print(f"job {j.id} ({j.kind}) {_state(j)} {j.progress:.0f}% — {j.message}")
    console.print(f"attempts {j.attempts}/{j.max_attempts}, worker {j.worker_id or '-'}, by {j.created_by}")
    if j.error:
        console.print(f"[red]error:[/] {j.error}")
    if j.result:
        console.print_json(data=j.result)


def follow_job(db: Database, job_id: int, *, show_logs: bool = True, poll_s: float = 0.5) -> Job:
    """Render a job's progress bar (and new log lines) until it finishes.

    For a job the caller was already authorised for (it queued it, or ``show_job`` ran).
    """
    last_log = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), TextColumn("{task.fields[message]}"), console=console) as progress:
        job = get_job(db, job_id)
        bar = progress.add_task(f"job {job.id} {job.kind}", total=100, message="")
        while True:
            job = get_job(db, job_id)
            progress.update(bar, completed=job.progress, message=job.message[:70])
            if show_logs:
                for log_id, _, line in job_logs(db, job_id, after_id=last_log):
                    progress.console.print(f"  [dim]{line}[/]")
                    last_log = log_id
            if job.finished:
                return job
            time.sleep(poll_s)


@app.command("logs")
def logs(ctx: typer.Context, job_id: int,
         follow: bool = typer.Option(False, "--follow", "-f",
                                     help="Follow with a progress bar until it ends.")) -> None:
    """A job's log lines."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        if follow:
            show_job(c, job_id, actor=actor)
            job = follow_job(c.db, job_id)
            console.print(f"job {job.id} {_state(job)}" + (f": {job.error}" if job.error else ""))
            return
        for _, at, line in read_job_logs(c, job_id, actor=actor):
            console.print(f"[dim]{at:%H:%M:%S}[/] {line}")


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: int) -> None:
    """Ask a job to stop (at once if queued, at its next check if running)."""
    with open_context(ctx) as c:
        j = cancel_job(c, job_id, actor=current_actor(ctx, c))
    console.print(f"job {j.id}: {j.state}" + (" (cancel requested)" if j.state == "running" else ""))


@app.command("retry")
def retry(ctx: typer.Context, job_id: int) -> None:
    """Queue a failed or cancelled job again."""
    with open_context(ctx) as c:
        j = requeue_job(c, job_id, actor=current_actor(ctx, c))
    console.print(f"job {j.id}: {j.state}")
