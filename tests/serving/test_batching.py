"""Micro-batching: concurrent requests share model calls and each gets its own answers."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.serving.batching import MicroBatcher
from chainkeeper.serving.runtime import PredictorCache
from tests.model_rows import registered, save_tiny_classifier


class SlowEcho:
    """A model that answers each text with itself, taking 20 ms per call (like a real one, per batch)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def predict(self, texts: list[str]) -> list[str]:
        with self.lock:
            self.calls.append(list(texts))
        if "boom" in texts:
            raise RuntimeError("model failed")
        time.sleep(0.02)
        return [t.upper() for t in texts]


def test_a_lone_request_runs_at_once_without_waiting_for_company() -> None:
    model = SlowEcho()
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=500)
    start = time.perf_counter()
    assert batcher.predict(["a", "b"]) == ["A", "B"]
    assert time.perf_counter() - start < 0.4  # not the 500 ms window
    batcher.close()


def test_concurrent_requests_share_batches_and_get_their_own_answers() -> None:
    model = SlowEcho()
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=5)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: batcher.predict([f"t{i}", f"u{i}"]), range(32)))
    assert results == [[f"T{i}", f"U{i}"] for i in range(32)]
    stats = batcher.stats()
    assert stats.requests == 32 and stats.texts == 64
    assert stats.batches < 32 and stats.mean_batch_size > 2  # merged
    assert max(stats.batch_sizes) <= 8  # never above max_batch_size
    assert all(len(call) <= 8 for call in model.calls)
    batcher.close()


def test_a_failing_batch_fails_its_callers_and_the_batcher_keeps_serving() -> None:
    batcher = MicroBatcher(SlowEcho(), max_batch_size=4, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.predict(["boom"])
    assert batcher.predict(["fine"]) == ["FINE"]
    batcher.close()


def test_coroutines_await_answers_without_blocking_the_loop() -> None:
    batcher = MicroBatcher(SlowEcho(), max_batch_size=16, max_wait_ms=5)

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(batcher.apredict([f"x{i}"]) for i in range(10)))

    assert asyncio.run(main()) == [[f"X{i}"] for i in range(10)]
    assert batcher.stats().batches < 10
    batcher.close()


class CountingEcho(SlowEcho):
    """SlowEcho that records how many of its calls ran at the same moment."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most_at_once = 0

    def predict(self, texts: list[str]) -> list[str]:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            return super().predict(texts)
        finally:
            with self.lock:
                self.running -= 1


def test_several_workers_run_model_calls_at_once_and_each_caller_keeps_its_answers() -> None:
    model = CountingEcho()
    batcher = MicroBatcher(model, max_batch_size=4, max_wait_ms=0, workers=2)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: batcher.predict([f"t{i}"]), range(48)))
    assert results == [[f"T{i}"] for i in range(48)]
    assert model.most_at_once == 2  # two calls overlapped, never more than the workers
    assert batcher.stats().texts == 48
    batcher.close()
    assert not any(t.is_alive() for t in batcher._threads)  # one stop mark per worker
    with pytest.raises(InvalidInput, match="workers is 0"):
        MicroBatcher(SlowEcho(), workers=0)


def test_serving_threads_split_the_cores_between_model_workers() -> None:
    from chainkeeper.serving.onnx_runtime import serving_threads

    assert serving_threads(2, None) == (2, 1)  # default: one single-threaded call per core
    assert serving_threads(4, 2) == (2, 2)
    assert serving_threads(2, 4) == (4, 1)  # more workers than cores: one thread each
    assert serving_threads(8, 1) == (1, 8)


def test_bad_settings_and_closed_batchers_refuse_with_what_to_do() -> None:
    with pytest.raises(InvalidInput, match="max_batch_size is 0"):
        MicroBatcher(SlowEcho(), max_batch_size=0)
    with pytest.raises(InvalidInput, match="max_wait_ms is -1"):
        MicroBatcher(SlowEcho(), max_wait_ms=-1)
    batcher = MicroBatcher(SlowEcho())
    batcher.close()
    with pytest.raises(InvalidInput, match="unloaded") as caught:
        batcher.submit(["late"])
    assert caught.value.hint


def test_the_cache_serves_several_versions_batched_and_ready_after_warm_up(
        ctx: Context, tiny_model_dir: Path, tmp_path: Path) -> None:
    digest = ctx.artifacts.put_tree(save_tiny_classifier(tiny_model_dir, tmp_path / "m"))
    first, second = registered(ctx, "intents", model_artifact=digest), registered(ctx, "other", model_artifact=digest)
    cache = PredictorCache(ctx, max_wait_ms=2)
    assert not cache.ready(first.id)
    predictor = cache.get(first)
    cache.get(second)
    assert cache.ready(first.id) and cache.ready(second.id)  # several deployments loaded at once
    texts = [f"card question {i}" for i in range(6)]
    serial = [predictor.predict([t])[0].label for t in texts]
    with ThreadPoolExecutor(6) as pool:
        concurrent = list(pool.map(lambda t: predictor.predict([t])[0].label, texts))
    assert concurrent == serial
    stats = cache.stats()[first.id]
    assert stats["engine"] == "torch" and stats["texts"] == 12 and stats["batches"] <= 12
    with pytest.raises(InvalidInput, match="Text 0 is empty"):
        predictor.predict([""])  # refused before it joins a batch
    cache.close()
    assert cache.loaded() == []


def test_a_deployment_turns_ready_only_after_its_model_is_loaded_and_warm(
        ctx: Context, tiny_model_dir: Path, tmp_path: Path) -> None:
    from chainkeeper.serving.deployments import deploy_model_version
    from chainkeeper.serving.runtime import deployment_readiness
    from tests.model_rows import RELEASER, in_production

    version = in_production(ctx, "intents",
                            model_artifact=ctx.artifacts.put_tree(save_tiny_classifier(tiny_model_dir, tmp_path / "m")))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    cache = PredictorCache(ctx)
    first = deployment_readiness(ctx, cache, "support", actor=RELEASER)
    assert first["ready"] is False and first["model_version_id"] == version.id  # the probe starts the load
    deadline = time.monotonic() + 20
    while not (answer := deployment_readiness(ctx, cache, "support", actor=RELEASER))["ready"]:
        assert time.monotonic() < deadline, "the model never became ready"
        time.sleep(0.05)
    assert answer["engine"] == "torch" and answer["batching"]["texts"] == 0  # warm-up ran before batching
    cache.close()
