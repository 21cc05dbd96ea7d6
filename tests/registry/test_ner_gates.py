"""A tagger is released on what NER is judged on: test entity F1, overall and per type.

The same thresholds as a classifier's (``min_macro_f1``, ``min_slice_macro_f1``,
``max_drop_vs_production``) read the tagger's entity F1, its per-type F1 and its drop
against the tagger in production; the promotion gate's ``has-evaluation`` check accepts
a tagger's test entity metrics (issue 14, item 3).
"""

from __future__ import annotations

from chainkeeper.chain.gates import check_model_has_evaluation
from chainkeeper.core.context import Context
from chainkeeper.registry.gates import GateThresholds, evaluate_gates, is_tagger_metrics
from chainkeeper.registry.versions import register_model_version
from tests.model_rows import ENGINEER, insert_run


def _tagger(f1: float, per: float, loc: float) -> dict:
    return {"test": {"precision": f1, "recall": f1, "f1": f1, "sentences": 100, "token": {"accuracy": 0.97},
                     "per_type": {"PER": {"precision": per, "recall": per, "f1-score": per, "support": 40},
                                  "LOC": {"precision": loc, "recall": loc, "f1-score": loc, "support": 30},
                                  "MISC": {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}}}}


def test_a_taggers_thresholds_read_entity_f1_overall_and_per_type() -> None:
    thresholds = GateThresholds(name="ner", min_macro_f1=0.8, min_slice_macro_f1=0.7, max_drop_vs_production=0.02)
    good = evaluate_gates(thresholds, _tagger(0.85, 0.9, 0.75), _tagger(0.86, 0.9, 0.8))
    assert [(o.gate, o.passed) for o in good] == [("min-entity-f1", True), ("min-type-f1", True),
                                                   ("no-worse-than-production", True)]
    assert "test entity F1 0.8500 meets" in good[0].detail
    assert "all 2 entity types reach" in good[1].detail  # a type without test support is not judged

    bad = {o.gate: o for o in evaluate_gates(thresholds, _tagger(0.79, 0.9, 0.6), _tagger(0.9, 0.9, 0.9))}
    assert not bad["min-entity-f1"].passed and bad["min-entity-f1"].value == 0.79
    assert not bad["min-type-f1"].passed and "LOC" in bad["min-type-f1"].detail and bad["min-type-f1"].value == 0.6
    assert not bad["no-worse-than-production"].passed and "entity F1 0.7900 vs production 0.9000" in \
        bad["no-worse-than-production"].detail


def test_a_tagger_is_not_compared_with_a_classifier_in_production() -> None:
    classifier = {"test": {"accuracy": 0.9, "macro_f1": 0.88}}
    assert is_tagger_metrics(_tagger(0.8, 0.8, 0.8)) and not is_tagger_metrics(classifier)
    [outcome] = evaluate_gates(GateThresholds(name="ner", max_drop_vs_production=0.02), _tagger(0.8, 0.8, 0.8),
                               classifier)
    assert not outcome.passed and "cannot be compared" in outcome.detail
    # A classifier's gates are unchanged.
    [macro] = evaluate_gates(GateThresholds(name="x", min_macro_f1=0.8), classifier)
    assert (macro.gate, macro.passed) == ("min-macro-f1", True)


def test_the_promotion_gate_accepts_a_taggers_test_evaluation(ctx: Context) -> None:
    run_id = insert_run(ctx, model_artifact="a" * 64, metrics=_tagger(0.85, 0.9, 0.75))
    version = register_model_version(ctx, run_id=run_id, name="ner", actor=ENGINEER)
    check = check_model_has_evaluation(ctx, str(version.id), {})
    assert check.passed, check.detail
    assert check.detail == "test entity F1 0.850 (P 0.850, R 0.850) on 100 sentences, weakest type LOC at 0.750"
    # Without a test split there is still nothing to judge.
    bare = register_model_version(ctx, run_id=insert_run(ctx, model_artifact="b" * 64, metrics={"train": {}}),
                                  name="ner", actor=ENGINEER)
    assert not check_model_has_evaluation(ctx, str(bare.id), {}).passed
