"""The ``chainkeeper`` command: a thin shell over the service functions.

Errors of the hierarchy in ``core/errors.py`` become one message (and a hint) on stderr
and the error's exit code; no traceback reaches the user.

Start-up stays light: this module imports Typer, Rich and the error classes only. A
command's module loads when that command runs, and the settings (pydantic) are built from
the root options on first use (``cli.state.settings_of``), so ``--help`` and
``--version`` load neither the store nor the settings machinery.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandInfo

import chainkeeper
from chainkeeper.core.errors import ChainkeeperError

if TYPE_CHECKING:
    from chainkeeper.core.settings import Settings

err_console = Console(stderr=True, highlight=False)

# name -> (module of chainkeeper.cli, its Typer app or command function, one-line help).
# A command's module is imported only when that command runs, so 'chainkeeper --help'
# and a quick command never load what the others need (torch, pyarrow, the server).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("config", "init", "Create the store, the built-in roles and the admin user (once)."),
    "config": ("config", "app", "Inspect the effective configuration."),
    "jobs": ("jobs", "app", "Long work (cleaning, training, export) and its progress."),
    "data": ("data", "app", "Import, clean, version and compare datasets."),
    "annotate": ("annotate", "app", "Label rows and spans, measure agreement, adjudicate, export."),
    "train": ("train", "app", "Fine-tune, pre-train and search hyper-parameters; follow runs."),
    "models": ("models", "app", "Model versions, their gates, cards and exports."),
    "deploy": ("deploy", "app", "Deployments, rollouts (canary, shadow), rollbacks and API keys."),
    "monitor": ("monitor", "app", "Feedback, live quality, drift, alerts and maintenance tickets."),
    "apps": ("apps", "app", "Applications on the chain: the support assistant and its hand-off queue."),
    "users": ("governance", "users_app", "Users, their roles and API tokens (admin)."),
    "roles": ("governance", "roles_app", "Roles, the permission matrix and its RACI table."),
    "approvals": ("governance", "approvals_app", "Hand-offs that need a second person's approval."),
    "audit": ("governance", "audit_app", "The tamper-evident audit ledger."),
    "lineage": ("governance", "lineage_cmd", "Trace an object back to its data, runs and approvers."),
    "owner": ("governance", "owner_cmd", "Who is responsible for an object (and reassign it)."),
    "worker": ("server", "worker", "Run a worker that claims and runs queued jobs."),
    "schedules": ("schedules", "app", "Recurring jobs (drift checks, rule evaluation): list, pause, resume."),
    "scheduler": ("server", "scheduler", "Run the scheduler that queues recurring jobs when they are due."),
    "up": ("server", "up", "Start the API, the web UI and a worker."),
    "serve": ("server", "serve", "Serve the API and the web UI (no worker)."),
    "quickstart": ("quickstart", "quickstart", "Run the whole chain once on sample data, offline."),
}


class LazyGroup(TyperGroup):
    """The root command: subcommands load on use; help lists them from ``COMMANDS``."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, help_text = COMMANDS[cmd_name]
        if self._listing:  # the help page needs the name and a line, not the command
            return TyperCommand(name=cmd_name, help=help_text, short_help=help_text)
        target = getattr(importlib.import_module(f"chainkeeper.cli.{module}"), attribute)
        if isinstance(target, typer.Typer):
            command: Any = typer.main.get_group(target)
        else:
            command = typer.main.get_command_from_info(CommandInfo(name=cmd_name, callback=target),
                                                       pretty_exceptions_short=True,
                                                       rich_markup_mode=self.rich_markup_mode)
        command.name = cmd_name
        # Client mode (CHAINKEEPER_URL) is decided when the command runs: each command gets a
        # callback that then either runs it here or asks the server (cli/client.py).
        importlib.import_module("chainkeeper.cli.client").install(command, (cmd_name,))
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


@dataclass
class RootOptions:
    """What the root command was given, kept on the click context for the command that runs.

    ``cli.state.settings_of`` builds ``settings`` from it on first use (once).
    """

    environ: dict[str, str]
    home: Path | None = None
    config: Path | None = None
    token: str | None = None
    insecure: bool = False
    settings: Settings | None = field(default=None, repr=False)


app = typer.Typer(
    name="chainkeeper",
    cls=LazyGroup,
    help="Run the whole chain of a language-model application, with an owner for every link.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"chainkeeper {chainkeeper.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    home: Path | None = typer.Option(None, "--home",
                                     help="Folder for the SQLite file and artefacts \\[env: CHAINKEEPER_HOME]."),
    config: Path | None = typer.Option(None, "--config", help="TOML file of settings \\[env: CHAINKEEPER_CONFIG]."),
    token: str | None = typer.Option(None, "--token", help="API token to act with \\[env: CHAINKEEPER_TOKEN].",
                                     show_default=False),
    insecure: bool = typer.Option(False, "--insecure", help="Client mode: allow an http:// CHAINKEEPER_URL to "
                                  "another machine (the token crosses the network in clear) \\[env: "
                                  "CHAINKEEPER_INSECURE]."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = RootOptions(environ=dict(os.environ), home=home, config=config, token=token, insecure=insecure)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn our errors into a message and an exit code."""
    try:
        app(args=argv, prog_name="chainkeeper")
    except ChainkeeperError as err:
        err_console.print(f"[bold red]Error:[/] {err.message}")
        if err.hint:
            err_console.print(f"[yellow]→[/] {err.hint}")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)


if __name__ == "__main__":
    main()
