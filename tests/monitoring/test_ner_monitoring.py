"""Monitoring a served tagger: its log keeps entities (redacted), feedback gives the true
spans, live quality scores entity F1, and drift compares the entity-type distribution.

The tagger is a tiny random one (its answers are whatever they are); what is tested is
what monitoring makes of them: live entity F1 is checked against a hand count, and the
drift check against a window whose entity types are forced by the feedback-free log rows
the test writes itself (``log_predictions``), so the expected verdict is known.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.governance.actors import Actor
from chainkeeper.monitoring.drift import TAGGER_CHECKS, entity_type_sample
from chainkeeper.monitoring.drift_jobs import check_drift
from chainkeeper.monitoring.feedback import submit_feedback
from chainkeeper.monitoring.predictions import get_prediction, log_predictions, prediction_record
from chainkeeper.monitoring.quality import live_quality, score_entities
from chainkeeper.monitoring.signals import read_signal
from chainkeeper.registry.versions import ModelVersion, Stage, register_model_version, transition_stage
from chainkeeper.serving.deployments import deploy_model_version, get_deployment_by_name, serve_predictions
from chainkeeper.serving.runtime import PredictorCache
from chainkeeper.training.runs import finish_run
from chainkeeper.training.tables import SqlRun
from tests.model_rows import ENGINEER, RELEASER
from tests.training.test_tasks import conll_version

OPERATOR = Actor("otto", frozenset({"operator"}))
TAGS = ["B-LOC", "B-PER", "I-PER", "O"]
OFFLINE = {"test": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "sentences": 10,
                    "per_type": {"PER": {"precision": 0.8, "recall": 0.8, "f1-score": 0.8, "support": 5},
                                 "LOC": {"precision": 0.7, "recall": 0.6, "f1-score": 0.65, "support": 5}}}}


@dataclass
class Tagged:
    ctx: Context
    version: ModelVersion
    predictors: PredictorCache

    def serve(self, texts: list[str]) -> list[str]:
        return [p.request_id for p in serve_predictions(self.ctx, self.predictors, "ner", texts).predictions]


@pytest.fixture(scope="module")
def tagger_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from chainkeeper.training.tokens import TokenTagger

    torch.manual_seed(0)
    model, tokenizer = TokenTagger.from_base(tiny_model_dir, TAGS, max_length=32)
    with torch.no_grad():  # find entities often, so the log has some
        model.head.bias.copy_(torch.tensor([0.3, 0.3, 0.0, 0.0]))
    return model.save(tmp_path_factory.mktemp("tagger"), tokenizer)


@pytest.fixture
def tagged(ctx: Context, tmp_path: Path, tagger_dir: Path) -> Iterator[Tagged]:
    dataset_id = conll_version(ctx, tmp_path, n=40)
    with ctx.db.session() as s:
        run = SqlRun(task="token-classification", dataset_version_id=dataset_id, base_model="tiny", state="queued",
                     created_by=ENGINEER.name)
        s.add(run)
        s.flush()
        run_id = run.id
    finish_run(ctx.db, run_id, metrics=OFFLINE, model_artifact=ctx.artifacts.put_tree(tagger_dir))
    version = register_model_version(ctx, run_id=run_id, name="ner", actor=ENGINEER)
    transition_stage(ctx, version.id, Stage.STAGING, actor=RELEASER)
    version = transition_stage(ctx, version.id, Stage.PRODUCTION, actor=RELEASER)
    deploy_model_version(ctx, name="ner", model_version_id=version.id, actor=RELEASER)
    result = Tagged(ctx, version, PredictorCache(ctx, batching=False))
    yield result
    result.predictors.close()


def test_the_log_keeps_a_taggers_entities_with_their_text_redacted(tagged: Tagged) -> None:
    text = "Call alice on +44 20 7946 0958 in Paris"
    [request_id] = tagged.serve([text])
    record = get_prediction(tagged.ctx.db, request_id)
    assert record.entities is not None and record.input_chars == len(text)
    assert "[PHONE]" in record.input_text and "7946" not in record.input_text
    assert all("7946" not in e["text"] and 0 <= e["start"] < e["end"] <= len(text) for e in record.entities)
    assert record.label == (",".join(sorted({e["type"] for e in record.entities})) or "O")
    # An entity over the phone number keeps its offsets, not its digits.
    stored = prediction_record(request_id=str(uuid.uuid4()), deployment_id=1, model_version_id=1, at=utcnow(),
                               text=text, label="PER", score=0.5, latency_ms=1.0,
                               entities=[{"type": "PER", "start": 14, "end": 30, "text": text[14:30], "score": 0.5}])
    assert stored.entities == [{"type": "PER", "start": 14, "end": 30, "score": 0.5, "text": "[PHONE]"}]


def test_feedback_spans_are_checked_and_give_live_entity_f1(tagged: Tagged) -> None:
    texts = ["alice visited paris today", "bob visited rome today", "carol visited oslo today"]
    ids = tagged.serve(texts)
    served = {r: get_prediction(tagged.ctx.db, r).entities or [] for r in ids}
    truth = [[{"type": "PER", "start": 0, "end": 5}, {"type": "LOC", "start": 14, "end": 19}],
             [{"type": "PER", "start": 0, "end": 3}, {"type": "LOC", "start": 12, "end": 16}],
             [e for e in served[ids[2]]]]  # the third exactly as served: correct by definition

    for bad, message in (("PER", "answered by a tagger"),
                         ([{"type": "ORG", "start": 0, "end": 3}], "does not know"),
                         ([{"type": "PER", "start": 0, "end": 99}], "text's length")):
        with pytest.raises(InvalidInput, match=message):
            submit_feedback(tagged.ctx, [(ids[0], bad)], actor=OPERATOR)
    outcomes = submit_feedback(tagged.ctx, list(zip(ids, truth, strict=True)), actor=OPERATOR)
    assert [o.status for o in outcomes] == ["created"] * 3
    assert outcomes[2].feedback.correct and outcomes[0].feedback.spans == truth[0]
    assert outcomes[0].feedback.label == "LOC,PER"
    again = submit_feedback(tagged.ctx, [(ids[0], list(reversed(truth[0])))], actor=OPERATOR)
    assert again[0].status == "unchanged"  # the same spans in another order
    corrected = submit_feedback(tagged.ctx, [(ids[0], truth[0][:1])], actor=OPERATOR)
    assert corrected[0].status == "corrected" and corrected[0].feedback.previous_label == "LOC,PER"
    truth[0] = truth[0][:1]

    expected = score_entities(truth, [served[r] for r in ids])
    quality = live_quality(tagged.ctx, "ner", actor=OPERATOR, window=timedelta(hours=1))
    [overall] = quality.overall
    assert overall.labelled == 3 and overall.entity_f1 == pytest.approx(expected["entity_f1"])
    assert overall.accuracy == pytest.approx(expected["exact_match"]) and overall.accuracy >= 1 / 3
    assert quality.offline[tagged.version.id]["entity_f1"] == 0.75

    # An alert rule can watch the same figure: the live_entity_f1 signal reads what live quality shows.
    now = utcnow()
    deployment_id = get_deployment_by_name(tagged.ctx.db, "ner").id
    for name, value in (("live_entity_f1", expected["entity_f1"]), ("live_accuracy", expected["exact_match"]),
                        ("live_entity_recall", expected["entity_recall"])):
        assert read_signal(tagged.ctx, name, deployment_id, now - timedelta(hours=1), now) == pytest.approx(value)


def test_entity_scores_count_type_and_both_offsets() -> None:
    per, loc = {"type": "PER", "start": 0, "end": 3}, {"type": "LOC", "start": 10, "end": 14}
    scores = score_entities([[per, loc], [per]], [[per, {**loc, "end": 13}], []])
    assert (scores["entity_precision"], scores["entity_recall"]) == (0.5, pytest.approx(1 / 3))
    assert scores["entity_f1"] == pytest.approx(0.4) and scores["exact_match"] == 0.0
    assert score_entities([[]], [[]])["entity_f1"] is None  # nothing to score is not a score of 0


def test_drift_on_the_entity_type_distribution(tagged: Tagged) -> None:
    ctx = tagged.ctx
    dep_id = serve_predictions(ctx, tagged.predictors, "ner", ["warm"]).deployment.id

    def log(types_per_text: list[list[str]]) -> None:
        now = utcnow()
        log_predictions(ctx.db, [prediction_record(
            request_id=str(uuid.uuid4()), deployment_id=dep_id, model_version_id=tagged.version.id,
            at=now, text="dave visited lima today", label=",".join(sorted(set(t))) or "O", score=0.9,
            latency_ms=1.0, entities=[{"type": k, "start": 0, "end": 4, "text": "dave", "score": 0.9} for k in t])
            for t in types_per_text])

    # The reference is what the tagger finds in the test split; a window like it does not drift...
    from chainkeeper.monitoring.drift_jobs import reference_profile

    reference = reference_profile(ctx, tagged.version).profile
    assert reference.entity_types is not None and reference.embeddings is None
    per_text: list[list[str]] = []
    sample = reference.entity_types
    for i in range(0, len(sample), 2):  # re-pack the reference's own observations into texts
        per_text.append([k for k in sample[i:i + 2] if k != "(none)"])
    per_text *= 4  # the same shares, a window big enough to test
    log(per_text)
    calm = {r.check: r for r in check_drift(ctx, "ner", actor=OPERATOR, last=len(per_text), min_window=10)}
    assert list(calm) == list(TAGGER_CHECKS)
    assert not calm["entity_type_chi2"].drifted and not calm["entity_type_psi"].drifted
    # ...a window of only one type (what a new kind of traffic looks like) does.
    log([["ORG", "ORG"]] * 60)
    shifted = {r.check: r for r in check_drift(ctx, "ner", actor=OPERATOR, last=60, min_window=10)}
    assert shifted["entity_type_chi2"].drifted and shifted["entity_type_psi"].drifted
    assert shifted["entity_type_psi"].details["window_types"][0][0] == "ORG"
    with pytest.raises(InvalidInput, match="do not apply"):
        check_drift(ctx, "ner", actor=OPERATOR, last=60, min_window=10, checks=["label_psi"])


def test_entity_type_samples_count_texts_without_entities() -> None:
    assert entity_type_sample([["PER", "LOC"], [], ["PER"]]) == ["PER", "LOC", "(none)", "PER"]
