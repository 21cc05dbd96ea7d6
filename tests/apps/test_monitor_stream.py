"""The monitor's stream ingestion against the real Redis (CHAINKEEPER_TEST_REDIS_URL, default localhost:6379).

Each test uses streams and groups of its own name and deletes them at the end; the tests
are skipped, with the reason, only when no Redis answers. Redis going away is simulated
without touching the shared server: by killing this test's own connections
(``CLIENT KILL ID``) and by a TCP forwarder in front of Redis that the test cuts and restores.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from chainkeeper.apps.monitor.stream import (
    MalformedItem,
    SeenIds,
    StreamConsumer,
    StreamItem,
    backoff_delay,
    connect,
    parse_item,
    publish,
    read_dead_letters,
)
from chainkeeper.core.errors import ConfigError, StoreError

REDIS_URL = os.environ.get("CHAINKEEPER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def _items(n: int, prefix: str = "n") -> list[StreamItem]:
    return [
        StreamItem(id=f"{prefix}{i}", text=f"Company {i % 7} reports results {i}", source="wire",
                   time=T0 + timedelta(seconds=i))
        for i in range(n)
    ]


@pytest.fixture()
def client() -> Iterator[redis.Redis]:
    c = connect(REDIS_URL, socket_timeout=5)
    try:
        c.ping()
    except redis.RedisError as exc:
        c.close()
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}); start redis-server or set CHAINKEEPER_TEST_REDIS_URL")
    yield c
    c.close()


@pytest.fixture()
def names(client: redis.Redis) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    n = {"stream": f"test:monitor:{tag}", "group": f"g-{tag}", "dead": f"test:monitor:{tag}:dead"}
    yield n
    client.delete(n["stream"], n["dead"])


def _pending(client: redis.Redis, n: dict[str, str]) -> int:
    summary: Any = client.xpending(n["stream"], n["group"])
    return int(summary["pending"])


class Results:
    """A results store keyed by item id (an upsert, as the results table's unique id does); counts calls."""

    def __init__(self) -> None:
        self.rows: dict[str, StreamItem] = {}
        self.calls: list[list[str]] = []

    def __call__(self, items: list[StreamItem]) -> None:
        self.calls.append([item.id for item in items])
        for item in items:
            self.rows[item.id] = item

    @property
    def handled_ids(self) -> list[str]:
        return [i for call in self.calls for i in call]


def _drain(consumer: StreamConsumer, until: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while consumer.counters.settled < until:
        assert time.monotonic() < deadline, f"stuck at {consumer.counters}"
        consumer.poll_once()
        if consumer.failures_in_a_row:
            time.sleep(0.02)


# -- parse_item ------------------------------------------------------------------------


def test_parse_item_reads_both_time_forms_and_bytes() -> None:
    text = "Nokia Oyj ylittää ennusteet"
    item = parse_item({b"id": b" a1 ", b"text": text.encode(), b"time": b"2024-05-01T09:30:00Z"})
    assert (item.id, item.text, item.source, item.time) == ("a1", text, "", T0)
    epoch = parse_item({"id": "a2", "text": "x", "source": "rss", "time": str(T0.timestamp())})
    assert epoch.time == T0 and epoch.time.tzinfo is not None
    offset = parse_item({"id": "a3", "text": "x", "time": "2024-05-01T12:30:00+03:00"})
    assert offset.time == T0 and offset.time.utcoffset() == timedelta(hours=3)
    round_trip = parse_item(item.to_fields())
    assert round_trip == item


@pytest.mark.parametrize(("fields", "reason"), [
    ({"text": "x", "time": "1714555800"}, "missing id"),
    ({"id": "  ", "text": "x", "time": "1714555800"}, "blank id"),
    ({"id": "a", "time": "1714555800"}, "no text"),
    ({"id": "a", "text": " \n ", "time": "1714555800"}, "blank text"),
    ({"id": "a", "text": "x" * 10_001, "time": "1714555800"}, "text too long (10001 characters"),
    ({"id": "a", "text": "x"}, "missing 'time'"),
    ({"id": "a", "text": "x", "time": "yesterday"}, "neither ISO-8601 nor epoch seconds"),
    ({"id": "a", "text": "x", "time": "2024-05-01T09:30:00"}, "no UTC offset"),
    ({"id": "a", "text": "x", "time": "1714555800000"}, "milliseconds sent?"),
    ({"id": "a", "text": "x", "time": "nan"}, "finite number"),
    ({"id": "a", "text": b"\xff\xfe", "time": "1714555800"}, "field 'text' is not UTF-8"),
])
def test_parse_item_refuses_with_the_reason(fields: dict[str, str | bytes], reason: str) -> None:
    with pytest.raises(MalformedItem) as caught:
        parse_item(fields)
    assert reason in caught.value.reason


def test_seen_ids_forgets_the_oldest_and_backoff_is_bounded() -> None:
    seen = SeenIds(capacity=2)
    seen.add("a", "1-0")
    seen.add("b", "2-0")
    seen.add("c", "3-0")
    assert "a" not in seen and seen.entry_of("c") == "3-0" and len(seen) == 2
    assert [backoff_delay(n) for n in (0, 1, 2, 3)] == [0.0, 0.1, 0.2, 0.4]
    assert backoff_delay(50) == 10.0


# -- the consumer against Redis ---------------------------------------------------------


def test_consumer_refuses_a_decoding_client(names: dict[str, str]) -> None:
    decoding = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses=False"):
        StreamConsumer(decoding, names["stream"], names["group"], "c1", handler=Results())
    decoding.close()


def test_a_key_that_is_not_a_stream_is_a_clear_error(client: redis.Redis, names: dict[str, str]) -> None:
    client.set(names["stream"], "someone else's value")
    consumer = StreamConsumer(client, names["stream"], names["group"], "c1", handler=Results(), block_ms=50)
    with pytest.raises(ConfigError, match="is not a stream"):
        consumer.poll_once()


def test_happy_path_handles_each_item_once_and_acks(client: redis.Redis, names: dict[str, str]) -> None:
    ids = publish(client, names["stream"], _items(250))
    assert len(ids) == 250 and client.xlen(names["stream"]) == 250
    results = Results()
    consumer = StreamConsumer(client, names["stream"], names["group"], "c1", handler=results, batch=100,
                              block_ms=50)
    consumer.run(threading.Event(), max_items=250)
    assert sorted(results.handled_ids) == sorted(f"n{i}" for i in range(250))
    assert [len(c) for c in results.calls] == [100, 100, 50]
    assert results.rows["n7"].time == T0 + timedelta(seconds=7)
    assert _pending(client, names) == 0
    assert consumer.counters.read == 250 and consumer.counters.handled == 250
    assert consumer.counters.dead_lettered == 0 and consumer.poll_once() == 0  # nothing left


def test_a_failing_handler_gets_nothing_acked_and_the_batch_comes_again(
    client: redis.Redis, names: dict[str, str],
) -> None:
    publish(client, names["stream"], _items(30))
    results = Results()
    fail = {"left": 1}

    def handler(items: list[StreamItem]) -> None:
        if fail["left"]:
            fail["left"] -= 1
            raise RuntimeError("model not loaded")
        results(items)

    consumer = StreamConsumer(client, names["stream"], names["group"], "c1", handler=handler, block_ms=50)
    assert consumer.poll_once() == 30
    assert results.calls == [] and _pending(client, names) == 30 and consumer.failures_in_a_row == 1
    assert consumer.counters.handler_errors == 1
    assert consumer.poll_once() == 30  # the same entries, from this consumer's pending list
    assert sorted(results.handled_ids) == sorted(f"n{i}" for i in range(30))
    assert _pending(client, names) == 0 and consumer.failures_in_a_row == 0
    assert consumer.poll_once() == 0 and len(results.handled_ids) == 30


def test_a_poison_item_is_isolated_then_dead_lettered(client: redis.Redis, names: dict[str, str]) -> None:
    publish(client, names["stream"], _items(10))
    results = Results()

    def handler(items: list[StreamItem]) -> None:
        if any(item.id == "n4" for item in items):
            raise ValueError("cannot tokenise n4")
        results(items)

    consumer = StreamConsumer(client, names["stream"], names["group"], "c1", handler=handler, block_ms=50,
                              max_failures=2)
    _drain(consumer, until=10)
    assert sorted(results.handled_ids) == sorted(f"n{i}" for i in range(10) if i != 4)
    [letter] = read_dead_letters(client, names["dead"])
    assert letter.fields["id"] == "n4"
    assert "handler failed on it 2 times: ValueError: cannot tokenise n4" in letter.reason
    assert _pending(client, names) == 0


def test_a_killed_consumer_s_entries_are_reclaimed_and_handled_once(
    client: redis.Redis, names: dict[str, str],
) -> None:
    publish(client, names["stream"], _items(40))
    results = Results()

    class Killed(BaseException):
        """The process dies: nothing after this line runs."""

    def dies_after_storing(items: list[StreamItem]) -> None:
        results(items)  # stored, but the XACK never happens
        raise Killed

    first = StreamConsumer(client, names["stream"], names["group"], "c1", handler=dies_after_storing, batch=25,
                           block_ms=50)
    with pytest.raises(Killed):
        first.poll_once()
    assert _pending(client, names) == 25 and len(results.rows) == 25

    second = StreamConsumer(client, names["stream"], names["group"], "c2", handler=results, batch=25,
                            block_ms=50, claim_idle_ms=300)
    second.poll_once()  # too early: the 25 are not idle yet, so it takes the 15 new ones
    assert second.counters.reclaimed == 0 and second.counters.handled == 15
    time.sleep(0.35)
    _drain(second, until=40)
    assert second.counters.reclaimed == 25
    # The handler saw the first 25 twice (at least once delivery); the results hold each item once.
    assert sorted(results.rows) == sorted(f"n{i}" for i in range(40))
    assert sorted(results.handled_ids[25:]) == sorted(f"n{i}" for i in range(40))
    assert _pending(client, names) == 0


def test_malformed_and_duplicate_entries_are_dead_lettered_with_reasons(
    client: redis.Redis, names: dict[str, str],
) -> None:
    good = [item.to_fields() for item in _items(3)]
    raw = [
        good[0],
        {"id": "b1", "time": "2024-05-01T09:30:00Z"},  # no text
        {"id": "b2", "text": "Fortum Oyj cuts guidance", "time": "last tuesday"},  # bad time
        {"text": "Stora Enso Oyj shares fall", "time": "1714555800"},  # no id
        good[1],
        good[0],  # the producer sent n0 twice
        good[2],
    ]
    entry_ids = publish(client, names["stream"], raw)
    results = Results()
    consumer = StreamConsumer(client, names["stream"], names["group"], "c1", handler=results, block_ms=50)
    assert consumer.poll_once() == 7
    assert results.handled_ids == ["n0", "n1", "n2"]
    letters = read_dead_letters(client, names["dead"])
    assert [(d.source_entry, d.reason) for d in letters] == [
        (entry_ids[1], "no text"),
        (entry_ids[2], "bad 'time' 'last tuesday': neither ISO-8601 nor epoch seconds"),
        (entry_ids[3], "missing id"),
        (entry_ids[5], f"duplicate item id 'n0' (first in entry {entry_ids[0]})"),
    ]
    assert letters[1].fields == {"id": "b2", "text": "Fortum Oyj cuts guidance", "time": "last tuesday"}
    assert letters[0].consumer == "c1"
    assert consumer.counters.dead_lettered == 4 and consumer.counters.duplicates == 1
    assert _pending(client, names) == 0
    # A later duplicate of an item handled in an earlier batch is caught too.
    publish(client, names["stream"], [good[1]])
    assert consumer.poll_once() == 1 and results.handled_ids == ["n0", "n1", "n2"]
    assert read_dead_letters(client, names["dead"])[-1].reason.startswith("duplicate item id 'n1'")


def test_entries_trimmed_while_pending_are_dead_lettered(client: redis.Redis, names: dict[str, str]) -> None:
    ids = publish(client, names["stream"], _items(5))
    results = Results()
    fail = {"left": 1}

    def handler(items: list[StreamItem]) -> None:
        if fail["left"]:
            fail["left"] -= 1
            raise RuntimeError("store locked")
        results(items)

    consumer = StreamConsumer(client, names["stream"], names["group"], "c1", handler=handler, block_ms=50)
    consumer.poll_once()
    client.xdel(names["stream"], ids[2])  # trimmed while pending
    consumer.poll_once()
    assert sorted(results.handled_ids) == ["n0", "n1", "n3", "n4"]
    [letter] = read_dead_letters(client, names["dead"])
    assert letter.source_entry == ids[2] and "trimmed" in letter.reason
    assert _pending(client, names) == 0


def test_a_transient_handler_error_never_dead_letters(client: redis.Redis, names: dict[str, str]) -> None:
    publish(client, names["stream"], _items(3))
    results = Results()
    fail = {"left": 5}

    def handler(items: list[StreamItem]) -> None:
        if fail["left"]:
            fail["left"] -= 1
            raise StoreError("database is locked", transient=True)
        results(items)

    consumer = StreamConsumer(client, names["stream"], names["group"], "c1", handler=handler, block_ms=50,
                              max_failures=1)
    _drain(consumer, until=3)
    assert sorted(results.handled_ids) == ["n0", "n1", "n2"] and consumer.counters.dead_lettered == 0


def test_killed_connections_mid_stream_lose_and_double_nothing(client: redis.Redis, names: dict[str, str]) -> None:
    """The server drops the consumer's connections (as on a restart) right after the handler stored a batch.

    Only this test's connections are killed (by id), not the shared server's other clients.
    redis-py notices a connection closed while idle and opens a new one before the next
    command, so the consumer itself sees nothing here; the forwarder test below cuts Redis
    off for real.
    """
    publish(client, names["stream"], _items(200))
    name = f"ck-test-{uuid.uuid4().hex[:8]}"
    consumer_client = redis.Redis.from_url(REDIS_URL, client_name=name, socket_timeout=5)
    results = Results()
    killed: list[str] = []

    def handler(items: list[StreamItem]) -> None:
        results(items)
        if len(results.calls) in (2, 4):  # before this batch's XACK
            connections: Any = client.client_list()
            for entry in connections:
                if entry.get("name") == name:
                    client.client_kill_filter(_id=entry["id"])
                    killed.append(entry["id"])

    consumer = StreamConsumer(consumer_client, names["stream"], names["group"], "c1", handler=handler,
                              batch=40, block_ms=50)
    _drain(consumer, until=200)
    assert sorted(results.rows) == sorted(f"n{i}" for i in range(200))
    assert len(killed) >= 2 and len(set(killed)) == len(killed)  # a new connection each time
    assert len(results.handled_ids) == 200  # the handler never saw an item twice
    assert _pending(client, names) == 0
    consumer_client.close()


class _Forwarder:
    """A TCP forwarder to Redis on a fixed local port: ``cut`` makes Redis unreachable, ``restore`` brings it back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def restore(self) -> None:
        self._stop.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads = [thread]

    def cut(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self, listener: socket.socket) -> None:
        pipes: list[threading.Thread] = []
        with listener:
            while not self._stop.is_set():
                if not select.select([listener], [], [], 0.02)[0]:
                    continue
                inside, _ = listener.accept()
                outside = socket.create_connection(self.target)
                pipe = threading.Thread(target=self._pump, args=(inside, outside), daemon=True)
                pipe.start()
                pipes.append(pipe)
        for pipe in pipes:
            pipe.join(timeout=5)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with a, b:
            while not self._stop.is_set():
                for ready in select.select([a, b], [], [], 0.02)[0]:
                    try:
                        data = ready.recv(65536)
                        if not data:
                            return
                        (b if ready is a else a).sendall(data)
                    except OSError:
                        return


def test_redis_unreachable_mid_stream_the_consumer_backs_off_reconnects_and_finishes(
    client: redis.Redis, names: dict[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    publish(client, names["stream"], _items(300))
    target = urlsplit(REDIS_URL)
    forwarder = _Forwarder(target.hostname or "127.0.0.1", target.port or 6379)
    forwarder.restore()
    via = connect(f"redis://127.0.0.1:{forwarder.port}{target.path or '/0'}", socket_timeout=2)
    results = Results()

    def handler(items: list[StreamItem]) -> None:
        results(items)
        if len(results.calls) == 3:  # Redis goes away after this batch was stored, before its XACK
            forwarder.cut()
            threading.Timer(0.5, forwarder.restore).start()

    consumer = StreamConsumer(via, names["stream"], names["group"], "c1", handler=handler, batch=50,
                              block_ms=50)
    stop = threading.Event()
    runner = threading.Thread(target=consumer.run, args=(stop,), kwargs={"max_items": 300})
    runner.start()
    runner.join(timeout=20)
    stop.set()
    runner.join()
    forwarder.cut()
    via.close()
    assert consumer.counters.connection_errors >= 1 and consumer.counters.reconnects >= 1
    assert consumer.counters.redelivered == 50  # the batch whose XACK was lost: acked, not handled again
    assert sorted(results.rows) == sorted(f"n{i}" for i in range(300))
    assert len(results.handled_ids) == 300
    assert _pending(client, names) == 0
    assert any("Redis unreachable" in r.getMessage() and "retrying in" in r.getMessage() for r in caplog.records)


def test_aware_times_of_other_zones_keep_their_instant() -> None:
    helsinki = timezone(timedelta(hours=3))
    item = StreamItem(id="z", text="x", source="", time=T0.astimezone(helsinki))
    assert parse_item(item.to_fields()).time == T0
