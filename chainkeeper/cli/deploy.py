"""``chainkeeper deploy``: canary, shadow, promotion, rollback and API keys of deployments.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN; the serving functions
decide, in the deployment's project, as they do for the API.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import TYPE_CHECKING

import typer

from chainkeeper import serving
from chainkeeper.cli.state import JSON_OPTION, console, current_actor, new_table, open_context, print_json

if TYPE_CHECKING:
    pass

app = typer.Typer(help="Roll deployments out and back, and manage their API keys.", no_args_is_help=True)
keys_app = typer.Typer(help="A deployment's API keys (scoped, rate-limited, revocable).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command("list")
def deploy_list(ctx: typer.Context, limit: int = typer.Option(100, min=1, max=500, help="How many, latest first."),
                as_json: bool = JSON_OPTION) -> None:
    """Deployments you may read, most recently changed first, with what answers their traffic."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        rows = [(d, serving.rollout_status(c, d.name, actor=actor))
                for d in serving.find_deployments(c, actor=actor, limit=limit)]
    if as_json:
        print_json([{**asdict(d), "live": status.live()} for d, status in rows])
        return
    table = new_table("name", "state", "mode", "primary", "candidate", "owner", "updated (UTC)")
    for d, status in rows:
        candidate = status.candidate
        table.add_row(d.name, d.state, str(status.route.mode), f"{status.primary.id} {status.primary.label}",
                      f"{candidate.id} {candidate.label}" if candidate else "—", d.owner,
                      f"{d.updated_at:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command("show")
def deploy_show(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """One deployment and what answers its traffic."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        deployment = serving.show_deployment(c, name, actor=actor)
        status = serving.rollout_status(c, name, actor=actor)
    if as_json:
        print_json({**asdict(deployment), "live": status.live()})
        return
    console.print(f"deployment {deployment.name} (id {deployment.id}) {deployment.state}, owner {deployment.owner}, "
                  f"created by {deployment.created_by} at {deployment.created_at:%Y-%m-%d %H:%M} UTC")
    _print_route(name, status.route)


def _print_route(name: str, route: serving.Route) -> None:
    if route.mode == serving.RouteMode.CANARY:
        what = (f"canary: {route.percent}% of callers → version {route.candidate_version_id}, "
                f"the rest → version {route.primary_version_id}")
    elif route.mode == serving.RouteMode.SHADOW:
        what = f"version {route.primary_version_id} answers; version {route.candidate_version_id} shadows"
    else:
        what = f"all traffic → version {route.primary_version_id}"
    back = f" (rollback returns to version {route.previous_version_id})" if route.previous_version_id else ""
    console.print(f"{name}: {what}{back}")


@app.command("canary")
def deploy_canary(ctx: typer.Context, name: str, model_version: int = typer.Argument(..., metavar="MODEL_VERSION"),
                  percent: int = typer.Option(..., "--percent", help="Share of callers (1-99) the candidate answers.")
                  ) -> None:
    """Send PERCENT of callers (sticky by X-Caller-Key) to MODEL_VERSION."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        route = serving.start_canary(c, name, model_version, percent=percent, actor=actor)
    _print_route(name, route)


@app.command("shadow")
def deploy_shadow(ctx: typer.Context, name: str,
                  model_version: int = typer.Argument(..., metavar="MODEL_VERSION")) -> None:
    """Let MODEL_VERSION see every request; its answers are logged, not returned."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        route = serving.start_shadow(c, name, model_version, actor=actor)
    _print_route(name, route)


@app.command("promote")
def deploy_promote(ctx: typer.Context, name: str) -> None:
    """Make the canary or shadow candidate answer all traffic (it must be in production)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        route = serving.promote_rollout(c, name, actor=actor)
    _print_route(name, route)


@app.command("rollback")
def deploy_rollback(ctx: typer.Context, name: str,
                    comment: str = typer.Option("", help="Why; kept in the registry history.")) -> None:
    """Drop a canary or shadow, or return to the version served before the last switch."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        route = serving.rollback_deployment(c, name, actor=actor, comment=comment)
    _print_route(name, route)


@app.command("status")
def deploy_status(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """The live route of a deployment and its recent switches."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        status = serving.rollout_status(c, name, actor=actor)
    if as_json:
        print_json({"deployment": name, "route": status.route, "primary": serving.version_ref(status.primary),
                    "candidate": serving.version_ref(status.candidate) if status.candidate else None,
                    "history": status.history})
        return
    _print_route(name, status.route)
    table = new_table("route", "mode", "primary", "candidate", "percent", "reason", "by", "at (UTC)")
    for r in status.history:
        table.add_row(str(r.id), str(r.mode), str(r.primary_version_id), str(r.candidate_version_id or "—"),
                      str(r.percent) if r.mode == serving.RouteMode.CANARY else "—", r.reason, r.created_by,
                      f"{r.created_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


@keys_app.command("create")
def keys_create(ctx: typer.Context, name: str,
                key_name: str = typer.Option("default", "--name", help="Who or what uses the key."),
                scope: list[str] = typer.Option(["predict"], "--scope", help="predict or read (repeatable)."),
                rate: str | None = typer.Option(None, "--rate", help="e.g. 50/s or 600/min; unlimited if left out."),
                burst: int | None = typer.Option(None, "--burst", help="Requests allowed at once."),
                # max: serving.MAX_KEY_LIFETIME, which the service enforces (named here as a number
                # so that --help does not load the serving stage).
                expires_in_days: float | None = typer.Option(None, min=0, max=3650,
                                                             help="Expire after this many days.")) -> None:
    """Issue an API key for deployment NAME; the secret is printed once."""
    rate_per_s = serving.parse_rate(rate) if rate else None
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        issued = serving.create_deployment_key(c, name, name=key_name, actor=actor, scopes=scope, rate_per_s=rate_per_s,
                                            burst=burst,
                                            expires_in=timedelta(days=expires_in_days) if expires_in_days else None)
    console.print(f"key {issued.key.id} for deployment {name} (scopes {', '.join(issued.key.scopes)}), shown once:")
    console.print(issued.secret, markup=False, highlight=False)


@keys_app.command("list")
def keys_list(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """A deployment's API keys (never their secrets)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        found = serving.list_deployment_keys(c, name, actor=actor)
    if as_json:
        print_json([{**asdict(k), "active": k.active} for k in found])
        return
    table = new_table("id", "name", "scopes", "rate/s", "expires (UTC)", "state", "created by")
    for k in found:
        state = "revoked" if k.revoked_at else ("active" if k.active else "expired")
        table.add_row(str(k.id), k.name, ", ".join(k.scopes), f"{k.rate_per_s:g}" if k.rate_per_s else "—",
                      f"{k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "never", state, k.created_by)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, name: str, key_id: int) -> None:
    """Revoke an API key of deployment NAME at once."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        serving.revoke_deployment_key(c, name, key_id, actor=actor)
    console.print(f"key {key_id} of {name} revoked")
