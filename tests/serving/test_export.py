"""ONNX export of a registered model version: files, scores, the record, the job."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobHandle, submit_job
from chainkeeper.governance.ledger import list_entries
from chainkeeper.serving.export import accuracy_of, export_model_version, export_onnx, latest_export, run_export_job
from chainkeeper.serving.onnx_runtime import default_threads, make_session
from chainkeeper.serving.runtime import PredictorCache, load_predictor
from chainkeeper.training.model import TextClassifier
from tests.model_rows import ENGINEER, registered, save_tiny_classifier

TEXTS = ["where is my card?", "I want a refund", "hi there", "send money to my sister", "what is my balance",
         "bye", "my card was stolen yesterday on the train", "transfer failed twice"]


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


def _own_labels(classifier_dir: Path) -> list[str]:
    """The PyTorch model's own answers: an evaluation set it scores 100 % on."""
    model, tokenizer = TextClassifier.load(classifier_dir)
    return [model.meta.labels[i] for i in model.predict_proba(tokenizer, TEXTS).argmax(dim=1).tolist()]


def test_the_onnx_graph_gives_pytorch_logits_for_any_batch_and_length(classifier_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = TextClassifier.load(classifier_dir)
    session = make_session(export_onnx(model, tmp_path / "m.onnx"), threads=1)
    for batch in (["hi"], TEXTS):  # dynamic batch and sequence axes
        enc = tokenizer(batch, padding=True, return_tensors="pt")
        with torch.inference_mode():
            expected = model(enc["input_ids"], enc["attention_mask"]).numpy()
        (logits,) = session.run(["logits"], {"input_ids": enc["input_ids"].numpy(),
                                             "attention_mask": enc["attention_mask"].numpy()})
        np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_export_records_both_forms_with_scores_and_the_runtime_serves_the_best(
        ctx: Context, classifier_dir: Path) -> None:
    version = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    labels = _own_labels(classifier_dir)
    result = export_model_version(ctx, version.id, actor=ENGINEER, quantize=True, evaluation=(TEXTS, labels))

    assert result.torch_accuracy == 1.0 and result.evaluated_rows == len(TEXTS)
    fp32, int8 = result.form("onnx"), result.form("onnx-int8")
    assert fp32 is not None and int8 is not None
    assert fp32.accuracy == 1.0 and fp32.delta_points == 0.0 and fp32.passed
    assert int8.passed == (-int8.delta_points <= result.max_delta_points)
    assert int8.size_bytes < fp32.size_bytes  # int8 weights are smaller
    for form in result.forms:
        assert ctx.artifacts.exists(form.artifact) and form.latency_ms_p50 > 0

    entries = [e for e in list_entries(ctx.db, object_kind="model_version", object_id=str(version.id))
               if e.action == "model.export"]
    assert len(entries) == 1 and entries[0].actor == ENGINEER.name
    assert entries[0].details["manifest"] == result.manifest
    assert latest_export(ctx, version.id) == result
    assert latest_export(ctx, version.id, "f" * 64) is None  # an export of other files does not count

    predictor = load_predictor(ctx, version)
    assert predictor.engine == result.best_engine() != "torch"
    onnx_answers = load_predictor(ctx, version, engine="onnx").predict(TEXTS)
    assert [p.label for p in onnx_answers] == labels

    # Served, an ONNX model gets one single-threaded session call per core at once, and
    # concurrent callers get the answers a lone call gives.
    cache = PredictorCache(ctx)
    served = cache.get(version)
    assert len(served.batcher._threads) == default_threads()
    assert served.predictor.session.get_session_options().intra_op_num_threads == 1
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda t: served.predict([t])[0].label, TEXTS * 3))
    assert concurrent == labels * 3
    cache.close()


def test_without_an_export_the_runtime_serves_pytorch_and_refuses_a_named_onnx_engine(
        ctx: Context, classifier_dir: Path) -> None:
    version = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    assert load_predictor(ctx, version).engine == "torch"
    with pytest.raises(InvalidInput, match="no onnx export") as caught:
        load_predictor(ctx, version, engine="onnx")
    assert "export" in (caught.value.hint or "")
    with pytest.raises(InvalidInput, match="Unknown engine"):
        load_predictor(ctx, version, engine="tensorrt")


def test_a_bad_gate_or_no_rows_is_refused_and_records_nothing(ctx: Context, classifier_dir: Path) -> None:
    version = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    with pytest.raises(InvalidInput, match="max_delta_points is -1"):
        export_model_version(ctx, version.id, actor=ENGINEER, max_delta_points=-1, evaluation=(TEXTS, TEXTS))
    with pytest.raises(InvalidInput, match="no labelled test rows"):
        export_model_version(ctx, version.id, actor=ENGINEER, evaluation=([], []))
    assert latest_export(ctx, version.id) is None


def test_the_export_job_exports_without_int8_when_asked(ctx: Context, classifier_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    version = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    labels = _own_labels(classifier_dir)
    # The job scores on the run's test split; the test rows here are inserted directly, so
    # point the split reader at the fixed texts (the data stage tests load_split itself).
    monkeypatch.setattr("chainkeeper.serving.export._test_split", lambda _ctx, _run: (TEXTS, labels))
    job = submit_job(ctx, "export", {"model_version_id": version.id, "quantize": False}, actor=ENGINEER.name)
    out = run_export_job(ctx, JobHandle(ctx.db, job, "w1"))
    assert out["best_engine"] == "onnx" and set(out["forms"]) == {"onnx"}
    assert latest_export(ctx, version.id).manifest == out["manifest"]  # type: ignore[union-attr]


def test_accuracy_is_the_share_of_matching_labels() -> None:
    assert accuracy_of(["a", "b", "c", "a"], ["a", "b", "b", "b"]) == 0.5
    assert accuracy_of([], []) == 0.0
    with pytest.raises(InvalidInput, match="2 predictions for 1 labels"):
        accuracy_of(["a", "b"], ["a"])
