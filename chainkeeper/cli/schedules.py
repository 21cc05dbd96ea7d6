"""``chainkeeper schedules``: list, show, pause, resume and delete recurring jobs.

Schedules are created by the commands that own their work (``monitor drift --every``,
``monitor alerts evaluate --every-s``); the scheduler (in ``up``, or ``chainkeeper
scheduler``) queues one job per period.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer

from chainkeeper.cli.state import JSON_OPTION, console, current_actor, new_table, open_context, print_json
from chainkeeper.core.scheduler import Schedule
from chainkeeper.governance.schedules import (
    find_schedules,
    pause_schedule,
    remove_schedule,
    resume_schedule,
    show_schedule,
)

app = typer.Typer(help="Recurring jobs (drift checks, rule evaluation): list, pause, resume.", no_args_is_help=True)

_ID = typer.Argument(..., metavar="SCHEDULE_ID", help="The schedule's id (see 'chainkeeper schedules list').")


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """A schedule's fields as the API answers them."""
    return asdict(schedule)


def every_text(seconds: float) -> str:
    """A period as people write it: 90 -> 1m30s, 3600 -> 1h (pure)."""
    rest, parts = int(round(seconds)), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or f"{seconds:g}s"


def describe(schedule: Schedule) -> str:
    """One line on what a schedule does and when it fires next, and how to manage it."""
    state = "paused" if schedule.paused else f"next at {schedule.next_run_at:%Y-%m-%d %H:%M:%S} UTC"
    return (f"schedule {schedule.id} ({schedule.name}) queues one {schedule.kind} job every "
            f"{every_text(schedule.every_s)}; {state}. List them with 'chainkeeper schedules list', "
            f"stop it with 'chainkeeper schedules pause {schedule.id}'.")


@app.command("list")
def list_(ctx: typer.Context, kind: str | None = typer.Option(None, help="Only schedules of this job kind."),
          as_json: bool = JSON_OPTION) -> None:
    """The schedules you may read, oldest first."""
    with open_context(ctx) as c:
        schedules = find_schedules(c, actor=current_actor(ctx, c), kind=kind)
    if as_json:
        print_json([schedule_json(s) for s in schedules])
        return
    if not schedules:
        console.print("No schedules. 'chainkeeper monitor drift DEPLOYMENT --every 1h' creates one.")
        return
    table = new_table("id", "name", "kind", "every", "next (UTC)", "last job", "runs", "skipped", "state", "by")
    for s in schedules:
        table.add_row(str(s.id), s.name, s.kind, every_text(s.every_s), f"{s.next_run_at:%Y-%m-%d %H:%M:%S}",
                      str(s.last_job_id or "—"), str(s.runs), str(s.skipped),
                      "[magenta]paused[/]" if s.paused else "[green]active[/]", s.created_by)
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, schedule_id: int = _ID, as_json: bool = JSON_OPTION) -> None:
    """One schedule in full."""
    with open_context(ctx) as c:
        s = show_schedule(c, schedule_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(schedule_json(s))
        return
    console.print(describe(s))
    last = f"{s.last_run_at:%Y-%m-%d %H:%M:%S} UTC" if s.last_run_at else "never"
    console.print(f"project {s.project or '—'}, by {s.created_by}; fired {s.runs} time(s), skipped {s.skipped} "
                  f"(previous job unfinished); last fired {last}, last job {s.last_job_id or '—'}")
    console.print_json(data=s.params)


@app.command("pause")
def pause(ctx: typer.Context, schedule_id: int = _ID) -> None:
    """Stop a schedule from firing (a job it queued still runs)."""
    with open_context(ctx) as c:
        s = pause_schedule(c, schedule_id, actor=current_actor(ctx, c))
    console.print(f"schedule {s.id} ({s.name}) is paused; 'chainkeeper schedules resume {s.id}' starts it again")


@app.command("resume")
def resume(ctx: typer.Context, schedule_id: int = _ID) -> None:
    """Let a paused schedule fire again (once at once if its time has passed)."""
    with open_context(ctx) as c:
        s = resume_schedule(c, schedule_id, actor=current_actor(ctx, c))
    console.print(f"schedule {s.id} ({s.name}) is active; next at {s.next_run_at:%Y-%m-%d %H:%M:%S} UTC "
                  "(or at once if that has passed)")


@app.command("delete")
def delete(ctx: typer.Context, schedule_id: int = _ID) -> None:
    """Delete a schedule (the jobs it queued stay)."""
    with open_context(ctx) as c:
        s = remove_schedule(c, schedule_id, actor=current_actor(ctx, c))
    console.print(f"deleted schedule {s.id} ({s.name})")
