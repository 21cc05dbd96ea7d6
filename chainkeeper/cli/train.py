"""``chainkeeper train``: start, list, show, follow, cancel, report and compare runs;
search hyper-parameters (``train search start|show``). Every command that lists or
shows takes ``--json`` (the fields the API answers)."""

from __future__ import annotations

import time
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from chainkeeper import training
from chainkeeper.cli.jobs import follow_job
from chainkeeper.cli.state import (
    JSON_OPTION,
    console,
    current_actor,
    new_table,
    open_context,
    parse_overrides,
    print_json,
)
from chainkeeper.core.errors import InvalidInput
from chainkeeper.governance.jobs import read_job_logs, show_job

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.governance.actors import Actor
    from chainkeeper.training import Run, SearchReport

app = typer.Typer(help="Fine-tune models as jobs, follow them, read and compare their evaluations.",
                  no_args_is_help=True)

_STATE_STYLE = {"queued": "cyan", "running": "yellow", "succeeded": "green", "failed": "red", "cancelled": "magenta",
                "pruned": "magenta"}
_ALLOW_DRAFT: Any = typer.Option(
    None, "--allow-draft", metavar="REASON",
    help="Train on a dataset version that is not released, for this reason (an experiment: audited, and its "
    "model cannot be promoted while the data is unreleased).")
_OOS_LABEL: Any = typer.Option(training.OUT_OF_SCOPE_LABEL, "--oos-label", metavar="LABEL",
                               help="The out-of-scope label: when the labels hold it, in-scope accuracy and "
                               "out-of-scope recall/precision are reported apart.")




def _state(state: str) -> str:
    return f"[{_STATE_STYLE.get(state, 'white')}]{state}[/]"


def run_json(run: Run) -> dict[str, Any]:
    """A run as ``--json`` prints it: the fields ``GET /api/runs/{id}`` answers."""
    return {**asdict(run), "finished": run.finished}


@app.command("start")
def start(ctx: typer.Context, dataset_version: int = typer.Argument(..., help="Dataset version id to train on."),
          set_: list[str] = typer.Option([], "--set", help="A config value, key=value (repeatable)."),
          config_file: Path | None = typer.Option(None, "--config", help="A TOML file of config values."),
          base_model: Path | None = typer.Option(None, help="A local model folder (default: the offline MiniLM)."),
          allow_draft: str | None = _ALLOW_DRAFT,
          follow: bool = typer.Option(False, "--follow", "-f", help="Follow the run until it ends.")) -> None:
    """Validate the config, record a run and queue its training job (a worker runs it).

    Training takes released dataset versions; --allow-draft REASON runs an experiment on a draft."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values.update(tomllib.loads(config_file.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInput(f"Cannot read config file {config_file}: {exc}.") from None
    values.update(parse_overrides(set_))
    config = training.parse_train_config(values)
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        run = training.start_training_run(c, dataset_version_id=dataset_version, config=config, actor=actor,
                                 base_model=base_model, allow_draft=allow_draft)
        console.print(f"run {run.id} {_state(run.state)} (job {run.job_id}); follow it with "
                      f"'chainkeeper train logs {run.id} -f'")
        if run.draft_override is not None:
            console.print(f"[yellow]trained on unreleased dataset version {dataset_version}[/] (override: "
                          f"{run.draft_override}); its model cannot be promoted until the version is released")
        if follow:
            _follow(c, run.id, actor)


@app.command("list")
def list_(ctx: typer.Context, limit: int = typer.Option(20, help="How many, newest first."),
          search: int | None = typer.Option(None, "--search", metavar="JOB",
                                            help="Only the runs of this search job (its trials and best run)."),
          as_json: bool = JSON_OPTION) -> None:
    """The latest runs (a search's trials are runs of their search)."""
    with open_context(ctx) as c:
        runs = training.find_runs(c, actor=current_actor(ctx, c), limit=limit, search_job_id=search)
    if as_json:
        print_json([run_json(r) for r in runs])
        return
    if not runs:
        console.print("No training runs yet. Start one with 'chainkeeper train start DATASET_VERSION'.")
        return
    table = new_table("id", "state", "dataset version", "steps", "test accuracy", "test macro-F1", "from", "by",
                      "created (UTC)")
    for r in runs:
        test = r.metrics.get("test") or {}
        table.add_row(str(r.id), _state(r.state), str(r.dataset_version_id),
                      str((r.metrics.get("train") or {}).get("steps", "-")),
                      f"{test['accuracy']:.4f}" if "accuracy" in test else "-",
                      f"{test['macro_f1']:.4f}" if "macro_f1" in test else "-",
                      _origin(r), r.created_by, f"{r.created_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


def _origin(run: Run) -> str:
    """The list's short "from" cell: the search it belongs to, a draft override."""
    parts = []
    if run.search_job_id is not None:
        parts.append(f"search {run.search_job_id}" + (f" trial {run.trial}" if run.trial is not None else " best"))
    if run.draft_override is not None:
        parts.append("[yellow]draft data[/]")
    return ", ".join(parts) or "-"


@app.command("show")
def show(ctx: typer.Context, run_id: int, as_json: bool = JSON_OPTION) -> None:
    """One run: state, config and headline metrics."""
    with open_context(ctx) as c:
        r = training.show_run(c, run_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(run_json(r))
        return
    console.print(f"run {r.id} {_state(r.state)} ({r.task}) on dataset version {r.dataset_version_id}, "
                  f"by {r.created_by}")
    if r.search_job_id is not None:
        console.print(f"{'trial ' + str(r.trial) if r.trial is not None else 'best config'} of search job "
                      f"{r.search_job_id} ('chainkeeper train search show {r.search_job_id}')")
    if r.draft_override is not None:
        console.print(f"[yellow]trained on an unreleased dataset version[/] (override: {r.draft_override}); "
                      "its model cannot be promoted while the version is unreleased", markup=True)
    console.print(f"base model {r.base_model}; model artefact {r.model_artifact or '-'}")
    console.print_json(data={"config": r.config})
    if r.metrics.get("error"):
        console.print(f"[red]error:[/] {r.metrics['error']}")
    if r.reproducibility:
        console.print_json(data={"reproducibility": r.reproducibility})
    for split in ("dev", "test"):
        m = r.metrics.get(split)
        if m:
            console.print(f"{split}: {_headline(m)}")


def _headline(m: dict[str, Any]) -> str:
    """One line of a split's numbers, whichever the task."""
    if "macro_f1" in m:
        ece = (m.get("calibration") or {}).get("ece")
        return (f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}"
                + (f", ECE {ece:.4f}" if ece is not None else ""))
    if "f1" in m:
        return (f"entity F1 {m['f1']:.4f} (precision {m['precision']:.4f}, recall {m['recall']:.4f}), "
                f"token accuracy {m['token']['accuracy']:.4f}")
    return f"loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}"


def _follow(c: Context, run_id: int, actor: Actor, poll_s: float = 0.5) -> None:
    """A progress bar with loss, learning rate and samples/s until the run ends."""
    run = training.show_run(c, run_id, actor=actor)
    last_point, last_log, latest = 0, 0, {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), console=console) as progress:
        bar = progress.add_task(f"run {run_id}", total=100, stats="")
        while True:
            run = training.show_run(c, run_id, actor=actor)
            for p in training.run_points(c, run_id, actor=actor, after_id=last_point):
                latest[p["name"]] = p["value"]
                latest["step"] = p["step"]
                last_point = p["id"]
            stats = " ".join(f"{k} {latest[k]:.4g}" for k in ("loss", "learning_rate", "samples_per_s") if k in latest)
            job = show_job(c, run.job_id, actor=actor) if run.job_id is not None else None
            progress.update(bar, completed=job.progress if job else 0,
                            stats=(f"step {latest['step']} " if "step" in latest else "") + stats)
            if job is not None:
                for log_id, _, line in read_job_logs(c, job.id, actor=actor, after_id=last_log):
                    if not line.startswith("step "):  # step lines are the bar's job
                        progress.console.print(f"  [dim]{line}[/]")
                    last_log = log_id
            # The handler finishes the run before the worker finishes the job; a job the
            # reaper gave up on ends the wait too, though its run never finished.
            if (job.finished if job is not None else run.finished):
                run = training.show_run(c, run_id, actor=actor)
                break
            time.sleep(poll_s)
    console.print(f"run {run.id} {_state(run.state)}"
                  + (f": {run.metrics['error']}" if run.metrics.get("error") else ""))


@app.command("logs")
def logs(ctx: typer.Context, run_id: int,
         follow: bool = typer.Option(False, "--follow", "-f",
                                     help="Follow with a progress bar until it ends."),
         as_json: bool = JSON_OPTION) -> None:
    """A run's job log (or a live progress bar with loss, learning rate and samples/s)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        if follow:
            _follow(c, run_id, actor)
            return
        run = training.show_run(c, run_id, actor=actor)
        lines = read_job_logs(c, run.job_id, actor=actor) if run.job_id is not None else []
    if as_json:
        print_json([{"id": log_id, "at": at, "line": line} for log_id, at, line in lines])
        return
    for _, at, line in lines:
        console.print(f"[dim]{at:%H:%M:%S}[/] {line}")


@app.command("cancel")
def cancel(ctx: typer.Context, run_id: int) -> None:
    """Stop a run (at once if queued, at its next step if running)."""
    with open_context(ctx) as c:
        r = training.cancel_run(c, run_id, actor=current_actor(ctx, c))
    console.print(f"run {r.id}: {r.state}" + (" (cancel requested)" if r.state == "running" else ""))


@app.command("report")
def report(ctx: typer.Context, run_id: int,
           html: Path | None = typer.Option(None, "--html", help="Also write the self-contained HTML report here."),
           oos_label: str = _OOS_LABEL, as_json: bool = JSON_OPTION) -> None:
    """The run's classification report per split (and the HTML report with plots)."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        r = training.show_run(c, run_id, actor=actor)
        page = training.run_report_html(c, run_id, actor=actor) if html is not None else None
    if html is not None and page is not None:
        html.write_text(page, encoding="utf-8")
    splits = {split: r.metrics[split] for split in ("dev", "test") if r.metrics.get(split)}
    if as_json:
        print_json({"run_id": r.id, "task": r.task, "splits": {
            split: {**m, **_oos_field(m, oos_label)} for split, m in splits.items()}})
        return
    for split, m in splits.items():
        print_split_report(split, m, oos_label)
    if html is not None:
        console.print(f"HTML report written to {html}")


def _oos_field(metrics: dict[str, Any], label: str) -> dict[str, Any]:
    oos = training.out_of_scope_metrics(metrics, label) if "confusion_matrix" in metrics else None
    return {"out_of_scope": oos} if oos is not None else {}


def print_split_report(split: str, m: dict[str, Any], oos_label: str = training.OUT_OF_SCOPE_LABEL) -> None:
    """One split's report as text, whichever the task: the classification report (with
    out-of-scope figures apart when the labels hold ``oos_label``), or entity and token
    level for a tagger."""
    if "per_class" in m:
        console.print(f"[bold]{split}[/]")
        console.print(training.format_report(m, digits=4), markup=False, highlight=False)
        oos = training.out_of_scope_metrics(m, oos_label) if "confusion_matrix" in m else None
        if oos is not None:
            console.print(f"in scope: accuracy {oos['in_scope_accuracy']:.4f} on {oos['in_scope_rows']:,} rows; "
                          f"out of scope ({oos['label']!r}): recall {oos['out_of_scope_recall']:.4f}, precision "
                          f"{oos['out_of_scope_precision']:.4f} on {oos['out_of_scope_rows']:,} rows",
                          markup=False)
    elif "token" in m:  # token classification: entity level, then token level
        console.print(f"[bold]{split}[/] entity level (seqeval)")
        console.print(m["report"], markup=False, highlight=False)
        console.print(f"[bold]{split}[/] token level")
        console.print(training.format_report(m["token"], digits=4), markup=False, highlight=False)
    elif "loss" in m:
        console.print(f"[bold]{split}[/] {_headline(m)}")


@app.command("compare")
def compare(ctx: typer.Context, run_a: int, run_b: int, as_json: bool = JSON_OPTION) -> None:
    """Headline metrics of two runs side by side, with the change from A to B."""
    with open_context(ctx) as c:
        diff = training.compare_runs(c, run_a, run_b, actor=current_actor(ctx, c))
    if as_json:
        print_json(diff)
        return
    table = new_table("split", "metric", f"run {run_a}", f"run {run_b}", "delta")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    for split, rows in diff["splits"].items():
        for metric, v in rows.items():
            delta = v["delta"]
            table.add_row(split, metric, fmt(v["a"]), fmt(v["b"]), "-" if delta is None else f"{delta:+.4f}")
    console.print(table)


class _SearchGroup(TyperGroup):
    """``train search DATASET_VERSION ...`` (the shorthand of ``train search start``) keeps
    working: arguments that name no subcommand start a search."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer._click.Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


search_app = typer.Typer(cls=_SearchGroup, no_args_is_help=True,
                         help="Hyper-parameter searches: start one, show one with its trials (each a run).")
app.add_typer(search_app, name="search")


@search_app.command("start")
def search(ctx: typer.Context, dataset_version: int = typer.Argument(..., help="Dataset version id to search on."),
           trials: int = typer.Option(10, "--trials", help="How many trials."),
           space: list[str] = typer.Option(..., "--space",
                                           help="A searched option: name=low:high[:log] or name=a,b,c (repeatable)."),
           set_: list[str] = typer.Option([], "--set", help="A fixed config value, key=value (repeatable)."),
           base_model: Path | None = typer.Option(None, help="A local model folder (default: the offline MiniLM)."),
           allow_draft: str | None = _ALLOW_DRAFT,
           follow: bool = typer.Option(False, "--follow", "-f", help="Follow the search job until it ends.")) -> None:
    """Queue an Optuna search (study kept in this database, median pruning) of the task the
    dataset version trains: classification maximises dev macro-F1 (or early_stopping_metric),
    token classification dev entity-level F1, masked/causal LM minimises dev loss. Each
    trial is recorded as a run of the search; the best trial's config is then trained as a
    normal run of that task."""
    dims = training.parse_space(space)
    config = training.parse_train_config(parse_overrides(set_))
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        job_id = training.start_search(c, dataset_version_id=dataset_version, config=config, space=dims, trials=trials,
                              actor=actor, base_model=base_model, allow_draft=allow_draft)
        target = training.Target(**show_job(c, job_id, actor=actor).params["target"])
        console.print(f"search job {job_id} queued ({trials} trials over {', '.join(d.name for d in dims)}), "
                      f"optimising the {target.describe()}; follow it with 'chainkeeper jobs logs {job_id} -f'")
        if follow:
            job = follow_job(c.db, job_id)
            result = job.result or {}
            value = result.get("best_value")
            best = (f": best dev {target.metric} {'-' if value is None else f'{value:.4f}'}, run {result['run_id']}"
                    if "run_id" in result else "")
            console.print(f"search {job.state}{best}; its trials: 'chainkeeper train search show {job_id}'")


@search_app.command("show")
def search_show(ctx: typer.Context, job_id: int = typer.Argument(..., metavar="JOB", help="The search job's id."),
                as_json: bool = JSON_OPTION) -> None:
    """A search: its job, what it optimises, and its trials (each a run) with the best config's run."""
    with open_context(ctx) as c:
        found = training.show_search(c, job_id, actor=current_actor(ctx, c))
    if as_json:
        print_json({"job": found.job, "target": found.target, "trials": [run_json(r) for r in found.trials],
                    "best_run": run_json(found.best_run) if found.best_run is not None else None})
        return
    _print_search(found)


def _print_search(found: SearchReport) -> None:
    job, target = found.job, found.target
    console.print(f"search job {job.id} {_state(job.state)} ({job.progress:.0f} %)"
                  + (f", optimising the {target.describe()}" if target is not None else ""))
    metric = target.metric if target is not None else "macro_f1"
    searched = [d["name"] for d in job.params.get("space", [])]
    table = new_table("trial", "run", "state", f"dev {metric}", *searched, title="trials")
    for r in found.trials:
        value = (r.metrics.get("dev") or {}).get(metric)
        why = r.metrics.get("pruned") or r.metrics.get("error")
        table.add_row(str(r.trial), str(r.id), _state(r.state),
                      f"{value:.4f}" if isinstance(value, int | float) else (why or "-"),
                      *(str(r.config.get(name, "-")) for name in searched))
    console.print(table)
    if found.best_run is not None:
        console.print(f"best config trains as run {found.best_run.id} {_state(found.best_run.state)} "
                      f"('chainkeeper train show {found.best_run.id}')")


@app.command("reproduce")
def reproduce(ctx: typer.Context, run_id: int = typer.Argument(..., help="The succeeded run to reproduce."),
              against: int | None = typer.Option(None, "--against",
                                                 help="Only compare with this finished rerun; start nothing."),
              tolerance: float = typer.Option(0.005, help="Largest absolute metric difference that agrees."),
              follow: bool = typer.Option(False, "--follow", "-f",
                                          help="Follow the rerun until it ends, then compare."),
              as_json: bool = JSON_OPTION) -> None:
    """Re-run a run's reproducibility record (same data, base model, config, seed) and
    compare the metrics; exits 1 when a metric differs by more than the tolerance."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        if against is None:
            rerun = training.reproduce_run(c, run_id, actor=actor)
            console.print(f"run {rerun.id} {_state(rerun.state)} reproduces run {run_id}; compare them with "
                          f"'chainkeeper train reproduce {run_id} --against {rerun.id}'")
            if not follow:
                return
            _follow(c, rerun.id, actor)
            against = rerun.id
        result = training.compare_reproduction(training.show_run(c, run_id, actor=actor),
                                               training.show_run(c, against, actor=actor), tolerance=tolerance)
    if as_json:
        print_json({**asdict(result), "reproduced": result.reproduced})
        if not result.reproduced:
            raise typer.Exit(1)
        return
    table = new_table("split", "metric", f"run {run_id}", f"run {against}", "|difference|", "within")
    for row in result.rows:
        table.add_row(row["split"], row["metric"], f"{row['original']:.6f}", f"{row['rerun']:.6f}",
                      f"{row['difference']:.2e}", "[green]yes[/]" if row["within"] else "[red]no[/]")
    console.print(table)
    for key, (a, b) in result.record_differences.items():
        console.print(f"[yellow]record differs[/] {key}: {a} → {b}")
    if result.reproduced:
        console.print(f"run {against} reproduces run {run_id} within {tolerance:g}")
    else:
        console.print(f"[red]run {against} does not reproduce run {run_id} within {tolerance:g}[/]")
        raise typer.Exit(1)
