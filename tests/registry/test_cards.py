"""Model cards: generated from the registry, run, dataset version, gates and approvals."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.core.context import Context
from chainkeeper.core.errors import NotFound
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.users import issue_token
from chainkeeper.registry.cards import model_card
from chainkeeper.registry.gates import set_gate_thresholds
from chainkeeper.registry.versions import register_model_version
from tests.governance.conftest import make_actor
from tests.model_rows import ENGINEER, insert_run, registered

READER = Actor("ola", frozenset({"operator"}))  # model.read everywhere

PER_CLASS = {"refund": {"precision": 0.9, "recall": 0.8, "f1-score": 0.847, "support": 20},
             "balance": {"precision": 0.5, "recall": 0.4, "f1-score": 0.444, "support": 10},
             "greeting": {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 5}}
METRICS: dict[str, Any] = {
    "dev": {"accuracy": 0.8, "macro_f1": 0.78, "support": 30},
    "test": {"accuracy": 0.83, "macro_f1": 0.7637, "weighted_f1": 0.79, "support": 35, "per_class": PER_CLASS,
             "labels": sorted(PER_CLASS),
             # as training stores them: slices per dimension, calibration with its bins
             "slices": {"text length": {"short": {"macro_f1": 0.61, "accuracy": 0.7, "support": 9}}},
             "calibration": {"ece": 0.042, "n_bins": 10, "bins": []}},
}


def test_the_card_says_what_the_registry_knows_and_who_approved(ctx: Context) -> None:
    emil = make_actor(ctx, "emil", "ml_engineer")
    rhea = make_actor(ctx, "rhea", "release_manager")
    set_gate_thresholds(ctx, "intents", actor=rhea, min_macro_f1=0.7)
    run_id = insert_run(ctx, model_artifact="a" * 64, metrics=METRICS, author="emil")
    version = register_model_version(ctx, run_id=run_id, name="intents", actor=emil)
    request = request_approval(ctx, "model.promote", version.id, actor=emil, comment="ready")
    decide(ctx, request.id, actor=rhea, approve=True, comment="card reviewed")

    card = model_card(ctx, version.id, actor=READER)
    assert card.startswith("# Model card: intents v1\n")
    for section in ("## Intended use", "## Data", "## Training", "## Metrics", "## Limitations", "## Release"):
        assert section in card
    assert "content hash: `" + "c" * 64 + "`" in card  # the dataset version's hash
    assert f"run {run_id} by emil, base model `tiny`" in card
    assert "| test | 0.8300 | 0.7637 | 0.7900 | 35 |" in card
    assert "| balance | 0.5000 | 0.4000 | 0.4440 | 10 |" in card  # per class
    assert "| text length: short | 0.6100 | 0.7000 | 9 |" in card  # slices
    assert "weakest classes (test F1): balance 0.4440, refund 0.8470, greeting 1.0000" in card
    assert "expected calibration error, test): 0.0420" in card
    assert "| min-macro-f1 | yes | 0.7637 | 0.7000 |" in card
    assert "- trained by: emil" in card
    assert f"- approved by: rhea (model.promote, request {request.id}," in card
    assert "candidate (emil" in card and "production (rhea" in card


def test_a_card_without_evaluation_says_so(ctx: Context) -> None:
    version = registered(ctx, "intents")
    run_id = insert_run(ctx, model_artifact="a" * 64, metrics={})
    bare = register_model_version(ctx, run_id=run_id, name="intents", actor=ENGINEER)
    assert "test | 0.9100 | 0.8800" in model_card(ctx, version.id, actor=READER)
    card = model_card(ctx, bare.id, actor=READER)
    assert "No evaluation on a held-out test split is recorded." in card
    assert "weak classes are unknown" in card and "calibration was not measured" in card
    assert "approved by: nobody yet" in card
    with pytest.raises(NotFound, match="no model version 987654"):
        model_card(ctx, 987654, actor=READER)


def test_the_api_serves_the_card_as_markdown(ctx: Context) -> None:
    version = registered(ctx, "intents")
    make_actor(ctx, "olga", "operator")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {issue_token(ctx.db, 'olga', name='t').secret}"}
    answer = client.get(f"/api/models/{version.id}/card", headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/markdown")
    assert answer.text == model_card(ctx, version.id, actor=READER)
    missing = client.get("/api/models/987654/card", headers=headers)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
