"""``chainkeeper quickstart``: the whole chain once, for real, on the sample or your CSV.

Each step is a call of the same service functions the API and web UI use: import →
clean → dataset version → fine-tune (as a job, run by a worker) → register → promote →
deploy → serve over HTTP on loopback → predict. Nothing here is a script of its own.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.panel import Panel
from rich.table import Table

from chainkeeper.cli.jobs import follow_job
from chainkeeper.cli.state import console, settings_of
from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import get_job
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import SYSTEM, Actor
from chainkeeper.governance.bootstrap import initialise

STEPS = 8
PROBE_TEXTS = [
    "My card still hasn't arrived, it's been two weeks.",
    "I think someone stole my card, please block it",
    "How do I change my PIN?",
    "我的卡丢了，请帮我冻结",
    "Why did my transfer fail?",
]


@dataclass(frozen=True)
class QuickstartActors:
    """Who does each step. The governance stage replaces these with real users."""

    steward: Actor = SYSTEM
    engineer: Actor = SYSTEM
    release_manager: Actor = SYSTEM


def _step(n: int, stage: str, role: str, text: str) -> None:
    console.print(f"[bold cyan][{n}/{STEPS}] {stage}[/] [dim]({role})[/] {text}")


def _locate_data(data: Path | None, ctx: Context) -> tuple[Path, Path | None, str]:
    from chainkeeper.apps.customer_service.sample import generate_sample

    if data is None:
        paths = generate_sample(ctx.settings.home / "sample")
        return paths["train"], paths.get("test"), "built-in customer-service sample (EN/ZH)"
    data = Path(data)
    if not data.is_dir():
        raise InvalidInput(f"--data {data} is not a folder.",
                           hint="Pass a folder holding train.csv (and optionally test.csv) with columns text,label.")
    train = data / "train.csv"
    if not train.is_file():
        raise InvalidInput(f"No train.csv in {data}.",
                           hint="The folder needs train.csv (and optionally test.csv) with columns text,label.")
    test = data / "test.csv"
    return train, test if test.is_file() else None, str(data)


def run_quickstart(ctx: Context, *, data: Path | None, train_overrides: dict[str, Any], limit: int | None,
                   actors: QuickstartActors, name: str = "quickstart") -> dict[str, Any]:
    """Run the chain end to end and return what was measured (also printed)."""
    from chainkeeper.api.app import create_app
    from chainkeeper.api.server import start_server_in_thread
    from chainkeeper.data.ingest import import_csv
    from chainkeeper.data.versions import create_dataset_version, read_dataset_rows, release_dataset_version
    from chainkeeper.registry.versions import register_model_version, transition_stage
    from chainkeeper.serving.deployments import deploy_model_version
    from chainkeeper.training.config import parse_train_config
    from chainkeeper.training.evaluation import format_report
    from chainkeeper.training.runs import get_run, start_training_run

    config = parse_train_config(train_overrides)  # fail on a bad flag before any work
    train_csv, test_csv, origin = _locate_data(data, ctx)

    # 1. collect
    sources = [import_csv(ctx, train_csv, actor=actors.steward, limit=limit)]
    if test_csv is not None:
        sources.append(import_csv(ctx, test_csv, actor=actors.steward, split="test", limit=limit))
    rows = sum(s.rows_accepted for s in sources)
    _step(1, "collect", "data_steward", f"imported {rows:,} rows from {origin}")
    for s in sources:
        console.print(f"      {Path(s.uri).name}: {s.rows_accepted:,} accepted, {s.rows_quarantined} quarantined, "
                      f"sha256 {s.sha256[:12]}")

    # 2-3. clean and freeze
    version = create_dataset_version(ctx, name=name, source_ids=[s.id for s in sources], actor=actors.steward)
    for report in version.recipe:
        console.print(f"      {report['name']:<16} {report['rows_in']:>7,} → {report['rows_out']:>7,} rows"
                      f" ({report['changed']:,} changed)")
    _step(2, "clean", "data_steward", f"{len(version.recipe)} steps: normalise, drop empty, exact de-dup")
    version = release_dataset_version(ctx, version.id, actor=actors.steward)
    per_split = version.stats.get("rows_per_split", {})
    _step(3, "release data", "data_steward",
          f"dataset {version.name} v{version.version} ({version.content_hash[:12]}), {len(version.labels)} labels, "
          + ", ".join(f"{k} {v:,}" for k, v in per_split.items()))

    # 4. train, as a job run by a local worker
    run = start_training_run(ctx, dataset_version_id=version.id, config=config, actor=actors.engineer)
    _step(4, "train", "ml_engineer", f"run {run.id}: fine-tune {Path(run.base_model).name} "
          f"(epochs {config.epochs}, lr {config.learning_rate}, batch {config.batch_size}) as job {run.job_id}")
    worker = Worker(ctx)
    thread = threading.Thread(target=worker.run_one, name="quickstart-worker", daemon=True)
    thread.start()
    assert run.job_id is not None
    job = follow_job(ctx.db, run.job_id, show_logs=False)
    thread.join()
    job = get_job(ctx.db, run.job_id)
    if job.state != "succeeded":
        raise InvalidInput(f"Training job {job.id} {job.state}: {job.error or job.message}.",
                           hint=f"See 'chainkeeper jobs logs {job.id}'.")
    run = get_run(ctx.db, run.id)

    # 5. register with its evaluation
    model = register_model_version(ctx, run_id=run.id, name=name, actor=actors.engineer)
    test_metrics = run.metrics.get("test") or run.metrics.get("dev") or {}
    _step(5, "release model", "ml_engineer",
          f"model {model.name} v{model.version}: accuracy {test_metrics.get('accuracy', 0):.3f}, "
          f"macro-F1 {test_metrics.get('macro_f1', 0):.3f} on the held-out test split")
    if test_metrics:
        console.print(format_report(test_metrics), soft_wrap=True)

    # 6. promote and deploy
    transition_stage(ctx, model.id, "staging", actor=actors.release_manager, comment="quickstart")
    transition_stage(ctx, model.id, "production", actor=actors.release_manager, comment="quickstart")
    deployment = deploy_model_version(ctx, name=name, model_version_id=model.id, actor=actors.release_manager)
    _step(6, "deploy", "release_manager", f"model v{model.version} in production, deployment '{deployment.name}'")

    # 7-8. serve over HTTP on loopback and send requests
    server = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    try:
        url = f"{server.url}/v1/deployments/{deployment.name}/predict"
        _step(7, "serve", "release_manager", f"listening on {server.url}")
        results = _probe(url, ctx, name, version.id, read_dataset_rows)
    finally:
        server.stop()
    _step(8, "monitor", "operator", f"{results['requests']} requests logged with their request ids")
    console.print(Panel.fit(
        f"accuracy: {results['accuracy']:.3f}  (served model, {results['scored']:,} test texts over HTTP)\n"
        f"latency: p50 {results['p50_ms']:.1f} ms, p95 {results['p95_ms']:.1f} ms (one text per request)\n"
        f"Next: run 'chainkeeper up' and open http://{ctx.settings.host}:{ctx.settings.port}/",
        title="quickstart done"))
    console.print(f"accuracy: {results['accuracy']:.3f}")
    return {"dataset_version": version.id, "run": run.id, "model_version": model.id, "deployment": deployment.name,
            **results}


def _probe(url: str, ctx: Context, name: str, version_id: int, read_rows: Any) -> dict[str, Any]:
    latencies: list[float] = []
    table = Table("text", "label", "score", "ms", "request id")
    with httpx.Client(timeout=60) as client:
        for text in PROBE_TEXTS:
            start = time.perf_counter()
            answer = client.post(url, json={"text": text})
            latencies.append((time.perf_counter() - start) * 1000)
            answer.raise_for_status()
            pred = answer.json()["predictions"][0]
            table.add_row(text, pred["label"], f"{pred['score']:.2f}", f"{latencies[-1]:.1f}", pred["request_id"][:8])
        console.print(table)
        # The served model's accuracy on the held-out test split, in batches of 64 texts.
        test = read_rows(ctx, version_id, "test")
        texts, gold = test.column("text").to_pylist(), test.column("label").to_pylist()
        correct = 0
        for start_i in range(0, len(texts), 64):
            answer = client.post(url, json={"texts": texts[start_i:start_i + 64]})
            answer.raise_for_status()
            labels = [p["label"] for p in answer.json()["predictions"]]
            correct += sum(p == g for p, g in zip(labels, gold[start_i:start_i + 64], strict=True))
    ordered = sorted(latencies)
    return {
        "accuracy": correct / len(texts) if texts else 0.0,
        "scored": len(texts),
        "requests": len(PROBE_TEXTS) + -(-len(texts) // 64),
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def quickstart(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", help="Folder with train.csv (and test.csv), columns text,label. "
                                     "Default: the built-in sample."),
    epochs: float | None = typer.Option(None, help="Training epochs (default 1)."),
    limit: int | None = typer.Option(None, min=10, help="Use at most this many rows of each file (a random sample)."),
    learning_rate: float | None = typer.Option(None, "--learning-rate", "--lr", help="Peak learning rate."),
    batch_size: int | None = typer.Option(None, help="Training batch size."),
    max_steps: int | None = typer.Option(None, help="Stop training after this many steps."),
) -> None:
    """Run the whole chain once on the built-in sample (or --data) and serve the model."""
    settings = settings_of(ctx)
    result = initialise(settings)
    if result.admin_token:
        console.print(f"Created user [bold]admin[/]; API token (shown once): [bold green]{result.admin_token}[/]")
    overrides = {k: v for k, v in {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
                                   "max_steps": max_steps}.items() if v is not None}
    context = Context.open(settings)
    try:
        run_quickstart(context, data=data, train_overrides=overrides, limit=limit, actors=QuickstartActors())
    finally:
        context.close()
