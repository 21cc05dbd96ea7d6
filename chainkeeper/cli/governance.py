"""Governance commands: users, roles and RACI, approvals, audit, lineage and owners.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN and goes through the
same service functions as the API, which decide who may.
"""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.tree import Tree

from chainkeeper import chain, governance
from chainkeeper.cli.client import ledger_broken, ledger_intact
from chainkeeper.cli.state import (
    JSON_OPTION,
    console,
    current_actor,
    new_table,
    open_context,
    print_admin_secrets,
    print_json,
    settings_of,
)
from chainkeeper.governance.anchors import read_anchor_file
from chainkeeper.governance.audit import deliver_anchor, rotate_ledger_key
from chainkeeper.governance.bootstrap import reset_admin

if TYPE_CHECKING:
    from chainkeeper.governance.lineage import LineageNode

# The kinds lineage and ownership know, written out so that '--help' loads neither
# (tests/cli/test_conventions.py keeps them equal to chain.LINEAGE_KINDS and chain.RESPONSIBLE_ROLE).
LINEAGE_KINDS_HELP = "prediction, deployment, model_version, run, dataset_version, source"
OWNED_KINDS_HELP = "dataset_version, run, model_version, deployment"

users_app = typer.Typer(help="Users, their roles and API tokens (admin).", no_args_is_help=True)
roles_app = typer.Typer(help="Roles, the permission matrix and its RACI table.", no_args_is_help=True)
approvals_app = typer.Typer(help="Hand-offs that need a second person's approval.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)


# --- users -----------------------------------------------------------------------------


@users_app.command("create")
def users_create(ctx: typer.Context, name: str,
                 role: list[str] = typer.Option([], "--role", "-r", help="A role to grant (repeatable)."),
                 display_name: str = typer.Option("", help="Full name.")) -> None:
    """Create a user with roles."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        user = governance.create_user(c.db, name, roles=role, display_name=display_name, actor=actor)
    console.print(f"created {user.name} with roles {', '.join(user.roles) or '(none)'}")


@users_app.command("list")
def users_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """All users and their roles."""
    with open_context(ctx) as c:
        rows = governance.list_users(c.db, actor=current_actor(ctx, c))
    if as_json:
        print_json(rows)
        return
    table = new_table("user", "roles", "state", "created (UTC)")
    for u in rows:
        table.add_row(u.name, ", ".join(u.roles) or "—", u.state, f"{u.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@users_app.command("token")
def users_token(ctx: typer.Context, name: str, token_name: str = typer.Option("cli", "--name", help="Token label."),
                expires_in_days: float | None = typer.Option(None, help="Expire after this many days.")) -> None:
    """Issue an API token for a user; the secret is printed once and never stored."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        issued = governance.issue_token(c.db, name, name=token_name, actor=actor,
                                   expires_in=timedelta(days=expires_in_days) if expires_in_days else None)
    console.print(f"token {issued.id} for {issued.user} (shown once):")
    console.print(issued.secret, markup=False, highlight=False)


@users_app.command("tokens")
def users_tokens(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """A user's API tokens: id, label, dates and state (never the secrets)."""
    with open_context(ctx) as c:
        rows = governance.list_tokens(c.db, name, actor=current_actor(ctx, c))
    if as_json:
        print_json(rows)
        return
    table = new_table("id", "name", "created (UTC)", "expires (UTC)", "last seen (UTC)", "state")
    for t in rows:
        created, expires, seen = t["created_at"], t["expires_at"], t["last_seen_at"]
        table.add_row(str(t["id"]), str(t["name"]), f"{created:%Y-%m-%d %H:%M}",
                      f"{expires:%Y-%m-%d %H:%M}" if expires else "never", f"{seen:%Y-%m-%d %H:%M}" if seen else "—",
                      "revoked" if t["revoked"] else "active")
    console.print(table)


@users_app.command("sessions")
def users_sessions(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """A user's open web sessions: id, when and where they signed in, last seen (never the secrets)."""
    with open_context(ctx) as c:
        rows = governance.list_sessions(c.db, name, actor=current_actor(ctx, c))
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"{name} has no open web session.")
        return
    table = new_table("id", "signed in (UTC)", "from", "last seen (UTC)", "expires (UTC)")
    for t in rows:
        seen = t["last_seen_at"]
        table.add_row(str(t["id"]), f"{t['created_at']:%Y-%m-%d %H:%M}", str(t["address"] or "—"),
                      f"{seen:%Y-%m-%d %H:%M}" if seen else "—", f"{t['expires_at']:%Y-%m-%d %H:%M}")
    console.print(table)


@users_app.command("end-sessions")
def users_end_sessions(ctx: typer.Context, name: str) -> None:
    """End every open web session of a user at once (their API tokens stay)."""
    with open_context(ctx) as c:
        ended = governance.end_sessions(c.db, name, actor=current_actor(ctx, c))
    console.print(f"{ended} session(s) of {name} ended")


@users_app.command("disable")
def users_disable(ctx: typer.Context, name: str) -> None:
    """Disable a user: their tokens and sessions are refused at once (enable brings the tokens back)."""
    with open_context(ctx) as c:
        user = governance.disable_user(c.db, name, actor=current_actor(ctx, c))
    console.print(f"{user.name} is {user.state}")


@users_app.command("enable")
def users_enable(ctx: typer.Context, name: str) -> None:
    """Enable a disabled user again."""
    with open_context(ctx) as c:
        user = governance.enable_user(c.db, name, actor=current_actor(ctx, c))
    console.print(f"{user.name} is {user.state}")


@users_app.command("delete")
def users_delete(ctx: typer.Context, name: str,
                 yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete a user: roles, password, tokens and sessions go; the record stays for the ledger."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete user {name}? Their roles, password, tokens and sessions go for good", abort=True)
    with open_context(ctx) as c:
        user = governance.delete_user(c.db, name, actor=current_actor(ctx, c))
    console.print(f"{user.name} is {user.state}")


@users_app.command("revoke-token")
def users_revoke_token(ctx: typer.Context, token_id: int) -> None:
    """Revoke a token at once."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        governance.revoke_token(c.db, token_id, actor=actor)
    console.print(f"token {token_id} revoked")


@users_app.command("grant")
def users_grant(ctx: typer.Context, name: str, role: str,
                project: str | None = typer.Option(None, help="Only inside this project.")) -> None:
    """Grant a role to a user (everywhere, or in one project)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        user = governance.grant_role(c.db, name, role, project=project, actor=actor)
    console.print(f"{user.name}: {', '.join(user.roles)}")


@users_app.command("password")
def users_password(ctx: typer.Context, name: str) -> None:
    """Set a user's web sign-in password (read from the terminal or stdin)."""
    secret = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    with open_context(ctx) as c:
        governance.set_password(c.db, name, secret, actor=current_actor(ctx, c))
    console.print(f"password of {name} set")


@users_app.command("reset-admin")
def users_reset_admin(ctx: typer.Context) -> None:
    """Lost the admin's token or password? Give the admin new ones (run on the host; no token needed).

    It opens the store directly, so it works for whoever can read and write the store
    (the --home folder, or the database's credentials) and for nobody else. The ledger
    records it as a host-side recovery under your operating-system user name.
    """
    reset = reset_admin(settings_of(ctx), host_user=getpass.getuser())
    console.print(f"New secrets for user [bold]{reset.user}[/] (token {reset.token_id}). Shown only this once — "
                  "keep them safe:")
    print_admin_secrets(reset.token, reset.password)
    console.print("The admin's earlier tokens still work: list them with 'chainkeeper users tokens admin' and "
                  "revoke one with 'chainkeeper users revoke-token ID'.")


# --- roles -----------------------------------------------------------------------------


@roles_app.command("list")
def roles_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Each role and the actions it may perform."""
    with open_context(ctx) as c:
        matrix = governance.read_matrix(c.db, actor=current_actor(ctx, c))
    roles = {role: sorted(a for a in actions if ":" not in a) for role, actions in sorted(matrix.items())}
    if as_json:
        print_json(roles)
        return
    table = new_table("role", "actions")
    for role, actions in roles.items():
        table.add_row(role, ", ".join(actions))
    console.print(table)


@roles_app.command("raci")
def roles_raci(ctx: typer.Context, fmt: str = typer.Option("md", "--format", help="md, csv or json.")) -> None:
    """Print the enforced matrix as a RACI table over the chain's activities."""
    with open_context(ctx) as c:
        rows = governance.raci_rows(governance.read_matrix(c.db, actor=current_actor(ctx, c)))
    if fmt == "json":
        print_json(rows)
        return
    sys.stdout.write(governance.render_raci(rows, fmt))


@roles_app.command("actions")
def roles_actions(as_json: bool = JSON_OPTION) -> None:
    """The catalogue of actions a role can be granted."""
    if as_json:
        print_json(governance.ACTIONS)
        return
    for action, description in governance.ACTIONS.items():
        console.print(f"{action:<28} {description}")


@roles_app.command("create")
def roles_create(ctx: typer.Context, name: str, description: str = typer.Option("", help="What the role is for."),
                 action: list[str] = typer.Option([], "--action", "-a",
                                                  help="An action to grant (repeatable).")) -> None:
    """Create a custom role."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        governance.create_role(c.db, name, description=description, actions=action, actor=actor)
    console.print(f"role {name} created with {len(action)} action(s)")


@roles_app.command("grant")
def roles_grant(ctx: typer.Context, role: str, action: str) -> None:
    """Allow a role an action."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        governance.set_permission(c.db, role, action, granted=True, actor=actor)
    console.print(f"{role} may now {action}")


@roles_app.command("revoke")
def roles_revoke(ctx: typer.Context, role: str, action: str) -> None:
    """Take an action away from a role."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        governance.set_permission(c.db, role, action, granted=False, actor=actor)
    console.print(f"{role} may no longer {action}")


# --- approvals -------------------------------------------------------------------------


@approvals_app.command("list")
def approvals_list(ctx: typer.Context,
                   state: str | None = typer.Option(None, help="pending, executed, rejected."),
                   as_json: bool = JSON_OPTION) -> None:
    """Approval requests, newest first."""
    with open_context(ctx) as c:
        rows = governance.find_approvals(c, actor=current_actor(ctx, c), state=state)
    if as_json:
        print_json(rows)
        return
    table = new_table("id", "action", "object", "state", "requested by", "decided by", "checks")
    for a in rows:
        checks = "pass" if all(ch["passed"] for ch in a.checks) else "FAIL"
        table.add_row(str(a.id), a.action, f"{a.object_kind} {a.object_id}", a.state, a.requested_by,
                      a.decided_by or "—", checks)
    console.print(table)


@approvals_app.command("show")
def approvals_show(ctx: typer.Context, approval_id: int, as_json: bool = JSON_OPTION) -> None:
    """One request: its checks, and who may decide it."""
    with open_context(ctx) as c:
        a = governance.show_approval(c, approval_id, actor=current_actor(ctx, c))
        candidates, excluded, why = governance.who_may_approve(c, a)
    if as_json:
        print_json({**asdict(a), "may_approve": candidates, "excluded": excluded, "excluded_because": why})
        return
    console.print(f"request {a.id}: {a.action} of {a.object_kind} {a.object_id} — {a.state}")
    console.print(f"requested by {a.requested_by}: {a.request_comment or '(no comment)'}")
    for ch in a.checks:
        console.print(f"  {'✓' if ch['passed'] else '✗'} {ch['name']}: {ch['detail']}")
    console.print(f"may approve: {', '.join(candidates) or 'nobody yet'}; excluded: {', '.join(excluded)} ({why})")


def _decide(ctx: typer.Context, approval_id: int, comment: str, approve: bool) -> None:
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        a = governance.decide(c, approval_id, actor=actor, approve=approve, comment=comment)
    console.print(f"request {a.id} {a.state} by {a.decided_by}")


@approvals_app.command("approve")
def approvals_approve(ctx: typer.Context, approval_id: int,
                      comment: str = typer.Option(..., "--comment", "-m", help="Why (required).")) -> None:
    """Approve a request, which executes the action."""
    _decide(ctx, approval_id, comment, True)


@approvals_app.command("reject")
def approvals_reject(ctx: typer.Context, approval_id: int,
                     comment: str = typer.Option(..., "--comment", "-m", help="Why (required).")) -> None:
    """Reject a request."""
    _decide(ctx, approval_id, comment, False)


@approvals_app.command("request")
def approvals_request(
    ctx: typer.Context,
    action: str = typer.Argument(..., help="dataset.release, model.promote or deployment.create."),
    object_id: int = typer.Argument(..., help="The dataset version or model version id."),
    comment: str = typer.Option("", "--comment", "-m"),
    name: str | None = typer.Option(None, help="Deployment name (deployment.create)."),
) -> None:
    """Ask for a gated action; its automated checks run now."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        a = governance.request_approval(c, action, object_id, actor=actor, comment=comment,
                                       payload={"name": name} if name else None)
    console.print(f"request {a.id} {a.state}: " + "; ".join(f"{ch['name']} {'ok' if ch['passed'] else 'FAILED'}"
                                                            for ch in a.checks))


# --- audit -----------------------------------------------------------------------------


@audit_app.command("entries")
def audit_entries(ctx: typer.Context,
                  after_seq: int = typer.Option(0, "--after", min=0, help="Only entries after this sequence number."),
                  limit: int = typer.Option(50, min=1, max=1000, help="How many, oldest first."),
                  object_kind: str | None = typer.Option(None, "--kind", help="Only entries about this kind."),
                  object_id: str | None = typer.Option(None, "--id", help="Only entries about this object id."),
                  as_json: bool = JSON_OPTION) -> None:
    """Ledger entries: who did what to which object, when, in which role."""
    with open_context(ctx) as c:
        entries = governance.read_entries(c.db, actor=current_actor(ctx, c), after_seq=after_seq, limit=limit,
                                     object_kind=object_kind, object_id=object_id)
    if as_json:
        print_json(entries)
        return
    table = new_table("seq", "at (UTC)", "actor", "role", "action", "object", "details")
    for e in entries:
        table.add_row(str(e.seq), f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.role or "—", e.action,
                      f"{e.object_kind} {e.object_id}", json.dumps(e.details, ensure_ascii=False) if e.details else "")
    console.print(table)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context,
                 anchor: Path | None = typer.Option(None, "--anchor", help="Anchor file ('audit anchor --to FILE' "
                                                    "wrote): the ledger must still hold each anchored entry."),
                 as_json: bool = JSON_OPTION) -> None:
    """Check the ledger's keyed hash chain (and its anchors); exit non-zero naming the first bad entry."""
    anchors = read_anchor_file(anchor) if anchor is not None else []
    with open_context(ctx) as c:
        verdict = governance.verify_ledger_as(c.db, actor=current_actor(ctx, c), anchors=anchors)
    if as_json:
        print_json(verdict)  # and, when broken, the error below on stderr with its exit code
    if not verdict.ok:
        raise ledger_broken(asdict(verdict))
    if not as_json:
        console.print(ledger_intact(asdict(verdict)))


@audit_app.command("anchor")
def audit_anchor(ctx: typer.Context,
                 to: str = typer.Option(..., "--to", help="JSON-lines file to append the anchor to (keep it where "
                                        "the database's admins cannot write), or an http(s) URL to POST it to."),
                 as_json: bool = JSON_OPTION) -> None:
    """Anchor the ledger: append its head (entries, last hash, time, key id, HMAC) to a file you keep."""
    with open_context(ctx) as c:
        anchor = governance.anchor_ledger_as(c.db, actor=current_actor(ctx, c))
        deliver_anchor(to, anchor, c.settings)
    if as_json:
        print_json(anchor.to_dict())
        return
    console.print(f"anchored the ledger at entry {anchor.seq:,} (head {anchor.head}) to {to}; check it later with "
                  f"'chainkeeper audit verify --anchor FILE'", markup=False, highlight=False)


@audit_app.command("rotate-key")
def audit_rotate_key(ctx: typer.Context) -> None:
    """Add a new ledger key (run on the host; no token needed): new entries use it, old keys stay to verify.

    It appends the key to the key file (ledger_key_file) and records the rotation as the
    first entry made with it, under your operating-system user name. Back the key file up
    afterwards. With keys in CHAINKEEPER_LEDGER_KEY, it prints a new key to add there.
    """
    with open_context(ctx) as c:
        done = rotate_ledger_key(c.db, host_user=getpass.getuser())
    if done.new_secret is not None:
        console.print(f"The ledger keys come from {done.where}. Add this new key at its end (comma-separated, "
                      f"keep the others) on every Chainkeeper process, then restart them; it gets the id "
                      f"{done.key_id}:", markup=False, highlight=False)
        print(done.new_secret)
        return
    console.print(f"added ledger key {done.key_id} to {done.where} (it replaces {done.previous or 'none'} for new "
                  "entries; the old keys stay to verify older entries). Back the key file up now; running servers "
                  "and workers switch at their next entry.", markup=False, highlight=False)


@audit_app.command("export")
def audit_export(ctx: typer.Context, output: Path | None = typer.Option(None, "--output", "-o",
                                                                       help="File to write (default stdout).")) -> None:
    """Write the ledger as JSON Lines."""
    with open_context(ctx) as c:
        lines = governance.export_ledger(c.db, actor=current_actor(ctx, c))
        if output is None:
            for line in lines:
                sys.stdout.write(line + "\n")
            return
        n = 0
        with output.open("w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
                n += 1
    console.print(f"wrote {n:,} entries to {output}")


# --- lineage and owners -------------------------------------------------------------------


def render_lineage(root: LineageNode) -> Tree:
    """A lineage tree as a Rich tree."""
    def add(tree: Tree, node: LineageNode) -> None:
        branch = tree.add(f"[bold]{node.kind}[/] {node.label}")
        for child in node.children:
            add(branch, child)

    tree = Tree(f"[bold]{root.kind}[/] {root.label}")
    for child in root.children:
        add(tree, child)
    return tree


def lineage_cmd(ctx: typer.Context, kind: str = typer.Argument(..., help=LINEAGE_KINDS_HELP),
                object_id: str = typer.Argument(..., help="Its id (a request id for a prediction)."),
                as_json: bool = JSON_OPTION) -> None:
    """Trace an object back to its data, runs and approvers."""
    with open_context(ctx) as c:
        root = chain.lineage_of(c, kind, object_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(root.to_dict())
        return
    console.print(render_lineage(root))


def owner_cmd(ctx: typer.Context, kind: str = typer.Argument(..., help=OWNED_KINDS_HELP),
              object_id: str = typer.Argument(...),
              assign: str | None = typer.Option(None, "--assign", help="Reassign to this user (admin)."),
              as_json: bool = JSON_OPTION) -> None:
    """Who is responsible for an object (and reassign it)."""
    with open_context(ctx) as c:
        if assign:
            info = chain.reassign_owner(c, kind, object_id, assign, actor=current_actor(ctx, c))
        else:
            info = chain.owner_of(c, kind, object_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(info)
        return
    console.print(f"{kind} {object_id}: owner [bold]{info.owner}[/], responsible role {info.responsible_role} "
                  f"({', '.join(info.role_holders) or 'nobody holds it'})")
