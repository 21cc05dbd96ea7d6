"""A small in-process cache for the serving hot path: short-lived, invalidated on change.

The predict path used to read the store several times per request (the caller's
credentials, the deployment, its route, the model version). Those rows change rarely
and only through a few service functions, so each process keeps them for a short
time (``ttl_s``) and the functions that change them call ``invalidate`` after their
transaction commits. Two bounds follow, both stated in docs/serving.md:

* a change made in this process takes effect for the next request at once;
* a change made by another process of the same multi-process server takes effect
  at once too: ``invalidate`` also bumps the group's shared change counter
  (``serving.processes``), and a cache that sees it changed drops every entry;
* a change made by any other process (the CLI, a server on another machine) takes
  effect within ``ttl_s``.

A value loaded before an invalidation is never stored after it: ``put`` takes the
``generation`` read before the load and drops the value when an invalidation came in
between (otherwise a request that read the old route just before a rollback committed
could cache it for another ``ttl_s``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from chainkeeper.serving.processes import SharedStamp

__all__ = ["TtlCache", "share_invalidations"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# The change counter of this process's server group (None: a lone process).
_stamp: SharedStamp | None = None


def share_invalidations(stamp: SharedStamp | None) -> None:
    """Make every ``TtlCache`` of this process follow (and bump) a group's change counter."""
    global _stamp
    _stamp = stamp


class TtlCache(Generic[K, V]):
    """Values by key for ``ttl_s`` seconds, at most ``max_entries`` of them; thread-safe.

    Args:
        ttl_s: how long a value is served before it is loaded again.
        max_entries: past this many, the whole cache is dropped (a crude bound that
            never matters for a few deployments and tokens, and keeps memory bounded
            when someone sprays random credentials).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError(f"ttl_s {ttl_s} must be >= 0 and max_entries {max_entries} >= 1")  # programming error
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[float, V]] = {}
        self._generation = 0
        self._loading: dict[K, threading.Lock] = {}
        self._seen_stamp = 0
        self.hits = self.misses = 0

    @property
    def generation(self) -> int:
        """A counter bumped by every invalidation; read it before loading a value."""
        return self._generation

    def get(self, key: K) -> V | None:
        """The value of ``key`` if present and younger than ``ttl_s``, else None."""
        now = self._clock()
        stamp = _stamp.value if _stamp is not None else 0
        with self._lock:
            if stamp != self._seen_stamp:  # another process of the group changed something
                self._seen_stamp = stamp
                self._generation += 1
                self._entries.clear()
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.ttl_s:
                self.hits += 1
                return entry[1]
            self.misses += 1
            return None

    def put(self, key: K, value: V, generation: int) -> None:
        """Store ``value`` unless an invalidation happened since ``generation`` was read."""
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (self._clock(), value)

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, or ``load()`` (stored for next time). Errors of ``load`` propagate, uncached.

        Concurrent misses of one key load once: the first caller loads, the others wait
        for it and take its value. Without that, every request in flight when an entry
        expires read the store at once (32 clients: the p99 doubled, 70 → 118-177 ms).
        """
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            value = self._fresh(key)  # loaded by the caller we waited for
            if value is not None:
                return value
            generation = self._generation
            try:
                value = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            self.put(key, value, generation)
            return value

    def _fresh(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry[1] if entry is not None and self._clock() - entry[0] < self.ttl_s else None

    def invalidate(self, match: Callable[[K], bool] | None = None) -> None:
        """Drop the keys ``match`` accepts (all when None) and bump the generation."""
        with self._lock:
            self._generation += 1
            if match is None:
                self._entries.clear()
            else:
                for key in [k for k in self._entries if match(k)]:
                    del self._entries[key]
        if _stamp is not None:
            _stamp.bump()
