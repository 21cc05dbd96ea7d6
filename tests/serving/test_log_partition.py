"""Every classifier answer carries its log-partition (logsumexp of the raw logits), on every engine.

The support assistant's energy out-of-scope score is −logsumexp(logits); the scores are
probabilities, from which it cannot be recovered, so each engine hands it over. The
reference here is the PyTorch forward run one text at a time (no padding, no batching),
computed apart from the runtime's own code.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.monitoring.predictions import get_prediction
from chainkeeper.serving.batching import BatchedPredictor
from chainkeeper.serving.deployments import deploy_model_version, serve_predictions
from chainkeeper.serving.export import export_model_version, export_onnx, quantize_onnx
from chainkeeper.serving.onnx_runtime import OnnxPredictor, logsumexp, make_session
from chainkeeper.serving.runtime import Prediction, Predictor, PredictorCache, predictions_from_probabilities
from chainkeeper.serving.tagging import TaggerPredictor, torch_logits
from chainkeeper.training.model import TextClassifier
from chainkeeper.training.tokens import TokenTagger
from tests.model_rows import ENGINEER, LABELS, RELEASER, in_production, save_tiny_classifier

TEXTS = ["where is my card?", "I want a refund for the second time this month", "hi", "send money to my sister",
         "what is my balance", "bye", "my card was stolen yesterday on the train", "transfer failed twice"]
ENGINES = ("torch", "onnx", "onnx-int8")
Engine = Predictor | OnnxPredictor


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny classifier with a head whose logits spread (top scores 0.4 to 0.95, not 1/6 each)."""
    model, tokenizer = TextClassifier.load(save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("tiny")))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=generator))
        model.head.bias.copy_(torch.linspace(-0.5, 0.5, len(LABELS)))
    return model.save(tmp_path_factory.mktemp("classifier"), tokenizer)


@pytest.fixture(scope="module")
def reference(classifier_dir: Path) -> torch.Tensor:
    """PyTorch logits of TEXTS, one text per forward call: (len(TEXTS), labels)."""
    model, tokenizer = TextClassifier.load(classifier_dir)
    rows = []
    with torch.inference_mode():
        for text in TEXTS:
            enc = tokenizer([text], truncation=True, max_length=model.meta.max_length, return_tensors="pt")
            rows.append(model(enc["input_ids"], enc["attention_mask"])[0])
    return torch.stack(rows)


@pytest.fixture(scope="module")
def predictors(classifier_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Engine]:
    """One predictor per engine on the same model: PyTorch, and its ONNX export in fp32 and int8."""
    model, tokenizer = TextClassifier.load(classifier_dir)
    out = tmp_path_factory.mktemp("onnx")
    fp32 = export_onnx(model, out / "model.onnx")
    paths = {"onnx": fp32, "onnx-int8": quantize_onnx(fp32, out / "model.int8.onnx")}
    found: dict[str, Engine] = {"torch": Predictor(model, tokenizer, model_version_id=1, artifact="x")}
    for engine, path in paths.items():
        found[engine] = OnnxPredictor(make_session(path, threads=1), tokenizer, LABELS,
                                      max_length=model.meta.max_length, model_version_id=1, artifact="x",
                                      engine=engine)
    return found


def _session_logits(session: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """An ONNX session's logits of each text alone, fed by the Hugging Face tokenizer: apart
    from the runtime's code (no Rust tokenizer copy, no length groups)."""
    rows = []
    for text in texts:
        enc = tokenizer([text], truncation=True, max_length=32, return_tensors="np")
        (logits,) = session.run(["logits"], {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
        rows.append(torch.from_numpy(logits[0]))
    return torch.stack(rows)


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_answers_with_the_logsumexp_of_its_logits(
        engine: str, predictors: dict[str, Engine], reference: torch.Tensor, classifier_dir: Path) -> None:
    predictor = predictors[engine]
    assert predictor.engine == engine
    # An int8 graph moves this random tiny encoder's logits by up to ~2 against PyTorch
    # (the export's accuracy gate judges that), so each engine is held to its own graph.
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir, local_files_only=True)
    own = _session_logits(predictor.session, tokenizer, TEXTS) if isinstance(predictor, OnnxPredictor) else reference
    if engine == "onnx":  # the fp32 graph is PyTorch's function
        torch.testing.assert_close(own, reference, atol=1e-4, rtol=0)
    alone = [predictor.predict([text])[0] for text in TEXTS]
    expected = torch.logsumexp(own, dim=1).tolist()
    probs = torch.softmax(own, dim=1)
    for answer, lse, row, logits in zip(alone, expected, probs, own, strict=True):
        assert answer.log_partition is not None
        assert answer.log_partition == pytest.approx(lse, abs=1e-4)
        # softmax of the logits is the answer's score and top labels...
        assert answer.label == LABELS[int(row.argmax())]
        assert answer.score == pytest.approx(float(row.max()), abs=1e-5)
        for label, score in answer.scores.items():
            assert score == pytest.approx(float(row[LABELS.index(label)]), abs=2e-6)
        # ...so log p(best) = best logit - log-partition: the free energy's parts agree.
        assert math.log(answer.score) == pytest.approx(float(logits.max()) - answer.log_partition, abs=1e-4)
    assert max(expected) - min(expected) > 1.0  # the texts differ, so no constant would pass
    if engine != "onnx-int8":  # int8 activations are scaled per call: an int8 answer depends on its batch
        together = predictor.predict(TEXTS)  # one call, padded length groups
        assert [a.log_partition for a in together] == pytest.approx(expected, abs=1e-4)


def test_the_micro_batcher_hands_each_caller_its_own_log_partition(predictors: dict[str, Engine]) -> None:
    predictor = predictors["torch"]
    assert isinstance(predictor, Predictor)
    alone = [predictor.predict([text])[0] for text in TEXTS]
    gated = _Gated(predictor)
    batched = BatchedPredictor(gated, max_batch_size=32)
    try:
        futures = [batched.batcher.submit([text]) for text in TEXTS]  # queued while the first call waits
        gated.release.set()
        answers = [future.result(timeout=30)[0] for future in futures]
    finally:
        batched.close()
    assert max(gated.calls) > 1  # some texts really shared a model call
    for answer, single in zip(answers, alone, strict=True):
        assert answer.label == single.label
        assert answer.log_partition == pytest.approx(single.log_partition, abs=1e-4)


class _Gated:
    """A real predictor whose first call waits for ``release``, so the requests behind it queue up."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.model_version_id = predictor.model_version_id
        self.release = threading.Event()
        self.calls: list[int] = []

    def predict(self, texts: list[str]) -> list[Prediction]:
        first = not self.calls
        self.calls.append(len(texts))
        if first:
            self.release.wait(timeout=30)
        return self.predictor.predict(texts)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_a_served_prediction_carries_the_log_partition_but_the_log_does_not(
        ctx: Context, classifier_dir: Path, reference: torch.Tensor, engine: str) -> None:
    version = in_production(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    if engine != "torch":
        labels = [LABELS[i] for i in reference.argmax(dim=1).tolist()]
        export_model_version(ctx, version.id, actor=ENGINEER, quantize=False, evaluation=(TEXTS, labels))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    cache = PredictorCache(ctx, engine=engine)  # micro-batched, as a server runs it
    try:
        served = serve_predictions(ctx, cache, "support", TEXTS)
        assert cache.stats()[version.id]["engine"] == engine and "batch_sizes" in cache.stats()[version.id]
    finally:
        cache.close()
    expected = torch.logsumexp(reference, dim=1).tolist()
    for prediction, lse in zip(served.predictions, expected, strict=True):
        assert prediction.log_partition == pytest.approx(lse, abs=1e-4)
        record = get_prediction(ctx.db, prediction.request_id)  # the log keeps its fields
        assert record.label == prediction.label and not hasattr(record, "log_partition")


def test_probabilities_without_logits_give_no_log_partition_and_a_wrong_count_is_refused() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert [p.log_partition for p in predictions_from_probabilities(probs, ["a", "b", "c"])] == [None, None]
    given = predictions_from_probabilities(probs, ["a", "b", "c"], np.array([1.5, -2.0]))
    assert [p.log_partition for p in given] == [1.5, -2.0] and [p.label for p in given] == ["a", "c"]
    with pytest.raises(InvalidInput, match="1 log-partition values for 2 rows") as caught:
        predictions_from_probabilities(probs, ["a", "b", "c"], np.array([1.0]))
    assert caught.value.hint


def test_numpy_logsumexp_is_stable_for_huge_logits() -> None:
    logits = np.array([[1000.0, 1000.0], [0.0, math.log(3.0)], [-1000.0, -1000.0]], dtype=np.float32)
    np.testing.assert_allclose(logsumexp(logits), [1000.0 + math.log(2.0), math.log(4.0), -1000.0 + math.log(2.0)],
                               rtol=1e-6)
    assert logsumexp(np.empty((0, 3), dtype=np.float32)).shape == (0,)


def test_a_tagger_answers_without_a_log_partition_and_has_no_text_logits(tiny_model_dir: Path) -> None:
    model, tokenizer = TokenTagger.from_base(tiny_model_dir, ["O", "B-PER", "I-PER"], max_length=32)
    model.eval()
    tagger = TaggerPredictor(torch_logits(model), tokenizer, model.labels, max_length=32, model_version_id=1,
                             artifact="x", engine="torch", casing=model.casing is not None)
    (answer,) = tagger.predict(["Anna lives in Paris"])
    assert answer.entities is not None and answer.log_partition is None
    with pytest.raises(InvalidInput, match="scores words, not texts"):
        model.predict_logits(tokenizer, ["Anna lives in Paris"])
