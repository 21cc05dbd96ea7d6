"""The supervisor of 'up': children that end are reaped, logged and restarted with back-off,
a bounded number of times a minute (issue 15, item 8). Real child processes; the clock is
the test's, so the back-off is checked without waiting for it."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path

import pytest

from chainkeeper.core.supervisor import Child, RestartPolicy, Supervisor, ThreadChild, describe_exit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _dies(code: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["/bin/sh", "-c", f"exit {code}"])


def _wait_ended(child: Child) -> None:
    """Wait until the child process has ended, without reaping it (the supervisor must)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.01)


def test_the_back_off_doubles_and_restarts_are_bounded_per_minute() -> None:
    policy = RestartPolicy(max_per_minute=3, first_delay_s=0.5, max_delay_s=30.0)
    assert [policy.next_start(0.0, [], n) for n in (1, 2, 3, 4, 8, 20)] == [0.5, 1.0, 2.0, 4.0, 30.0, 30.0]
    # Three restarts in the last minute: the next waits until the oldest is a minute old.
    assert policy.next_start(100.0, [50.0, 70.0, 90.0], 1) == 110.0
    assert policy.next_start(100.0, [30.0, 70.0, 90.0], 1) == 100.5  # one fell out of the window


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc (Linux)")
def test_a_dead_child_is_reaped_logged_and_restarted_until_the_minute_is_used_up(
        caplog: pytest.LogCaptureFixture) -> None:
    clock, ended = Clock(), []
    supervisor = Supervisor(RestartPolicy(max_per_minute=2, first_delay_s=0.5), clock=clock,
                            on_exit=lambda name, child, code: ended.append((name, child.pid, code)))
    caplog.set_level(logging.INFO, "chainkeeper.supervisor")
    first = supervisor.add("worker 1", lambda: _dies(3))
    _wait_ended(first)

    supervisor.check()
    assert not Path(f"/proc/{first.pid}").exists()  # reaped: no zombie left
    assert ended == [("worker 1", first.pid, 3)]
    assert f"worker 1 (pid {first.pid}) exited with status 3; restarting in 0.5 s" in caplog.text
    assert supervisor.children() == [("worker 1", None)]  # waiting out its back-off

    clock.now += 0.4
    supervisor.check()
    assert supervisor.children() == [("worker 1", None)]
    clock.now += 0.1
    supervisor.check()
    [(_, second)] = supervisor.children()
    assert second is not None and second.pid != first.pid
    assert f"worker 1 restarted (pid {second.pid})" in caplog.text

    _wait_ended(second)
    supervisor.check()  # died again at once: twice the wait
    assert "restarting in 1.0 s" in caplog.text
    clock.now += 1.0
    supervisor.check()
    [(_, third)] = supervisor.children()
    assert third is not None

    _wait_ended(third)
    supervisor.check()  # a third death within the minute: 2 restarts were allowed
    assert "it was restarted 2 times in the last minute: next try at" in caplog.text
    clock.now += 30
    supervisor.check()
    assert supervisor.children() == [("worker 1", None)]  # still inside the minute
    clock.now += 30
    supervisor.check()
    [(_, fourth)] = supervisor.children()
    assert fourth is not None
    _wait_ended(fourth)
    supervisor.stop()
    fourth.poll()


def test_a_child_killed_by_a_signal_says_which() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(1) == "exited with status 1"


def test_a_thread_that_raises_is_restarted_with_its_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock, runs = Clock(), []
    stop = threading.Event()

    def run() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("scheduler tick blew up")
        stop.wait(10)

    supervisor = Supervisor(RestartPolicy(), clock=clock)
    caplog.set_level(logging.INFO, "chainkeeper.supervisor")
    first = supervisor.add("scheduler", lambda: ThreadChild("scheduler", run, stop.set))
    assert isinstance(first, ThreadChild)
    first.thread.join(timeout=10)
    supervisor.check()
    assert "scheduler (pid" in caplog.text and "stopped: RuntimeError('scheduler tick blew up')" in caplog.text
    clock.now += 0.5
    supervisor.check()
    [(_, second)] = supervisor.children()
    assert isinstance(second, ThreadChild) and second.poll() is None and len(runs) == 2
    [still_running] = supervisor.stop()
    assert still_running is second
    second.stop(timeout=10)
    assert second.poll() == 0
