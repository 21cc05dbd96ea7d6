"""`chainkeeper up` as a user starts it: a real process serving API, web UI and a worker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from chainkeeper.chain import open_context
from chainkeeper.core.jobs import list_workers
from chainkeeper.core.settings import load_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_starts_api_web_and_a_worker_and_stops_them(tmp_path: Path) -> None:
    home, port = tmp_path / "home", _free_port()
    log = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    env.update({"COLUMNS": "200", "CHAINKEEPER_HEARTBEAT_S": "0.5", "CHAINKEEPER_WORKER_POLL_S": "0.2"})
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(home), "up",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # its worker children share the group
    try:
        deadline, ready = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, log.read_text()
        text = log.read_text()
        assert "Created user admin" in text and f"http://127.0.0.1:{port}/" in text
        token = re.search(r"API token[^:]*:\s+(ck_\S+)", text).group(1)  # type: ignore[union-attr]
        password = re.search(r"web sign-in password:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        jobs = httpx.get(f"http://127.0.0.1:{port}/api/jobs", headers={"Authorization": f"Bearer {token}"})
        assert jobs.status_code == 200
        page = httpx.get(f"http://127.0.0.1:{port}/", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
            signed_in = browser.post("/login", data={"user": "admin", "password": password, "next": "/"},
                                     follow_redirects=True)
        assert signed_in.status_code == 200 and "Chain overview" in signed_in.text

        ctx = open_context(load_settings({}, home=home))
        try:
            deadline = time.monotonic() + 30
            while not list_workers(ctx.db, alive_within=timedelta(seconds=10)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(list_workers(ctx.db, alive_within=timedelta(seconds=10))) == 1
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) in (0, 130)
            assert list_workers(ctx.db, alive_within=timedelta(seconds=10)) == []  # the worker stopped too
        finally:
            ctx.close()
    finally:
        # Whatever happened above, leave no server or worker behind.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for a parent that does not reap counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_up_leaves_no_worker_behind(tmp_path: Path, how: str) -> None:
    """However 'up' ends — SIGTERM (what systemd, docker and kill send), Ctrl+C, or killed
    outright — its worker process ends too, instead of running on re-parented to PID 1."""
    home, port = tmp_path / "home", _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    env.update({"COLUMNS": "200", "CHAINKEEPER_HEARTBEAT_S": "0.5", "CHAINKEEPER_WORKER_POLL_S": "0.2"})
    with (tmp_path / "up.log").open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(home), "up",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        ctx = open_context(load_settings({}, home=home))
        try:
            deadline = time.monotonic() + 30
            alive = timedelta(seconds=10)
            while time.monotonic() < deadline and not (found := list_workers(ctx.db, alive_within=alive)):
                time.sleep(0.2)
            [found_worker] = found
            worker_pid = int(found_worker["pid"])
            assert _alive(worker_pid)

            proc.send_signal(getattr(signal, how))
            code = proc.wait(timeout=30)
            assert code == {"SIGTERM": -signal.SIGTERM, "SIGINT": 130, "SIGKILL": -signal.SIGKILL}[how], \
                (tmp_path / "up.log").read_text()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _alive(worker_pid):
                time.sleep(0.2)
            assert not _alive(worker_pid), f"worker {worker_pid} outlived 'up' ({how})"
            assert list_workers(ctx.db, alive_within=timedelta(seconds=10)) == []  # it stopped, not crashed
        finally:
            ctx.close()
    finally:
        try:  # whatever happened, leave nothing behind: the worker stays in the group of 'up'
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
