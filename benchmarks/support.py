"""The support assistant, measured (issue 16): intents, out of scope, retrieval, latency.

1. **Intents and out of scope** on BANKING77, with the protocol of ``support_oos.py`` (its
   functions, the same seed, so the numbers are the same): 10 of the 77 intents drawn with
   seed 13 are held out, the offline MiniLM is fine-tuned through the chain's loop on the
   other 67 (10 % of their training rows kept back as dev), and the held-out intents' test
   texts are out of scope. Printed: in-scope intent accuracy on BANKING77 test, and for the
   ``energy`` and ``msp`` scorers (the two the assistant can use at serving time) AUROC,
   and OOS recall, OOS precision and in-scope accuracy loss at the threshold fitted on dev
   for "at most 1 point of accuracy lost" (the assistant's own rule), plus the same rule
   fitted on the test's in-scope texts (an oracle: the best any threshold does there).
   ``--all-intents`` also trains on all 77 intents and scores all 3,080 test texts.
2. **Retrieval** of the built-in sample's knowledge base (40 articles, EN and 中文) with the
   hybrid index (``apps.support.index.evaluate_knowledge_index``): Recall@1, Recall@5 and
   MRR of the first article of the question's intent, for the sample's test questions in
   English and in Chinese separately, and for BANKING77 test questions of the sample's
   intents that BANKING77 has (a check on questions not written from the sample's templates).
3. **Latency**: a store built like ``tests/support_world.py`` (the sample as a released
   dataset, a classifier deployed as ``support``, the knowledge base released, the assistant
   ``helpdesk`` created and calibrated), served by ``chainkeeper serve --processes N`` on
   127.0.0.1; ``--messages`` messages per level (the sample's test questions, each one a new
   conversation, with an API key of the deployment) are sent by 8 and 32 concurrent
   keep-alive clients to ``POST /v1/apps/helpdesk/messages``, and as the named baseline the
   same texts to ``POST /v1/deployments/support/predict`` with the same key at the same
   concurrency, in the same run. Printed: p50/p99 latency, messages (requests) per second,
   server CPU per request, and the ratios: what the assistant adds to a prediction (the
   sentence embedding, the index search, the decision and the conversation's rows).
   The deployment serves MiniLM-L6 fine-tuned on the sample (``--classifier tiny``: the
   tests' 2-layer encoder), so that the assistant decides as it would in use; the knowledge
   base is embedded with the same MiniLM either way.

    python benchmarks/support.py --model-dir /tmp/oos-model   # train (or reuse) the 67-intent model
    python benchmarks/support.py --limit 1500 --epochs 1      # a smoke run (minutes)
    python benchmarks/support.py --parts retrieval latency    # no BANKING77 training

The load generator (httpx, asyncio, in this process) shares the cores with the server, as
a sidecar would; other processes slow every figure, so the load average is printed with
each, and the ratios measured in the same run are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import REPO, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)
from serve_throughput import process_cpu_s
from support_oos import (
    GOAL_ACCURACY,
    GOAL_LOSS,
    GOAL_RECALL,
    add_protocol_arguments,
    banking77_folder,
    classifier_outputs,
    describe_config,
    evaluate,
    load_oos_data,
    print_table,
    train_config,
    train_or_load,
)

sys.path.insert(0, str(REPO))  # the store is built with the tests' support world

from chainkeeper.apps.support.index import evaluate_knowledge_index  # noqa: E402
from chainkeeper.apps.support.scope import energy_scores, msp_scores  # noqa: E402
from chainkeeper.chain import open_context  # noqa: E402
from chainkeeper.core.settings import default_base_model  # noqa: E402
from chainkeeper.serving.onnx_runtime import default_threads  # noqa: E402
from chainkeeper.training.config import parse_train_config  # noqa: E402
from chainkeeper.training.loop import seed_everything, train_classifier  # noqa: E402
from chainkeeper.training.model import META_FILE, ClassifierMeta, TextClassifier  # noqa: E402
from tests.support_world import (  # noqa: E402
    APP,
    DEPLOYMENT,
    RELEASER,
    STEWARD,
    SupportWorld,
    build_support_world,
    sample_rows,
    train_sample_classifier,
)

PARTS = ("intents", "retrieval", "latency")
SCORERS = {"energy": energy_scores, "msp": msp_scores}
# The sample's classifiers, trained once (seeded) and kept for later runs.
CLASSIFIER_CACHE = Path(tempfile.gettempdir()) / "chainkeeper-bench" / "support-classifier"
# The BANKING77 intent that is a sample intent (8 of the sample's 10; balance_inquiry and
# update_address have no BANKING77 twin): its test questions must find that intent's article.
SAMPLE_INTENT_OF = {"card_arrival": "card_arrival", "lost_or_stolen_card": "lost_card", "change_pin": "change_pin",
                    "failed_transfer": "transfer_failed", "request_refund": "refund_request",
                    "exchange_rate": "exchange_rate", "terminate_account": "close_account",
                    "top_up_failed": "top_up_failed"}


# --- 1. intents and out of scope -----------------------------------------------------------


def measure_intents(args: argparse.Namespace) -> dict[str, Any] | None:
    """The protocol's classifier (trained, or loaded from ``--model-dir``), its in-scope test
    accuracy and the energy / msp rows at the dev-fitted and oracle 1-point thresholds."""
    folder = banking77_folder()
    if folder is None:
        return None
    base = args.base_model or default_base_model()
    config = train_config(args)
    data = load_oos_data(folder, seed=args.seed, dev_fraction=args.dev_fraction, limit=args.limit)
    print(f"\n## 1. Intents and out of scope: BANKING77 from {folder}, base model {base}\n{data.describe()}\n"
          f"{describe_config(config)}\n{load_average()}", flush=True)
    model, tokenizer, how = train_or_load(args.model_dir, base, data.labels, data.train_texts, data.train_ids, config)
    print(f"classifier: {how}", flush=True)
    start = time.perf_counter()
    dev_logits, _ = classifier_outputs(model, tokenizer, data.dev_texts)
    in_logits, _ = classifier_outputs(model, tokenizer, data.in_texts)
    out_logits, _ = classifier_outputs(model, tokenizer, data.out_texts)
    scored = len(data.dev_texts) + len(data.in_texts) + len(data.out_texts)
    print(f"logits of {scored} texts in {time.perf_counter() - start:.0f}s ({load_average()})", flush=True)
    dev_correct = dev_logits.argmax(axis=1) == data.dev_ids
    in_correct = in_logits.argmax(axis=1) == data.in_ids
    rows: list[dict[str, Any]] = []
    for name, scorer in SCORERS.items():
        started = time.perf_counter()
        dev, test_in, test_out = scorer(dev_logits), scorer(in_logits), scorer(out_logits)
        us = (time.perf_counter() - started) / scored * 1e6
        rows += [r for r in evaluate(name, dev, dev_correct, test_in, in_correct, test_out, max_loss=args.max_loss,
                                     score_us=us) if r["rule"] != "reject≤1%"]
    print(f"in-scope accuracy: dev {dev_correct.mean():.2%}, test {in_correct.mean():.2%} "
          f"({len(data.in_texts)} texts, {len(data.labels)} intents)")
    print_table(rows)
    result: dict[str, Any] = {
        "held_out": data.held_out, "train_rows": len(data.train_texts), "epochs": config.epochs,
        "limit": args.limit, "trained": how, "in_scope_texts": len(data.in_texts), "out_texts": len(data.out_texts),
        "dev_accuracy": float(dev_correct.mean()), "in_scope_accuracy": float(in_correct.mean()), "rows": rows}
    if args.all_intents:
        result["all_intents"] = measure_all_intents(args, folder, base)
    return result


def measure_all_intents(args: argparse.Namespace, folder: Path, base: Path) -> dict[str, Any]:
    """The same recipe on all 77 intents and every training row; accuracy on all 3,080 test texts."""
    texts, labels = read_csv(folder / "train.csv")
    test_texts, test_labels = read_csv(folder / "test.csv")
    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    if args.limit and args.limit < len(texts):
        keep = sorted(random.Random(args.seed).sample(range(len(texts)), args.limit))
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    print(f"\n77 intents: {len(texts)} training rows, {len(test_texts)} test texts ({load_average()})", flush=True)
    model, tokenizer, how = train_or_load(args.all_intents_dir, base, names, texts, [index[y] for y in labels],
                                          train_config(args))
    logits, _ = classifier_outputs(model, tokenizer, test_texts)
    accuracy = float(np.mean(logits.argmax(axis=1) == np.array([index[y] for y in test_labels])))
    print(f"classifier: {how}\n77-intent test accuracy: {accuracy:.2%}", flush=True)
    return {"accuracy": accuracy, "train_rows": len(texts), "test_texts": len(test_texts), "trained": how}


# --- the store behind the assistant ----------------------------------------------------------


def tiny_encoder(out: Path) -> Path:
    """A 2-layer random-weight BERT with MiniLM's tokenizer (as the tests' ``tiny_model_dir``)."""
    from transformers import BertConfig, BertModel

    base = default_base_model()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (base / name).is_file():
            shutil.copy(base / name, out / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    return out


def sample_classifier(kind: str, work: Path) -> tuple[Path, str]:
    """The classifier the assistant's deployment serves, trained on the built-in sample's
    601 training rows (its 10 intents, EN and 中文) and kept under ``CLASSIFIER_CACHE`` for
    later runs (training is seeded): ``minilm``, the offline MiniLM fine-tuned for 3 epochs
    (the production-size model: a prediction costs what a real one does), or ``tiny``, the
    tests' 2-layer encoder (``tests/support_world.train_sample_classifier``).

    Returns:
        The classifier's folder and a line saying which it is.
    """
    cache = CLASSIFIER_CACHE / kind
    folder = cache / "model"
    what = {"minilm": "MiniLM-L6 fine-tuned on the sample (3 epochs)",
            "tiny": "the tests' tiny 2-layer encoder fine-tuned on the sample"}[kind]
    if (folder / META_FILE).is_file():
        return folder, f"{what}, kept from an earlier run in {folder}"
    started = time.perf_counter()
    shutil.rmtree(cache, ignore_errors=True)
    if kind == "tiny":
        train_sample_classifier(tiny_encoder(work / "tiny"), cache)
    else:
        train, _ = sample_rows(work / "sample")
        labels = sorted({y for _, y in train})
        config = parse_train_config({"epochs": 3, "learning_rate": 1.5e-4, "schedule": "cosine", "batch_size": 32,
                                     "seed": 13})
        seed_everything(config.seed)
        model, tokenizer = TextClassifier.from_base(default_base_model(),
                                                    ClassifierMeta(labels=labels, max_length=config.max_length))
        train_classifier(model, tokenizer, [t for t, _ in train], [labels.index(y) for _, y in train], config)
        model.eval().save(folder, tokenizer)
    return folder, f"{what}, trained here in {time.perf_counter() - started:.0f}s"


def build_store(work: Path, kind: str) -> tuple[Any, SupportWorld, str]:
    """A fresh store under ``work`` with the assistant of ``tests/support_world.py``, its
    deployment serving ``sample_classifier(kind)``.

    Returns:
        The context, the world and which classifier serves.
    """
    from chainkeeper.core import migrations
    from chainkeeper.core.db import Database
    from chainkeeper.core.settings import load_settings
    from chainkeeper.governance.bootstrap import seed_roles
    from chainkeeper.governance.permissions import seed_permissions

    classifier_dir, which = sample_classifier(kind, work)
    home = work / "home"
    home.mkdir(parents=True)
    db = Database(f"sqlite:///{home / 'chainkeeper.db'}")
    migrations.upgrade(db)
    seed_roles(db)
    seed_permissions(db)
    db.dispose()
    ctx = open_context(load_settings({}, home=home))
    started = time.perf_counter()
    world = build_support_world(ctx, classifier_dir, work)
    print(f"store built in {time.perf_counter() - started:.0f}s: assistant {APP!r} on deployment {DEPLOYMENT!r}, "
          f"{which}; out-of-scope threshold {json.dumps(world.app.scope)}", flush=True)
    return ctx, world, which


# --- 2. retrieval ------------------------------------------------------------------------------


def measure_retrieval(ctx: Any, world: SupportWorld) -> dict[str, dict[str, Any]]:
    """Recall@1/@5 and MRR on the sample's test questions (by language) and on BANKING77's
    test questions of the sample's intents."""
    texts, intents = [t for t, _ in world.test_rows], [y for _, y in world.test_rows]
    started = time.perf_counter()
    found = evaluate_knowledge_index(ctx, world.knowledge_version_id, texts, intents, actor=STEWARD)
    seconds = time.perf_counter() - started
    results = {f"sample {lang.upper()}": found[lang] for lang in ("en", "zh") if lang in found}
    folder = banking77_folder()
    if folder is not None:
        b_texts, b_labels = read_csv(folder / "test.csv")
        picked = [(t, SAMPLE_INTENT_OF[y]) for t, y in zip(b_texts, b_labels, strict=True) if y in SAMPLE_INTENT_OF]
        b77 = evaluate_knowledge_index(ctx, world.knowledge_version_id, [t for t, _ in picked],
                                       [y for _, y in picked], actor=STEWARD)["all"]
        results[f"BANKING77 EN ({len(SAMPLE_INTENT_OF)} sample intents)"] = b77
    print(f"\n## 2. Retrieval: hybrid index (dense MiniLM + character n-gram TF-IDF), {len(texts)} sample test "
          f"questions searched in {seconds:.1f}s ({load_average()})")
    print("| questions | n | Recall@1 | Recall@5 | MRR |\n|---|---|---|---|---|")
    for name, m in results.items():
        print(f"| {name} | {m['questions']} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['mrr']:.3f} |")
    return results


# --- 3. latency ---------------------------------------------------------------------------------


def launch_server(home: Path, processes: int, urls: list[str],
                  headers: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``chainkeeper serve --processes N`` on ``home``'s store, on a free port of 127.0.0.1
    (log level WARNING: no access-log line per request); returns once every URL has answered
    ten times in a row on fresh connections per process (each process warm)."""
    import httpx

    from chainkeeper.api.server import bind_socket

    probe = bind_socket("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    server = subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(home), "serve",
                               "--port", str(port), "--processes", str(processes)],
                              env={**os.environ, "CHAINKEEPER_LOG_LEVEL": "WARNING"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    for path in urls:
        answered = 0
        while answered < 10 * processes:
            if server.poll() is not None or time.monotonic() > deadline:
                server.terminate()
                raise SystemExit(f"chainkeeper serve did not answer {path}")
            try:
                response = httpx.post(base + path, json={"text": "where is my new card?"}, headers=headers, timeout=60)
                ok = response.status_code == 200
                if response.status_code in (404, 405) and path.startswith("/v1/apps"):
                    server.terminate()
                    raise SystemExit(f"{path} answered {response.status_code}: the messages route is not there yet")
            except httpx.TransportError:
                ok = False
            answered = answered + 1 if ok else 0
            if not ok:
                time.sleep(0.3)
    return server, base


async def send(url: str, headers: dict[str, str], texts: list[str], clients: int, total: int,
               seed: int) -> dict[str, Any]:
    """``total`` requests, one text each (drawn with ``seed``), from ``clients`` concurrent
    keep-alive clients, each sending its next as soon as its last is answered.

    Returns:
        per-second rate and p50/p95/p99 (ms) of the answered requests, their count,
        failures (non-200 or transport errors, the first few reasons) and the decisions.
    """
    import httpx

    rng = random.Random(seed)
    bodies = [{"text": rng.choice(texts)} for _ in range(total)]
    latencies: list[float] = []
    reasons: list[str] = []
    decisions: Counter[str] = Counter()
    position = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal position
            while position < total:
                body = bodies[position]
                position += 1
                start = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                except httpx.TransportError as exc:
                    reasons.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    reasons.append(f"{response.status_code} {response.text[:200]}")
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                decisions[str(response.json().get("decision", "-"))] += 1

        begin = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - begin
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else float("nan")

    return {"per_s": len(latencies) / elapsed, "p50": pct(50), "p95": pct(95), "p99": pct(99), "n": len(latencies),
            "errors": len(reasons), "reasons": reasons[:5], "decisions": dict(decisions), "seconds": elapsed}


def measure_latency(ctx: Any, world: SupportWorld, args: argparse.Namespace, which: str) -> dict[str, Any]:
    """Both routes at each concurrency, in turn, against one server."""
    from chainkeeper.serving.keys import create_deployment_key

    key = create_deployment_key(ctx, DEPLOYMENT, name="benchmark", actor=RELEASER, scopes=["predict"])
    home = ctx.settings.home
    ctx.close()
    headers = {"X-API-Key": key.secret}
    routes = {"predict (baseline)": f"/v1/deployments/{DEPLOYMENT}/predict", "messages": f"/v1/apps/{APP}/messages"}
    texts = [t for t, _ in world.test_rows]
    print(f"\n## 3. Latency: chainkeeper serve --processes {args.processes} on 127.0.0.1, {which}; "
          f"{args.messages} requests per route and level ({len(texts)} sample test questions, EN and ZH, "
          f"each message a new conversation); API key of deployment {DEPLOYMENT!r}", flush=True)
    server, base = launch_server(home, args.processes, list(routes.values()), headers)
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in routes}
    try:
        for clients in args.clients:
            for name, path in routes.items():
                cpu_before = process_cpu_s(server.pid)
                r = asyncio.run(send(base + path, headers, texts, clients, args.messages, seed=clients))
                r["cpu_ms"] = (process_cpu_s(server.pid) - cpu_before) * 1000 / max(1, r["n"])
                r["load"] = load_average()
                results[name][clients] = r
                print(f"  {name:18} {clients:3} clients: {r['per_s']:6.1f}/s  p50 {r['p50']:7.1f} ms  "
                      f"p95 {r['p95']:7.1f} ms  p99 {r['p99']:7.1f} ms  ({r['n']} ok, {r['errors']} errors "
                      f"{r['reasons'][:2] if r['errors'] else ''}; server CPU {r['cpu_ms']:.1f} ms/request; "
                      f"decisions {r['decisions']}; {r['load']})", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    print("\n| clients | route | per s | p50 ms | p95 ms | p99 ms | server CPU ms/request | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for clients in args.clients:
        for name in routes:
            r = results[name][clients]
            print(f"| {clients} | {name} | {r['per_s']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} "
                  f"| {r['cpu_ms']:.1f} | {r['errors']} |")
    print("\nwhat the assistant adds to a prediction (messages / predict, same run):")
    print("| clients | p50 ratio | p99 ratio | throughput ratio | CPU ratio |\n|---|---|---|---|---|")
    for clients in args.clients:
        m, p = results["messages"][clients], results["predict (baseline)"][clients]
        print(f"| {clients} | {m['p50'] / p['p50']:.2f}x | {m['p99'] / p['p99']:.2f}x | {m['per_s'] / p['per_s']:.2f}x "
              f"| {m['cpu_ms'] / p['cpu_ms']:.2f}x |")
    return {"classifier": which, "processes": args.processes,
            "routes": {name: {str(c): r for c, r in by.items()} for name, by in results.items()}}


# --- the table ------------------------------------------------------------------------------------


def summary(found: dict[str, Any], clients: list[int]) -> None:
    """One table of the headline figures, with the goals."""
    print(f"\n## Summary ({load_average()})\n\n| measure | value | goal |\n|---|---|---|")
    intents = found.get("intents")
    if intents:
        smoke = "" if not intents["limit"] and intents["epochs"] >= 3 else \
            f" — SMOKE ({intents['train_rows']} rows, {intents['epochs']} epoch(s))"
        met = "met" if intents["in_scope_accuracy"] >= GOAL_ACCURACY else "not met"
        print(f"| intent accuracy, BANKING77 test, 67 in-scope intents ({intents['in_scope_texts']} texts){smoke} "
              f"| {intents['in_scope_accuracy']:.2%} | ≥ {GOAL_ACCURACY:.0%}: {met} |")
        if "all_intents" in intents:
            a = intents["all_intents"]
            print(f"| intent accuracy, BANKING77 test, all 77 intents ({a['test_texts']} texts) | {a['accuracy']:.2%} "
                  "| — |")
        for r in intents["rows"]:
            goal = "—"
            if r["rule"] == "loss≤1pt":
                ok = r["oos_recall"] >= GOAL_RECALL and r["accuracy_loss"] <= GOAL_LOSS + 1e-9
                goal = f"recall ≥ {GOAL_RECALL:.0%} at ≤ 1 pt: {'met' if ok else 'not met'}"
            print(f"| out of scope, {r['scorer']}, threshold {r['rule']} | AUROC {r['auroc']:.3f}; recall "
                  f"{r['oos_recall']:.1%}, precision {r['oos_precision']:.1%}, in-scope accuracy "
                  f"{r['accuracy_with_rejection']:.2%} (loss {100 * r['accuracy_loss']:.2f} pt) | {goal} |")
    for name, m in found.get("retrieval", {}).items():
        print(f"| retrieval, {name} ({m['questions']} questions) | Recall@1 {m['recall@1']:.3f}, Recall@5 "
              f"{m['recall@5']:.3f}, MRR {m['mrr']:.3f} | — |")
    latency = found.get("latency")
    if latency:
        for c in clients:
            m, p = latency["routes"]["messages"][str(c)], latency["routes"]["predict (baseline)"][str(c)]
            print(f"| messages, {c} clients | p50 {m['p50']:.0f} ms, p99 {m['p99']:.0f} ms, {m['per_s']:.1f} "
                  f"messages/s (predict alone: p50 {p['p50']:.0f} ms, p99 {p['p99']:.0f} ms, {p['per_s']:.1f}/s; "
                  f"x{m['p50'] / p['p50']:.2f} p50) | — |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_arguments(parser)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--all-intents", action="store_true",
                        help="also train on all 77 intents and score all 3,080 test texts")
    parser.add_argument("--all-intents-dir", type=Path, default=None,
                        help="save the 77-intent classifier here; reuse it when it is already there")
    parser.add_argument("--classifier", choices=["minilm", "tiny"], default="minilm",
                        help="what the assistant's deployment serves (retrieval and latency): MiniLM or the tests' "
                             "2-layer encoder, fine-tuned on the built-in sample")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--messages", type=int, default=400, help="requests per route and concurrency")
    parser.add_argument("--processes", type=int, default=default_threads(),
                        help="server processes (default: one per core, as docs/serving.md advises)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(f"start: {load_average()}; torch threads {torch.get_num_threads()}; parts {' '.join(args.parts)}",
          flush=True)
    found: dict[str, Any] = {}
    if "intents" in args.parts:
        intents = measure_intents(args)
        if intents is None:
            return 2
        found["intents"] = intents
    if "retrieval" in args.parts or "latency" in args.parts:
        work = Path(tempfile.mkdtemp(prefix="ck-support-bench-"))
        try:
            ctx, world, which = build_store(work, args.classifier)
            if "retrieval" in args.parts:
                found["retrieval"] = measure_retrieval(ctx, world)
            if "latency" in args.parts:
                found["latency"] = measure_latency(ctx, world, args, which)
            else:
                ctx.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    summary(found, args.clients)
    print(f"\nend: {load_average()}")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
