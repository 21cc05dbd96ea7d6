"""What every command shares: the settings, and the store opened on demand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import typer
from rich.console import Console

import chainkeeper.chain as chain_layer  # a lazy entry point: the stages load when a store opens
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Unauthenticated
from chainkeeper.core.settings import Settings
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.bootstrap import InitResult
from chainkeeper.governance.users import authenticate_token

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@dataclass
class CliState:
    settings: Settings


def settings_of(ctx: typer.Context) -> Settings:
    state: CliState = ctx.find_root().obj
    return state.settings


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
            "others come from 'chainkeeper users token NAME').",
        )
    return authenticate_token(context.db, token.get_secret_value())


def print_first_start(result: InitResult) -> None:
    """Show the admin's token and password, created by this start and never shown again."""
    if not result.admin_token:
        return
    console.print("Created user [bold]admin[/]. Shown only this once — keep them safe:")
    console.print(f"  API token (set CHAINKEEPER_TOKEN to it):  [bold green]{result.admin_token}[/]")
    console.print(f"  web sign-in password:                     [bold green]{result.admin_password}[/]")
