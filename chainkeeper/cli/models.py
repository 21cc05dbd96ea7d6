"""``chainkeeper models``: model versions, their release gates and model cards.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN and goes through the
same ``authorize`` as the API.
"""

from __future__ import annotations

import typer
from rich.table import Table

from chainkeeper.cli.state import acting_user, console, open_context
from chainkeeper.registry import cards, gates, versions

app = typer.Typer(help="Model versions, release gates and model cards.", no_args_is_help=True)
gates_app = typer.Typer(help="Release thresholds per model name, and gate results.", no_args_is_help=True)
app.add_typer(gates_app, name="gates")


@app.command("list")
def models_list(ctx: typer.Context, name: str | None = typer.Option(None, help="Only versions of this model."),
                stage: str | None = typer.Option(None, help="Only versions in this stage.")) -> None:
    """Model versions, newest first."""
    with open_context(ctx) as c:
        acting_user(ctx, c, "model.read")
        found = versions.list_model_versions(c.db, name, stage=stage)
    table = Table("id", "model", "stage", "test macro-F1", "created by", "created (UTC)")
    for v in found:
        f1 = (v.metrics.get("test") or {}).get("macro_f1")
        table.add_row(str(v.id), v.label, str(v.stage), f"{f1:.4f}" if f1 is not None else "—", v.created_by,
                      f"{v.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command("card")
def models_card(ctx: typer.Context, model_version_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Print a model version's card (Markdown), generated from the registry."""
    with open_context(ctx) as c:
        acting_user(ctx, c, "model.read")
        text = cards.model_card(c, model_version_id)
    console.print(text, markup=False, highlight=False, end="")


@gates_app.command("set")
def gates_set(ctx: typer.Context, name: str,
              min_macro_f1: float | None = typer.Option(None, help="Minimum test macro-F1 (0-1)."),
              min_slice_macro_f1: float | None = typer.Option(None, help="Minimum macro-F1 of every declared slice."),
              max_drop_vs_production: float | None = typer.Option(
                  None, help="Largest allowed drop of test macro-F1 below the production version (0.01 = 1 point)."),
              clear: bool = typer.Option(False, "--clear", help="Unset every threshold not given here.")) -> None:
    """Set release thresholds for model NAME (release manager); thresholds not given are kept."""
    given = {k: v for k, v in (("min_macro_f1", min_macro_f1), ("min_slice_macro_f1", min_slice_macro_f1),
                               ("max_drop_vs_production", max_drop_vs_production)) if v is not None or clear}
    with open_context(ctx) as c:
        actor = acting_user(ctx, c, "model.promote.approve", project=name)
        now = gates.set_gate_thresholds(c, name, actor=actor, **given)
    _print_thresholds(now)


@gates_app.command("show")
def gates_show(ctx: typer.Context, model_version_id: int = typer.Argument(..., metavar="ID"),
               run: bool = typer.Option(False, "--run", help="Evaluate the gates now (and store the results)."),
               ) -> None:
    """A version's thresholds and the results of its latest gate evaluation."""
    with open_context(ctx) as c:
        actor = acting_user(ctx, c, "model.promote" if run else "model.read")
        version = versions.get_model_version(c.db, model_version_id)
        results = gates.run_gates(c, model_version_id, actor=actor) if run else gates.latest_gate_results(
            c.db, model_version_id)
        thresholds = gates.get_gate_thresholds(c.db, version.name)
    _print_thresholds(thresholds)
    if not results:
        console.print(f"{version.label}: no gate results yet (run with --run, or ask for promotion)")
        return
    table = Table("gate", "passed", "value", "threshold", "detail", title=f"{version.label}")
    for r in results:
        table.add_row(r.gate, "yes" if r.passed else "[red]NO[/]", "—" if r.value is None else f"{r.value:.4f}",
                      "—" if r.threshold is None else f"{r.threshold:.4f}", r.detail)
    console.print(table)


def _print_thresholds(t: gates.GateThresholds) -> None:
    def show(value: float | None) -> str:
        return "not set" if value is None else f"{value:g}"

    console.print(f"gates of {t.name}: min macro-F1 {show(t.min_macro_f1)}, min slice macro-F1 "
                  f"{show(t.min_slice_macro_f1)}, max drop vs production {show(t.max_drop_vs_production)}")
