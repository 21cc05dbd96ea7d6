"""The retraining data passes the data steward's release gate before any run trains on it.

A served model with a real released dataset version (``tests.monitoring.chain``), real
labelled traffic, and a ticket its alert opened: ``start_retraining`` builds the draft
version and asks for its release; training is refused while the request is pending and
after a steward rejects it, with the reason; once a steward approves a new request, the
run is queued and the step is on the ticket and in the ledger. The HTTP and CLI shells
answer the same. Runs are only queued here; the full loop
(tests/monitoring/test_maintenance_loop.py) trains.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chainkeeper.chain.maintenance import evaluate_retraining, start_retraining, train_on_released
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, Forbidden
from chainkeeper.data.diff import diff_dataset_versions
from chainkeeper.data.identity import find_leakage
from chainkeeper.data.sources import count_sources
from chainkeeper.data.versions import get_dataset_version, list_dataset_versions, read_dataset_rows
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import decide, get_approval, request_approval
from chainkeeper.governance.ledger import list_entries, verify_ledger
from chainkeeper.governance.permissions import create_role
from chainkeeper.monitoring.alerts import create_rule, evaluate_rules
from chainkeeper.monitoring.feedback import submit_feedback
from chainkeeper.monitoring.tickets import acknowledge_ticket, get_ticket, hand_over_ticket
from chainkeeper.training.config import parse_train_config
from chainkeeper.training.runs import count_runs
from chainkeeper.training.tables import SqlRun
from tests.governance.conftest import make_actor
from tests.model_rows import LABELS
from tests.monitoring.chain import (  # noqa: F401 - fixtures
    IN_DISTRIBUTION,
    Served,
    any_served,
    classifier_dir,
    served,
)

CONFIG = parse_train_config({"epochs": 1, "batch_size": 8, "max_length": 16, "checkpoint_every_steps": None})


def _handed_over_ticket(served: Served, labelled: list[tuple[str, str]] | None = None) -> int:
    """Labelled traffic on ``support`` (``labelled`` or new texts), an alert on it, and its ticket handed over."""
    ctx = served.ctx
    omar, rita = make_actor(ctx, "omar", "operator"), make_actor(ctx, "rita", "operator")
    labelled = labelled or [(f"please help with my {label} request number {i}", label)
                            for i, label in enumerate(label for _ in range(4) for label in LABELS)]
    request_ids = served.serve([text for text, _ in labelled])
    submit_feedback(ctx, list(zip(request_ids, [label for _, label in labelled], strict=True)), actor=rita)
    create_rule(ctx, name="any-traffic", metric="prediction_count", comparator=">=", threshold=1, window_s=600,
                deployment="support", actor=omar)
    (ticket_id,) = evaluate_rules(ctx).tickets
    acknowledge_ticket(ctx, ticket_id, actor=omar)
    hand_over_ticket(ctx, ticket_id, actor=omar, note="new phrasing; labels attached")
    return ticket_id


def _serving_run_base_model(served: Served, folder: Path) -> None:
    """Point the served run at a real base model folder (the fixture records only a name)."""
    with served.ctx.db.session() as s:
        run = s.get(SqlRun, served.version.run_id)
        assert run is not None
        run.base_model = str(folder)


def _ticket_steps(ctx: Context, ticket_id: int) -> list[str]:
    return [e.action for e in list_entries(ctx.db, object_kind="ticket", object_id=str(ticket_id))]


def _refused_without_change(ctx: Context, ticket_id: int, engineer: Actor, tiny_model_dir: Path, match: str) -> str:
    """Training is refused with a Conflict matching ``match``; no run, no ticket step. Returns the hint."""
    runs, steps = count_runs(ctx.db), _ticket_steps(ctx, ticket_id)
    with pytest.raises(Conflict, match=match) as refused:
        train_on_released(ctx, ticket_id, actor=engineer, config=CONFIG, base_model=tiny_model_dir)
    assert count_runs(ctx.db) == runs and _ticket_steps(ctx, ticket_id) == steps
    assert "run_id" not in get_ticket(ctx.db, ticket_id).details
    return refused.value.hint or ""


def test_training_waits_for_the_data_steward_and_refuses_rejected_data(any_served: Served,
                                                                       tiny_model_dir: Path) -> None:
    ctx = any_served.ctx
    emil, sofia = make_actor(ctx, "emil", "ml_engineer"), make_actor(ctx, "sofia", "data_steward")
    ticket_id = _handed_over_ticket(any_served)

    started = start_retraining(ctx, ticket_id, actor=emil)
    draft = get_dataset_version(ctx.db, started.dataset_version_id)
    assert (draft.state, draft.version, draft.created_by) == ("draft", 2, "emil")
    request = get_approval(ctx, started.release_approval_id)
    assert (request.action, request.object_id, request.state) == ("dataset.release", str(draft.id), "pending")
    # The steward sees the quality report, as for every release.
    assert {c["name"]: c["passed"] for c in request.checks} == {"dataset-is-draft": True, "quality-report": True,
                                                                "no-leakage": True}
    assert started.feedback_train + started.feedback_test == 4 * len(LABELS)
    assert get_ticket(ctx.db, ticket_id).state == "retraining"

    # Pending: no run, and the message says who decides.
    hint = _refused_without_change(ctx, ticket_id, emil, tiny_model_dir,
                                   f"not released yet: release request {request.id} awaits a data steward")
    assert f"chainkeeper approvals show {request.id}" in hint
    with pytest.raises(Conflict, match="no training run yet"):
        evaluate_retraining(ctx, ticket_id, actor=emil)
    with pytest.raises(Forbidden):  # the engineer cannot release their own data
        decide(ctx, request.id, actor=emil, approve=True, comment="looks fine to me")

    # Rejected: still no run, and the steward's reason is in the message.
    decide(ctx, request.id, actor=sofia, approve=False, comment="feedback rows contain account numbers")
    hint = _refused_without_change(ctx, ticket_id, emil, tiny_model_dir,
                                   f"release request {request.id} was rejected by sofia "
                                   r"\(feedback rows contain account numbers\)")
    assert f"chainkeeper data release-request {draft.id}" in hint

    # Asked again and approved: the run is queued on the released version.
    again = request_approval(ctx, "dataset.release", draft.id, actor=emil, comment="account numbers redacted")
    decide(ctx, again.id, actor=sofia, approve=True, comment="clean now")
    assert get_dataset_version(ctx.db, draft.id).state == "released"
    queued = train_on_released(ctx, ticket_id, actor=emil, config=CONFIG, base_model=tiny_model_dir)
    assert queued.dataset_version_id == draft.id and queued.job_id is not None
    ticket = get_ticket(ctx.db, ticket_id)
    assert ticket.details["run_id"] == queued.run_id and ticket.details["released_by"] == "sofia"
    with pytest.raises(Conflict, match=f"already trains run {queued.run_id}"):
        train_on_released(ctx, ticket_id, actor=emil, config=CONFIG, base_model=tiny_model_dir)
    assert _ticket_steps(ctx, ticket_id)[-2:] == ["ticket.retrain", "ticket.train"]
    assert verify_ledger(ctx.db).ok


def test_feedback_repeating_released_texts_keeps_their_split_and_the_diff_shows_them_unchanged(
        any_served: Served) -> None:
    # Issue 14 item 2: feedback on served texts that the released version holds went to train or test by
    # chance, so the retraining version had texts in both; and 'data diff' saw every row as added or removed.
    ctx = any_served.ctx
    emil, sofia = make_actor(ctx, "emil", "ml_engineer"), make_actor(ctx, "sofia", "data_steward")
    (released,) = list_dataset_versions(ctx.db, name="support-intents")
    before = {r["text"]: r["split"] for r in read_dataset_rows(ctx, released.id).to_pylist()}
    repeated = [(text, LABELS[i % len(LABELS)]) for i, text in enumerate(IN_DISTRIBUTION)]  # train and test texts
    fresh = [(f"please help with my {label} request number {i}", label) for i, label in enumerate(LABELS * 4)]
    ticket_id = _handed_over_ticket(any_served, repeated + fresh)

    started = start_retraining(ctx, ticket_id, actor=emil)

    rows = read_dataset_rows(ctx, started.dataset_version_id)
    assert find_leakage(rows)["texts"] == 0
    assert get_dataset_version(ctx.db, started.dataset_version_id).stats["leakage"]["texts"] == 0
    after = {r["text"]: r["split"] for r in rows.to_pylist()}
    assert {text: after[text] for text in before} == before and rows.num_rows == len(before) + len(fresh)
    assert started.feedback_train + started.feedback_test == len(fresh)
    diff = diff_dataset_versions(ctx, released.id, started.dataset_version_id, actor=sofia)
    assert (diff.counts["unchanged"], diff.counts["added"], diff.counts["removed"]) == (len(before), len(fresh), 0)


def test_retraining_is_refused_before_anything_is_stored_without_the_release_permission(
        any_served: Served) -> None:
    ctx = any_served.ctx
    ticket_id = _handed_over_ticket(any_served)
    # A custom role that may retrain and train but not ask for a dataset release.
    create_role(ctx.db, "retrainer", description="retrains only", actions=["maintenance.retrain", "run.create"])
    ravi = make_actor(ctx, "ravi", "retrainer")
    sources = count_sources(ctx.db)
    with pytest.raises(Forbidden, match="dataset.release"):
        start_retraining(ctx, ticket_id, actor=ravi)
    assert get_ticket(ctx.db, ticket_id).state == "handed_over" and count_sources(ctx.db) == sources
    assert [v.version for v in list_dataset_versions(ctx.db, name="support-intents")] == [1]


def test_over_http_training_answers_409_until_the_data_is_released(any_served: Served,
                                                                    tiny_model_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from chainkeeper.api.app import create_app
    from chainkeeper.governance.users import issue_token

    ctx = any_served.ctx
    make_actor(ctx, "emil", "ml_engineer")
    sofia = make_actor(ctx, "sofia", "data_steward")
    ticket_id = _handed_over_ticket(any_served)
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    emil = {"Authorization": f"Bearer {issue_token(ctx.db, 'emil', name='api').secret}"}

    started = client.post(f"/api/tickets/{ticket_id}/retrain", json={"comment": "new phrasing"}, headers=emil)
    assert started.status_code == 201, started.text
    approval_id = started.json()["release_approval_id"]
    assert get_approval(ctx, approval_id).request_comment == "new phrasing"
    early = client.post(f"/api/tickets/{ticket_id}/train", json={}, headers=emil)
    assert early.status_code == 409 and "awaits a data steward" in early.json()["detail"]
    assert f"chainkeeper approvals show {approval_id}" in early.json()["hint"]
    bad = client.post(f"/api/tickets/{ticket_id}/train", json={"config": {"epochs": -1}}, headers=emil)
    assert bad.status_code == 422 and count_runs(ctx.db) == 1  # only the serving run

    decide(ctx, approval_id, actor=sofia, approve=True, comment="reviewed")
    _serving_run_base_model(any_served, tiny_model_dir)
    queued = client.post(f"/api/tickets/{ticket_id}/train", json={"config": {"epochs": 1, "max_length": 16}},
                         headers=emil)
    assert queued.status_code == 202, queued.text
    assert queued.json()["run_id"] == get_ticket(ctx.db, ticket_id).details["run_id"] and count_runs(ctx.db) == 2


def test_the_cli_retrains_then_trains_only_after_the_release(served: Served, tiny_model_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from chainkeeper.cli.main import main
    from chainkeeper.governance.users import issue_token

    ctx = served.ctx
    make_actor(ctx, "emil", "ml_engineer")
    sofia = make_actor(ctx, "sofia", "data_steward")
    ticket_id = _handed_over_ticket(served)
    monkeypatch.setenv("CHAINKEEPER_HOME", str(ctx.settings.home))
    monkeypatch.setenv("CHAINKEEPER_TOKEN", issue_token(ctx.db, "emil", name="cli").secret)
    monkeypatch.setenv("COLUMNS", "200")

    def cli(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(["monitor", "tickets", *args])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    code, out, _ = cli("retrain", str(ticket_id), "--comment", "new phrasing")
    assert code == 0 and "awaits a data steward" in out and f"monitor tickets train {ticket_id}" in out
    approval_id = get_ticket(ctx.db, ticket_id).details["release_approval_id"]
    code, _, err = cli("train", str(ticket_id))
    assert code != 0 and "awaits a data steward" in err and f"approvals show {approval_id}" in err
    assert count_runs(ctx.db) == 1

    decide(ctx, approval_id, actor=sofia, approve=True, comment="reviewed")
    options = tmp_path / "options.json"
    options.write_text('{"epochs": 1, "max_length": 16, "checkpoint_every_steps": null}', encoding="utf-8")
    _serving_run_base_model(served, tiny_model_dir)
    code, out, err = cli("train", str(ticket_id), "--config", str(options))
    assert code == 0, err
    assert f"on released dataset version {get_ticket(ctx.db, ticket_id).details['dataset_version_id']}" in out
    assert count_runs(ctx.db) == 2
