"""Out-of-scope scores, the in-scope-only threshold and the metrics (apps.support.scope)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from chainkeeper.apps.support.scope import (
    ScopeThreshold,
    auroc,
    centroid_distance_scores,
    class_centroids,
    energy_scores,
    fit_class_gaussians,
    fit_temperature,
    fit_threshold,
    knn_distance_scores,
    log_softmax,
    mahalanobis_scores,
    msp_scores,
    scope_metrics,
)
from chainkeeper.core.errors import InvalidInput

# --- logit scores ------------------------------------------------------------------------


def test_energy_of_uniform_logits_is_minus_log_k_and_peaked_logits_score_lower() -> None:
    k = 8
    uniform = np.zeros((1, k))
    peaked = np.array([[10.0] + [0.0] * (k - 1)])
    assert energy_scores(uniform)[0] == pytest.approx(-math.log(k))
    # -logsumexp = -(10 + log(1 + 7 e^-10)): about -10, far below the uniform text's -log 8
    assert energy_scores(peaked)[0] == pytest.approx(-(10 + math.log1p(7 * math.exp(-10))))
    assert energy_scores(peaked)[0] < energy_scores(uniform)[0]
    # with temperature T: -T * logsumexp(z / T); uniform zeros give -T log k
    assert energy_scores(uniform, temperature=2.0)[0] == pytest.approx(-2 * math.log(k))


def test_energy_keeps_the_logit_scale_that_softmax_throws_away() -> None:
    small, large = np.array([[1.0, 0.0, 0.0]]), np.array([[101.0, 100.0, 100.0]])
    assert msp_scores(small)[0] == pytest.approx(msp_scores(large)[0])
    assert energy_scores(large)[0] < energy_scores(small)[0] - 99


def test_msp_is_one_minus_the_top_probability_and_temperature_flattens_it() -> None:
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    top = math.exp(2) / (math.exp(2) + 2)
    np.testing.assert_allclose(msp_scores(logits), [1 - top, 2 / 3])
    assert msp_scores(logits, temperature=4.0)[0] > msp_scores(logits)[0]  # hotter: less sure
    np.testing.assert_allclose(np.exp(log_softmax(logits, 3.0)).sum(axis=1), [1.0, 1.0])


def test_huge_logits_do_not_overflow() -> None:
    logits = np.array([[1e4, 0.0], [-1e4, -1e4]])
    assert np.isfinite(energy_scores(logits)).all() and np.isfinite(msp_scores(logits)).all()


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(scale=4.0, size=(20000, 5))
    # labels drawn from softmax(z / 2): the calibrating temperature is 2
    probs = np.exp(log_softmax(z, 2.0))
    labels = np.array([rng.choice(5, p=p) for p in probs])
    assert fit_temperature(z, labels) == pytest.approx(2.0, rel=0.05)


def test_fit_temperature_cools_an_underconfident_model() -> None:
    # always right but with small margins: sharpening (T < 1) lowers the loss
    z = np.tile([0.5, 0.0, 0.0], (50, 1))
    assert fit_temperature(z, np.zeros(50, dtype=int)) < 0.1


@pytest.mark.parametrize(("logits", "labels"), [
    pytest.param(np.zeros((3, 1)), [0, 0, 0], id="one-class"),
    pytest.param(np.zeros((3, 2)), [0, 1], id="lengths-differ"),
    pytest.param(np.zeros((2, 2)), [0, 2], id="label-out-of-range"),
    pytest.param(np.array([[np.nan, 0.0]]), [0], id="nan"),
])
def test_fit_temperature_refuses_bad_input(logits: np.ndarray, labels: list[int]) -> None:
    with pytest.raises(InvalidInput):
        fit_temperature(logits, labels)


# --- embedding scores --------------------------------------------------------------------


def test_centroid_distance_is_zero_on_a_centroid_and_one_when_orthogonal() -> None:
    train = np.array([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [0.0, 1.0, 0.0]])
    centroids = class_centroids(train, [0, 0, 1])
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), [1.0, 1.0], rtol=1e-6)
    scores = centroid_distance_scores(np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), centroids)
    np.testing.assert_allclose(scores, [0.0, 1.0], atol=1e-6)


def test_a_class_without_embeddings_is_refused() -> None:
    with pytest.raises(InvalidInput, match="Class 1"):
        class_centroids(np.eye(3), [0, 2, 2])


def test_knn_distance_takes_the_kth_nearest_reference_row() -> None:
    angles = np.array([0.0, 0.1, 0.5, 2.0])
    reference = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    query = np.array([[1.0, 0.0]])
    np.testing.assert_allclose(knn_distance_scores(query, reference, k=1), [0.0], atol=1e-6)
    np.testing.assert_allclose(knn_distance_scores(query, reference, k=3), [1 - math.cos(0.5)], atol=1e-6)
    with pytest.raises(InvalidInput, match="k=5"):
        knn_distance_scores(query, reference, k=5)


def test_knn_distance_is_the_same_across_chunks() -> None:
    rng = np.random.default_rng(1)
    reference, queries = rng.normal(size=(300, 16)), rng.normal(size=(2500, 16))  # 3 chunks of 1024
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    expected = 1 - np.sort(q @ unit.T, axis=1)[:, -2]
    np.testing.assert_allclose(knn_distance_scores(queries, reference, k=2), expected, atol=1e-5)


def test_a_zero_embedding_is_refused() -> None:
    with pytest.raises(InvalidInput, match="zero"):
        knn_distance_scores(np.zeros((1, 4)), np.eye(4))


def test_mahalanobis_weighs_each_direction_by_how_much_in_scope_texts_vary_along_it() -> None:
    # class 0 around (0, 0): variance 2 along x, 0.5 along y; class 1 far away, same spread
    spread = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    train = np.concatenate([spread, spread + [100.0, 100.0]])
    gaussians = fit_class_gaussians(train, [0] * 4 + [1] * 4, shrinkage=0.0)
    np.testing.assert_allclose(gaussians.means, [[0, 0], [100, 100]], atol=1e-12)
    scores = mahalanobis_scores(np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 2.0], [100.0, 101.0]]), gaussians)
    # the same Euclidean step costs 4x more along the narrow direction
    np.testing.assert_allclose(scores, [2.0, 2.0, 8.0, 2.0], rtol=1e-9)


def test_mahalanobis_shrinkage_keeps_an_unseen_direction_finite() -> None:
    train = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])  # never moves along y or z
    gaussians = fit_class_gaussians(train, [0, 0], shrinkage=0.1)
    scores = mahalanobis_scores(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), gaussians)
    assert np.isfinite(scores).all() and scores[0] > 10 * scores[1]
    with pytest.raises(InvalidInput, match="dimension"):
        mahalanobis_scores(np.zeros((1, 2)), gaussians)


# --- threshold -----------------------------------------------------------------------------


def test_the_rejection_rule_keeps_at_least_99_percent_of_in_scope_dev() -> None:
    scores = np.random.default_rng(2).normal(size=1000)
    fitted = fit_threshold("energy", scores, max_loss=0.01, model_version_id=7)
    assert fitted.rule == "rejection" and fitted.model_version_id == 7 and fitted.dev_rows == 1000
    assert (scores > fitted.threshold).sum() == 10  # exactly the budget with distinct scores
    assert fitted.dev_rejected == pytest.approx(0.01)
    assert (scores <= fitted.threshold).mean() >= 0.99


def test_the_rejection_rule_rounds_the_budget_down() -> None:
    scores = np.arange(250, dtype=float)  # 1 % of 250 is 2.5 texts: only 2 may go
    fitted = fit_threshold("msp", scores)
    assert fitted.threshold == 247.0 and fitted.dev_rejected == pytest.approx(2 / 250)


def test_ties_at_the_threshold_are_kept_never_rejected_beyond_the_budget() -> None:
    scores = np.array([0.0] * 95 + [5.0] * 5)  # 5 tied at the top, budget 1
    fitted = fit_threshold("msp", scores, max_loss=0.01)
    assert fitted.threshold == 5.0 and fitted.dev_rejected == 0.0


def test_the_accuracy_loss_rule_may_reject_wrong_answers_beyond_the_budget() -> None:
    # 100 dev texts: the 10 highest scores are wrong answers, the rest right
    scores = np.arange(100, dtype=float)
    correct = scores < 90
    fitted = fit_threshold("energy", scores, correct=correct, max_loss=0.01)
    # one right answer (score 89) may go, and every wrong one above it
    assert fitted.threshold == 88.0
    assert fitted.rule == "accuracy_loss"
    assert fitted.dev_rejected == pytest.approx(0.11) and fitted.dev_accuracy_loss == pytest.approx(0.01)
    without = fit_threshold("energy", scores, max_loss=0.01)
    assert without.threshold == 98.0  # the label-free rule is stricter


@pytest.mark.parametrize(("kwargs", "match"), [
    pytest.param({"scorer": "cosine"}, "Unknown", id="unknown-scorer"),
    pytest.param({"max_loss": 1.0}, "max_loss", id="loss-one"),
    pytest.param({"max_loss": -0.1}, "max_loss", id="loss-negative"),
    pytest.param({"correct": [True]}, "correctness", id="correct-length"),
])
def test_fit_threshold_refuses_bad_input(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"scorer": "msp", "dev_scores": [0.1, 0.2, 0.3], **kwargs}
    with pytest.raises(InvalidInput, match=match):
        fit_threshold(**args)  # type: ignore[arg-type]


def test_a_threshold_round_trips_through_json_and_decides() -> None:
    fitted = fit_threshold("knn", [0.1, 0.2, 0.3, 0.4], max_loss=0.3, model_version_id=3, k=5)
    again = ScopeThreshold.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again == fitted
    assert again.out_of_scope([0.0, 0.35, 0.9]).tolist() == [False, True, True]
    with pytest.raises(InvalidInput, match="unknown"):
        ScopeThreshold.from_dict({**fitted.to_dict(), "colour": "red"})
    with pytest.raises(InvalidInput, match="rule"):
        ScopeThreshold.from_dict({**fitted.to_dict(), "rule": "vibes"})


# --- measuring -------------------------------------------------------------------------------


def test_auroc_of_a_perfect_separation_is_one_and_of_a_reversed_one_zero() -> None:
    assert auroc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0
    assert auroc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5  # all tied


def test_auroc_of_random_scores_is_a_half() -> None:
    rng = np.random.default_rng(3)
    assert auroc(rng.normal(size=4000), rng.normal(size=4000)) == pytest.approx(0.5, abs=0.02)


def test_auroc_agrees_with_scikit_learn_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    neg, pos = rng.integers(0, 10, size=300).astype(float), rng.integers(3, 13, size=200).astype(float)
    expected = metrics.roc_auc_score([0] * 300 + [1] * 200, np.concatenate([neg, pos]))
    assert auroc(neg, pos) == pytest.approx(expected, abs=1e-12)


def test_scope_metrics_counts_rejections_on_both_sides() -> None:
    in_scores = np.array([0.1, 0.2, 0.3, 0.9])  # the last in-scope text is rejected
    correct = np.array([True, True, False, True])
    out_scores = np.array([0.8, 0.95, 0.05])  # two of three caught
    m = scope_metrics(in_scores, correct, out_scores, threshold=0.5)
    assert m["accuracy"] == 0.75 and m["accuracy_with_rejection"] == 0.5
    assert m["accuracy_loss"] == pytest.approx(0.25)
    assert m["accepted_accuracy"] == pytest.approx(2 / 3)
    assert m["in_scope_rejected"] == 0.25
    assert m["oos_recall"] == pytest.approx(2 / 3) and m["oos_precision"] == pytest.approx(2 / 3)
    assert m["in_scope_rows"] == 4 and m["out_of_scope_rows"] == 3


# --- a real (tiny) classifier, end to end ------------------------------------------------------


INTENTS = {
    "card_arrival": ["where is my new card", "my card has not arrived yet", "when will my card come",
                     "card still not delivered", "how long does the card take to arrive"],
    "exchange_rate": ["what is the exchange rate", "how much is a euro in dollars", "rate for pounds today",
                      "which exchange rate do you use", "currency conversion rate please"],
    "top_up": ["how do i top up", "add money to my account", "top up failed", "my top up did not work",
               "can i top up by card"],
}


def test_a_tiny_classifier_gets_a_threshold_that_keeps_its_dev_texts(tiny_model_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from chainkeeper.training.config import TrainConfig
    from chainkeeper.training.loop import train_classifier
    from chainkeeper.training.model import ClassifierMeta, TextClassifier

    labels = sorted(INTENTS)
    texts = [t for name in labels for t in INTENTS[name]]
    ids = [i for i, name in enumerate(labels) for _ in INTENTS[name]]
    model, tokenizer = TextClassifier.from_base(tiny_model_dir, ClassifierMeta(labels=labels, max_length=16))
    train_classifier(model, tokenizer, texts, ids, TrainConfig(epochs=2, batch_size=5, learning_rate=1e-3))
    model.eval()
    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        logits = model(enc["input_ids"], enc["attention_mask"]).numpy()
    temperature = fit_temperature(logits, ids)
    scores = msp_scores(logits, temperature)
    correct = logits.argmax(axis=1) == np.array(ids)
    fitted = fit_threshold("msp", scores, correct=correct, temperature=temperature, model_version_id=1)
    assert fitted.temperature == temperature and 0.05 <= temperature <= 20
    # 15 texts: a 1 % budget gives up none of the right answers
    assert not (fitted.out_of_scope(scores) & correct).any()
    assert fitted.dev_accuracy_loss == 0.0
