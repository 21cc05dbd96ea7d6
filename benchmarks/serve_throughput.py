"""Serving throughput and latency: Chainkeeper against the obvious FastAPI + pipeline server.

The same model, MiniLM-L6 fine-tuned on 2,000 BANKING77 rows (trained here with
``chainkeeper.training.loop``, or loaded with ``--model``), is served two ways, each in
its own subprocess on 127.0.0.1 (one at a time, so they never compete):

(a) baseline: a FastAPI app calling a transformers ``pipeline("text-classification")``
    once per request, on an ``AutoModelForSequenceClassification`` folder built from the
    same encoder weights. Its head differs (BERT's CLS pooler + a linear layer carrying
    our head's weights, where ours mean-pools): the labels it answers are not ours, but
    the work per request (tokenise + 6-layer encoder + head) is the same.
(b) Chainkeeper: ``chainkeeper serve --processes N`` (default one per core) with a
    deployment of the registered version, exported to ONNX int8 and served by the runtime
    with micro-batching, logging every prediction.

Each is loaded by 1, 8 and 32 concurrent clients (wrk when installed, else httpx; keep-alive, one BANKING77 test
text per request) for ``--seconds`` each; requests/s and p50/p95/p99 latency are printed
with the ratios. The ceiling is raw ONNX Runtime throughput on the same int8 file in
this process (no HTTP, no logging), the best of one call at a time on every core and
one single-threaded call per core at once, in length-grouped batches of 16 or 32;
Chainkeeper's fraction of it is printed too.

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

from chainkeeper.chain import open_context  # noqa: E402
from chainkeeper.serving.onnx_runtime import default_threads  # noqa: E402

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
    port_file.write_text(json.dumps({"url": server.url + "/predict", "headers": {}, "pid": os.getpid()}))
    while True:
        time.sleep(3600)


def setup_chainkeeper(model_dir: Path, home: Path, *, evaluate: bool = True, **settings: Any) -> dict[str, Any]:
    """A fresh store in ``home`` with ``model_dir`` registered, exported to ONNX, deployed as
    'banking', and an operator token; returns ctx, version, export and token."""
    from chainkeeper.core import migrations
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
    ctx = open_context(load_settings({}, home=home, **settings))
    version = in_production(ctx, "banking77", model_artifact=ctx.artifacts.put_tree(model_dir))
    texts, labels = read_csv(datasets_dir() / "banking77" / "test.csv")
    pick = random.Random(5).sample(range(len(texts)), 1000 if evaluate else 100)
    export = export_model_version(ctx, version.id, actor=ENGINEER, quantize=True,
                                  evaluation=([texts[i] for i in pick], [labels[i] for i in pick]))
    deploy_model_version(ctx, name="banking", model_version_id=version.id, actor=RELEASER)
    create_user(ctx.db, "bench", roles=["operator"])
    token = issue_token(ctx.db, "bench", name="bench").secret
    return {"ctx": ctx, "version": version, "export": export, "token": token}


def start_chainkeeper(setup: dict[str, Any]) -> tuple[Any, Any, dict[str, str]]:
    """Serve ``setup``'s store on 127.0.0.1 in a thread; wait until 'banking' is warm.

    Returns:
        The running server, the app and the request headers.
    """
    import httpx

    from chainkeeper.api.app import create_app
    from chainkeeper.api.server import start_server_in_thread

    app = create_app(setup["ctx"])
    server = start_server_in_thread(app, host="127.0.0.1", port=0)
    headers = {"Authorization": f"Bearer {setup['token']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        while not client.get("/v1/deployments/banking").json().get("ready"):
            time.sleep(0.2)
    return server, app, headers


def launch_chainkeeper(home: Path, token: str, processes: int) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """``chainkeeper serve --processes N`` on ``home``'s store, on a free port of 127.0.0.1
    (log level WARNING, as the baseline's uvicorn: no access-log line per request; the
    prediction log stays on); returns once every process answers 'banking'.

    Returns:
        The server process, the predict URL and the request headers.
    """
    import httpx

    from chainkeeper.api.server import bind_socket

    probe = bind_socket("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    server = subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(home), "serve",
                               "--port", str(port), "--processes", str(processes)],
                              env={**os.environ, "CHAINKEEPER_LOG_LEVEL": "WARNING"})
    url = f"http://127.0.0.1:{port}/v1/deployments/banking/predict"
    headers = {"Authorization": f"Bearer {token}"}
    answered, deadline = 0, time.monotonic() + 300
    while answered < 10 * processes:  # each process warm: answers on fresh connections
        if server.poll() is not None or time.monotonic() > deadline:
            server.terminate()
            raise SystemExit("chainkeeper serve did not start")
        try:
            ok = httpx.post(url, json={"text": "warm-up"}, headers=headers, timeout=60).status_code == 200
        except httpx.TransportError:
            ok = False
        answered = answered + 1 if ok else 0
        if not ok:
            time.sleep(0.3)
    return server, url, headers


def serve_chainkeeper(model_dir: Path, home: Path, port_file: Path, processes: int) -> None:
    """(b) Chainkeeper: register, export to ONNX int8, deploy, then ``chainkeeper serve
    --processes N`` (``launch_chainkeeper``)."""
    import signal

    setup = setup_chainkeeper(model_dir, home)
    setup["ctx"].close()
    server, url, headers = launch_chainkeeper(home, setup["token"], processes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run_server stops us: stop the server too
    try:
        export = setup["export"]
        port_file.write_text(json.dumps({
            "url": url, "headers": headers, "pid": server.pid, "processes": processes,
            "export": {f.engine: {"accuracy": f.accuracy, "delta_points": f.delta_points,
                                  "latency_ms_p50": f.latency_ms_p50, "passed": f.passed} for f in export.forms},
            "torch_accuracy": export.torch_accuracy, "engine": export.best_engine()}))
        while True:
            time.sleep(3600)
    finally:
        server.terminate()
        server.wait(30)


# --- the load ---------------------------------------------------------------------------


async def _load(url: str, headers: dict[str, str], texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` keep-alive clients posting one text each, back to back, for ``seconds``.

    Returns:
        rps, p50/p95/p99 (ms) of the answered requests, their count, failures (any
        non-200 answer or transport error, with the first few reasons) and how many
        answers each model version gave.
    """
    import httpx

    latencies: list[float] = []
    errors = 0
    reasons: list[str] = []
    versions: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def worker(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            n = 0
            while time.perf_counter() < stop_at:
                n += 1
                start = time.perf_counter()
                try:
                    response = await client.post(url, json={"text": rng.choice(texts)},
                                                 headers={"X-Caller-Key": f"c{seed}-{n}"})
                except httpx.TransportError as exc:  # e.g. a keep-alive connection the server closed meanwhile
                    errors += 1
                    reasons.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    errors += 1
                    reasons.append(f"{response.status_code} {response.text[:200]}")
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                body = response.json()
                version = str(body["model_version"]["id"]) if "model_version" in body else "?"
                versions[version] = versions.get(version, 0) + 1

        begin = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - begin
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else float("nan")

    return {"rps": len(latencies) / elapsed, "p50": pct(50), "p95": pct(95), "p99": pct(99), "n": len(latencies),
            "errors": errors, "reasons": reasons[:5], "versions": versions}


WRK_SCRIPT = r"""
-- One random BANKING77 text per request (bodies prepared as JSON, one per line).
local bodies = {}
for line in io.lines(os.getenv("CK_BODIES")) do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("CK_AUTH")
request = function()
  return wrk.format(nil, nil, nil, bodies[math.random(#bodies)])
end
local think = tonumber(os.getenv("CK_THINK_MS") or "0")
if think > 0 then
  delay = function() return think end  -- each connection pauses between its requests
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'CKJSON {"requests": %d, "duration_us": %d, "status_errors": %d, "transport_errors": %d, ' ..
    '"p50": %.3f, "p95": %.3f, "p99": %.3f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def load_with_wrk(url: str, headers: dict[str, str], texts: list[str], clients: int, seconds: float, *,
                  think_ms: float = 0.0) -> dict[str, Any]:
    """The same load from ``wrk`` (C, one thread, keep-alive): a Python client spends about
    as much CPU per request as the server under test, on the same two cores; wrk spends a
    small fraction of it, so the server gets the machine.

    ``think_ms`` > 0 makes each connection pause that long between its requests: a
    steady offered load below saturation instead of back-to-back requests.

    Returns:
        The keys of ``_load`` (``versions`` empty: wrk does not read the bodies).
    """
    with tempfile.TemporaryDirectory(prefix="ck-wrk-") as tmp:
        bodies, script = Path(tmp) / "bodies.jsonl", Path(tmp) / "load.lua"
        bodies.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n", encoding="utf-8")
        script.write_text(WRK_SCRIPT, encoding="utf-8")
        env = {**os.environ, "CK_BODIES": str(bodies), "CK_AUTH": headers.get("Authorization", ""),
               "CK_THINK_MS": f"{think_ms:g}"}
        out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "60s", "-s", str(script),
                              url], capture_output=True, text=True, env=env, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("CKJSON "))
    r = json.loads(line.removeprefix("CKJSON "))
    errors = r["status_errors"] + r["transport_errors"]
    ok = r["requests"] - r["status_errors"]
    return {"rps": ok / (r["duration_us"] / 1e6), "p50": r["p50"], "p95": r["p95"], "p99": r["p99"], "n": ok,
            "errors": errors, "reasons": [] if not errors else [out[-500:]], "versions": {}}


def load_in_subprocess(url: str, headers: dict[str, str], clients: int, seconds: float) -> subprocess.Popen[str]:
    """Start the load generator as its own process (its own interpreter and GIL); read its
    result with ``json.loads(proc.communicate()[0])``."""
    return subprocess.Popen([sys.executable, __file__, "load", "--url", url, "--headers", json.dumps(headers),
                             "--clients", str(clients), "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its live children have used: the
    server's cost, whatever the load (a multi-process server counts whole)."""
    total, parents = 0.0, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            parents[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    for candidate, (_, cpu) in parents.items():
        ancestor = candidate
        while ancestor in parents and ancestor != pid:
            ancestor = parents[ancestor][0]
        if ancestor == pid:
            total += cpu
    return total


def run_server(kind: str, args: list[str], texts: list[str], clients: list[int], seconds: float,
               generator: str = "wrk") -> tuple[dict, dict]:
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
                cpu_before = process_cpu_s(info["pid"])
                if generator == "wrk":
                    results[n] = load_with_wrk(info["url"], info["headers"], texts, n, seconds)
                else:
                    results[n] = asyncio.run(_load(info["url"], info["headers"], texts, n, seconds))
                r = results[n]
                r["cpu_ms"] = (process_cpu_s(info["pid"]) - cpu_before) * 1000 / max(1, r["n"])
                print(f"  {kind:18} {n:3} clients: {r['rps']:7.1f} req/s  p50 {r['p50']:7.1f} ms  "
                      f"p95 {r['p95']:7.1f} ms  p99 {r['p99']:7.1f} ms  ({r['n']} ok, {r['errors']} errors; "
                      f"server CPU {r['cpu_ms']:.1f} ms/request; {load_average()})", flush=True)
            if info["url"].endswith("/v1/deployments/banking/predict"):  # the batcher's own counters
                import httpx

                ready = httpx.get(info["url"].removesuffix("/predict"), headers=info["headers"], timeout=30).json()
                info["batching"] = ready.get("batching", {})
                print(f"  micro-batching: {info['batching']}", flush=True)
            return results, info
        finally:
            proc.terminate()
            proc.wait(30)


def ceiling(onnx_path: Path, tokenizer_dir: Path, texts: list[str], seconds: float) -> tuple[float, str]:
    """Raw ONNX Runtime texts/s, no HTTP, no logging: the best of a few ways to run the file.

    Tried: one session call at a time on every core, in batches of 32; and one
    single-threaded call per core at once, in batches of 16 and of 32 (length-grouped
    within a batch). Returns the best throughput and how it was reached.
    """
    import threading

    from transformers import AutoTokenizer

    from chainkeeper.serving.onnx_runtime import default_threads, make_session, onnx_probabilities, rust_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    cores = default_threads()

    def measure(threads: int, workers: int, batch: int) -> float:
        session = make_session(onnx_path, threads=threads)
        rust = rust_tokenizer(tokenizer, 64)
        onnx_probabilities(session, rust, texts[:batch])
        done = [0] * workers
        stop = time.perf_counter() + seconds

        def work(i: int) -> None:
            rng = random.Random(3 + i)
            while time.perf_counter() < stop:
                onnx_probabilities(session, rust, rng.sample(texts, batch), max_group=batch)
                done[i] += batch

        threads_ = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        start = time.perf_counter()
        for t in threads_:
            t.start()
        for t in threads_:
            t.join()
        return sum(done) / (time.perf_counter() - start)

    results = {}
    for threads, workers, batch in ((cores, 1, 32), (1, cores, 16), (1, cores, 32)):
        how = f"{workers} call(s) at once x {threads} thread(s), batches of {batch}"
        results[how] = measure(threads, workers, batch)
        print(f"  raw ONNX Runtime, {how}: {results[how]:.1f} texts/s", flush=True)
    best = max(results, key=results.__getitem__)
    return results[best], best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a folder made by an earlier run (skips training)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--processes", type=int, default=default_threads(),
                        help="Chainkeeper's server processes (default: one per core, as docs/serving.md advises)")
    parser.add_argument("--load", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx",
                        help="load generator: wrk (C; `apt-get install wrk`, the default when present) or "
                             "httpx (Python, in this process: it takes CPU the servers would otherwise get)")
    args = parser.parse_args()

    print(f"start: {load_average()}; load generator: {args.load}", flush=True)
    work = args.model or Path(tempfile.mkdtemp(prefix="ck-b77-"))
    if not (work / "chainkeeper").is_dir():
        prepare(work, args.rows)
    texts, _ = read_csv(datasets_dir() / "banking77" / "test.csv")

    print("(a) baseline: FastAPI + transformers pipeline, one call per request "
          "(same encoder weights; CLS-pooler head, not ours)", flush=True)
    base, _ = run_server("serve-baseline", ["--model", str(work / "hf")], texts, args.clients, args.seconds,
                         args.load)
    print(f"(b) Chainkeeper: chainkeeper serve --processes {args.processes}, a deployment of the registered "
          "version (runtime engine chosen from the export)", flush=True)
    home = Path(tempfile.mkdtemp(prefix="ck-home-"))
    ours, info = run_server("serve-chainkeeper", ["--model", str(work / "chainkeeper"), "--home", str(home),
                                                  "--processes", str(args.processes)],
                            texts, args.clients, args.seconds, args.load)
    print(f"  engine served: {info['engine']}; export on 1,000 test rows: torch accuracy "
          f"{info['torch_accuracy']:.4f}; " + "; ".join(
              f"{k} accuracy {v['accuracy']:.4f} (delta {v['delta_points']:+.2f} pts, passed {v['passed']}, "
              f"batch-1 p50 {v['latency_ms_p50']:.1f} ms)" for k, v in info["export"].items()), flush=True)

    int8 = next((home / "cache" / "onnx").glob("*.onnx"))
    top, how = ceiling(int8, work / "chainkeeper", texts, min(args.seconds, 10))
    print(f"ceiling: raw ONNX Runtime {info['engine']}, the best of the above ({how}): {top:.1f} texts/s",
          flush=True)
    print("\n| clients | baseline req/s | baseline p50/p95/p99 ms | Chainkeeper req/s | Chainkeeper p50/p95/p99 ms "
          "| throughput ratio | p99 ratio (ours/base) | share of ceiling | server CPU ms/request (base / ours) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.clients:
        b, o = base[n], ours[n]
        print(f"| {n} | {b['rps']:.1f} | {b['p50']:.0f} / {b['p95']:.0f} / {b['p99']:.0f} | {o['rps']:.1f} | "
              f"{o['p50']:.0f} / {o['p95']:.0f} / {o['p99']:.0f} | {o['rps'] / b['rps']:.2f}x | "
              f"{o['p99'] / b['p99']:.2f} | {o['rps'] / top:.0%} | {b['cpu_ms']:.1f} / {o['cpu_ms']:.1f} |")
    shutil.rmtree(home, ignore_errors=True)
    print(f"\nend: {load_average()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        sub = argparse.ArgumentParser()
        sub.add_argument("kind")
        sub.add_argument("--url", required=True)
        sub.add_argument("--headers", required=True)
        sub.add_argument("--clients", type=int, required=True)
        sub.add_argument("--seconds", type=float, required=True)
        a = sub.parse_args()
        bank, _ = read_csv(datasets_dir() / "banking77" / "test.csv")
        print(json.dumps(asyncio.run(_load(a.url, json.loads(a.headers), bank, a.clients, a.seconds))))
    elif len(sys.argv) > 1 and sys.argv[1] in ("serve-baseline", "serve-chainkeeper"):
        sub = argparse.ArgumentParser()
        sub.add_argument("kind")
        sub.add_argument("--model", type=Path, required=True)
        sub.add_argument("--home", type=Path)
        sub.add_argument("--processes", type=int, default=1)
        sub.add_argument("--port-file", type=Path, required=True)
        a = sub.parse_args()
        if a.kind == "serve-baseline":
            serve_baseline(a.model, a.port_file)
        else:
            serve_chainkeeper(a.model, a.home, a.port_file, a.processes)
    else:
        main()
