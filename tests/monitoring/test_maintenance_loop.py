"""THE FULL LOOP: drift injected → alert → ticket → retrain → better candidate → release gate → served.

A tiny model is trained on the English half of the customer-service sample and deployed.
Traffic then switches to the Chinese half (another distribution), and a downstream
reviewer attaches the true labels. A drift check fires, its alert reaches a webhook and
opens a ticket; an operator acknowledges it and hands it over; the ML engineer builds the
next dataset version from the released one plus the labelled traffic, a data steward
(not its author) releases it, and only then does the engineer train on it; the candidate
beats the serving model on the held-out Chinese rows; a release manager (not the run's author)
promotes it through the gate and rolls it out; the deployment serves it; the operator
closes the ticket. Everything runs on the real stores, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from chainkeeper.apps.customer_service.sample import generate_sample
from chainkeeper.chain.maintenance import (
    close_when_served,
    evaluate_retraining,
    hand_to_release_gate,
    start_retraining,
    train_on_released,
)
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, Forbidden
from chainkeeper.core.jobs import get_job
from chainkeeper.core.worker import Worker
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.versions import create_dataset_version, get_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.monitoring.alerts import create_rule, evaluate_rules
from chainkeeper.monitoring.drift_jobs import check_drift
from chainkeeper.monitoring.feedback import submit_feedback
from chainkeeper.monitoring.tickets import acknowledge_ticket, get_ticket, hand_over_ticket
from chainkeeper.registry.versions import get_model_version, register_model_version
from chainkeeper.serving.deployments import serve_predictions
from chainkeeper.serving.rollout import promote_rollout, start_canary
from chainkeeper.serving.runtime import PredictorCache
from chainkeeper.training.config import parse_train_config
from chainkeeper.training.runs import start_training_run
from tests.governance.conftest import make_actor
from tests.monitoring.webhooks import Receiver, allowing_loopback, receiver  # noqa: F401 - the fixture

_CJK = re.compile(r"[\u4e00-\u9fff]")
# A 2-layer, 32-wide random encoder learns the templates in seconds at a high rate.
CONFIG = {"epochs": 6, "learning_rate": 4e-3, "batch_size": 32, "max_length": 32, "checkpoint_every_steps": None}


def _split_by_language(folder: Path) -> tuple[Path, Path, list[tuple[str, str]]]:
    """English train/test CSVs for the first model; the Chinese rows become live traffic."""
    paths = generate_sample(folder / "sample", per_intent=60)
    english: dict[str, list[tuple[str, str]]] = {}
    chinese: list[tuple[str, str]] = []
    for split, path in paths.items():
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                pair = (row["text"], row["label"])
                (chinese if _CJK.search(row["text"]) else english.setdefault(split, [])).append(pair)
    out = []
    for split in ("train", "test"):
        target = folder / f"en-{split}.csv"
        with target.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows([("text", "label"), *english[split]])
        out.append(target)
    return out[0], out[1], chinese


def _run_job(ctx: Context, job_id: int | None) -> None:
    assert job_id is not None
    Worker(ctx).run_one()
    job = get_job(ctx.db, job_id)
    assert job.state == "succeeded", job.error


def _serve(ctx: Context, predictors: PredictorCache, texts: list[str]) -> list[str]:
    """Serve texts in batches of 16, as clients would; return the request ids."""
    ids = []
    for start in range(0, len(texts), 16):
        served = serve_predictions(ctx, predictors, "support", texts[start:start + 16])
        ids += [p.request_id for p in served.predictions]
    return ids


def test_drift_alert_ticket_retrain_release_and_serve(any_ctx: Context, tiny_model_dir: Path, tmp_path: Path,
                                                      receiver: Receiver) -> None:  # noqa: F811
    ctx = allowing_loopback(any_ctx)  # the webhook receiver listens on 127.0.0.1
    sofia, dara = make_actor(ctx, "sofia", "data_steward"), make_actor(ctx, "dara", "data_steward")
    emil = make_actor(ctx, "emil", "ml_engineer")
    rhea, remy = make_actor(ctx, "rhea", "release_manager"), make_actor(ctx, "remy", "release_manager")
    omar = make_actor(ctx, "omar", "operator")
    reviewer = make_actor(ctx, "rita", "operator")

    # --- the chain as it stands: English data, released, trained, promoted, deployed ---
    train_csv, test_csv, chinese = _split_by_language(tmp_path)
    sources = [import_csv(ctx, train_csv, actor=sofia), import_csv(ctx, test_csv, actor=sofia, split="test")]
    dataset = create_dataset_version(ctx, name="support-intents", source_ids=[s.id for s in sources], actor=sofia)
    _approve(ctx, "dataset.release", dataset.id, sofia, dara)
    assert get_dataset_version(ctx.db, dataset.id).state == "released"
    run = start_training_run(ctx, dataset_version_id=dataset.id, config=parse_train_config(CONFIG), actor=emil,
                             base_model=tiny_model_dir)
    _run_job(ctx, run.job_id)
    v1 = register_model_version(ctx, run_id=run.id, name="support-intents", actor=emil)
    _approve(ctx, "model.promote", v1.id, emil, rhea)
    _approve(ctx, "deployment.create", v1.id, rhea, remy, payload={"name": "support"})

    create_rule(ctx, name="script-drift", metric="drift.script_chi2.drifted", comparator=">=", threshold=1,
                       window_s=3600, severity="critical", deployment="support", webhook_url=receiver.url,
                       actor=omar)
    predictors = PredictorCache(ctx)
    try:
        # In-distribution traffic first: the check stays quiet and nothing fires.
        english_test = [t for t, _ in _rows(test_csv)]
        _serve(ctx, predictors, english_test)
        quiet = check_drift(ctx, "support", actor=omar, last=len(english_test), checks=["script_chi2"])
        assert not quiet[0].drifted
        assert evaluate_rules(ctx).fired == []

        # --- drift injected: the traffic switches to Chinese, and a reviewer labels it ---
        texts, truth = [t for t, _ in chinese], [y for _, y in chinese]
        request_ids = _serve(ctx, predictors, texts)
        submit_feedback(ctx, list(zip(request_ids, truth, strict=True)), actor=reviewer)
        fired = check_drift(ctx, "support", actor=omar, last=len(texts), checks=["script_chi2", "confidence_ks"])
        assert {r.check: r.drifted for r in fired}["script_chi2"]

        # --- alert → webhook and ticket ---
        evaluation = evaluate_rules(ctx)
        assert len(evaluation.fired) == 1 and len(evaluation.tickets) == 1
        (ticket_id,) = evaluation.tickets
        Worker(ctx).run_forever(exit_when_idle=True)  # a worker runs the webhook's delivery job
        assert [(m["event"], m["rule"]) for m in receiver.received] == [("firing", "script-drift")]
        assert evaluate_rules(ctx).tickets == []  # still firing: no second ticket
        assert get_ticket(ctx.db, ticket_id).owner_role == "operator"

        # --- operator acknowledges and hands over; the engineer retrains ---
        with pytest.raises(Forbidden):
            start_retraining(ctx, ticket_id, actor=omar)
        acknowledge_ticket(ctx, ticket_id, actor=omar)
        with pytest.raises(Conflict, match="handed over"):
            start_retraining(ctx, ticket_id, actor=emil)
        hand_over_ticket(ctx, ticket_id, actor=omar, note="Chinese traffic since the switch; labels attached")
        retraining = start_retraining(ctx, ticket_id, actor=emil)
        assert retraining.feedback_train + retraining.feedback_test == len(chinese)
        new_data = get_dataset_version(ctx.db, retraining.dataset_version_id)
        assert (new_data.name, new_data.version, new_data.state) == ("support-intents", 2, "draft")
        assert new_data.stats["leakage"]["texts"] == 0  # issue 14 item 2: no text in two splits

        # --- the data steward's gate: no run trains on the new version until it is released ---
        with pytest.raises(Conflict, match="awaits a data steward"):
            train_on_released(ctx, ticket_id, actor=emil)
        with pytest.raises(Forbidden):
            decide(ctx, retraining.release_approval_id, actor=emil, approve=True, comment="my own data")
        decide(ctx, retraining.release_approval_id, actor=sofia, approve=True, comment="labels spot-checked")
        assert get_dataset_version(ctx.db, new_data.id).state == "released"
        queued = train_on_released(ctx, ticket_id, actor=emil)
        assert queued.dataset_version_id == new_data.id
        _run_job(ctx, queued.job_id)

        # --- the candidate against the serving model, on the same test split ---
        comparison = evaluate_retraining(ctx, ticket_id, actor=emil)
        old, new = comparison["serving"]["feedback"], comparison["candidate"]["feedback"]
        assert old["rows"] == new["rows"] == retraining.feedback_test
        # The serving model is at chance on the new language (10 intents); the candidate is not.
        assert new["accuracy"] >= old["accuracy"] + 0.1, comparison
        assert new["macro_f1"] > 2 * old["macro_f1"] and comparison["better_on_feedback"]
        assert comparison["candidate"]["released"]["rows"] == len(english_test)

        # --- release gate: asked by the engineer, decided by a release manager ---
        v2, approval = hand_to_release_gate(ctx, ticket_id, actor=emil)
        assert approval.state == "pending" and all(c["passed"] for c in approval.checks)
        with pytest.raises(Forbidden):
            decide(ctx, approval.id, actor=emil, approve=True, comment="my own model")
        decide(ctx, approval.id, actor=rhea, approve=True, comment="better on the new traffic")
        assert get_model_version(ctx.db, v2.id).stage == "production"
        assert get_model_version(ctx.db, v1.id).stage == "production"  # it still answers every caller
        with pytest.raises(Conflict, match="still serves"):
            close_when_served(ctx, ticket_id, actor=omar)
        start_canary(ctx, "support", v2.id, percent=50, actor=rhea)
        promote_rollout(ctx, "support", actor=rhea)
        assert get_model_version(ctx.db, v1.id).stage == "archived"  # now nothing serves it

        # --- the deployment serves the new version ---
        served = serve_predictions(ctx, predictors, "support", texts[:4])
        assert served.model_version.id == v2.id
    finally:
        predictors.close()

    closed = close_when_served(ctx, ticket_id, actor=omar)
    assert closed.state == "closed" and closed.details["model_version_id"] == v2.id
    steps = [(e.action, e.actor) for e in list_entries(ctx.db, object_kind="ticket", object_id=str(ticket_id))]
    assert steps == [("ticket.open", "alerting"), ("ticket.acknowledge", "omar"), ("ticket.handover", "omar"),
                     ("ticket.retrain", "emil"), ("ticket.train", "emil"), ("ticket.evaluate", "emil"),
                     ("ticket.release", "emil"), ("ticket.close", "omar")]
    assert closed.alert_id == evaluation.fired[0]
    assert verify_ledger(ctx.db).ok


def _rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [(r["text"], r["label"]) for r in csv.DictReader(fh)]


def _approve(ctx: Context, action: str, object_id: int, requester: Actor, approver: Actor,
             payload: dict[str, str] | None = None) -> None:
    request = request_approval(ctx, action, object_id, actor=requester, comment="ready", payload=payload)
    assert decide(ctx, request.id, actor=approver, approve=True, comment="reviewed").state == "executed"
