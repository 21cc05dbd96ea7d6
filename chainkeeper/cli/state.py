"""What every command shares: the settings, the store opened on demand, and how output looks.

The stages load only when a store opens (``chainkeeper.chain`` and ``chainkeeper.governance``
are lazy entry points), so a command's ``--help`` imports neither the schema nor SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

import chainkeeper.chain as chain_layer  # a lazy entry point: the stages load when a store opens
from chainkeeper import governance  # lazy too: its modules load on first use
from chainkeeper.cli.main import RootOptions
from chainkeeper.core.errors import InvalidInput, Unauthenticated
from chainkeeper.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.governance.actors import Actor
    from chainkeeper.governance.bootstrap import InitResult

console = Console(highlight=False)

# The --json flag of every command that lists or shows (one OptionInfo serves them all).
JSON_OPTION: Any = typer.Option(False, "--json", help="Print JSON: the fields the API answers.")


def settings_of(ctx: typer.Context) -> Settings:
    """The settings of this invocation, built from the root options on first use.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or an unreadable config file.
    """
    options: RootOptions = ctx.find_root().obj
    if options.settings is None:
        options.settings = load_settings(options.environ, config_file=options.config, home=options.home,
                                         token=options.token, insecure=options.insecure or None)
    return options.settings


@contextlib.contextmanager
def open_context(ctx: typer.Context) -> Iterator[Context]:
    """The store for a command that needs it; closed when the command ends."""
    context = chain_layer.open_context(settings_of(ctx))
    try:
        yield context
    finally:
        context.close()


def current_actor(ctx: typer.Context, context: Context) -> Actor:
    """The user behind --token / CHAINKEEPER_TOKEN. The service the command calls decides
    what this user may do, in the project of the object it touches.

    Raises:
        Unauthenticated: no token given, or a bad one.
    """
    token = settings_of(ctx).token
    if token is None:
        raise Unauthenticated(
            "This command acts as a user and needs an API token.",
            hint="Pass --token or set CHAINKEEPER_TOKEN (the admin's token is printed by 'chainkeeper init'; "
            "others come from 'chainkeeper users token NAME'; lost the admin's? 'chainkeeper users reset-admin' "
            "on the host).",
        )
    return governance.authenticate_token(context.db, token.get_secret_value())


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as a mapping; values are read as JSON when they parse
    (numbers, true/false, null, lists, tables), else kept as text.

    Raises:
        InvalidInput: a pair without ``=``.
    """
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set {pair!r} is not key=value.", hint="For example: --set learning_rate=1e-4")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def new_table(*headers: str, title: str | None = None) -> Table:
    """A table whose cells wrap (long words fold) instead of being cut to fit the terminal."""
    table = Table(title=title)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _json_default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, datetime) and value.utcoffset() == timedelta(0):
        return value.isoformat().removesuffix("+00:00") + "Z"  # ISO 8601 as the API writes UTC
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def print_json(value: Any) -> None:
    """Print VALUE as JSON for ``--json``: dataclasses as their fields, times in ISO 8601,
    as the API answers them (highlighted on a terminal, plain in a pipe, where rich's
    highlighter would cost ~4 s per MB for nothing)."""
    text = json.dumps(value, default=_json_default, ensure_ascii=False, indent=2)
    if console.is_terminal:
        console.print_json(text)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def print_first_start(result: InitResult) -> None:
    """Show the admin's token and password, created by this start and never shown again."""
    if not result.admin_token:
        return
    console.print("Created user [bold]admin[/]. Shown only this once — keep them safe:")
    print_admin_secrets(result.admin_token, result.admin_password or "")


def print_admin_secrets(token: str, password: str) -> None:
    """The admin's new token and password, each on its own line (never wrapped, so they copy whole)."""
    console.print(f"  API token (set CHAINKEEPER_TOKEN to it):  [bold green]{token}[/]", soft_wrap=True)
    console.print(f"  web sign-in password:                     [bold green]{password}[/]", soft_wrap=True)


def parse_spans(text: str) -> list[dict[str, Any]]:
    """``--spans "ORG:0:13,PER:20:24"`` as feedback spans ("" or "none": the text has no entity).

    Raises:
        InvalidInput: an item that is not TYPE:START:END with whole-number offsets.
    """
    if text.strip().lower() in ("", "none"):
        return []
    spans = []
    for item in text.split(","):
        kind, _, rest = item.strip().rpartition(":")
        kind, _, start = kind.rpartition(":")
        if not kind or not start.strip().isdigit() or not rest.strip().isdigit():
            raise InvalidInput(f"--spans item {item.strip()!r} is not TYPE:START:END.",
                               hint='Give character offsets into the served text, e.g. --spans "ORG:0:13,PER:20:24" '
                               '(--spans none: the text has no entity).')
        spans.append({"type": kind.strip(), "start": int(start), "end": int(rest)})
    return spans
