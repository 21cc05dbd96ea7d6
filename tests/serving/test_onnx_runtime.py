"""The ONNX Runtime engine: length grouping, session settings, answers equal to PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chainkeeper.core.errors import InvalidInput
from chainkeeper.serving.export import export_onnx
from chainkeeper.serving.onnx_runtime import OnnxPredictor, length_groups, make_session, softmax
from chainkeeper.training.model import TextClassifier
from tests.model_rows import save_tiny_classifier


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))
    model, _ = TextClassifier.load(folder)
    return folder, export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_length_groups_cover_every_item_once_and_bound_the_padding() -> None:
    lengths = [12, 60, 11, 13, 58, 12, 30, 11, 64, 14]
    groups = length_groups(lengths, max_group=4)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= 4
        real = sum(lengths[i] for i in group)
        padded = max(lengths[i] for i in group) * len(group)
        assert padded <= real * 1.25 + 4 * len(group)
    # Short texts never share a batch with long ones.
    assert not any({0, 1} <= set(g) for g in groups)


def test_equal_lengths_fill_whole_batches() -> None:
    assert [len(g) for g in length_groups([16] * 70, max_group=32)] == [32, 32, 6]
    assert length_groups([]) == []


def test_bad_grouping_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput, match="max_group is 0"):
        length_groups([3], max_group=0)
    with pytest.raises(InvalidInput, match="negative"):
        length_groups([3, -1])


def test_softmax_rows_sum_to_one_even_for_huge_logits() -> None:
    probs = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.25, 0.75]], atol=1e-6)


def test_sessions_use_one_inter_op_thread_and_the_given_intra_op_threads(exported: tuple[Path, Path]) -> None:
    session = make_session(exported[1], threads=2)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == ["logits"]


def test_the_onnx_predictor_answers_like_pytorch_in_input_order(exported: tuple[Path, Path]) -> None:
    folder, path = exported
    model, tokenizer = TextClassifier.load(folder)
    texts = ["hi", "my card never arrived and I have been waiting for three weeks now", "refund please",
             "a", "what is the exchange rate for a transfer to Japan tomorrow morning?"]
    predictor = OnnxPredictor(make_session(path, threads=1), tokenizer, model.meta.labels,
                              max_length=model.meta.max_length, model_version_id=7, artifact="x", engine="onnx")
    expected = model.predict_proba(tokenizer, texts).numpy()
    np.testing.assert_allclose(predictor.probabilities(texts), expected, atol=1e-4)
    answers = predictor.predict(texts)
    assert [a.label for a in answers] == [model.meta.labels[i] for i in expected.argmax(axis=1)]
    assert answers[1].score == pytest.approx(float(expected[1].max()), abs=1e-4)
    with pytest.raises(InvalidInput, match="Text 1 is empty"):
        predictor.predict(["ok", " "])
