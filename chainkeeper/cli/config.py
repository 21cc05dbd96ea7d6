"""``chainkeeper init`` and ``chainkeeper config show``."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from chainkeeper.cli.state import console, print_first_start, settings_of
from chainkeeper.governance.bootstrap import initialise

app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)


def init(ctx: typer.Context) -> None:
    """Create or upgrade the metadata store and seed the built-in roles and the admin."""
    result = initialise(settings_of(ctx))
    console.print(f"Store ready at {result.database} (schema {result.revision}).")
    print_first_start(result)


@app.command("show")
def show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings, passwords masked."""
    values = settings_of(ctx).masked()
    if as_json:
        console.print_json(json.dumps(values, default=str))
        return
    table = Table("setting", "value", "environment variable")
    for name, value in values.items():
        table.add_row(name, str(value), f"CHAINKEEPER_{name.upper()}")
    console.print(table)
