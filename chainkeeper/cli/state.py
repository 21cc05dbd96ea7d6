"""What every command shares: the settings, and the store opened on demand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import typer
from rich.console import Console

from chainkeeper.core.context import Context
from chainkeeper.core.settings import Settings

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
    context = Context.open(settings_of(ctx))
    try:
        yield context
    finally:
        context.close()
