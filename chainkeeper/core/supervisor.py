"""Keeping the parts of ``chainkeeper up`` alive: a child that ends is reaped and started again.

``up`` runs its workers as child processes and its scheduler as a thread. A child that
ends while ``up`` runs — killed (``kill -9``, the OOM killer), crashed, or stopped by
hand — is reaped at once (``poll`` waits for it: no zombie is left), its exit status or
signal logged, and started again after a back-off: 0.5 s, doubling up to 30 s while it
keeps dying young, and at most ``max_per_minute`` restarts in any minute (past that it
waits for the minute to end, logging why, rather than spinning). A child that ran for a
minute starts the back-off over.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

__all__ = ["Child", "RestartPolicy", "Supervisor", "ThreadChild", "describe_exit"]

log = logging.getLogger("chainkeeper.supervisor")


class Child(Protocol):
    """What the supervisor needs of a child: ``subprocess.Popen`` or a ``ThreadChild``."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None:
        """None while it runs; its exit status once it ended (reaping a process)."""
        ...


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that ended may start again.

    Attributes:
        max_per_minute: restarts of one child in any 60 s; more wait for the window.
        first_delay_s: wait before the first restart after a death; doubles each death in a row.
        max_delay_s: the longest wait before a restart.
        settled_after_s: a child that ran this long before it ended starts the back-off over.
    """

    max_per_minute: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    settled_after_s: float = 60.0

    def next_start(self, now: float, restarts: Sequence[float], deaths_in_a_row: int) -> float:
        """The (monotonic) time a child that ended at ``now`` may start again.

        Args:
            restarts: the times it was restarted before, oldest first.
            deaths_in_a_row: its deaths without a settled run between them, this one included.
        """
        doublings: int = max(0, min(deaths_in_a_row - 1, 16))
        at = now + min(self.max_delay_s, self.first_delay_s * float(2**doublings))
        recent = [t for t in restarts if t > now - 60.0]
        if len(recent) >= self.max_per_minute:
            at = max(at, recent[-self.max_per_minute] + 60.0)
        return at


def describe_exit(returncode: int) -> str:
    """'killed by SIGKILL' or 'exited with status 1'."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class ThreadChild:
    """A thread of this process supervised like a child process: ``poll`` is None while it
    runs, then 0 (it returned) or 1 (it raised; the error is logged and kept)."""

    def __init__(self, name: str, run: Callable[[], object], stop: Callable[[], None]) -> None:
        self.name, self._run, self._stop = name, run, stop
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    @property
    def pid(self) -> int:
        return os.getpid()

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # recorded for the supervisor, which restarts it
            self.error = exc
            log.exception("%s failed", self.name)

    def poll(self) -> int | None:
        if self.thread.is_alive():
            return None
        return 0 if self.error is None else 1

    def stop(self, timeout: float) -> None:
        """Ask it to stop and wait up to ``timeout`` seconds."""
        self._stop()
        self.thread.join(timeout=timeout)


@dataclass
class _Slot:
    name: str
    start: Callable[[], Child]
    child: Child | None
    started_at: float
    deaths_in_a_row: int = 0
    restarts: list[float] = field(default_factory=list)
    due: float | None = None  # when it starts again; None while it runs


class Supervisor:
    """Starts children, watches them from a thread, restarts those that end.

    Args:
        policy: when a child that ended starts again.
        on_exit: called as ``on_exit(name, child, returncode)`` after a child ended and was
            reaped, before it is restarted (``up`` marks the worker lost in the store);
            an exception it raises is logged, never stops the supervisor.
        poll_s: how often the children are checked.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, policy: RestartPolicy, *, on_exit: Callable[[str, Child, int], None] | None = None,
                 poll_s: float = 0.2, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.on_exit, self.poll_s, self.clock = policy, on_exit, poll_s, clock
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, start: Callable[[], Child]) -> Child:
        """Start a child now (an error starting it is raised here) and keep it running."""
        child = start()
        with self._lock:
            self._slots.append(_Slot(name, start, child, self.clock()))
        log.info("%s started (pid %d)", name, child.pid)
        return child

    def start(self) -> None:
        """Watch the children from a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self._watch, name="chainkeeper-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> list[Child]:
        """Stop watching (nothing is restarted any more); return the children still running,
        for the caller to stop."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            return [s.child for s in self._slots if s.child is not None and s.child.poll() is None]

    def children(self) -> list[tuple[str, Child | None]]:
        """(name, the running child or None while it waits to restart), in the order added."""
        with self._lock:
            return [(s.name, s.child) for s in self._slots]

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_s):
            self.check()

    def check(self) -> None:
        """One pass: reap the children that ended, start those whose back-off is over."""
        ended: list[tuple[str, Child, int]] = []
        with self._lock:
            for slot in self._slots:
                if self._stopping.is_set():
                    return
                if slot.child is not None and (code := slot.child.poll()) is not None:
                    ended.append((slot.name, slot.child, code))
                    self._ended(slot, code)
                elif slot.child is None and slot.due is not None and self.clock() >= slot.due:
                    self._restart(slot)
        for name, child, code in ended:  # outside the lock: it may write to the store
            if self.on_exit is not None:
                try:
                    self.on_exit(name, child, code)
                except Exception:
                    log.exception("recording the end of %s failed", name)

    def _ended(self, slot: _Slot, code: int) -> None:
        assert slot.child is not None
        now, child = self.clock(), slot.child
        if now - slot.started_at >= self.policy.settled_after_s:
            slot.deaths_in_a_row = 0
        slot.deaths_in_a_row += 1
        slot.child, slot.due = None, self.policy.next_start(now, slot.restarts, slot.deaths_in_a_row)
        wait = slot.due - now
        how = (f"stopped: {child.error!r}" if isinstance(child, ThreadChild) and child.error is not None
               else describe_exit(code))
        recent = sum(1 for t in slot.restarts if t > now - 60.0)
        if recent >= self.policy.max_per_minute:
            at = (datetime.now() + timedelta(seconds=wait)).strftime("%H:%M:%S")
            log.error("%s (pid %d) %s; it was restarted %d times in the last minute: next try at %s (in %.0f s)",
                      slot.name, child.pid, how, recent, at, wait)
        else:
            log.warning("%s (pid %d) %s; restarting in %.1f s", slot.name, child.pid, how, wait)

    def _restart(self, slot: _Slot) -> None:
        now = self.clock()
        slot.restarts = [t for t in slot.restarts if t > now - 60.0] + [now]
        try:
            slot.child = slot.start()
        except Exception as exc:
            slot.deaths_in_a_row += 1
            slot.due = self.policy.next_start(now, slot.restarts, slot.deaths_in_a_row)
            log.error("%s could not be restarted: %s; trying again in %.1f s", slot.name, exc, slot.due - now)
            return
        slot.started_at, slot.due = now, None
        log.warning("%s restarted (pid %d)", slot.name, slot.child.pid)
