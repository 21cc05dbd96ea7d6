"""Feedback: true labels attached to request ids, all or nothing, with a correction policy."""

from __future__ import annotations

import pytest

from chainkeeper.core.errors import Forbidden, InvalidInput, NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.monitoring.feedback import get_feedback, list_feedback, model_labels, submit_feedback
from chainkeeper.serving.keys import authenticate_deployment_key, create_deployment_key
from tests.model_rows import LABELS, RELEASER
from tests.monitoring.chain import IN_DISTRIBUTION, OPERATOR, Served, any_served, classifier_dir, served  # noqa: F401  (fixtures)


def _feedback_count(served: Served) -> int:
    return len(list_feedback(served.ctx.db))


def test_a_reviewer_labels_requests_and_the_store_records_who(any_served: Served) -> None:
    ids = any_served.serve(IN_DISTRIBUTION[:3])
    outcomes = submit_feedback(any_served.ctx, [(ids[0], "balance"), (ids[1], "refund")], actor=OPERATOR)
    assert [o.status for o in outcomes] == ["created", "created"]
    stored = get_feedback(any_served.ctx.db, ids[0])
    assert (stored.label, stored.source, stored.given_by, stored.revisions) == ("balance", "reviewer", "otto", 0)
    assert stored.correct == (stored.predicted == "balance")
    assert model_labels(any_served.ctx, any_served.version.id) == LABELS
    entries = list_entries(any_served.ctx.db, object_kind="prediction")
    assert [e.action for e in entries] == ["monitoring.feedback"] * 2 and entries[0].actor == "otto"
    assert verify_ledger(any_served.ctx.db).ok


def test_resubmitting_is_idempotent_and_a_different_label_is_a_correction(served: Served) -> None:
    [rid] = served.serve(IN_DISTRIBUTION[:1])
    submit_feedback(served.ctx, [(rid, "balance")], actor=OPERATOR)
    again = submit_feedback(served.ctx, [(rid, "balance")], actor=OPERATOR)
    assert again[0].status == "unchanged"
    assert len(list_entries(served.ctx.db, object_kind="prediction")) == 1
    fixer = Actor("rory", frozenset({"release_manager"}))
    corrected = submit_feedback(served.ctx, [(rid, "card_lost")], actor=fixer)[0]
    assert corrected.status == "corrected"
    stored = get_feedback(served.ctx.db, rid)
    assert (stored.label, stored.previous_label, stored.revisions, stored.given_by) == ("card_lost", "balance", 1,
                                                                                        "rory")
    last = list_entries(served.ctx.db, object_kind="prediction")[-1]
    assert last.action == "monitoring.feedback.correct" and last.before_digest is not None


def test_an_unknown_request_id_refuses_the_whole_batch(served: Served) -> None:
    [rid] = served.serve(IN_DISTRIBUTION[:1])
    with pytest.raises(NotFound, match="no-such-id.*no feedback was stored"):
        submit_feedback(served.ctx, [(rid, "balance"), ("no-such-id", "refund")], actor=OPERATOR)
    assert _feedback_count(served) == 0


def test_a_label_outside_the_models_set_names_the_allowed_labels(served: Served) -> None:
    ids = served.serve(IN_DISTRIBUTION[:2])
    with pytest.raises(InvalidInput, match="'lost_card' .* not one the model knows") as caught:
        submit_feedback(served.ctx, [(ids[0], "balance"), (ids[1], "lost_card")], actor=OPERATOR)
    assert "Allowed labels: balance, card_lost, refund" in (caught.value.hint or "")
    assert _feedback_count(served) == 0


@pytest.mark.parametrize(("items", "fragment"), [
    pytest.param([], "no feedback", id="empty"),
    pytest.param([("x", " ")], "non-blank label", id="blank-label"),
    pytest.param([("x", "balance"), ("x", "refund")], "twice with different labels", id="conflicting-twins"),
])
def test_malformed_batches_are_refused(served: Served, items: list[tuple[str, str]], fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        submit_feedback(served.ctx, items, actor=OPERATOR)


def test_only_allowed_roles_or_scoped_keys_may_give_feedback(served: Served) -> None:
    [rid] = served.serve(IN_DISTRIBUTION[:1])
    with pytest.raises(Forbidden, match="monitoring.feedback"):
        submit_feedback(served.ctx, [(rid, "balance")], actor=Actor("ann", frozenset({"annotator"})))
    predict_only = create_deployment_key(served.ctx, "support", name="shop", actor=RELEASER, scopes=["predict"])
    key = authenticate_deployment_key(served.ctx, predict_only.secret, deployment="support", scope="predict")
    with pytest.raises(Forbidden, match="lacks the 'feedback' scope"):
        submit_feedback(served.ctx, [(rid, "balance")], actor=Actor("apikey"), key=key)
    issued = create_deployment_key(served.ctx, "support", name="crm", actor=RELEASER, scopes=["feedback"])
    key = authenticate_deployment_key(served.ctx, issued.secret, deployment="support", scope="feedback")
    outcome = submit_feedback(served.ctx, [(rid, "refund")], actor=Actor(f"apikey:{key.id}:crm"), key=key)[0]
    assert outcome.feedback.source == "system" and outcome.feedback.given_by.startswith("apikey:")
