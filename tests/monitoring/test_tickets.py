"""Maintenance tickets: opened by an alert, acknowledged, handed over, closed; each step in the ledger."""

from __future__ import annotations

import time
import uuid

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.core.scheduler import list_schedules
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.monitoring.alerts import create_rule, evaluate_rules
from chainkeeper.monitoring.predictions import log_predictions, prediction_record
from chainkeeper.monitoring.tickets import (
    acknowledge_ticket,
    close_ticket,
    get_ticket,
    hand_over_ticket,
    list_tickets,
    ticket_stats,
)
from chainkeeper.serving.deployments import deploy_model_version
from tests.governance.conftest import make_actor
from tests.model_rows import RELEASER, in_production


def _ticket(ctx: Context) -> int:
    """A rule that fires on real logged traffic, and the ticket its alert opened."""
    olga = make_actor(ctx, "olga", "operator")
    version = in_production(ctx, "intents")
    dep = deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    create_rule(ctx, name="low-confidence", metric="mean_confidence", comparator="<", threshold=0.5, window_s=600,
                severity="critical", actor=olga)
    log_predictions(ctx.db, [prediction_record(request_id=str(uuid.uuid4()), deployment_id=dep.id,
                                               model_version_id=version.id, at=utcnow(), text="??", label="balance",
                                               score=0.1, latency_ms=4.0)])
    (ticket_id,) = evaluate_rules(ctx).tickets
    return ticket_id


def test_an_alert_opens_a_ticket_that_an_operator_acknowledges_and_hands_over(any_ctx: Context) -> None:
    ctx = any_ctx
    ticket_id = _ticket(ctx)
    ticket = get_ticket(ctx.db, ticket_id)
    assert (ticket.state, ticket.owner_role) == ("open", "operator")
    assert "mean_confidence" in ticket.title and ticket.alert_id is not None

    omar = make_actor(ctx, "omar", "operator")
    time.sleep(0.05)
    acked = acknowledge_ticket(ctx, ticket_id, actor=omar, comment="looking")
    assert acked.state == "acknowledged" and acked.acknowledged_by == "omar"
    assert acked.time_to_acknowledge_s is not None and acked.time_to_acknowledge_s >= 0.05
    assert acked.time_to_acknowledge_s == pytest.approx((acked.acknowledged_at - acked.opened_at).total_seconds(),
                                                        abs=1e-3)
    with pytest.raises(Conflict, match="acknowledged by omar"):
        acknowledge_ticket(ctx, ticket_id, actor=omar)

    handed = hand_over_ticket(ctx, ticket_id, actor=omar, note="confidence collapsed on new traffic")
    assert (handed.state, handed.owner_role, handed.handed_over_by) == ("handed_over", "ml_engineer", "omar")
    assert list_tickets(ctx.db, owner_role="ml_engineer")[0].id == ticket_id

    closed = close_ticket(ctx, ticket_id, actor=omar, resolution="duplicate of a planned retraining")
    assert closed.state == "closed" and closed.closed_by == "omar"
    with pytest.raises(Conflict, match="closed by omar"):
        close_ticket(ctx, ticket_id, actor=omar, resolution="again")

    steps = [(e.action, e.actor) for e in list_entries(ctx.db, object_kind="ticket", object_id=str(ticket_id))]
    assert steps == [("ticket.open", "alerting"), ("ticket.acknowledge", "omar"), ("ticket.handover", "omar"),
                     ("ticket.close", "omar")]
    stats = ticket_stats(ctx.db)
    assert stats["by_state"] == {"closed": 1} and stats["mean_time_to_acknowledge_s"] >= 0.05
    assert verify_ledger(ctx.db).ok


def test_tickets_refuse_steps_out_of_order_and_wrong_people(ctx: Context) -> None:
    ticket_id = _ticket(ctx)
    omar = make_actor(ctx, "omar", "operator")
    erin = make_actor(ctx, "erin", "ml_engineer")
    with pytest.raises(Conflict, match="Acknowledge it first"):
        hand_over_ticket(ctx, ticket_id, actor=omar, note="retrain please")
    with pytest.raises(Forbidden, match="alert.manage"):
        acknowledge_ticket(ctx, ticket_id, actor=erin)
    acknowledge_ticket(ctx, ticket_id, actor=omar)
    with pytest.raises(InvalidInput, match="note"):
        hand_over_ticket(ctx, ticket_id, actor=omar, note="  ")
    with pytest.raises(InvalidInput, match="resolution"):
        close_ticket(ctx, ticket_id, actor=omar, resolution="")
    with pytest.raises(NotFound, match="no maintenance ticket 999"):
        acknowledge_ticket(ctx, 999, actor=omar)
    with pytest.raises(InvalidInput, match="Unknown ticket state"):
        list_tickets(ctx.db, state="done")
    # Nothing the refused calls tried is in the ledger or on the ticket.
    assert get_ticket(ctx.db, ticket_id).state == "acknowledged"
    assert [e.action for e in list_entries(ctx.db, object_kind="ticket")] == ["ticket.open", "ticket.acknowledge"]


def test_the_cli_runs_rules_and_tickets_as_an_operator(ctx: Context, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from chainkeeper.cli.main import main
    from chainkeeper.governance.users import create_user, issue_token

    version = in_production(ctx, "intents")
    dep = deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    log_predictions(ctx.db, [prediction_record(request_id=str(uuid.uuid4()), deployment_id=dep.id,
                                               model_version_id=version.id, at=utcnow(), text="??", label="balance",
                                               score=0.1, latency_ms=4.0)])
    create_user(ctx.db, "omar", roles=["operator"])
    monkeypatch.setenv("CHAINKEEPER_HOME", str(ctx.settings.home))
    monkeypatch.setenv("CHAINKEEPER_TOKEN", issue_token(ctx.db, "omar", name="cli").secret)
    monkeypatch.setenv("COLUMNS", "200")

    def cli(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(["monitor", *args])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    code, _, err = cli("alerts", "add", "--name", "r", "--metric", "p99", "--when", ">", "--threshold", "1")
    assert code == 2 and "no metric or check named 'p99'" in err and "mean_confidence" in err
    code, out, _ = cli("alerts", "add", "--name", "low-confidence", "--metric", "mean_confidence", "--when", "<",
                       "--threshold", "0.5", "--deployment", "support")
    assert code == 0 and "mean_confidence < 0.5 over 300 s" in out
    code, out, _ = cli("alerts", "evaluate")
    assert code == 0 and "1 fired" in out
    (ticket,) = list_tickets(ctx.db)
    assert cli("tickets", "ack", str(ticket.id))[0] == 0
    code, out, _ = cli("tickets", "handover", str(ticket.id), "--note", "please retrain")
    assert code == 0 and "owned by ml_engineer" in out
    code, out, _ = cli("tickets", "list")
    assert code == 0 and "handed_over" in out and "mean time to acknowledge" in out
    code, _, err = cli("tickets", "retrain", str(ticket.id))
    assert code == 5 and "maintenance.retrain" in err  # an operator may not retrain
    code, out, _ = cli("alerts", "list", "--state", "firing")
    assert code == 0 and "low-confidence" in out
    code, _, err = cli("alerts", "evaluate", "--every-s", "0")
    assert code == 2 and "must be positive" in err
    code, out, _ = cli("alerts", "evaluate", "--every-s", "30")
    assert code == 0 and "(alerts:evaluate) queues one alerts.evaluate job every 30s" in " ".join(out.split())
    assert "chainkeeper schedules pause" in " ".join(out.split())
    (schedule,) = list_schedules(ctx.db, kind="alerts.evaluate")
    assert schedule.every_s == 30.0 and schedule.created_by == "omar"


def test_the_api_acknowledges_and_reports_time_to_acknowledge(ctx: Context) -> None:
    from fastapi.testclient import TestClient

    from chainkeeper.api.app import create_app
    from chainkeeper.governance.users import create_user, issue_token

    ticket_id = _ticket(ctx)
    create_user(ctx.db, "omar", roles=["operator"])
    create_user(ctx.db, "erin", roles=["ml_engineer"])
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    omar = {"Authorization": f"Bearer {issue_token(ctx.db, 'omar', name='t').secret}"}
    erin = {"Authorization": f"Bearer {issue_token(ctx.db, 'erin', name='t').secret}"}

    refused = client.post(f"/api/tickets/{ticket_id}/acknowledge", json={}, headers=erin)
    assert refused.status_code == 403 and "alert.manage" in refused.json()["detail"]
    early = client.post(f"/api/tickets/{ticket_id}/retrain", json={}, headers=erin)
    assert early.status_code == 409 and "handed over" in early.json()["detail"]
    acked = client.post(f"/api/tickets/{ticket_id}/acknowledge", json={"comment": "on it"}, headers=omar)
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "omar"
    listed = client.get("/api/tickets", headers=erin).json()
    assert listed["tickets"][0]["state"] == "acknowledged"
    assert listed["stats"]["mean_time_to_acknowledge_s"] == acked.json()["time_to_acknowledge_s"]
    alert = client.get(f"/api/alerts/{listed['tickets'][0]['alert_id']}", headers=erin).json()
    assert alert["state"] == "firing" and alert["notifications"] == []
