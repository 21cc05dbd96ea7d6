"""What the prediction log costs the caller: p99 latency with logging on and off, same load.

One Chainkeeper server (the BANKING77 model of ``serve_throughput.py``, ONNX int8,
micro-batching, the buffered log writer) runs in this process on 127.0.0.1; the load
comes from a separate process — ``wrk`` when installed (C, so the server gets the
cores), else ``serve_throughput.py load`` (Python) — with N keep-alive clients, one
BANKING77 test text per request. Phases alternate, logging on (sample rate 1: every
text is redacted, hashed and stored) and off (sample rate 0: nothing stored), so slow
drifts of the shared machine hit both alike. Per phase: requests/s and p50/p95/p99; then
the ratio on/off of p99 within each round (the two phases of a round are adjacent in
time, so they share the machine's load), their median, and the ratio of each condition's
median p99 over all rounds (goal <= 1.05).

    python benchmarks/logging_overhead.py --model /tmp/ck-b77   # a folder from serve_throughput.py
    python benchmarks/logging_overhead.py --model /tmp/ck-b77 --clients 8 --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from _common import datasets_dir, load_average, read_csv
from serve_throughput import (
    load_in_subprocess,
    load_with_wrk,
    prepare,
    process_cpu_s,
    setup_chainkeeper,
    start_chainkeeper,
)


def run_load(generator: str, url: str, headers: dict[str, str], texts: list[str], clients: int,
             seconds: float, think_ms: float) -> dict:
    """One phase of load from ``generator`` (``wrk`` or ``httpx``): the keys of ``serve_throughput._load``."""
    if generator == "wrk":
        return load_with_wrk(url, headers, texts, clients, seconds, think_ms=think_ms)
    proc: subprocess.Popen[str] = load_in_subprocess(url, headers, clients, seconds)
    return json.loads(proc.communicate()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a folder made by serve_throughput.py (skips training)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx",
                        help="load generator (see serve_throughput.py)")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="wrk only: each client pauses this long between requests (a steady load below "
                             "saturation, where the log writer's CPU is not queued behind); 0: back to back")
    args = parser.parse_args()

    from chainkeeper.api.routers.serving import serving_state
    from chainkeeper.monitoring.predictions import count_predictions

    print(f"start: {load_average()} (a shared machine: read the ratio, not the absolute numbers); "
          f"load generator: {args.load}, {args.clients} clients, think time {args.think_ms:g} ms", flush=True)
    work = args.model or Path(tempfile.mkdtemp(prefix="ck-b77-"))
    if not (work / "chainkeeper").is_dir():
        prepare(work, 2000)
    home = Path(tempfile.mkdtemp(prefix="ck-log-"))
    setup = setup_chainkeeper(work / "chainkeeper", home, evaluate=False)
    server, app, headers = start_chainkeeper(setup)
    log = serving_state(app).log
    url = server.url + "/v1/deployments/banking/predict"
    texts, _ = read_csv(datasets_dir() / "banking77" / "test.csv")
    p99: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}  # server CPU ms per request, writer included
    try:
        json.loads(load_in_subprocess(url, headers, 4, 2).communicate()[0])  # warm connections and the batcher
        for round_no in range(args.rounds):
            for condition in (("on", "off") if round_no % 2 == 0 else ("off", "on")):
                log.sample_rate = 1.0 if condition == "on" else 0.0
                written_before = count_predictions(setup["ctx"].db)
                cpu_before = process_cpu_s(os.getpid())
                r = run_load(args.load, url, headers, texts, args.clients, args.seconds, args.think_ms)
                written = count_predictions(setup["ctx"].db) - written_before  # flushes the writer first
                cpu[condition].append((process_cpu_s(os.getpid()) - cpu_before) * 1000 / max(1, r["n"]))
                p99[condition].append(r["p99"])
                print(f"  round {round_no + 1} logging {condition:3}: {r['rps']:6.1f} req/s  p50 {r['p50']:6.1f}  "
                      f"p95 {r['p95']:6.1f}  p99 {r['p99']:6.1f} ms  ({r['n']} ok, {r['errors']} errors, "
                      f"{written} records stored; server CPU {cpu[condition][-1]:.2f} ms/request; {load_average()})",
                      flush=True)
    finally:
        server.stop()
        setup["ctx"].close()
        shutil.rmtree(home, ignore_errors=True)
    stats = log.stats()
    on, off = statistics.median(p99["on"]), statistics.median(p99["off"])
    paired = [a / b for a, b in zip(p99["on"], p99["off"], strict=True)]
    print(f"\nlog writer: {stats.written} written, {stats.dropped} dropped, {stats.failed} failed")
    print(f"p99 ratio on/off within each round: {', '.join(f'{r:.2f}' for r in paired)}; "
          f"median {statistics.median(paired):.3f} (goal <= 1.05)")
    print(f"p99 with logging on {on:.1f} ms, off {off:.1f} ms (median of {args.rounds} rounds of "
          f"{args.seconds:.0f} s at {args.clients} clients): ratio {on / off:.3f}")
    cpu_on, cpu_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    print(f"server CPU per request (the writer's thread included; median of rounds): on {cpu_on:.3f} ms, "
          f"off {cpu_off:.3f} ms: the log costs {cpu_on - cpu_off:+.3f} ms ({cpu_on / cpu_off - 1:+.1%})")
    print(f"end: {load_average()}")


if __name__ == "__main__":
    main()
