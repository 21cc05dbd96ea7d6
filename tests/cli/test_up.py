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
from chainkeeper.core.jobs import JobState, get_job, job_logs, list_workers, submit_job
from chainkeeper.core.settings import load_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 60) -> httpx.Response | None:
    """Poll /readyz until it answers 200 (the store answers and a worker is alive); the last answer."""
    deadline, answer = time.monotonic() + timeout, None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            if answer.status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return answer


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
        ready = _wait_ready(proc, port)
        assert ready is not None and ready.status_code == 200, log.read_text()
        assert ready.json()["workers"] == 1  # ready means a worker is alive to run jobs
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
        _wait_ready(proc, port)
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


def _zombie_children(parent: int) -> list[int]:
    """Children of ``parent`` that ended and were not reaped (state Z in /proc)."""
    zombies = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            zombies.append(int(stat.parent.name))
    return zombies


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc (Linux)")
def test_a_killed_worker_is_reaped_and_restarted_and_its_job_taken_over(tmp_path: Path) -> None:
    """kill -9 of the worker under 'up': no zombie is left, a new worker starts within seconds,
    /readyz says not ready while none is alive, and the killed worker's job is taken over
    once its heartbeat is stale (issue 15, item 8)."""
    home, port, log = tmp_path / "home", _free_port(), tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    env.update({"COLUMNS": "200", "CHAINKEEPER_HEARTBEAT_S": "0.2", "CHAINKEEPER_WORKER_POLL_S": "0.1",
                "CHAINKEEPER_STALE_AFTER_S": "3"})
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(home), "up",
                                 "--port", str(port), "--no-scheduler"], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        ready = _wait_ready(proc, port)
        assert ready is not None and ready.status_code == 200, log.read_text()
        ctx = open_context(load_settings({}, home=home))
        try:
            deadline = time.monotonic() + 30  # ready means a worker is alive (waiting costs nothing then)
            while not (found := list_workers(ctx.db, alive_within=timedelta(seconds=10))) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            [worker] = found
            job = submit_job(ctx, "sleep", {"steps": 40, "step_s": 0.05}, actor="t")
            deadline = time.monotonic() + 30
            while (state := get_job(ctx.db, job.id)).progress < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert state.state == JobState.RUNNING and state.worker_id == worker["id"], log.read_text()

            os.kill(int(worker["pid"]), signal.SIGKILL)
            killed_at, answers = time.monotonic(), []
            deadline = killed_at + 30
            while time.monotonic() < deadline:
                answer = httpx.get(url, timeout=2)
                answers.append(answer.status_code)
                if answer.status_code == 200 and 503 in answers:
                    break
                if answer.status_code == 503:
                    assert "No worker is alive" in answer.json()["detail"]
                time.sleep(0.05)
            back_after = time.monotonic() - killed_at
            assert 503 in answers, "readyz never said that no worker was alive"
            assert answers[-1] == 200 and back_after < 15, (answers, log.read_text())

            assert not _zombie_children(proc.pid), "the killed worker was left defunct"
            assert not _alive(int(worker["pid"]))
            [restarted] = list_workers(ctx.db, alive_within=timedelta(seconds=10))
            assert restarted["pid"] != worker["pid"]
            text = log.read_text()
            assert f"worker 1 (pid {worker['pid']}) killed by SIGKILL; restarting in" in text, text
            assert f"worker 1 restarted (pid {restarted['pid']})" in text

            # The job stays with the dead worker until its heartbeat is stale, then the new
            # worker takes it over as attempt 2.
            deadline = time.monotonic() + 60
            while not (done := get_job(ctx.db, job.id)).finished and time.monotonic() < deadline:
                time.sleep(0.1)
            assert done.state == JobState.SUCCEEDED and done.attempts == 2, (done, log.read_text())
            assert done.worker_id == restarted["id"]
            assert any("reaper: worker" in line for _, _, line in job_logs(ctx.db, job.id))
        finally:
            ctx.close()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
