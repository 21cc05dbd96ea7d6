"""The inference runtime on a real (tiny) classifier loaded from the artefact store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.serving.runtime import (
    MAX_TEXT_CHARS,
    MAX_TEXTS_PER_CALL,
    TOP_K,
    PredictorCache,
    load_predictor,
    validate_texts,
)
from chainkeeper.training.model import TextClassifier
from tests.model_rows import LABELS, registered, save_tiny_classifier


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


def test_a_predictor_labels_texts_like_the_saved_model(ctx: Context, classifier_dir: Path) -> None:
    version = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    predictor = load_predictor(ctx, version)
    texts = ["where is my card?", "I want a refund for the second time this month", "hi"]
    predictions = predictor.predict(texts)

    model, tokenizer = TextClassifier.load(classifier_dir)
    expected = model.predict_proba(tokenizer, texts)
    assert [p.label for p in predictions] == [LABELS[i] for i in expected.argmax(dim=1).tolist()]
    for prediction, probs in zip(predictions, expected, strict=True):
        assert prediction.score == pytest.approx(probs.max().item(), abs=1e-5)
        assert len(prediction.scores) == TOP_K and set(prediction.scores) <= set(LABELS)
        assert max(prediction.scores.values()) == pytest.approx(prediction.score, abs=1e-5)
        assert list(prediction.scores.values()) == sorted(prediction.scores.values(), reverse=True)
    assert predictor.model_version_id == version.id and predictor.labels == LABELS


def test_the_model_folder_is_cached_under_home_and_reused(ctx: Context, classifier_dir: Path) -> None:
    digest = ctx.artifacts.put_tree(classifier_dir)
    version = registered(ctx, "intents", model_artifact=digest)
    load_predictor(ctx, version)
    cached = ctx.settings.home / "cache" / "models" / digest
    weights = cached / "model.safetensors"
    assert weights.is_file()
    mtime = weights.stat().st_mtime_ns
    load_predictor(ctx, version)
    assert weights.stat().st_mtime_ns == mtime  # verified and reused, not rewritten


@pytest.mark.parametrize(
    ("texts", "fragment"),
    [
        pytest.param([], "no texts", id="empty-list"),
        pytest.param("just a string", "no texts", id="not-a-list"),
        pytest.param(["ok", 3], "Text 1 is a int, not a string", id="non-string"),
        pytest.param(["ok", "   "], "Text 1 is empty", id="blank"),
        pytest.param(["x" * (MAX_TEXT_CHARS + 1)], f"at most {MAX_TEXT_CHARS:,}", id="too-long"),
        pytest.param(["x"] * (MAX_TEXTS_PER_CALL + 1), f"at most {MAX_TEXTS_PER_CALL}", id="too-many"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(texts: object, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment) as caught:
        validate_texts(texts)
    assert caught.value.hint


def test_concurrent_calls_get_the_same_answers_as_serial_ones(ctx: Context, classifier_dir: Path) -> None:
    version = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    predictor = load_predictor(ctx, version)
    texts = [f"request number {i} about my card" for i in range(8)]
    serial = [predictor.predict([t])[0] for t in texts]
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results[i] = predictor.predict([texts[i]])[0].label
        except BaseException as exc:  # collected: an exception in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [results[i] for i in range(len(texts))] == [p.label for p in serial]


def test_the_cache_loads_each_version_once_and_keeps_several(ctx: Context, classifier_dir: Path) -> None:
    digest = ctx.artifacts.put_tree(classifier_dir)
    a, b, c = (registered(ctx, name, model_artifact=digest) for name in ("alpha", "beta", "gamma"))
    cache = PredictorCache(ctx, max_loaded=2)
    first = cache.get(a)
    assert cache.get(a) is first
    cache.get(b)
    cache.get(a)  # a is now the most recently used
    cache.get(c)  # evicts b
    assert cache.loaded() == [a.id, c.id]
    assert cache.evict(a.id) and not cache.evict(a.id)


def test_torch_threads_follow_the_settings(ctx: Context, classifier_dir: Path) -> None:
    version = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    settings = ctx.settings.model_copy(update={"torch_threads": 1})
    threads = torch.get_num_threads()
    try:
        load_predictor(Context(settings=settings, db=ctx.db, artifacts=ctx.artifacts), version)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
