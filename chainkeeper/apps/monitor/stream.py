"""Stream ingestion of the sentiment monitor: Redis Streams with a consumer group.

Producers (a feed reader, the replay benchmark, the tests) append items to a Redis
stream with ``publish``; the monitor reads them with a ``StreamConsumer``, one of a
consumer group, so several processes share the stream and each entry goes to one of them.
Redis Streams are used through redis-py (``redis``), the client Redis itself maintains.

An item is one headline or post: four fields, all strings on the wire.

    id      the producer's id for the item (required, at most 200 characters): the key
            the results are stored under, so a re-sent item is recognised
    text    the headline or post (required, not blank, at most ``MAX_TEXT_CHARS``)
    source  where it came from (optional, "" when not given)
    time    when it was published: ISO-8601 with a UTC offset ("2024-05-01T09:30:00Z",
            "...+03:00") or epoch seconds ("1714555800.5"); a time without an offset is
            refused, not read as UTC: a producer in another zone would shift every item
            by hours and move it into the wrong trend bucket without anyone noticing

``parse_item`` turns an entry's fields into a ``StreamItem`` or refuses it with the reason
(``MalformedItem``, an ``InvalidInput``).

Delivery: at least once to the handler, exactly once in the results
-------------------------------------------------------------------
``StreamConsumer.poll_once`` reads a batch (``XREADGROUP``), parses it, calls
``handler(items)`` and acknowledges (``XACK``) the entries only after the handler
returned. So:

- a consumer killed after reading loses nothing: its entries stay pending in the group.
  On restart it first re-reads its own pending entries (ID ``0``); entries pending on
  another consumer for longer than ``claim_idle_ms`` (a consumer that died for good) are
  taken over with ``XAUTOCLAIM``, once at start and then every ``claim_idle_ms / 2``;
- a handler that raises gets nothing acknowledged: the batch is delivered again on the
  next poll. A retried batch that fails again is handed over one item at a time, so that
  one item the handler cannot take (a "poison" item) does not hold the others back; an
  item that fails alone ``max_failures`` times is dead-lettered with the last error. An
  error that says it is transient (a ``ChainkeeperError`` with ``transient`` true, e.g. the
  database is locked) never counts towards that: the batch waits, with back-off;
- malformed entries (see above; also entries trimmed from the stream before anyone
  processed them) go to the dead-letter stream (``<stream>:dead`` by default) with the
  reason and the original fields, and are acknowledged: never retried forever. The
  dead-letter entries and the acknowledgement of a batch are written in one ``MULTI``
  transaction, so a crash between them cannot dead-letter an entry twice;
- the handler may still see an item twice: a consumer that dies after its handler
  returned and before ``XACK`` reached Redis leaves the batch pending, and whoever picks
  it up calls the handler again. The handler must therefore be idempotent on the item id:
  the monitor's results table has a unique item id and the handler upserts into it.
  Within one process the consumer also keeps the ids it handled (``SeenIds``, the last
  100,000): an entry read again after a lost ``XACK`` is acknowledged without calling
  the handler (counted as ``redelivered``);
- a duplicate producer id (the same ``id`` in two entries) is not handled twice: the
  second entry is dead-lettered with the reason "duplicate item id ... first in entry
  ..." when the first one is in the same batch or among the ids this process handled; a
  duplicate that arrives after a restart, or at another consumer, reaches the handler and
  the results table's unique id keeps one row.

Redis unreachable or restarted: a ``redis.ConnectionError`` or ``redis.TimeoutError`` in a
poll is logged as one warning line, counted, and the poll returns; ``run`` then waits with a
bounded exponential back-off (``backoff_delay``: 0.1 s doubling to 10 s) and polls again. The
client reconnects by itself on the next command; the consumer re-creates its group if the
restarted Redis lost it, and re-reads its own pending entries first, since an ``XACK`` may not
have arrived. Nothing crashes and nothing is lost: at worst an entry is read again.

Use a client from ``connect`` (``decode_responses=False``, timeouts set): the consumer
decodes each field itself, so one entry that is not UTF-8 is dead-lettered instead of
making every read fail, and ``socket_timeout`` must outlast ``block_ms``.

Trimming: ``publish`` caps the stream at about ``DEFAULT_MAXLEN`` entries (``MAXLEN ~``,
which trims whole macro-nodes and costs nearly nothing). An entry trimmed before a consumer
read it is gone; one trimmed while pending is dead-lettered ("trimmed"). The cap bounds
Redis' memory (about 300 bytes an item: ~300 MB at the default) and gives a stopped consumer
about 55 minutes of backlog at 300 items/s.

A consumer is used from one thread at a time; run several consumers (names of their own,
one group) for more throughput.

Measured (2 shared CPU cores, Redis 7.0.15 on localhost, redis-py 6.4, median of 3 runs):
publishing 10,000 items (pipelined, 500 a round trip) and then consuming them with a no-op
handler in batches of 100 (XREADGROUP, parse, XACK in MULTI): publish 18,000 items/s,
consume 19,000 items/s, 9,200 items/s end to end (both phases one after the other, one
process). The monitor's goal is 300 items/s end to end with both models: the stream takes
about 3 % of that budget; the models bound it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from chainkeeper.core.errors import ChainkeeperError, ConfigError, InvalidInput

__all__ = [
    "DEFAULT_MAXLEN",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "DeadLetter",
    "MalformedItem",
    "SeenIds",
    "StreamConsumer",
    "StreamCounters",
    "StreamItem",
    "backoff_delay",
    "connect",
    "parse_item",
    "publish",
    "read_dead_letters",
]

_log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 10_000
"""Longest text taken: a headline is ~100 characters, a long post a few thousand; the
sentiment model reads only the first 128 tokens anyway. Longer means a producer bug."""
MAX_ID_CHARS = 200
MAX_SOURCE_CHARS = 200
DEFAULT_MAXLEN = 1_000_000
"""About how many entries ``publish`` keeps in a stream (``XADD MAXLEN ~``)."""
_EPOCH_MS_THRESHOLD = 1e11
"""Epoch seconds above this (year 5138) are almost surely milliseconds sent by mistake."""

Handler = Callable[[list["StreamItem"]], None]
"""Takes a batch of parsed items and returns only when their results are stored."""


class MalformedItem(InvalidInput):
    """A stream entry that is not a valid item; ``reason`` says why (it goes to the dead-letter stream)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, hint="The producer must send id, text, time (ISO-8601 with an offset, or epoch s).")
        self.reason = reason


@dataclass(frozen=True)
class StreamItem:
    """One headline or post, as read from the stream."""

    id: str
    text: str
    source: str
    time: datetime  # aware

    def to_fields(self) -> dict[str, str]:
        """The entry's fields on the wire, as ``parse_item`` reads them back."""
        return {"id": self.id, "text": self.text, "source": self.source, "time": self.time.isoformat()}


def _decode(value: str | bytes, name: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedItem(f"field {name!r} is not UTF-8 text") from None


def _parse_time(raw: str) -> datetime:
    value = raw.strip()
    if not value:
        raise MalformedItem("blank 'time'")
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds) or seconds < 0:
            raise MalformedItem(f"bad 'time' {raw!r}: epoch seconds must be a finite number >= 0")
        if seconds > _EPOCH_MS_THRESHOLD:
            raise MalformedItem(f"bad 'time' {raw!r}: too large for epoch seconds (milliseconds sent?)")
        return datetime.fromtimestamp(seconds, tz=UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedItem(f"bad 'time' {raw!r}: neither ISO-8601 nor epoch seconds") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise MalformedItem(f"bad 'time' {raw!r}: no UTC offset (add 'Z' or '+hh:mm')")
    return parsed


def parse_item(fields: Mapping[str, str | bytes] | Mapping[bytes, bytes]) -> StreamItem:
    """An entry's fields as a ``StreamItem``; ``MalformedItem`` with the reason when they are not one.

    Field names and values may be ``str`` or UTF-8 ``bytes``; fields other than id, text,
    source and time are ignored. Text and id are stripped of surrounding white space.
    """
    decoded: dict[str, str | bytes] = {}
    for key, value in fields.items():
        decoded[key.decode("utf-8", "replace") if isinstance(key, bytes) else key] = value

    def get(name: str) -> str | None:
        value = decoded.get(name)
        return None if value is None else _decode(value, name)

    item_id = get("id")
    if item_id is None or not item_id.strip():
        raise MalformedItem("missing id" if item_id is None else "blank id")
    item_id = item_id.strip()
    if len(item_id) > MAX_ID_CHARS:
        raise MalformedItem(f"id too long ({len(item_id)} characters, at most {MAX_ID_CHARS})")
    text = get("text")
    if text is None:
        raise MalformedItem("no text")
    text = text.strip()
    if not text:
        raise MalformedItem("blank text")
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedItem(f"text too long ({len(text)} characters, at most {MAX_TEXT_CHARS})")
    source = (get("source") or "").strip()
    if len(source) > MAX_SOURCE_CHARS:
        raise MalformedItem(f"source too long ({len(source)} characters, at most {MAX_SOURCE_CHARS})")
    raw_time = get("time")
    if raw_time is None:
        raise MalformedItem("missing 'time'")
    return StreamItem(id=item_id, text=text, source=source, time=_parse_time(raw_time))


def connect(url: str = "redis://127.0.0.1:6379/0", *, socket_timeout: float = 30.0) -> redis.Redis:
    """A client for ``StreamConsumer`` (and ``publish``): bytes replies, connect and read timeouts.

    ``socket_timeout`` (seconds) must be longer than the consumer's ``block_ms``. The client
    connects lazily, so an unreachable Redis shows at the first command, not here.
    """
    try:
        return redis.Redis.from_url(
            url, decode_responses=False, socket_connect_timeout=5.0, socket_timeout=socket_timeout,
            health_check_interval=30,
        )
    except ValueError as exc:
        raise ConfigError(f"Bad Redis URL {url!r}: {exc}", hint="Use redis://host:port/db.") from None


def publish(
    client: redis.Redis, stream: str, items: Iterable[StreamItem | Mapping[str, str]], *,
    maxlen: int | None = DEFAULT_MAXLEN, chunk: int = 500,
) -> list[str]:
    """Append items to ``stream`` (``XADD``, ``MAXLEN ~ maxlen``); their entry ids, in order.

    Raw field mappings are sent as they are (tests and benchmarks use them to send bad
    items). Pipelined, ``chunk`` entries a round trip: one round trip per item would cap a
    producer at a few thousand items/s.
    """
    ids: list[str] = []
    pending: list[dict[FieldT, EncodableT]] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for fields in pending:
            pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
        ids.extend(_decode(entry_id, "entry id") for entry_id in pipe.execute())
        pending.clear()

    for item in items:
        fields = item.to_fields() if isinstance(item, StreamItem) else item
        pending.append(dict(fields.items()))
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    return ids


class SeenIds:
    """The ids this process handled, the most recent ``capacity`` of them (about 200 bytes each).

    Maps an item id to the stream entry it was handled from, so that the same entry read
    again (an ``XACK`` that did not arrive) tells apart from a producer's duplicate (another
    entry with the same item id). Process memory only: the results table's unique item
    id is what dedupes across restarts and consumers.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise InvalidInput(f"SeenIds capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, str] = OrderedDict()

    def add(self, item_id: str, entry_id: str) -> None:
        """Remember that ``item_id`` was handled from entry ``entry_id``; forget the oldest when full."""
        self._entries[item_id] = entry_id
        self._entries.move_to_end(item_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def entry_of(self, item_id: str) -> str | None:
        """The entry ``item_id`` was handled from, or None when not seen (or forgotten)."""
        return self._entries.get(item_id)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class StreamCounters:
    """What a consumer has done since it was made."""

    read: int = 0  # entries received (new, own pending re-read, reclaimed)
    handled: int = 0  # items the handler returned for
    dead_lettered: int = 0  # entries sent to the dead-letter stream (malformed, duplicate, poison, trimmed)
    duplicates: int = 0  # of those, duplicate item ids
    redelivered: int = 0  # entries read again after their items were handled here: acked, not re-handled
    reclaimed: int = 0  # entries taken over from another consumer with XAUTOCLAIM
    handler_errors: int = 0  # calls of the handler that raised
    connection_errors: int = 0  # polls that failed on a Redis connection error or timeout
    reconnects: int = 0  # times the consumer got Redis back after losing it

    @property
    def settled(self) -> int:
        """Entries finished for the first time here: handled or dead-lettered."""
        return self.handled + self.dead_lettered


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter entry: why, which entry, and the entry's original fields."""

    entry_id: str  # the dead-letter entry's own id
    reason: str
    source_entry: str  # the original entry's id in the source stream
    consumer: str
    fields: dict[str, str]  # the original fields (undecodable bytes shown with replacement characters)


def read_dead_letters(client: redis.Redis, dead_letter_stream: str, count: int | None = None) -> list[DeadLetter]:
    """The entries of a dead-letter stream, oldest first (at most ``count``)."""
    out: list[DeadLetter] = []
    reply: Any = client.xrange(dead_letter_stream, count=count)  # redis-py types replies as Any | Awaitable
    for entry_id, raw in reply:
        fields = {_key(k): v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for k, v in raw.items()}
        original = {k[len(_ORIGINAL) :]: v for k, v in fields.items() if k.startswith(_ORIGINAL)}
        out.append(DeadLetter(
            entry_id=_key(entry_id), reason=fields.get("reason", ""), source_entry=fields.get("entry", ""),
            consumer=fields.get("consumer", ""), fields=original,
        ))
    return out


def backoff_delay(failures: int, *, base: float = 0.1, cap: float = 10.0) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``base`` doubling, at most ``cap`` (0 for none)."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 30)))


_ORIGINAL = "field:"  # prefix of the original fields in a dead-letter entry
_Entry = tuple[str, dict[str, bytes] | None]  # (entry id, fields; None: trimmed from the stream)


def _key(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _entries(raw: Any) -> list[_Entry]:
    """redis-py's list of (id, {field: value}) as ids and byte fields; empty or nil fields mean trimmed."""
    out: list[_Entry] = []
    for entry_id, fields in raw or []:
        if not fields:
            out.append((_key(entry_id), None))
        else:
            out.append((_key(entry_id), {
                _key(k): v if isinstance(v, bytes) else str(v).encode("utf-8") for k, v in fields.items()
            }))
    return out


class StreamConsumer:
    """One member of a consumer group: reads, hands batches to ``handler``, acknowledges after it.

    ``client`` must not decode replies (use ``connect``). ``batch``: entries a read;
    ``block_ms``: how long a read waits for new entries; ``claim_idle_ms``: how long an entry
    must sit unacknowledged at another consumer before this one takes it over;
    ``max_failures``: how often the handler may fail on one item alone before it is
    dead-lettered (counted in this process: a restart starts again from 0); ``seen``: the
    ids handled here (``SeenIds``). See the module docstring for
    the delivery guarantees.
    """

    def __init__(
        self, client: redis.Redis, stream: str, group: str, consumer: str, *, handler: Handler,
        batch: int = 100, block_ms: int = 1000, claim_idle_ms: int = 60_000, max_failures: int = 3,
        dead_letter_stream: str | None = None, dead_letter_maxlen: int = 100_000, seen: SeenIds | None = None,
    ) -> None:
        if batch < 1 or block_ms < 0 or claim_idle_ms < 1 or max_failures < 1:
            raise InvalidInput(
                f"Bad consumer settings: batch={batch}, block_ms={block_ms}, claim_idle_ms={claim_idle_ms}, "
                f"max_failures={max_failures}", hint="batch, claim_idle_ms and max_failures >= 1, block_ms >= 0.",
            )
        kwargs = client.connection_pool.connection_kwargs
        if kwargs.get("decode_responses"):
            raise ConfigError(
                "The stream consumer needs a Redis client with decode_responses=False: it decodes each entry "
                "itself, so one entry that is not UTF-8 is dead-lettered instead of failing every read.",
                hint="Make the client with chainkeeper.apps.monitor.stream.connect(url).",
            )
        socket_timeout = kwargs.get("socket_timeout")
        if socket_timeout is not None and socket_timeout * 1000 <= block_ms:
            raise ConfigError(
                f"The client's socket_timeout ({socket_timeout} s) must be longer than block_ms ({block_ms} ms), "
                "or every quiet read times out.", hint="Lower block_ms or raise socket_timeout.",
            )
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.handler = handler
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_failures = max_failures
        self.dead_letter_stream = dead_letter_stream or f"{stream}:dead"
        self.dead_letter_maxlen = dead_letter_maxlen
        self.seen = seen if seen is not None else SeenIds()
        self.counters = StreamCounters()
        self.failures_in_a_row = 0  # failed polls (connection or handler) since the last good one
        self._group_ready = False
        self._connected = True
        self._pending_done = False  # own pending entries re-read since start / the last failure
        self._claim_cursor = "0-0"
        self._next_claim = 0.0  # time.monotonic() of the next XAUTOCLAIM scan
        self._failures: dict[str, int] = {}  # entry id -> times the handler failed on it alone
        self._last_error = ""
        self._transient = False  # whether the handler's last failure said it was transient

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop_event: threading.Event, max_items: int | None = None) -> StreamCounters:
        """Poll until ``stop_event`` is set (or ``max_items`` entries are settled); back off after failures."""
        start = self.counters.settled
        while not stop_event.is_set():
            if max_items is not None and self.counters.settled - start >= max_items:
                break
            self.poll_once()
            if self.failures_in_a_row:
                stop_event.wait(backoff_delay(self.failures_in_a_row))
        return self.counters

    def poll_once(self) -> int:
        """One step: own pending entries first, then stale ones of others, then new ones; entries read.

        Never raises for Redis being unreachable or refusing, or the handler failing: each
        is logged, counted and leaves the entries pending (``failures_in_a_row`` says to back
        off). Raises ``ConfigError`` when the stream key holds something other than a stream.
        """
        try:
            if not self._group_ready:
                self.ensure_group()
            if not self._connected:
                self._connected = True
                self.counters.reconnects += 1
                _log.info("stream %s: Redis is back after %d failed polls; re-reading pending entries",
                          self.stream, self.failures_in_a_row)
            ok, n = self._step()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self.counters.connection_errors += 1
            self.failures_in_a_row += 1
            self._connected = False
            self._group_ready = False
            self._pending_done = False
            _log.warning("stream %s: Redis unreachable (%s: %s); retrying in %.1f s", self.stream,
                         type(exc).__name__, exc, backoff_delay(self.failures_in_a_row))
            return 0
        except ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                raise ConfigError(
                    f"Redis key {self.stream!r} is not a stream ({exc}).",
                    hint="Name a stream key no one else uses for other data.",
                ) from None
            if "NOGROUP" in str(exc):
                _log.warning("stream %s: group %s is gone (%s); creating it again", self.stream, self.group, exc)
                self._group_ready = False
            else:  # out of memory, read-only replica, ...: may pass, so wait and retry
                _log.warning("stream %s: Redis refused a command (%s); retrying in %.1f s", self.stream, exc,
                             backoff_delay(self.failures_in_a_row + 1))
            self._pending_done = False
            self.failures_in_a_row += 1
            return 0
        self.failures_in_a_row = 0 if ok else self.failures_in_a_row + 1
        return n

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; new groups start at the stream's beginning."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            _log.info("stream %s: created consumer group %s", self.stream, self.group)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _step(self) -> tuple[bool, int]:
        if not self._pending_done:
            reply: Any = self.client.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=self.batch)
            entries = _entries(reply[0][1]) if reply else []
            if entries:
                self.counters.read += len(entries)
                return self._settle(entries, retried=True), len(entries)
            self._pending_done = True
        if time.monotonic() >= self._next_claim:
            cursor, claimed, deleted = self._claim()
            self._claim_cursor = cursor
            if cursor == "0-0":  # scan finished: wait before the next one
                self._next_claim = time.monotonic() + self.claim_idle_ms / 2000
            if claimed or deleted:
                self.counters.read += len(claimed)
                self.counters.reclaimed += len(claimed)
                entries = claimed + [(entry_id, None) for entry_id in deleted]
                return self._settle(entries, retried=True), len(entries)
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self.batch, block=self.block_ms or None,
        )
        entries = _entries(reply[0][1]) if reply else []
        if not entries:
            return True, 0
        self.counters.read += len(entries)
        return self._settle(entries, retried=False), len(entries)

    def _claim(self) -> tuple[str, list[_Entry], list[str]]:
        reply: Any = self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, start_id=self._claim_cursor, count=self.batch,
        )
        cursor = _key(reply[0])
        claimed = _entries(reply[1])
        deleted = [_key(entry_id) for entry_id in (reply[2] if len(reply) > 2 else [])]
        if claimed:
            _log.info("stream %s: took over %d entries idle for %d ms or more", self.stream, len(claimed),
                      self.claim_idle_ms)
        return cursor, claimed, deleted

    # -- one batch -----------------------------------------------------------------------

    def _settle(self, entries: Sequence[_Entry], *, retried: bool) -> bool:
        """Parse, hand over, dead-letter and acknowledge one batch; False when the handler failed on it."""
        good: list[tuple[str, StreamItem]] = []
        dead: list[tuple[str, str, dict[str, bytes]]] = []  # (entry id, reason, original fields)
        acks: list[str] = []
        first_in_batch: dict[str, str] = {}
        redelivered = duplicates = 0
        for entry_id, fields in entries:
            if fields is None:
                dead.append((entry_id, "entry trimmed from the stream before it was processed", {}))
                continue
            try:
                item = parse_item(fields)
            except MalformedItem as exc:
                dead.append((entry_id, exc.reason, fields))
                continue
            first = first_in_batch.get(item.id) or self.seen.entry_of(item.id)
            if first is None:
                first_in_batch[item.id] = entry_id
                good.append((entry_id, item))
            elif first == entry_id:
                redelivered += 1
                acks.append(entry_id)
            else:
                duplicates += 1
                dead.append((entry_id, f"duplicate item id {item.id!r} (first in entry {first})", fields))

        ok, handled = self._hand_over(good, dead, retried=retried) if good else (True, [])
        if not ok:
            self._pending_done = False  # re-read what stays pending before anything new
        for entry_id, item in handled:
            self.seen.add(item.id, entry_id)
            self._failures.pop(entry_id, None)
        self.counters.handled += len(handled)  # even if the XACK below fails: they were handled
        acks += [entry_id for entry_id, _ in handled] + [entry_id for entry_id, _, _ in dead]
        if acks:
            self._write(dead, acks)
        self.counters.dead_lettered += len(dead)  # counted once written: a failed write reads them again
        self.counters.duplicates += duplicates
        self.counters.redelivered += redelivered
        for entry_id, reason, _ in dead:
            _log.warning("stream %s: entry %s dead-lettered to %s: %s", self.stream, entry_id,
                         self.dead_letter_stream, reason)
        return ok

    def _hand_over(
        self, good: list[tuple[str, StreamItem]], dead: list[tuple[str, str, dict[str, bytes]]], *, retried: bool,
    ) -> tuple[bool, list[tuple[str, StreamItem]]]:
        """Call the handler on the batch; on a retried batch that fails again, on one item at a time.

        Returns whether anything went through and the entries handled; items the handler
        failed on alone ``max_failures`` times are added to ``dead``.
        """
        if self._call(good):
            return True, good
        if not retried or self._transient:
            return False, []
        handled: list[tuple[str, StreamItem]] = []
        for one in good if len(good) > 1 else []:
            if self._call([one]):
                handled.append(one)
                continue
            if self._transient:
                return bool(handled), handled
            self._count_failure(one, dead)
        if len(good) == 1:
            self._count_failure(good[0], dead)
        return bool(handled), handled

    def _call(self, batch: list[tuple[str, StreamItem]]) -> bool:
        try:
            self.handler([item for _, item in batch])
        except Exception as exc:  # the handler is someone else's code: any failure leaves the batch pending
            self.counters.handler_errors += 1
            self._transient = isinstance(exc, ChainkeeperError) and exc.transient
            self._last_error = f"{type(exc).__name__}: {exc}"
            _log.warning("stream %s: handler failed on %d items (%s); they stay pending and come again",
                         self.stream, len(batch), self._last_error)
            return False
        return True

    def _count_failure(self, one: tuple[str, StreamItem], dead: list[tuple[str, str, dict[str, bytes]]]) -> None:
        entry_id, item = one
        failures = self._failures.get(entry_id, 0) + 1
        self._failures[entry_id] = failures
        if failures >= self.max_failures:
            self._failures.pop(entry_id)
            dead.append((entry_id, f"handler failed on it {failures} times: {self._last_error}",
                         {k: v.encode("utf-8") for k, v in item.to_fields().items()}))

    def _write(self, dead: list[tuple[str, str, dict[str, bytes]]], acks: list[str]) -> None:
        """Dead-letter entries and acknowledgements in one MULTI: all of them or none."""
        pipe = self.client.pipeline(transaction=True)
        for entry_id, reason, fields in dead:
            letter: dict[FieldT, EncodableT] = {
                "reason": reason, "entry": entry_id, "stream": self.stream, "consumer": self.consumer,
            }
            letter.update({f"{_ORIGINAL}{name}": value for name, value in fields.items()})
            pipe.xadd(self.dead_letter_stream, letter, maxlen=self.dead_letter_maxlen, approximate=True)
        pipe.xack(self.stream, self.group, *acks)
        pipe.execute()
