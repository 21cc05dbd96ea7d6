"""``chainkeeper init`` and ``chainkeeper config show``."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from chainkeeper.cli.state import console, print_first_start, settings_of
from chainkeeper.core.settings import Settings, mask_url
from chainkeeper.governance.bootstrap import initialise

app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)


def init(ctx: typer.Context) -> None:
    """Create or upgrade the metadata store and seed the built-in roles and the admin."""
    result = initialise(settings_of(ctx))
    console.print(f"Store ready at {result.database} (schema {result.revision}).")
    print_first_start(result)


@app.command("show")
def show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings, passwords and tokens masked, and which mode the CLI is in."""
    settings = settings_of(ctx)
    values = {**settings.masked(), "mode": mode_of(settings)}
    if settings.url:
        values["url"] = mask_url(settings.url)
    if as_json:
        console.print_json(json.dumps(values, default=str))
        return
    console.print(f"mode: {values['mode']}", markup=False)
    table = Table("setting", "value", "environment variable")
    for name, value in values.items():
        if name == "mode":
            continue
        table.add_row(name, str(value), f"CHAINKEEPER_{name.upper()}")
    console.print(table)


def mode_of(settings: Settings) -> str:
    """Where commands act: through a server's API (client mode) or on the store directly."""
    if settings.url:
        return f"client of {mask_url(settings.url)} (commands go through its API with the token)"
    return f"local (commands open the store at {mask_url(settings.resolved_database_url)})"
