"""What the processes of one server share: settings, the change counter, rate-limit buckets.

Several processes are played here by several objects on the same files (the real
two-process server is tests/cli/test_serve_processes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chainkeeper.chain import open_context
from chainkeeper.core.errors import RateLimited
from chainkeeper.core.settings import Settings, load_settings
from chainkeeper.serving import caching
from chainkeeper.serving.caching import TtlCache, share_invalidations
from chainkeeper.serving.limits import SharedRateLimiter
from chainkeeper.serving.processes import GROUP_ENV, ProcessGroup, SharedStamp


@pytest.fixture
def group(settings: Settings) -> Iterator[ProcessGroup]:
    g = ProcessGroup.create(settings.model_copy(update={"torch_threads": 4, "serve_processes": 2}))
    yield g
    g.remove()


def test_each_process_gets_its_share_of_the_cores_and_the_secrets(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings({}, home=tmp_path, torch_threads=4, token="ck_secret", serve_processes=3)
    group = ProcessGroup.create(settings)
    try:
        assert (group.path / "settings.json").stat().st_mode & 0o777 == 0o600
        monkeypatch.setenv(GROUP_ENV, str(group.path))  # as a spawned process finds it
        assert ProcessGroup.from_env() == group
        mine = group.settings()
        assert mine.torch_threads == 1 and mine.serve_model_workers >= 1  # 4 // 3; at least one
        assert mine.token is not None and mine.token.get_secret_value() == "ck_secret"
        assert mine.home == settings.home
    finally:
        group.remove()
    assert not group.path.exists()


def test_an_invalidation_in_one_process_empties_the_caches_of_the_others(group: ProcessGroup) -> None:
    here, there = TtlCache[str, int](60), TtlCache[str, int](60)
    mine, theirs = group.stamp(), SharedStamp(group.path / "stamp")  # two processes' views of one file
    try:
        share_invalidations(mine)
        here.put("route", 1, here.generation)
        there.put("route", 1, there.generation)
        assert here.get("route") == there.get("route") == 1
        share_invalidations(theirs)  # "the other process" changes a route
        there.invalidate(lambda key: key == "route")
        share_invalidations(mine)
        assert here.get("route") is None  # seen at once, long before the 60 s
        generation = here.generation
        here.put("route", 2, generation)
        assert here.get("route") == 2
    finally:
        share_invalidations(None)
        mine.close()
        theirs.close()
    assert caching._stamp is None


def test_a_key_shares_one_bucket_across_processes(group: ProcessGroup) -> None:
    now = [100.0]
    first = SharedRateLimiter(group.path / "buckets", clock=lambda: now[0])
    second = SharedRateLimiter(group.path / "buckets", clock=lambda: now[0])
    try:
        first.check(7, 1.0, 3)
        second.check(7, 1.0, 3)
        first.check(7, 1.0, 3)
        with pytest.raises(RateLimited, match=r"Retry in 1\.00 s"):
            second.check(7, 1.0, 3)
        second.check(8, 1.0, 3)  # another key: its own bucket
        now[0] += 1.0
        second.check(7, 1.0, 3)  # refilled one token
        with pytest.raises(RateLimited):
            first.check(7, 1.0, 3)
        first.check(7, 5.0, 3)  # a re-issued key with other numbers starts a fresh bucket
    finally:
        first.close()
        second.close()


def test_a_full_bucket_table_starts_over(group: ProcessGroup) -> None:
    limiter = SharedRateLimiter(group.path / "buckets", slots=2, clock=lambda: 0.0)
    try:
        limiter.check(1, 1.0, 1)
        limiter.check(2, 1.0, 1)
        with pytest.raises(RateLimited):
            limiter.check(1, 1.0, 1)
        limiter.check(3, 1.0, 1)  # no slot left: every key gets a full bucket again
        limiter.check(1, 1.0, 1)
    finally:
        limiter.close()


def test_one_process_of_a_group_stores_the_metric_samples(group: ProcessGroup, settings: Settings) -> None:
    from chainkeeper.monitoring.metrics import MetricSampler, ServingMetrics

    ctx = open_context(settings)
    metrics = ServingMetrics()
    metrics.observe("support", 1, 0.01, 1)
    first = MetricSampler(ctx.db, metrics, 3600, group=group)
    second = MetricSampler(ctx.db, metrics, 3600, group=group)
    try:
        assert first.sample_now() == []  # it leads from now on: the base of the next rates
        assert first.sample_now() and second.sample_now() == []
        first.close()  # its process stops: the lock is free
        metrics.observe("support", 1, 0.01, 1)
        assert second.sample_now() == []  # takes over: a new base, not the totals as rates
        rates = [p.value for p in second.sample_now() if p.name == "requests_per_s"]
        assert rates == [0.0]  # no request since the base (the two before it are not counted again)
    finally:
        second.close()
        ctx.close()
