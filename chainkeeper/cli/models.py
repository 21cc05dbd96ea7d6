"""``chainkeeper models``: register a run's model, list and show model versions, evaluate
one on a file, their release gates, exports and model cards.

Each command acts as the user behind --token / CHAINKEEPER_TOKEN; the registry's
services decide what that user may do, in the project of the version (or model name),
exactly as for the API. Every command that lists or shows takes ``--json``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from chainkeeper import registry, serving
from chainkeeper.cli.jobs import follow_job
from chainkeeper.cli.state import JSON_OPTION, console, current_actor, new_table, open_context, print_json
from chainkeeper.cli.train import print_split_report
from chainkeeper.core.errors import InvalidInput

if TYPE_CHECKING:
    from chainkeeper.registry import GateResult, GateThresholds, ModelEvaluation
    from chainkeeper.serving import ExportResult

app = typer.Typer(help="Model versions, release gates and model cards.", no_args_is_help=True)
gates_app = typer.Typer(help="Release thresholds per model name, and gate results.", no_args_is_help=True)
app.add_typer(gates_app, name="gates")


@app.command("register")
def models_register(ctx: typer.Context, run_id: int = typer.Argument(..., metavar="RUN",
                                                                   help="A succeeded training run."),
                    name: str = typer.Option(..., "--name", help="The model's name, a lower-case slug "
                                             "(e.g. support-intents); the version is the next under it."),
                    as_json: bool = JSON_OPTION) -> None:
    """Register run RUN's model as the next version of model NAME, as a candidate."""
    with open_context(ctx) as c:
        version = registry.register_model_version(c, run_id=run_id, name=name, actor=current_actor(ctx, c))
    if as_json:
        print_json(version)
        return
    console.print(f"registered run {run_id} as [bold]{version.label}[/] (model version {version.id}, "
                  f"{version.stage}); ask for its promotion with 'chainkeeper approvals request model.promote "
                  f"{version.id}'")


@app.command("evaluate")
def models_evaluate(ctx: typer.Context, model_version_id: int = typer.Argument(..., metavar="VERSION"),
                    file: Path = typer.Argument(..., metavar="FILE",
                                                help="Labelled rows: CSV/TSV, JSON (Lines) or Parquet (text, label), "
                                                "or CoNLL for a tagger."),
                    format: str | None = typer.Option(None, "--format", help="The file's format (default: from "
                                                      "its extension): csv, tsv, jsonl, json, parquet or conll."),
                    text_column: str = typer.Option("text", help="The column/key of the text."),
                    label_column: str = typer.Option("label", help="The column/key of the gold label."),
                    oos_label: str = typer.Option("oos", "--oos-label", metavar="LABEL",
                                                  help="The out-of-scope label: reported apart when the model "
                                                  "has it."),
                    as_json: bool = JSON_OPTION) -> None:
    """Score model version VERSION on FILE: the metrics of a run's test report, stored with the
    file's SHA-256 (the file itself is not kept); 'models evaluations VERSION' lists them."""
    with open_context(ctx) as c:
        result = registry.evaluate_model_version(c, model_version_id, file, actor=current_actor(ctx, c), format=format,
                                        text_column=text_column, label_column=label_column,
                                        out_of_scope_label=oos_label)
    if as_json:
        print_json(result)
        return
    _print_evaluation(result, oos_label)


@app.command("evaluations")
def models_evaluations(ctx: typer.Context, model_version_id: int = typer.Argument(..., metavar="VERSION"),
                       as_json: bool = JSON_OPTION) -> None:
    """The stored evaluations of model version VERSION on files, newest first."""
    with open_context(ctx) as c:
        found = registry.list_model_evaluations(c, model_version_id, actor=current_actor(ctx, c))
    if as_json:
        print_json(found)
        return
    table = new_table("id", "file", "sha-256", "rows", "headline", "by", "at (UTC)")
    for e in found:
        table.add_row(str(e.id), e.file, e.file_sha256[:12], f"{e.rows:,}", _headline(e.metrics), e.evaluated_by,
                      f"{e.evaluated_at:%Y-%m-%d %H:%M}")
    console.print(table)


def _headline(metrics: dict[str, Any]) -> str:
    """The figure a reader looks for first: entity F1 for a tagger, else accuracy and macro-F1."""
    if "per_type" in metrics:  # a tagger's report (training.entity_metrics)
        return f"entity F1 {metrics['f1']:.4f}"
    parts = [f"{key.replace('_', '-')} {metrics[key]:.4f}" for key in ("accuracy", "macro_f1")
             if isinstance(metrics.get(key), int | float)]
    return ", ".join(parts) or "—"


def _print_evaluation(result: ModelEvaluation, oos_label: str) -> None:
    unit = "sentences" if result.format == "conll" else "rows"
    console.print(f"evaluation {result.id}: [bold]{result.model}[/] (model version {result.model_version_id}) on "
                  f"{result.file} "
                  f"({result.format}): {result.rows:,} {unit}"
                  + (f", {result.skipped:,} unusable rows skipped" if result.skipped else ""))
    print_split_report(result.file, result.metrics, oos_label)


@app.command("list")
def models_list(ctx: typer.Context, name: str | None = typer.Option(None, help="Only versions of this model."),
                stage: str | None = typer.Option(None, help="Only versions in this stage."),
                as_json: bool = JSON_OPTION) -> None:
    """Model versions, newest first."""
    with open_context(ctx) as c:
        found = registry.find_model_versions(c, actor=current_actor(ctx, c), name=name, stage=stage)
    if as_json:
        print_json(found)
        return
    table = new_table("id", "model", "stage", "test macro-F1", "created by", "created (UTC)")
    for v in found:
        f1 = (v.metrics.get("test") or {}).get("macro_f1")
        table.add_row(str(v.id), v.label, str(v.stage), f"{f1:.4f}" if f1 is not None else "—", v.created_by,
                      f"{v.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command("show")
def models_show(ctx: typer.Context, model_version_id: int = typer.Argument(..., metavar="ID"),
                as_json: bool = JSON_OPTION) -> None:
    """A model version: stage, lineage, stage history, latest gate results and export."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        report = registry.show_gates(c, model_version_id, actor=actor)
        v, results = report.version, report.results
        history = registry.show_stage_history(c, v.id, actor=actor)
        latest = serving.latest_export(c, v.id, v.model_artifact)
    if as_json:
        print_json({**asdict(v), "history": history, "gates": results,
                    "export": {**asdict(latest), "best_engine": latest.best_engine()} if latest else None})
        return
    console.print(f"[bold]{v.label}[/] (id {v.id}): {v.stage}; run {v.run_id} by {v.created_by}; "
                  f"artefact {v.model_artifact[:12]}")
    table = new_table("from", "to", "by", "at (UTC)", "comment", title="stage history")
    for t in history:
        table.add_row(t.from_stage or "—", t.to_stage, t.actor, f"{t.at:%Y-%m-%d %H:%M:%S}", t.comment)
    console.print(table)
    _print_results(v.label, results)
    _print_export(latest)


@app.command("export")
def models_export(ctx: typer.Context, model_version_id: int = typer.Argument(..., metavar="VERSION"),
                  int8: bool = typer.Option(False, "--int8", help="Also produce the dynamic-int8 form."),
                  max_delta_points: float | None = typer.Option(
                      None, help="Accuracy points a form may lose against PyTorch (default 0.5)."),
                  follow: bool = typer.Option(False, "--follow", "-f",
                                              help="Follow the job with a progress bar until it ends.")) -> None:
    """Export model version VERSION to ONNX (and int8) as a job run by a worker."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        # The default is the serving stage's, read here so that '--help' does not load the exporter.
        job = serving.request_export(c, model_version_id, actor=actor, quantize=int8,
                                     max_delta_points=serving.DEFAULT_MAX_DELTA_POINTS if max_delta_points is None
                                     else max_delta_points)
        console.print(f"export of model version {model_version_id} queued as job {job.id}; a worker runs it "
                      f"('chainkeeper worker'); follow it with 'chainkeeper jobs logs {job.id} -f'")
        if not follow:
            return
        done = follow_job(c.db, job.id, show_logs=False)
        if done.state != "succeeded":
            raise InvalidInput(f"Export job {done.id} {done.state}: {done.error or done.message}.",
                               hint=f"See 'chainkeeper jobs logs {done.id}'.")
        v = registry.show_model_version(c, model_version_id, actor=actor)
        _print_export(serving.latest_export(c, v.id, v.model_artifact))


@app.command("production-at")
def models_production_at(ctx: typer.Context, name: str,
                         when: datetime = typer.Argument(..., metavar="WHEN",
                                                         formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z",
                                                                  "%Y-%m-%d %H:%M%z"]),
                         as_json: bool = JSON_OPTION) -> None:
    """Which version of model NAME was in production at WHEN (e.g. 2026-05-03T14:00+00:00)."""
    with open_context(ctx) as c:
        history = registry.show_production(c, name, actor=current_actor(ctx, c), when=when)
    if as_json:
        print_json(history)
        return
    version, periods = history.version_at, history.periods
    if version is None:
        console.print(f"no version of {name} was in production at {when.isoformat()}")
    else:
        console.print(f"at {when.isoformat()} {version.label} (id {version.id}) was in production")
    table = new_table("version id", "since (UTC)", "until (UTC)", "promoted by", "ended by",
                      title=f"{name} in production")
    for p in periods:
        table.add_row(str(p.model_version_id), f"{p.since:%Y-%m-%d %H:%M:%S}",
                      f"{p.until:%Y-%m-%d %H:%M:%S}" if p.until else "now", p.promoted_by, p.ended_by or "—")
    console.print(table)


@app.command("card")
def models_card(ctx: typer.Context, model_version_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Print a model version's card (Markdown), generated from the registry."""
    with open_context(ctx) as c:
        text = registry.model_card(c, model_version_id, actor=current_actor(ctx, c))
    console.print(text, markup=False, highlight=False, end="")


@gates_app.command("set")
def gates_set(ctx: typer.Context, name: str,
              min_macro_f1: float | None = typer.Option(None, help="Minimum test macro-F1 (0-1); for a "
                                                       "tagger, its test entity F1."),
              min_slice_macro_f1: float | None = typer.Option(None, help="Minimum macro-F1 of every declared "
                                                             "slice; for a tagger, the F1 of every entity type."),
              max_drop_vs_production: float | None = typer.Option(
                  None, help="Largest allowed drop of test macro-F1 below the production version (0.01 = 1 point)."),
              max_p95_latency_ms: float | None = typer.Option(
                  None, help="p95 latency budget (ms) of the deployment tests on the export; turns them on."),
              latency_batch_size: int | None = typer.Option(None, help="Texts per call the budget holds for (1-512)."),
              max_export_delta_points: float | None = typer.Option(
                  None, help="Accuracy points the served export may lose against PyTorch (default 0.5)."),
              clear: bool = typer.Option(False, "--clear", help="Unset every threshold not given here.")) -> None:
    """Set release thresholds for model NAME (release manager); thresholds not given are kept."""
    values: dict[str, Any] = {"min_macro_f1": min_macro_f1, "min_slice_macro_f1": min_slice_macro_f1,
              "max_drop_vs_production": max_drop_vs_production, "max_p95_latency_ms": max_p95_latency_ms,
              "latency_batch_size": latency_batch_size, "max_export_delta_points": max_export_delta_points}
    given = {k: v for k, v in values.items() if v is not None or clear}
    with open_context(ctx) as c:
        now = registry.set_gate_thresholds(c, name, actor=current_actor(ctx, c), **given)
    _print_thresholds(now)


@gates_app.command("show")
def gates_show(ctx: typer.Context, model_version_id: int = typer.Argument(..., metavar="ID"),
               run: bool = typer.Option(False, "--run", help="Evaluate the gates now (and store the results)."),
               as_json: bool = JSON_OPTION) -> None:
    """A version's thresholds and the results of its latest gate evaluation."""
    with open_context(ctx) as c:
        actor = current_actor(ctx, c)
        results = registry.run_gates(c, model_version_id, actor=actor) if run else None
        report = registry.show_gates(c, model_version_id, actor=actor)
    if as_json:
        print_json({"thresholds": report.thresholds, "results": results if results is not None else report.results})
        return
    _print_thresholds(report.thresholds)
    _print_results(report.version.label, results if results is not None else report.results)


def _print_results(label: str, results: list[GateResult]) -> None:
    if not results:
        console.print(f"{label}: no gate results yet (run 'models gates show ID --run', or ask for promotion)")
        return
    table = new_table("gate", "passed", "value", "threshold", "detail", title=f"{label}")
    for r in results:
        table.add_row(r.gate, "yes" if r.passed else "[red]NO[/]", "—" if r.value is None else f"{r.value:.4f}",
                      "—" if r.threshold is None else f"{r.threshold:.4f}", r.detail)
    console.print(table)


def _print_export(result: ExportResult | None) -> None:
    if result is None:
        console.print("not exported yet: served by PyTorch ('chainkeeper models export ID')")
        return
    table = new_table("form", "accuracy", "delta (points)", "p50 ms", "size", "passed",
                  title=f"export {result.manifest[:12]} by {result.created_by}: PyTorch accuracy "
                  f"{result.torch_accuracy:.4f} on {result.evaluated_rows:,} test rows, gate "
                  f"{result.max_delta_points:g} points; serves {result.best_engine()}")
    for f in result.forms:
        table.add_row(f.engine, f"{f.accuracy:.4f}", f"{f.delta_points:+.3f}", f"{f.latency_ms_p50:.2f}",
                      f"{f.size_bytes / 1e6:.1f} MB", "yes" if f.passed else "[red]NO[/]")
    console.print(table)


def _print_thresholds(t: GateThresholds) -> None:
    def show(value: float | None) -> str:
        return "not set" if value is None else f"{value:g}"

    deploy = (f"deployment tests: p95 ≤ {show(t.max_p95_latency_ms)} ms at batch {t.latency_batch_size or 1}, "
              f"export delta ≤ {show(t.max_export_delta_points)} points" if t.deployment_tests
              else "deployment tests off (set --max-p95-latency-ms)")
    console.print(f"gates of {t.name}: min macro-F1 {show(t.min_macro_f1)}, min slice macro-F1 "
                  f"{show(t.min_slice_macro_f1)}, max drop vs production {show(t.max_drop_vs_production)}; {deploy}")
