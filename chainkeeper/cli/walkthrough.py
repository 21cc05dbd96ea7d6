"""The people and the hand-offs of the quickstarts (``cli.quickstart``, ``cli.quickstart_ner``):
each person a real user with a real token, each gated step asked by one and approved by
a second entitled person, each step printed with who did it in which role."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from chainkeeper.cli.state import console
from chainkeeper.core.context import Context
from chainkeeper.core.errors import NotFound
from chainkeeper.core.settings import default_base_model
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.users import authenticate_token, create_user, get_user, issue_token

# Steps of a quickstart, as printed ("[5/9] train ...").
STEPS = 9


@dataclass(frozen=True)
class Cast:
    """The people of the quickstart, each a real user acting with a real token."""

    steward: Actor  # imports, cleans, freezes the dataset version
    steward_approver: Actor  # a second data_steward who approves the release
    engineer: Actor  # trains and registers; asks for promotion
    release_manager: Actor  # approves the promotion; asks for the deployment
    release_approver: Actor  # a second release_manager who approves the deployment
    annotator_a: Actor  # labels a queue of the annotation slice
    annotator_b: Actor  # labels the other queue; the overlap items are in both
    operator: Actor  # sends the traffic, gives feedback, checks drift, sets the alert rule
    auditor: Actor
    tokens: dict[str, str]


CAST = {
    "steward": ("sofia", "data_steward"),
    "steward_approver": ("dara", "data_steward"),
    "engineer": ("emil", "ml_engineer"),
    "release_manager": ("rhea", "release_manager"),
    "release_approver": ("remy", "release_manager"),
    "annotator_a": ("ana", "annotator"),
    "annotator_b": ("ben", "annotator"),
    "operator": ("omar", "operator"),
    "auditor": ("ada", "auditor"),
}


def ensure_cast(ctx: Context) -> Cast:
    """Create the quickstart's users on first use and give each a fresh one-day token."""
    actors, tokens = {}, {}
    for part, (name, role) in CAST.items():
        try:
            get_user(ctx.db, name)
        except NotFound:
            create_user(ctx.db, name, roles=[role], display_name=f"{name} ({role})")
        secret = issue_token(ctx.db, name, name="quickstart", expires_in=timedelta(days=1)).secret
        actors[part], tokens[part] = authenticate_token(ctx.db, secret), secret
    return Cast(**actors, tokens=tokens)


# When the walk-through started (time.monotonic()): ``start_clock`` sets it, each step line shows the time since.
_CLOCK: list[float] = []


def start_clock() -> None:
    _CLOCK[:] = [time.monotonic()]


def elapsed() -> str:
    """Wall time since ``start_clock``, e.g. "2 min 05 s"."""
    return _duration(time.monotonic() - _CLOCK[0]) if _CLOCK else "0 s"


def step(n: int, stage: str, actor: Actor, text: str) -> None:
    """Print a step of the walk-through: who did it, in which role, what happened, and when
    (the wall time since the start, so a newcomer sees where the minutes go)."""
    role = ", ".join(sorted(actor.roles))
    console.print(f"[bold cyan][{n}/{STEPS}] {stage}[/] [dim]{actor.name} ({role})[/] {text} [dim](at {elapsed()})[/]")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def handoff(ctx: Context, action: str, object_id: int, requester: Actor, approver: Actor, comment: str, *,
             payload: dict[str, Any] | None = None) -> None:
    """A gated step: one person asks, the checks run, a second entitled person approves."""
    request = request_approval(ctx, action, object_id, actor=requester, comment=comment, payload=payload)
    checks = ", ".join(f"{c['name']} {'ok' if c['passed'] else 'FAILED'}" for c in request.checks)
    decision = decide(ctx, request.id, actor=approver, approve=True, comment=comment)
    console.print(f"      approval {request.id}: {action} asked by {requester.name}, checks ({checks}), "
                  f"{decision.state} by {approver.name}")


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def base_model_name(base_model: str | Path) -> str:
    """How a step names the base model: the shipped MiniLM by name, any other by its path."""
    return "all-MiniLM-L6-v2 (offline)" if Path(base_model) == default_base_model() else str(base_model)
