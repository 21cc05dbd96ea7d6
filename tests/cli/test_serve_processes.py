"""`chainkeeper serve --processes 2` as a user starts it: two real server processes on one
port that answer as one server — counters, rate limits and route changes hold across them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chainkeeper.core.context import Context
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.users import issue_token
from chainkeeper.registry.versions import transition_stage
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.serving.keys import create_deployment_key
from chainkeeper.serving.rollout import bucket_of
from tests.governance.conftest import make_actor
from tests.model_rows import in_production, registered, save_tiny_classifier

RHEA = Actor("rhea", frozenset({"release_manager"}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    v1: int
    v2: int
    key: str  # a deployment key without a rate limit
    rhea: dict[str, str]  # the release manager's headers

    def children(self) -> list[int]:
        """The server's worker processes (uvicorn spawns them; not multiprocessing's resource tracker)."""
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    spawned = b"spawn_main" in (entry / "cmdline").read_bytes()
                except (OSError, IndexError):
                    continue
                if ppid == self.proc.pid and spawned:
                    out.append(int(entry.name))
        return out

    def group_dir(self) -> Path:
        environ = Path(f"/proc/{self.children()[0]}/environ").read_bytes().split(b"\0")
        value = next(v for v in environ if v.startswith(b"CHAINKEEPER_SERVE_GROUP="))
        return Path(value.split(b"=", 1)[1].decode())

    def predict(self, headers: dict[str, str]) -> httpx.Response:
        # A fresh connection each time: either process may accept it.
        return httpx.post(f"{self.url}/v1/deployments/support/predict", json={"text": "my card is lost"},
                          headers=headers, timeout=30)


@pytest.fixture
def served(ctx: Context, tiny_model_dir: Path, tmp_path: Path) -> Iterator[Served]:
    artifact = ctx.artifacts.put_tree(save_tiny_classifier(tiny_model_dir, tmp_path / "classifier"))
    make_actor(ctx, "rhea", "release_manager")
    v1 = in_production(ctx, "intents", model_artifact=artifact)
    deploy_model_version(ctx, name="support", model_version_id=v1.id, actor=RHEA)
    v2 = registered(ctx, "intents", model_artifact=artifact)
    transition_stage(ctx, v2.id, "staging", actor=RHEA)
    key = create_deployment_key(ctx, "support", name="app", actor=RHEA, scopes=["predict"]).secret
    rhea = {"Authorization": f"Bearer {issue_token(ctx.db, 'rhea', name='t').secret}"}
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    env.update({"CHAINKEEPER_METRICS_SAMPLE_S": "0.5", "CHAINKEEPER_LOG_LEVEL": "WARNING"})
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(ctx.settings.home),
                                 "serve", "--port", str(port), "--processes", "2"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    s = Served(f"http://127.0.0.1:{port}", proc, v1.id, v2.id, key, rhea)
    try:
        deadline = time.monotonic() + 120
        while len(s.children()) < 2 or not _answers(s):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield s
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert not re.search(r"Traceback|ERROR", log.read_text()), log.read_text()


def _answers(s: Served) -> bool:
    try:
        return s.predict({"X-API-Key": s.key}).status_code == 200
    except httpx.TransportError:
        return False


def test_two_processes_answer_as_one_server(served: Served) -> None:
    # Both processes answer (each writes its own counter file), and /metrics of either counts them all.
    counters: list[Path] = []
    sent = 0
    while sent < 80 and len(counters) < 2:
        assert served.predict({"X-API-Key": served.key}).status_code == 200
        sent += 1
        counters = list((served.group_dir() / "metrics").glob("counter_*.db"))
    assert {int(p.stem.split("_")[1]) for p in counters} == set(served.children())
    sent += 1  # the request that proved the server up
    for _ in range(4):  # whichever process answers the scrape
        text = httpx.get(f"{served.url}/metrics", headers=served.rhea, timeout=30).text
        total = re.search(r'^chainkeeper_predict_requests_total\{deployment="support",model_version="\d+"\} '
                          r"(\S+)$", text, re.M)
        assert total is not None and float(total.group(1)) == sent, text


def test_a_keys_rate_limit_holds_across_the_processes(served: Served, ctx: Context) -> None:
    limited = create_deployment_key(ctx, "support", name="slow", actor=RHEA, scopes=["predict"],
                                    rate_per_s=0.01, burst=4).secret
    codes = [served.predict({"X-API-Key": limited}).status_code for _ in range(16)]
    assert codes.count(200) == 4 and codes.count(429) == 12, codes


def test_a_rollout_in_one_process_reaches_the_other_at_once(served: Served) -> None:
    canary_caller = next(f"c{i}" for i in range(1000) if bucket_of("support", f"c{i}") < 50)
    as_caller = {"X-API-Key": served.key, "X-Caller-Key": canary_caller}
    assert {served.predict(as_caller).json()["model_version"]["id"] for _ in range(10)} == {served.v1}

    started = httpx.post(f"{served.url}/api/deployments/support/canary", headers=served.rhea, timeout=30,
                         json={"model_version_id": served.v2, "percent": 50})
    assert started.status_code == 200, started.text
    # Well inside the route cache's 1 s: only the shared change counter can make both processes agree.
    t0 = time.monotonic()
    assert {served.predict(as_caller).json()["model_version"]["id"] for _ in range(10)} == {served.v2}
    rolled = httpx.post(f"{served.url}/api/deployments/support/rollback", headers=served.rhea, timeout=30,
                        json={"comment": "test"})
    assert rolled.status_code == 200, rolled.text
    assert {served.predict(as_caller).json()["model_version"]["id"] for _ in range(10)} == {served.v1}
    assert time.monotonic() - t0 < 5
