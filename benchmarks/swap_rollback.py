"""Swapping versions under load: canary, promote, roll back, swap again; count failed requests.

One Chainkeeper server (the BANKING77 model of ``serve_throughput.py``, ONNX int8) runs
on 127.0.0.1 with deployment 'banking' on version 1 — in this process, or with
``--processes N`` as ``chainkeeper serve --processes N`` (then the switches made here
reach its processes through the store, within the 1 s route cache); a separate process
(``serve_throughput.py load``) keeps N keep-alive clients posting BANKING77 texts, each
request with its own caller key, for the whole run. Meanwhile this process, as the
release manager, every ``--step`` seconds:

1. starts a canary of version 2 (the same weights registered again, exported) at 30 %;
2. promotes version 2 to production in the registry and promotes the canary;
3. rolls back to version 1;
4. swaps again: version 2 back to production and deployed in place of version 1;
5. rolls back to version 1.

A failed request is any answer other than 200 or a transport error; the goal is 0.
Printed: failures (with the first reasons), answers per version, latency, the load.

    python benchmarks/swap_rollback.py --model /tmp/ck-b77 --clients 8 --step 3
    python benchmarks/swap_rollback.py --model /tmp/ck-b77 --clients 32 --step 3 --processes 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from _common import datasets_dir, load_average, read_csv
from serve_throughput import launch_chainkeeper, load_in_subprocess, prepare, setup_chainkeeper, start_chainkeeper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a folder made by serve_throughput.py (skips training)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--step", type=float, default=3.0, help="seconds between switches")
    parser.add_argument("--processes", type=int, default=1,
                        help="serve with `chainkeeper serve --processes N` (1: a server in this process)")
    args = parser.parse_args()

    from chainkeeper.registry.versions import Stage, get_model_version, transition_stage
    from chainkeeper.serving.deployments import deploy_model_version
    from chainkeeper.serving.export import export_model_version
    from chainkeeper.serving.rollout import current_route, promote_rollout, rollback_deployment, start_canary
    from tests.model_rows import ENGINEER, RELEASER, registered

    print(f"start: {load_average()} (a shared machine)", flush=True)
    work = args.model or Path(tempfile.mkdtemp(prefix="ck-b77-"))
    if not (work / "chainkeeper").is_dir():
        prepare(work, 2000)
    home = Path(tempfile.mkdtemp(prefix="ck-swap-"))
    setup = setup_chainkeeper(work / "chainkeeper", home, evaluate=False)
    ctx, v1 = setup["ctx"], setup["version"]
    v2 = registered(ctx, "banking77", model_artifact=v1.model_artifact)
    texts, labels = read_csv(datasets_dir() / "banking77" / "test.csv")
    export_model_version(ctx, v2.id, actor=ENGINEER, quantize=True, evaluation=(texts[:100], labels[:100]))
    transition_stage(ctx, v2.id, Stage.STAGING, actor=RELEASER)
    if args.processes > 1:
        process, url, headers = launch_chainkeeper(home, setup["token"], args.processes)
        stop = process.terminate
    else:
        server, app, headers = start_chainkeeper(setup)
        app.state.predictors.get(get_model_version(ctx.db, v2.id))  # warm, as a rollout waits for readiness
        url, stop = server.url + "/v1/deployments/banking/predict", server.stop

    def to_production(version_id: int) -> None:
        stage = get_model_version(ctx.db, version_id).stage
        if stage == Stage.ARCHIVED:
            transition_stage(ctx, version_id, Stage.STAGING, actor=RELEASER)
        if stage != Stage.PRODUCTION:
            transition_stage(ctx, version_id, Stage.PRODUCTION, actor=RELEASER, comment="benchmark")

    steps = [
        ("canary v2 at 30%", lambda: start_canary(ctx, "banking", v2.id, percent=30, actor=RELEASER)),
        ("promote v2", lambda: (to_production(v2.id), promote_rollout(ctx, "banking", actor=RELEASER))),
        ("roll back to v1", lambda: rollback_deployment(ctx, "banking", actor=RELEASER)),
        ("swap to v2 (deploy)", lambda: (to_production(v2.id),
                                         deploy_model_version(ctx, name="banking", model_version_id=v2.id,
                                                              actor=RELEASER))),
        ("roll back to v1", lambda: rollback_deployment(ctx, "banking", actor=RELEASER)),
    ]
    seconds = args.step * (len(steps) + 1)
    load = load_in_subprocess(url, headers, args.clients, seconds)
    begin = time.monotonic()
    try:
        for i, (what, step) in enumerate(steps, start=1):
            time.sleep(max(0.0, begin + i * args.step - time.monotonic()))
            started = time.perf_counter()
            step()
            route = current_route(ctx.db, "banking")
            print(f"  t={time.monotonic() - begin:5.1f} s  {what:22} took {(time.perf_counter() - started) * 1000:6.1f}"
                  f" ms; route now: primary v{route.primary_version_id}, candidate "
                  f"{route.candidate_version_id}, mode {route.mode}", flush=True)
        result = json.loads(load.communicate()[0])
    finally:
        stop()
        setup["ctx"].close()
        shutil.rmtree(home, ignore_errors=True)
    print(f"\n{result['n'] + result['errors']} requests from {args.clients} clients over {seconds:.0f} s: "
          f"{result['errors']} failed (goal 0); answers per version id: {result['versions']}; "
          f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms")
    for reason in result["reasons"]:
        print(f"  failure: {reason}")
    print(f"end: {load_average()}")


if __name__ == "__main__":
    main()
