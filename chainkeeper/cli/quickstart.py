"""``chainkeeper quickstart``: the whole chain once, for real, on the sample or your CSV.

Each step is a call of the same service functions the API and web UI use: import →
clean → dataset version → annotate a slice (two annotators, an overlap, one adjudicated
conflict, agreement figures, a labelled version) → fine-tune (as a job, run by a worker)
→ register → promote → deploy → serve over HTTP on loopback → predict → monitor
(feedback, live accuracy, a drift check, an alert rule). Nothing here is a script of
its own.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

# The stages as package modules, their names reached when a step runs: '--help' loads none
# of them (each entry point is lazy). 'data' is the --data folder here, hence data_stage.
from chainkeeper import annotation, chain, monitoring, registry, serving, training
from chainkeeper import data as data_stage
from chainkeeper.apps.customer_service.sample import generate_sample
from chainkeeper.cli.quickstart_ner import check_conll, locate_conll, run_ner_quickstart
from chainkeeper.cli.quickstart_support import run_support_quickstart
from chainkeeper.cli.state import console, print_first_start, settings_of
from chainkeeper.cli.walkthrough import (
    Cast,
    deploy,
    ensure_cast,
    freeze,
    handoff,
    number,
    print_sources,
    release,
    serve,
    start_clock,
    step,
    summarise,
    train,
)
from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.governance.bootstrap import initialise

if TYPE_CHECKING:
    from chainkeeper.data import DatasetVersion

# The annotation demonstration: a slice of the train split, a share of it labelled twice.
ANNOTATION_ROWS = 40
ANNOTATION_OVERLAP = 0.25
# Live accuracy below this over the last hour opens an alert (and a ticket).
ALERT_ACCURACY = 0.5
# Epochs on the built-in sample unless told: Chinese reaches English's accuracy within ~2
# points at 2 epochs and falls ~6 short at 1 (benchmarks/chinese_parity.py, docs/training.md).
SAMPLE_EPOCHS = 2
# A drift check reads at most this many of the latest served texts.
DRIFT_WINDOW = 500
PROBE_TEXTS = [
    "My card still hasn't arrived, it's been two weeks.",
    "I think someone stole my card, please block it",
    "How do I change my PIN?",
    "我的卡丢了，请帮我冻结",
    "Why did my transfer fail?",
]


def _locate_data(data: Path | None, ctx: Context) -> tuple[Path, Path | None, str]:
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


def _check_csv(path: Path) -> None:
    """Parse a file the way import will, storing nothing: bad input fails before any change."""
    text, _ = data_stage.decode_csv_bytes(path.read_bytes(), name=str(path))
    data_stage.parse_csv_text(text, name=str(path), text_column="text", label_column="label")


def run_quickstart(ctx: Context, *, data: Path | None, train_overrides: dict[str, Any], limit: int | None,
                   cast: Cast, name: str = "quickstart") -> dict[str, Any]:
    """Run the chain end to end as the cast, and return what was measured (also printed)."""
    start_clock()
    config = training.parse_train_config(train_overrides)  # fail on a bad flag before any work
    train_csv, test_csv, origin = _locate_data(data, ctx)

    # 1. collect (data_steward)
    sources = [data_stage.import_csv(ctx, train_csv, actor=cast.steward, limit=limit)]
    if test_csv is not None:
        sources.append(data_stage.import_csv(ctx, test_csv, actor=cast.steward, split="test", limit=limit))
    rows = sum(s.rows_accepted for s in sources)
    step(1, "collect", cast.steward, f"imported {rows:,} rows from {origin}")
    print_sources(sources)

    # 2. clean and freeze (data_steward)
    version = freeze(ctx, name, sources, cast, unit="rows")

    # 3. annotate a slice (data_steward, two annotators), 4. release through the gate (a second steward)
    labelled = _annotate(ctx, version, cast, name)
    version = release(ctx, version, cast, comment="labels and splits reviewed", labels="labels")

    # 5. train as a job run by a local worker (ml_engineer)
    run = train(ctx, version, config, cast, what="fine-tune")

    # 6. register (ml_engineer); promotion approved by a release_manager, never the author
    model = registry.register_model_version(ctx, run_id=run.id, name=name, actor=cast.engineer)
    test_metrics = run.metrics.get("test") or {}
    step(6, "release model", cast.engineer, f"model {model.name} v{model.version}: accuracy "
          f"{test_metrics.get('accuracy', 0):.3f}, macro-F1 {test_metrics.get('macro_f1', 0):.3f} on the test split")
    if test_metrics and len(version.labels) <= 20:
        console.print(training.format_report(test_metrics), soft_wrap=True)
    handoff(ctx, "model.promote", model.id, cast.engineer, cast.release_manager, "metrics reviewed")
    model = registry.get_model_version(ctx.db, model.id)

    # 7. deploy: asked by one release_manager, approved by another
    deployment = deploy(ctx, model, cast, name)

    # 8-9. serve over HTTP on loopback; the operator sends traffic
    results = serve(ctx, deployment, version, cast, _probe)
    monitored = _monitor(ctx, deployment.name, cast, results)

    summarise(ctx, cast, results, monitored, title="quickstart done", headline=[
        f"accuracy: {results['accuracy']:.3f}  (served model, {results['scored']:,} test texts over HTTP)",
        *([f"per language: {_per_language(results['by_language'])}"] if len(results["by_language"]) > 1 else [])],
        live=f"live accuracy from feedback: {number(monitored['live_accuracy'])}",
        footer=[f"Next: run 'chainkeeper up' and open http://{ctx.settings.host}:{ctx.settings.port}/"])
    console.print(f"accuracy: {results['accuracy']:.3f}")
    return {"dataset_version": version.id, "labelled_version": labelled, "run": run.id, "model_version": model.id,
            "deployment": deployment.name, **results, **monitored}


def _annotate(ctx: Context, version: DatasetVersion, cast: Cast, name: str) -> int:
    """Step 3: a slice of the train split labelled by two annotators, adjudicated and exported.

    The annotators answer from their own queues with the dataset's own labels as the
    oracle, except one planted disagreement on an overlap item, which the steward decides.

    Returns:
        The id of the labelled dataset version.
    """
    schema = annotation.define_schema(ctx.db, name=f"{name}-intents", kind="single", labels=list(version.labels),
                                      actor=cast.steward, guidelines="Pick the customer's intent.")
    project = annotation.create_project(ctx, name=f"{name}-{version.id}", dataset_version_id=version.id,
                                        schema_id=schema.id, actor=cast.steward,
                                        row_filter={"split": "train", "limit": ANNOTATION_ROWS},
                                        overlap_k=2, overlap_fraction=ANNOTATION_OVERLAP)
    annotators = (cast.annotator_a, cast.annotator_b)
    annotation.assign_batches(ctx, project.id, annotators=[a.name for a in annotators], actor=cast.steward)
    queues = {a.name: annotation.annotator_queue(ctx, project.id, a) for a in annotators}
    overlap = sum(t.overlap for t in queues[cast.annotator_a.name])
    items = sum(len(q) for q in queues.values()) - overlap
    step(3, "annotate", cast.steward, f"project {project.name} (id {project.id}): {items} train rows of "
          f"v{version.version}, {overlap} of them labelled by both annotators")
    columns = data_stage.read_dataset_rows(ctx, version.id).select(["row_id", "label"]).to_pydict()
    gold = dict(zip(columns["row_id"], columns["label"], strict=True))
    labels = list(version.labels)
    planted = None
    for annotator in annotators:
        for task in queues[annotator.name]:
            answer = gold[task.row_id]
            if annotator is cast.annotator_b and task.overlap and planted is None and len(labels) > 1:
                answer = labels[(labels.index(answer) + 1) % len(labels)]
                planted = (task.row_id, gold[task.row_id], answer)
            annotation.save_annotation(ctx, project.id, task.item_id, annotator, expected_version=0,
                                       value={"label": answer})
        console.print(f"      {annotator.name} (annotator) labelled the {len(queues[annotator.name])} items of "
                      "their own queue, with the dataset's labels as the oracle")
    if planted is not None:
        console.print(f"      planted disagreement: row {planted[0]}, {cast.annotator_a.name} said {planted[1]}, "
                      f"{cast.annotator_b.name} said {planted[2]}")
    for dispute in annotation.adjudication_queue(ctx, project.id, cast.steward):
        decision = annotation.adjudicate_item(ctx, project.id, dispute.item_id, cast.steward,
                                              expected_version=dispute.version,
                                              value={"label": gold[dispute.row_id]}, note="the dataset's label")
        console.print(f"      adjudicated row {dispute.row_id}: {decision.value['label']} "
                      f"(decided by {decision.decided_by})")
    agreement = annotation.project_figures(ctx, project.id, cast.steward)["agreement"] or {}
    console.print(f"      agreement on {agreement.get('overlap_items', 0)} overlap items: Cohen's kappa "
                  f"{number(agreement.get('cohen_kappa_mean'))}, Krippendorff's alpha "
                  f"{number(agreement.get('krippendorff_alpha'))}, percent agreement "
                  f"{number(agreement.get('percent_agreement'))}")
    exported = annotation.export_project(ctx, project.id, cast.steward, name=f"{name}-labelled")
    console.print(f"      exported labelled dataset {exported.name} v{exported.version} (id {exported.id}, "
                  f"{exported.state}): {exported.stats['annotation']['exported_rows']} rows with their annotators; "
                  f"training stays on {version.name} v{version.version}")
    return exported.id


def _monitor(ctx: Context, deployment: str, cast: Cast, results: dict[str, Any]) -> dict[str, Any]:
    """Step 9: feedback on the served test texts, live vs offline accuracy, a drift check, an alert rule."""
    pairs = results["feedback"]
    for start in range(0, len(pairs), monitoring.MAX_FEEDBACK_ITEMS):
        monitoring.submit_feedback(ctx, pairs[start:start + monitoring.MAX_FEEDBACK_ITEMS], actor=cast.operator,
                                   deployment=deployment)
    dep = serving.get_deployment_by_name(ctx.db, deployment)
    quality = monitoring.live_quality(ctx, deployment, actor=cast.operator)
    live = next((w for w in quality.overall if w.model_version_id == dep.model_version_id), None)
    offline = quality.offline[dep.model_version_id].get("accuracy")
    live_accuracy = live.accuracy if live is not None else None
    console.print(f"      feedback: {len(pairs):,} true labels from the test split attached to their request ids; "
                  f"live accuracy {number(live_accuracy)} on {live.labelled if live else 0:,} labelled requests, "
                  f"offline test accuracy {number(offline)}")
    try:
        drift = monitoring.check_drift(ctx, deployment, actor=cast.operator, last=DRIFT_WINDOW)
    except InvalidInput as too_few:  # a small --limit leaves fewer texts than a check needs
        drift = []
        console.print(f"      drift check skipped: {too_few.message}")
    else:
        console.print(f"      drift check of the last {drift[0].window_size} served texts against "
                      f"{drift[0].reference}: {sum(r.drifted for r in drift)} of {len(drift)} checks fired")
    for r in drift:
        threshold = "inf" if r.threshold >= monitoring.THRESHOLD_CAP else f"{r.threshold:.4f}"
        console.print(f"        {r.check:<14} statistic {r.statistic:>8.4f}  threshold {threshold:>8}  "
                      f"{'DRIFTED' if r.drifted else 'ok'}")
    rule_name = f"{deployment}-live-accuracy"
    rule = next((r for r in monitoring.list_rules(ctx.db) if r.name == rule_name), None) or monitoring.create_rule(
        ctx, name=rule_name, metric="live_accuracy", comparator="<", threshold=ALERT_ACCURACY, window_s=3600,
        deployment=deployment, actor=cast.operator)
    evaluation = monitoring.evaluate_rules(ctx, rule_ids=[rule.id])
    firing = monitoring.list_alerts(ctx.db, state="firing", deployment_id=dep.id)
    if firing:
        verdict = f"alert {firing[0].id} firing" + (f", ticket {evaluation.tickets[0]} opened for the operator"
                                                     if evaluation.tickets else "")
    elif live_accuracy is None:
        verdict = "no alert (no feedback yet to compute live accuracy)"
    else:
        verdict = f"no alert (live accuracy {live_accuracy:.3f} on in-distribution traffic)"
    console.print(f"      alert rule {rule.id} '{rule.name}': live_accuracy < {ALERT_ACCURACY} over 1h, "
                  f"evaluated: {verdict}")
    return {"live_accuracy": live_accuracy, "feedback_count": len(pairs), "drift_checks": len(drift),
            "drifted": [r.check for r in drift if r.drifted], "alert_rule": rule.id, "alerts_fired": evaluation.fired}


def _per_language(by_language: dict[str, tuple[float, int]]) -> str:
    """"en 0.987 (90 texts), zh 0.967 (60 texts)"."""
    return ", ".join(f"{lang} {accuracy:.3f} ({count:,} texts)" for lang, (accuracy, count) in by_language.items())


def _probe(url: str, ctx: Context, version_id: int, token: str) -> dict[str, Any]:
    import httpx  # the HTTP client loads when the probe runs, not with the command's help

    latencies: list[float] = []
    request_ids: list[str] = []
    table = Table("text", "label", "score", "ms", "request id")
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        # The first request loads and warms the model; time it apart from steady latency.
        start = time.perf_counter()
        client.post(url, json={"text": "hello"}).raise_for_status()
        console.print(f"      first request (loads the model): {(time.perf_counter() - start) * 1000:.0f} ms")
        for text in PROBE_TEXTS:
            start = time.perf_counter()
            answer = client.post(url, json={"text": text})
            latencies.append((time.perf_counter() - start) * 1000)
            answer.raise_for_status()
            pred = answer.json()["predictions"][0]
            request_ids.append(pred["request_id"])
            table.add_row(text, pred["label"], f"{pred['score']:.2f}", f"{latencies[-1]:.1f}", pred["request_id"][:8])
        console.print(table)
        # The served model's accuracy on the held-out test split, in batches of 64 texts, in a
        # seeded random order as live traffic comes (a file sorted by label would otherwise
        # make every window of it look like label drift).
        test = data_stage.read_dataset_rows(ctx, version_id, "test").to_pylist()
        random.Random(0).shuffle(test)
        texts, gold = [r["text"] for r in test], [r["label"] for r in test]
        hits: list[bool] = []
        feedback: list[tuple[str, str]] = []
        for start_i in range(0, len(texts), 64):
            answer = client.post(url, json={"texts": texts[start_i:start_i + 64]})
            answer.raise_for_status()
            served = answer.json()["predictions"]
            batch_gold = gold[start_i:start_i + 64]
            hits += [p["label"] == g for p, g in zip(served, batch_gold, strict=True)]
            feedback += [(p["request_id"], g) for p, g in zip(served, batch_gold, strict=True)]
    ordered = sorted(latencies)
    # Served accuracy per language of the text (the sample is English and Chinese).
    by_language: dict[str, list[bool]] = {}
    for text, hit in zip(texts, hits, strict=True):
        by_language.setdefault(data_stage.text_language(text), []).append(hit)
    return {
        "first_request_id": request_ids[0],
        "accuracy": sum(hits) / len(texts) if texts else 0.0,
        "by_language": {lang: (sum(h) / len(h), len(h)) for lang, h in sorted(by_language.items())},
        "scored": len(texts),
        "feedback": feedback,
        "requests": 1 + len(PROBE_TEXTS) + -(-len(texts) // 64),
        "predictions": 1 + len(PROBE_TEXTS) + len(texts),
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def quickstart(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", help="Folder with train.csv (and test.csv), columns text,label; "
                                     "for --task ner, CoNLL train.txt (dev.txt, test.txt). Default: the built-in "
                                     "sample."),
    task: str = typer.Option("classification", "--task", help="classification (texts and labels) or ner (a token "
                             "tagger on CoNLL files)."),
    epochs: float | None = typer.Option(None, help="Training epochs (default 1; 2 on the built-in sample)."),
    limit: int | None = typer.Option(None, min=10, help="Use at most this many rows of each file (a random sample)."),
    learning_rate: float | None = typer.Option(None, "--learning-rate", "--lr", help="Peak learning rate."),
    batch_size: int | None = typer.Option(None, help="Training batch size."),
    max_steps: int | None = typer.Option(None, help="Stop training after this many steps."),
    application: str | None = typer.Option(None, "--app", help="Then run an application on the deployed model: "
                                           "support (the customer-service assistant, on the sample's knowledge "
                                           "base)."),
) -> None:
    """Run the whole chain once on the built-in sample (or --data) and serve the model."""
    if task not in ("classification", "ner"):
        raise InvalidInput(f"Unknown --task {task!r}.", hint="Use --task classification (the default) or --task ner.")
    if application not in (None, "support"):
        raise InvalidInput(f"Unknown --app {application!r}.", hint="Use --app support (the customer-service "
                           "assistant), or leave --app out.")
    if application == "support" and (task != "classification" or data is not None):
        raise InvalidInput("--app support runs on the built-in sample's intent classifier: its knowledge base "
                           "answers the sample's intents.",
                           hint="Leave out --data and --task; to build an assistant on your own data, see "
                           "'chainkeeper apps support --help'.")
    settings = settings_of(ctx)
    print_first_start(initialise(settings))
    overrides = {k: v for k, v in {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
                                   "max_steps": max_steps}.items() if v is not None}
    if data is None and task == "classification" and epochs is None and max_steps is None:
        # The sample is 40 % Chinese: the characters the base model lacks get new embeddings
        # (training.vocabulary), which need ~40 steps to learn; one epoch is 19.
        overrides["epochs"] = SAMPLE_EPOCHS
    context = chain.open_context(settings)
    try:
        training.parse_train_config(overrides)
        if task == "ner":
            for conll in locate_conll(data).values():
                check_conll(conll)
            run_ner_quickstart(context, data=data, train_overrides=overrides, limit=limit, cast=ensure_cast(context))
            return
        train_csv, test_csv, _ = _locate_data(data, context)
        for path in (train_csv, test_csv):
            if path is not None:
                _check_csv(path)
        cast = ensure_cast(context)
        results = run_quickstart(context, data=data, train_overrides=overrides, limit=limit, cast=cast)
        if application == "support":
            run_support_quickstart(context, cast=cast, deployment=results["deployment"])
    finally:
        context.close()
