"""Serving throughput and latency: Chainkeeper against the obvious FastAPI + pipeline server.

The same model, MiniLM-L6 fine-tuned on 2,000 BANKING77 rows (trained here with
``chainkeeper.training.loop``, or loaded with ``--model``), is served two ways, each in
its own subprocess on 127.0.0.1 (one at a time, so they never compete):

(a) baseline: a FastAPI app calling a transformers ``pipeline("text-classification")``
    once per request, on an ``AutoModelForSequenceClassification`` folder built from the
    same encoder weights. Its head differs (BERT's CLS pooler + a linear layer carrying
    our head's weights, where ours mean-pools): the labels it answers are not ours, but
    the work per request (tokenise + 6-layer encoder + head) is the same.
(b) Chainkeeper: ``create_app`` + a deployment of the registered version, exported to
    ONNX int8 and served by the runtime with micro-batching, logging every prediction.

Each is loaded by 1, 8 and 32 concurrent clients (httpx, keep-alive, one BANKING77 test
text per request) for ``--seconds`` each; requests/s and p50/p95/p99 latency are printed
with the ratios. The ceiling is raw ONNX Runtime throughput on the same int8 file in
this process (length-grouped batches of 32, no HTTP, no logging); Chainkeeper's fraction
of it is printed too.

    python benchmarks/serve_throughput.py                      # train, then measure
    python benchmarks/serve_throughput.py --model /tmp/ck-b77  # reuse a trained folder
    python benchmarks/serve_throughput.py --seconds 5 --clients 1 8

The load generator runs on the same cores as the server (as a sidecar would); the load
average is printed before and after: other processes slow every number, ratios in the
same run are what to read.
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the Chainkeeper server uses the tests' row helpers

from _common import datasets_dir, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)


# --- preparing the model ----------------------------------------------------------------


def prepare(out: Path, rows: int) -> None:
    """Train our classifier on ``rows`` BANKING77 rows; build the HF-format baseline folder."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from chainkeeper.core.settings import default_base_model
    from chainkeeper.training.config import TrainConfig
    from chainkeeper.training.loop import sample_indices, seed_everything, train_classifier
    from chainkeeper.training.model import ClassifierMeta, TextClassifier

    texts, labels = read_csv(datasets_dir() / "banking77" / "train.csv")
    names = sorted(set(labels))
    keep = sample_indices(len(texts), rows, 13)
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-4, max_length=64)
    seed_everything(config.seed)
    model, tokenizer = TextClassifier.from_base(default_base_model(), ClassifierMeta(labels=names, max_length=64))
    index = {n: i for i, n in enumerate(names)}
    start = time.perf_counter()
    train_classifier(model, tokenizer, [texts[i] for i in keep], [index[labels[i]] for i in keep], config)
    print(f"trained on {len(keep)} rows in {time.perf_counter() - start:.0f} s", flush=True)
    model.save(out / "chainkeeper", tokenizer)

    hf_config = AutoConfig.from_pretrained(out / "chainkeeper", num_labels=len(names),
                                           id2label=dict(enumerate(names)), label2id=index)
    hf = AutoModelForSequenceClassification.from_config(hf_config)
    hf.bert.load_state_dict(model.encoder.state_dict(), strict=False)  # same encoder weights
    with torch.no_grad():
        hf.classifier.weight.copy_(model.head.weight)
        hf.classifier.bias.copy_(model.head.bias)
    hf.save_pretrained(out / "hf")
    tokenizer.save_pretrained(out / "hf")


# --- the two servers (each run as a subprocess of this script) ----------------------------


def serve_baseline(model_dir: Path, port_file: Path) -> None:
    """(a) The obvious server: FastAPI, one pipeline call per request."""
    import torch
    from fastapi import FastAPI
    from transformers import pipeline

    from chainkeeper.api.server import start_server_in_thread

    torch.set_num_threads(os.cpu_count() or 1)
    classify = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), device="cpu")
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:  # sync: FastAPI runs it on its thread pool
        return classify(body["text"])[0]  # type: ignore[no-any-return]

    classify("warm-up")
    server = start_server_in_thread(app, host="127.0.0.1", port=0)
    port_file.write_text(json.dumps({"url": server.url + "/predict", "headers": {}}))
    while True:
        time.sleep(3600)


def serve_chainkeeper(model_dir: Path, home: Path, port_file: Path) -> None:
    """(b) Chainkeeper: register, export to ONNX int8, deploy, serve with create_app."""
    import httpx

    from chainkeeper.api.app import create_app
    from chainkeeper.api.server import start_server_in_thread
    from chainkeeper.core import migrations
    from chainkeeper.core.context import Context
    from chainkeeper.core.db import Database
    from chainkeeper.core.settings import load_settings
    from chainkeeper.governance.bootstrap import seed_roles
    from chainkeeper.governance.permissions import seed_permissions
    from chainkeeper.governance.users import create_user, issue_token
    from chainkeeper.serving.deployments import deploy_model_version
    from chainkeeper.serving.export import export_model_version
    from tests.model_rows import ENGINEER, RELEASER, in_production

    db = Database(f"sqlite:///{home / 'chainkeeper.db'}")
    migrations.upgrade(db)
    seed_roles(db)
    seed_permissions(db)
    db.dispose()
    ctx = Context.open(load_settings({}, home=home))
    version = in_production(ctx, "banking77", model_artifact=ctx.artifacts.put_tree(model_dir))
    texts, labels = read_csv(datasets_dir() / "banking77" / "test.csv")
    pick = random.Random(5).sample(range(len(texts)), 1000)
    export = export_model_version(ctx, version.id, actor=ENGINEER, quantize=True,
                                  evaluation=([texts[i] for i in pick], [labels[i] for i in pick]))
    deploy_model_version(ctx, name="banking", model_version_id=version.id, actor=RELEASER)
    create_user(ctx.db, "bench", roles=["operator"])
    token = issue_token(ctx.db, "bench", name="bench").secret
    server = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        while not client.get("/v1/deployments/banking").json().get("ready"):
            time.sleep(0.2)
    port_file.write_text(json.dumps({"url": server.url + "/v1/deployments/banking/predict", "headers": headers,
                                     "export": {f.engine: {"accuracy": f.accuracy, "delta_points": f.delta_points,
                                                           "latency_ms_p50": f.latency_ms_p50, "passed": f.passed}
                                                for f in export.forms},
                                     "torch_accuracy": export.torch_accuracy, "engine": export.best_engine()}))
    while True:
        time.sleep(3600)


# --- the load ---------------------------------------------------------------------------


async def _load(url: str, headers: dict[str, str], texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def worker(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = await client.post(url, json={"text": rng.choice(texts)})
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)

        begin = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - begin
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else float("nan")

    return {"rps": len(latencies) / elapsed, "p50": pct(50), "p95": pct(95), "p99": pct(99), "n": len(latencies),
            "errors": errors}


def run_server(kind: str, args: list[str], texts: list[str], clients: list[int], seconds: float) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory(prefix=f"ck-serve-{kind}-") as tmp:
        port_file = Path(tmp) / "port.json"
        proc = subprocess.Popen([sys.executable, __file__, kind, *args, "--port-file", str(port_file)])
        try:
            deadline = time.monotonic() + 600
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the {kind} server did not start")
                time.sleep(0.5)
            time.sleep(0.2)
            info = json.loads(port_file.read_text())
            asyncio.run(_load(info["url"], info["headers"], texts, 4, 2))  # warm both sides' connections
            results = {}
            for n in clients:
                results[n] = asyncio.run(_load(info["url"], info["headers"], texts, n, seconds))
                r = results[n]
                print(f"  {kind:18} {n:3} clients: {r['rps']:7.1f} req/s  p50 {r['p50']:7.1f} ms  "
                      f"p95 {r['p95']:7.1f} ms  p99 {r['p99']:7.1f} ms  ({r['n']} ok, {r['errors']} errors)",
                      flush=True)
            if info["url"].endswith("/v1/deployments/banking/predict"):  # the batcher's own counters
                import httpx

                ready = httpx.get(info["url"].removesuffix("/predict"), headers=info["headers"], timeout=30).json()
                info["batching"] = ready.get("batching", {})
                print(f"  micro-batching: {info['batching']}", flush=True)
            return results, info
        finally:
            proc.terminate()
            proc.wait(30)


def ceiling(onnx_path: Path, tokenizer_dir: Path, texts: list[str], seconds: float) -> float:
    """Raw ONNX Runtime texts/s: length-grouped batches of 32, no HTTP, no logging."""
    from transformers import AutoTokenizer

    from chainkeeper.serving.onnx_runtime import make_session, onnx_probabilities, rust_tokenizer

    session = make_session(onnx_path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    rust = rust_tokenizer(tokenizer, 64)
    rng = random.Random(3)
    onnx_probabilities(session, rust, texts[:32])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        onnx_probabilities(session, rust, rng.sample(texts, 32), max_group=32)
        done += 32
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a folder made by an earlier run (skips training)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    print(f"start: {load_average()}", flush=True)
    work = args.model or Path(tempfile.mkdtemp(prefix="ck-b77-"))
    if not (work / "chainkeeper").is_dir():
        prepare(work, args.rows)
    texts, _ = read_csv(datasets_dir() / "banking77" / "test.csv")

    print("(a) baseline: FastAPI + transformers pipeline, one call per request "
          "(same encoder weights; CLS-pooler head, not ours)", flush=True)
    base, _ = run_server("serve-baseline", ["--model", str(work / "hf")], texts, args.clients, args.seconds)
    print("(b) Chainkeeper: create_app + deployment (runtime engine chosen from the export)", flush=True)
    home = Path(tempfile.mkdtemp(prefix="ck-home-"))
    ours, info = run_server("serve-chainkeeper", ["--model", str(work / "chainkeeper"), "--home", str(home)],
                            texts, args.clients, args.seconds)
    print(f"  engine served: {info['engine']}; export on 1,000 test rows: torch accuracy "
          f"{info['torch_accuracy']:.4f}; " + "; ".join(
              f"{k} accuracy {v['accuracy']:.4f} (delta {v['delta_points']:+.2f} pts, passed {v['passed']}, "
              f"batch-1 p50 {v['latency_ms_p50']:.1f} ms)" for k, v in info["export"].items()), flush=True)

    int8 = next((home / "cache" / "onnx").glob("*.onnx"))
    top = ceiling(int8, work / "chainkeeper", texts, min(args.seconds, 10))
    print(f"ceiling: raw ONNX Runtime {info['engine']} batch 32, length-grouped: {top:.1f} texts/s", flush=True)
    print("\n| clients | baseline req/s | baseline p50/p95/p99 ms | Chainkeeper req/s | Chainkeeper p50/p95/p99 ms "
          "| throughput ratio | p99 ratio (ours/base) | share of ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.clients:
        b, o = base[n], ours[n]
        print(f"| {n} | {b['rps']:.1f} | {b['p50']:.0f} / {b['p95']:.0f} / {b['p99']:.0f} | {o['rps']:.1f} | "
              f"{o['p50']:.0f} / {o['p95']:.0f} / {o['p99']:.0f} | {o['rps'] / b['rps']:.2f}x | "
              f"{o['p99'] / b['p99']:.2f} | {o['rps'] / top:.0%} |")
    shutil.rmtree(home, ignore_errors=True)
    print(f"\nend: {load_average()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("serve-baseline", "serve-chainkeeper"):
        sub = argparse.ArgumentParser()
        sub.add_argument("kind")
        sub.add_argument("--model", type=Path, required=True)
        sub.add_argument("--home", type=Path)
        sub.add_argument("--port-file", type=Path, required=True)
        a = sub.parse_args()
        if a.kind == "serve-baseline":
            serve_baseline(a.model, a.port_file)
        else:
            serve_chainkeeper(a.model, a.home, a.port_file)
    else:
        main()
