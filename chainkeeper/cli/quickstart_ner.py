"""``chainkeeper quickstart --task ner``: the chain once for a named-entity tagger, on a
folder of CoNLL files (``train.txt``, and ``dev.txt`` / ``test.txt`` when present, as in
CoNLL-2003).

The same people and hand-offs as the classification quickstart (``cli.quickstart``),
through the same service functions: import the sentences with their declared splits →
clean and freeze → release through the data gate → fine-tune a token tagger (a job, run
by a worker) → register, promoted through the entity-F1 gate → deploy → serve over HTTP,
where each text's answer lists its entities with character offsets → monitor (the test
sentences' true spans as feedback, live entity F1 beside the offline one, a drift check
on the entity-type mix). Span annotation is not part of this run (see docs/annotation.md).
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from chainkeeper import data as data_stage

# The stages as package modules, their names reached when a step runs: '--help' loads none
# of them (each entry point is lazy). 'data' is the --data folder here, hence data_stage.
from chainkeeper import monitoring, registry, serving, training
from chainkeeper.cli.state import console
from chainkeeper.cli.walkthrough import (
    Cast,
    deploy,
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

# The files of a CoNLL folder, by split; the first name found is used.
SPLIT_FILES = {"train": ("train.txt", "train.conll"), "dev": ("dev.txt", "valid.txt", "dev.conll"),
               "test": ("test.txt", "test.conll")}
# Texts per predict request while scoring the test split over HTTP.
BATCH = 32
DRIFT_WINDOW = 500
PROBE_TEXTS = [
    "Deutsche Bank cut its forecast for Germany on Tuesday, Christine Lagarde said in Frankfurt.",
    "HSBC opened a new office in Hong Kong.",
    "Shares of Toyota rose 2 percent in Tokyo after the Bank of Japan kept rates on hold.",
    "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget.",
    "The Reuters report said Goldman Sachs hired three bankers from Morgan Stanley in London.",
]


def locate_conll(data: Path | None) -> dict[str, Path]:
    """The CoNLL files of a folder, by split (``train`` required).

    Raises:
        InvalidInput: no folder given, not a folder, or no training file in it.
    """
    if data is None:
        raise InvalidInput("--task ner needs --data FOLDER with CoNLL files (train.txt, and dev.txt/test.txt).",
                           hint="For example: chainkeeper quickstart --task ner --data ../shared/datasets/conll2003")
    if not Path(data).is_dir():
        raise InvalidInput(f"--data {data} is not a folder.",
                           hint="Pass a folder holding train.txt (and dev.txt, test.txt) in CoNLL columns.")
    found = {split: next((Path(data) / n for n in names if (Path(data) / n).is_file()), None)
             for split, names in SPLIT_FILES.items()}
    if found["train"] is None:
        raise InvalidInput(f"No train.txt (or train.conll) in {data}.",
                           hint="The folder needs train.txt in CoNLL columns: one token per line, its tag last, "
                           "a blank line between sentences.")
    return {split: path for split, path in found.items() if path is not None}


def check_conll(path: Path) -> None:
    """Parse a file the way import will, storing nothing: bad input fails before any change."""
    parsed = data_stage.read_conll(path.read_bytes(), name=path.name)
    if not any(r.quarantine_reason is None for r in parsed.records):
        raise InvalidInput(f"{path} holds no usable sentence.",
                           hint="CoNLL columns: one token per line with its tag last, a blank line between "
                           "sentences.")


def gold_text(tokens: list[str], tags: list[str]) -> tuple[str, list[tuple[str, int, int]]]:
    """A sentence as a caller would send it (tokens joined by spaces) and its true entities
    as ``(type, start, end)`` character spans in that text (pure)."""
    offsets, at = [], 0
    for token in tokens:
        offsets.append((at, at + len(token)))
        at += len(token) + 1
    text = " ".join(tokens)
    entities = serving.decode_entities(text, offsets, tags, [1.0] * len(tags))
    return text, [(e.type, e.start, e.end) for e in entities]


def span_f1(gold: list[list[tuple[str, int, int]]], found: list[list[tuple[str, int, int]]]) -> float:
    """Entity F1 over exact (type, start, end) matches, CoNLL's convention (pure)."""
    tp = sum(len(set(g) & set(f)) for g, f in zip(gold, found, strict=True))
    fp = sum(len(f) for f in found) - tp
    fn = sum(len(g) for g in gold) - tp
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def run_ner_quickstart(ctx: Context, *, data: Path | None, train_overrides: dict[str, Any], limit: int | None,
                       cast: Cast, name: str = "quickstart-ner") -> dict[str, Any]:
    """Run the chain for a tagger as the cast, and return what was measured (also printed)."""
    start_clock()
    config = training.parse_train_config(train_overrides)
    files = locate_conll(data)

    # 1. collect (data_steward): each file with its declared split
    sources = [data_stage.import_file(ctx, path, actor=cast.steward, format="conll", split=split, limit=limit)
               for split, path in files.items()]
    step(1, "collect", cast.steward, f"imported {sum(s.rows_accepted for s in sources):,} sentences from {data}")
    print_sources(sources)

    # 2. clean and freeze; 3. (no span annotation here); 4. release through the data gate
    version = freeze(ctx, name, sources, cast, unit="sentences")
    step(3, "annotate", cast.steward, "skipped for --task ner: the CoNLL files carry their tags (span annotation "
         "of new text: docs/annotation.md)")
    version = release(ctx, version, cast, comment="tags and splits reviewed", labels="tags")

    # 5. train a tagger as a job run by a local worker (ml_engineer)
    run = train(ctx, version, config, cast, what="token tagger on")

    # 6. register; promotion through the entity-F1 gate, approved by a release_manager
    model = registry.register_model_version(ctx, run_id=run.id, name=name, actor=cast.engineer)
    test = run.metrics.get("test") or {}
    step(6, "release model", cast.engineer, f"model {model.name} v{model.version}: entity F1 "
         f"{number(test.get('f1'))} (P {number(test.get('precision'))}, R {number(test.get('recall'))}) on "
         f"{test.get('sentences', 0):,} test sentences")
    if test.get("per_type"):
        table = Table("type", "precision", "recall", "F1", "support")
        for kind, row in sorted(test["per_type"].items()):
            table.add_row(kind, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1-score']:.3f}",
                          f"{int(row['support']):,}")
        console.print(table)
    handoff(ctx, "model.promote", model.id, cast.engineer, cast.release_manager, "entity F1 reviewed")
    model = registry.get_model_version(ctx.db, model.id)

    # 7. deploy: asked by one release_manager, approved by another
    deployment = deploy(ctx, model, cast, name)

    # 8-9. serve over HTTP on loopback; the operator sends traffic
    results = serve(ctx, deployment, version, cast, _probe)
    monitored = _monitor(ctx, deployment.name, cast, results)

    summarise(ctx, cast, results, monitored, title="quickstart (ner) done", headline=[
        f"entity F1: {results['entity_f1']:.3f}  (served model, {results['scored']:,} test sentences over HTTP; "
        f"offline {number(test.get('f1'))})"],
        live=f"live entity F1 from feedback: {number(monitored['live_entity_f1'])}")
    console.print(f"entity F1: {results['entity_f1']:.3f}")
    return {"dataset_version": version.id, "run": run.id, "model_version": model.id, "deployment": deployment.name,
            **results, **monitored}


def _probe(url: str, ctx: Context, version_id: int, token: str) -> dict[str, Any]:
    import httpx  # the HTTP client loads when the probe runs, not with the command's help

    latencies: list[float] = []
    request_ids: list[str] = []
    with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
        start = time.perf_counter()
        client.post(url, json={"text": "hello"}).raise_for_status()
        console.print(f"      first request (loads the model): {(time.perf_counter() - start) * 1000:.0f} ms")
        table = Table("text", "entities (type: text [start:end])", "ms", "request id")
        for text in PROBE_TEXTS:
            start = time.perf_counter()
            answer = client.post(url, json={"text": text})
            latencies.append((time.perf_counter() - start) * 1000)
            answer.raise_for_status()
            pred = answer.json()["predictions"][0]
            request_ids.append(pred["request_id"])
            found = "; ".join(f"{e['type']}: {e['text']} [{e['start']}:{e['end']}]" for e in pred["entities"])
            table.add_row(text, found or "—", f"{latencies[-1]:.1f}", pred["request_id"][:8])
        console.print(table)
        # The served tagger on the held-out test sentences, sent as plain text in a seeded
        # random order; its spans are scored against the true ones, exact offsets and type.
        rows = data_stage.read_dataset_rows(ctx, version_id, "test").select(["tokens", "tags"]).to_pylist()
        random.Random(0).shuffle(rows)
        sentences = [gold_text(r["tokens"], r["tags"]) for r in rows if r["tokens"]]
        gold, found_spans, feedback = [], [], []
        for at in range(0, len(sentences), BATCH):
            batch = sentences[at:at + BATCH]
            answer = client.post(url, json={"texts": [text for text, _ in batch]})
            answer.raise_for_status()
            for (_, spans), pred in zip(batch, answer.json()["predictions"], strict=True):
                gold.append(spans)
                found_spans.append([(e["type"], e["start"], e["end"]) for e in pred["entities"]])
                feedback.append((pred["request_id"], [{"type": t, "start": s, "end": e} for t, s, e in spans]))
    ordered = sorted(latencies)
    return {
        "first_request_id": request_ids[0],
        "entity_f1": span_f1(gold, found_spans) if gold else 0.0,
        "scored": len(gold),
        "feedback": feedback,
        "requests": 1 + len(PROBE_TEXTS) + -(-len(sentences) // BATCH),
        "predictions": 1 + len(PROBE_TEXTS) + len(sentences),
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def _monitor(ctx: Context, deployment: str, cast: Cast, results: dict[str, Any]) -> dict[str, Any]:
    """Step 9: the true spans as feedback, live vs offline entity F1, a drift check on the entity types."""
    pairs = results["feedback"]
    for start in range(0, len(pairs), monitoring.MAX_FEEDBACK_ITEMS):
        monitoring.submit_feedback(ctx, pairs[start:start + monitoring.MAX_FEEDBACK_ITEMS], actor=cast.operator,
                                   deployment=deployment)
    dep = serving.get_deployment_by_name(ctx.db, deployment)
    quality = monitoring.live_quality(ctx, deployment, actor=cast.operator)
    live = next((w for w in quality.overall if w.model_version_id == dep.model_version_id), None)
    live_f1 = live.entity_f1 if live is not None else None
    console.print(f"      feedback: true spans of {len(pairs):,} test sentences attached to their request ids; "
                  f"live entity F1 {number(live_f1)} on {live.labelled if live else 0:,} labelled requests, "
                  f"offline test entity F1 {number(quality.offline[dep.model_version_id].get('entity_f1'))}")
    try:
        drift = monitoring.check_drift(ctx, deployment, actor=cast.operator, last=DRIFT_WINDOW)
    except InvalidInput as too_few:
        drift = []
        console.print(f"      drift check skipped: {too_few.message}")
    else:
        console.print(f"      drift check of the last {drift[0].window_size} served texts against "
                      f"{drift[0].reference}: {sum(r.drifted for r in drift)} of {len(drift)} checks fired")
    for r in drift:
        console.print(f"        {r.check:<18} statistic {r.statistic:>8.4f}  threshold {r.threshold:>8.4f}  "
                      f"{'DRIFTED' if r.drifted else 'ok'}")
    return {"live_entity_f1": live_f1, "feedback_count": len(pairs), "drift_checks": len(drift),
            "drifted": [r.check for r in drift if r.drifted]}
