"""The ``chainkeeper`` command: a thin shell over the service functions.

Errors of the hierarchy in ``core/errors.py`` become one message (and a hint) on stderr
and the error's exit code; no traceback reaches the user.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from chainkeeper.cli import annotate as annotate_cmd
from chainkeeper.cli import config as config_cmd
from chainkeeper.cli import data as data_cmd
from chainkeeper.cli import deploy as deploy_cmd
from chainkeeper.cli import governance as governance_cmd
from chainkeeper.cli import jobs as jobs_cmd
from chainkeeper.cli import models as models_cmd
from chainkeeper.cli import monitor as monitor_cmd
from chainkeeper.cli import quickstart as quickstart_cmd
from chainkeeper.cli import server as server_cmd
from chainkeeper.cli import train as train_cmd
from chainkeeper.cli.state import CliState, err_console
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.core.settings import load_settings

app = typer.Typer(
    name="chainkeeper",
    help="Run the whole chain of a language-model application, with an owner for every link.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    home: Path | None = typer.Option(None, "--home", help="Folder for the SQLite file and artefacts [env: CHAINKEEPER_HOME]."),
    config: Path | None = typer.Option(None, "--config", help="TOML file of settings [env: CHAINKEEPER_CONFIG]."),
    token: str | None = typer.Option(None, "--token", help="API token to act with [env: CHAINKEEPER_TOKEN].",
                                     show_default=False),
) -> None:
    ctx.obj = CliState(settings=load_settings(os.environ, config_file=config, home=home, token=token))


app.command("init")(config_cmd.init)
app.add_typer(config_cmd.app, name="config")
app.add_typer(jobs_cmd.app, name="jobs")
app.add_typer(data_cmd.app, name="data")
app.add_typer(annotate_cmd.app, name="annotate")
app.add_typer(models_cmd.app, name="models")
app.add_typer(deploy_cmd.app, name="deploy")
app.add_typer(monitor_cmd.app, name="monitor")
app.add_typer(train_cmd.app, name="train")
app.add_typer(governance_cmd.users_app, name="users")
app.add_typer(governance_cmd.roles_app, name="roles")
app.add_typer(governance_cmd.approvals_app, name="approvals")
app.add_typer(governance_cmd.audit_app, name="audit")
app.command("lineage")(governance_cmd.lineage_cmd)
app.command("owner")(governance_cmd.owner_cmd)
app.command("worker")(server_cmd.worker)
app.command("up")(server_cmd.up)
app.command("serve")(server_cmd.serve)
app.command("quickstart")(quickstart_cmd.quickstart)


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
