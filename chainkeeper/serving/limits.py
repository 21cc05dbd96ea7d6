"""Request limits of the predict endpoint: size per request, rate per API key.

Size limits (``RequestLimits``) are checked before any model work: a body over
``max_body_bytes``, more than ``max_texts`` texts or a text over ``max_text_chars``
characters is answered 413 with what was sent and what is allowed.

Rate limits are token buckets, one per API key: a key refills ``rate_per_s`` tokens a
second up to ``burst`` and a request takes one; an empty bucket answers 429 with when to
retry. A lone server process keeps them in memory (``RateLimiter``); the processes of one
multi-process server share them in a memory-mapped file (``SharedRateLimiter``), so a
key's limit holds whichever process answers. Servers on several machines each keep their
own buckets, so there the effective limit scales with replicas — state it per replica.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chainkeeper.core.errors import InvalidInput, RateLimited

__all__ = ["PayloadTooLarge", "RateLimiter", "RequestLimits", "SharedRateLimiter", "TokenBucket",
           "UnsupportedMediaType", "check_body_size", "check_content_type", "check_texts"]


class PayloadTooLarge(InvalidInput):
    """A request larger than the server accepts (413)."""

    status, title = 413, "Payload too large"


class UnsupportedMediaType(InvalidInput):
    """A body in a format the endpoint does not read (415)."""

    status, title = 415, "Unsupported media type"


@dataclass(frozen=True)
class RequestLimits:
    """How large one predict request may be."""

    max_body_bytes: int = 1_000_000
    max_texts: int = 256
    max_text_chars: int = 10_000


DEFAULT_LIMITS = RequestLimits()


def check_body_size(content_length: int | None, limits: RequestLimits = DEFAULT_LIMITS) -> None:
    """Refuse a body over the limit (pure).

    Raises:
        PayloadTooLarge: ``content_length`` exceeds ``max_body_bytes``.
    """
    if content_length is not None and content_length > limits.max_body_bytes:
        raise PayloadTooLarge(f"The request body has {content_length:,} bytes; at most {limits.max_body_bytes:,} "
                              "are accepted.", hint="Send fewer or shorter texts per request.")


def check_content_type(content_type: str | None) -> None:
    """Refuse a body that is not JSON (pure).

    Raises:
        UnsupportedMediaType: a ``Content-Type`` other than ``application/json`` (or ``+json``).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(f"The body is sent as {media or 'no content type'!r}; this endpoint reads JSON.",
                                   hint='Send Content-Type: application/json with {"text": "..."} or '
                                   '{"texts": ["...", ...]}.')


def check_texts(texts: Sequence[str], limits: RequestLimits = DEFAULT_LIMITS) -> None:
    """Refuse too many or too long texts (pure).

    Raises:
        PayloadTooLarge: more than ``max_texts`` texts, or one longer than ``max_text_chars``.
    """
    if len(texts) > limits.max_texts:
        raise PayloadTooLarge(f"{len(texts):,} texts in one request; at most {limits.max_texts} are accepted.",
                              hint=f"Send them in batches of up to {limits.max_texts}.")
    for i, text in enumerate(texts):
        if isinstance(text, str) and len(text) > limits.max_text_chars:
            raise PayloadTooLarge(f"Text {i} has {len(text):,} characters; at most {limits.max_text_chars:,} are "
                                  "accepted.", hint="Shorten it or split it into several texts.")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; not thread-safe on its own."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate {rate} and burst {burst} must be positive")  # a programming error
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> float:
        """Take one token; return 0.0 if granted, else the seconds until one is there."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per API key, shared by the threads of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[int, TokenBucket] = {}
        self._lock = threading.Lock()

    def _take(self, key_id: int, rate_per_s: float, size: int) -> float:
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key_id)
            # A changed limit (the key was re-issued with other numbers) starts a fresh bucket.
            if bucket is None or bucket.rate != rate_per_s or bucket.burst != size:
                bucket = self._buckets[key_id] = TokenBucket(rate_per_s, size, now)
            return bucket.take(now)

    def check(self, key_id: int, rate_per_s: float | None, burst: int | None = None) -> None:
        """Let a request of key ``key_id`` through, or refuse it.

        Args:
            rate_per_s: the key's rate (None: unlimited).
            burst: the key's burst (None: one second's worth, at least 1).

        Raises:
            RateLimited: the key's bucket is empty; the message says when to retry.
        """
        if rate_per_s is None:
            return
        size = burst if burst is not None else max(1, math.ceil(rate_per_s))
        wait = self._take(key_id, rate_per_s, size)
        if wait > 0:
            raise RateLimited(f"API key {key_id} is over its limit of {rate_per_s:g} requests/s "
                              f"(burst {size}).", hint=f"Retry in {wait:.2f} s, or ask for a higher rate.")


class SharedRateLimiter(RateLimiter):
    """The buckets of ``RateLimiter`` in a memory-mapped file, for the processes of one server.

    A fixed table of ``slots`` buckets (key id, rate, burst, tokens, time), found by the
    key id with linear probing, read and written under a file lock. When every slot is
    taken the table starts over (each key gets a full bucket once more): a bound that
    never matters for the keys of a few deployments. The monotonic clock is the
    machine's, the same in every process.
    """

    _SLOT = struct.Struct("<qdqdd")  # key_id (0: free), rate, burst, tokens, stamp

    def __init__(self, path: Path, *, slots: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        from chainkeeper.serving.processes import SharedFile

        super().__init__(clock)
        self._slots = slots
        self._file = SharedFile(path, slots * self._SLOT.size)

    def _take(self, key_id: int, rate_per_s: float, size: int) -> float:
        table, slot = self._file.map, self._SLOT
        with self._lock, self._file.locked():
            now = self._clock()
            index = key_id % self._slots
            for _ in range(self._slots):
                found, rate, burst, tokens, stamp = slot.unpack_from(table, index * slot.size)
                if found in (0, key_id):
                    break
                index = (index + 1) % self._slots
            else:  # full: start over
                table[:] = bytes(len(table))
                index, found = key_id % self._slots, 0
            bucket = TokenBucket(rate_per_s, size, now)
            if found == key_id and rate == rate_per_s and burst == size:
                bucket.tokens, bucket.stamp = tokens, stamp
            wait = bucket.take(now)
            slot.pack_into(table, index * slot.size, key_id, rate_per_s, size, bucket.tokens, bucket.stamp)
        return wait

    def close(self) -> None:
        self._file.close()
