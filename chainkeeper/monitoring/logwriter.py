"""The buffered prediction-log writer: served predictions reach the store off the request path.

A request hands its records to ``PredictionLogWriter.submit``, which only samples them
and appends them to a bounded in-memory buffer (microseconds, no store access). One
thread per writer takes them in batches, builds the stored records (hash, personal-data
redaction: ``predictions.prediction_record``; person names, when a ``names.NameTagger`` is
given, tagged for the whole batch first) and inserts each batch with one statement.

What it promises:

* **bounded memory**: at most ``max_buffered`` records wait; past that, new ones are
  dropped and counted (``stats().dropped``, exported as the metric
  ``chainkeeper_prediction_log_dropped_total``), never queued without bound;
* **nothing lost on a clean shutdown**: ``close`` writes everything accepted first;
* **read-your-writes in the process**: ``flush_writers(db)`` (called by the readers in
  ``predictions``) writes what is buffered for that store before they read;
* **a store outage is survived**: a failed batch is retried (``MAX_ATTEMPTS`` in all),
  then dropped and counted as ``failed``; serving never waits for the store;
* **a name model that fails loses nothing**: its batch is stored with the regex redaction
  only and counted (``stats().names_unchecked``; see ``monitoring.names``).

Retention is not the writer's: the scheduler's ``prediction-log-retention`` schedule
queues the purge job (``monitoring.retention``), once for the store, not once per server.

Sampling is per record (one text of a request): ``sample_rate`` 0.1 keeps about one in
ten, chosen independently.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chainkeeper.core.db import Database
from chainkeeper.core.errors import InvalidInput
from chainkeeper.monitoring.names import NameTagger, find_names
from chainkeeper.monitoring.predictions import log_predictions, prediction_record

__all__ = ["LogWriterStats", "MAX_ATTEMPTS", "PredictionLogWriter", "flush_writers"]

_log = logging.getLogger(__name__)

# Tries of one batch before it is dropped (counted as failed): covers a store restart.
MAX_ATTEMPTS = 3
# The writer thread's nice value (0 normal, 19 lowest).
WRITER_NICENESS = 10

_WRITERS = "monitoring.log_writers"  # the live writers of a store (a WeakSet on Database.state)
_writers_lock = threading.Lock()


def _writers(db: Database) -> weakref.WeakSet[PredictionLogWriter]:
    return db.state(_WRITERS, weakref.WeakSet)


@dataclass(frozen=True)
class LogWriterStats:
    """Counters since the writer started (records, not requests)."""

    accepted: int  # taken into the buffer
    sampled_out: int  # skipped by the sampling rate
    dropped: int  # refused because the buffer was full
    written: int  # stored
    failed: int  # dropped after MAX_ATTEMPTS failed inserts
    buffered: int  # waiting now
    names_unchecked: int = 0  # stored without the name tagger, which could not be used


class PredictionLogWriter:
    """Buffers served predictions and writes them in batches on its own thread.

    Args:
        db: the store holding the ``predictions`` table.
        sample_rate: the share of records kept, 0 to 1.
        max_buffered: records that may wait in memory; more are dropped and counted.
        flush_interval_s: the longest a record waits before its batch is written (readers in
            this process flush first; other processes see a record within this time).
        max_batch: records per insert statement.
        rng: a source of floats in [0, 1) for sampling (tests pass a seeded one).
        names: the tagger of person names (``names.name_tagger``), run on this writer's
            thread before each batch is stored; None: regex redaction only.

    Raises:
        InvalidInput: a rate outside 0-1, or a non-positive size or interval.
    """

    def __init__(self, db: Database, *, sample_rate: float = 1.0, max_buffered: int = 10_000,
                 flush_interval_s: float = 0.5, max_batch: int = 500, rng: Callable[[], float] | None = None,
                 names: NameTagger | None = None) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise InvalidInput(f"The prediction-log sample rate is {sample_rate}; it must lie between 0 and 1.",
                               hint="Use 1 to log every prediction, 0.1 for one in ten.")
        if max_buffered < 1 or max_batch < 1 or flush_interval_s <= 0:
            raise InvalidInput("The prediction-log buffer, batch and flush interval must be positive.",
                               hint="The defaults are 10,000 records, 500 per batch and 0.5 s.")
        self.db = db
        self.sample_rate = sample_rate
        self.max_buffered = max_buffered
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self._rng = rng or random.random
        self._names = names
        self._buffer: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._accepted = self._sampled_out = self._dropped = self._written = self._failed = 0
        self._done = 0  # records accepted and since written or given up on
        self._flush_wanted = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        with _writers_lock:
            _writers(self.db).add(self)

    # --- the request side --------------------------------------------------------------

    def submit(self, items: Iterable[dict[str, Any]]) -> int:
        """Take records to write; never blocks on the store.

        Args:
            items: keyword arguments of ``predictions.prediction_record``, one dict per
                served text (the raw text: redaction happens on the writer's thread).

        Returns:
            How many were taken (the others were sampled out or dropped, and counted).
        """
        items = list(items)
        rate = self.sample_rate
        kept = items if rate >= 1.0 else [item for item in items if self._rng() < rate]
        skipped = len(items) - len(kept)
        with self._cond:
            self._sampled_out += skipped
            if self._closing:
                self._dropped += len(kept)
                return 0
            was_empty = not self._buffer
            room = self.max_buffered - len(self._buffer)
            if len(kept) > room:
                self._dropped += len(kept) - max(room, 0)
                kept = kept[:max(room, 0)]
            self._buffer.extend(kept)
            self._accepted += len(kept)
            if kept and (was_empty or len(self._buffer) >= self.max_batch):
                self._cond.notify()
        return len(kept)

    # --- waiting -------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything accepted so far; wait for it.

        Returns:
            True when all of it was written or given up on within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._accepted
            self._flush_wanted = True
            self._cond.notify_all()
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is buffered, then stop the thread (later submits are dropped and counted).

        Returns:
            True when the buffer was written out within ``timeout``.
        """
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with _writers_lock:
            _writers(self.db).discard(self)
        return flushed

    def stats(self) -> LogWriterStats:
        unchecked = self._names.stats().unchecked if self._names is not None else 0
        with self._cond:
            return LogWriterStats(accepted=self._accepted, sampled_out=self._sampled_out, dropped=self._dropped,
                                  written=self._written, failed=self._failed, buffered=len(self._buffer),
                                  names_unchecked=unchecked)

    # --- the writer thread ---------------------------------------------------------------

    def _take(self) -> list[dict[str, Any]] | None:
        """The next batch ([] when a flush found nothing), waiting for it to fill; None: stop.

        An idle writer sleeps until a record arrives, so a server with no traffic costs no
        wake-ups; the first record starts the flush interval.
        """
        with self._cond:
            while not self._buffer and not self._closing and not self._flush_wanted:
                self._cond.wait()
            deadline = time.monotonic() + self.flush_interval_s
            while not self._closing and not self._flush_wanted and len(self._buffer) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._buffer:
                self._flush_wanted = False
                return None if self._closing else []
            count = min(self.max_batch, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(count)]
            if not self._buffer:
                self._flush_wanted = False
            return batch

    def _run(self) -> None:
        # Below the request and batcher threads in the OS scheduler: on a busy machine the
        # log waits, the caller does not (Linux threads take their own nice value).
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
        except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
            pass
        if self._names is not None:
            self._names.prepare()  # load the name model before the first batch waits for it
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        names = find_names(self._names, batch)  # the texts of the batch tagged together, on this thread
        records = [prediction_record(**item, names=found) for item, found in zip(batch, names, strict=True)]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                log_predictions(self.db, records)
            except Exception:  # noqa: BLE001 - a store outage must not kill the writer
                _log.warning("writing %d prediction records failed (attempt %d of %d)", len(records), attempt,
                             MAX_ATTEMPTS, exc_info=True)
                if attempt < MAX_ATTEMPTS:
                    time.sleep(self.flush_interval_s * attempt)
                    continue
                with self._cond:
                    self._failed += len(records)
                    self._done += len(records)
                    self._cond.notify_all()
                return
            with self._cond:
                self._written += len(records)
                self._done += len(records)
                self._cond.notify_all()
            return


def flush_writers(db: Database, timeout: float = 10.0) -> None:
    """Write what every live writer of this process holds for ``db``'s store."""
    with _writers_lock:
        writers = list(_writers(db))
    for writer in writers:
        writer.flush(timeout)
