"""Per-deployment API keys, rate limits per key and request size limits on the predict route."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthenticated
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.users import issue_token
from chainkeeper.monitoring.predictions import count_predictions
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.serving.keys import (
    authenticate_deployment_key,
    create_deployment_key,
    list_deployment_keys,
    parse_rate,
    revoke_deployment_key,
)
from chainkeeper.serving.limits import PayloadTooLarge, RateLimiter, RequestLimits, check_texts
from tests.governance.conftest import make_actor
from tests.model_rows import RELEASER, in_production, save_tiny_classifier

RHEA = Actor("rhea", frozenset({"release_manager"}))


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


def _deployed(ctx: Context, name: str = "support", artifact: str = "a" * 64) -> None:
    version = in_production(ctx, "intents", model_artifact=artifact)
    deploy_model_version(ctx, name=name, model_version_id=version.id, actor=RHEA)


@pytest.mark.parametrize(("text", "per_s"), [("50/s", 50.0), ("600/min", 10.0), ("36/h", 0.01), (" 2.5 / s ", 2.5)])
def test_rates_are_parsed_per_second(text: str, per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize("text", [pytest.param("fast", id="word"), pytest.param("0/s", id="zero"),
                                  pytest.param("5/day", id="unknown-unit")])
def test_bad_rates_say_how_to_write_one(text: str) -> None:
    with pytest.raises(InvalidInput, match="COUNT/UNIT"):
        parse_rate(text)


def test_a_key_is_stored_hashed_scoped_and_revocable(any_ctx: Context) -> None:
    _deployed(any_ctx)
    issued = create_deployment_key(any_ctx, "support", name="web-shop", actor=RHEA, scopes=["predict"], rate_per_s=5)
    assert issued.secret.startswith("ckd_") and issued.key.scopes == ("predict",) and issued.key.active
    key = authenticate_deployment_key(any_ctx, issued.secret, deployment="support", scope="predict")
    assert key.id == issued.key.id and key.rate_per_s == 5
    with pytest.raises(Forbidden, match="lacks the 'read' scope"):
        authenticate_deployment_key(any_ctx, issued.secret, deployment="support", scope="read")
    with pytest.raises(Forbidden, match="belongs to deployment 'support', not 'billing'"):
        authenticate_deployment_key(any_ctx, issued.secret, deployment="billing", scope="predict")
    revoke_deployment_key(any_ctx, "support", issued.key.id, actor=RHEA)
    with pytest.raises(Unauthenticated, match="was revoked"):
        authenticate_deployment_key(any_ctx, issued.secret, deployment="support", scope="predict")
    assert [k.active for k in list_deployment_keys(any_ctx, "support", actor=RELEASER)] == [False]
    entries = list_entries(any_ctx.db, object_kind="deployment_key")
    assert [e.action for e in entries] == ["apikey.create", "apikey.revoke"]
    assert all(issued.secret not in str(e.details) for e in entries)


def test_bad_keys_and_requests_for_keys_are_refused(ctx: Context) -> None:
    _deployed(ctx)
    with pytest.raises(Unauthenticated, match="not valid"):
        authenticate_deployment_key(ctx, "ckd_forged", deployment="support", scope="predict")
    with pytest.raises(InvalidInput, match="not valid"):
        create_deployment_key(ctx, "support", name="x", actor=RHEA, scopes=["admin"])
    with pytest.raises(InvalidInput, match="needs a scope"):
        create_deployment_key(ctx, "support", name="x", actor=RHEA, scopes=[])
    with pytest.raises(NotFound, match="no deployment named 'ghost'"):
        create_deployment_key(ctx, "ghost", name="x", actor=RHEA, scopes=["predict"])
    with pytest.raises(NotFound, match="has no API key 987654"):
        revoke_deployment_key(ctx, "support", 987654, actor=RHEA)
    assert list_deployment_keys(ctx, "support", actor=RELEASER) == []


def test_an_expired_key_is_refused(ctx: Context) -> None:
    _deployed(ctx)
    issued = create_deployment_key(ctx, "support", name="old", actor=RHEA, scopes=["predict"],
                                   expires_in=timedelta(microseconds=1))
    with pytest.raises(Unauthenticated, match="expired on"):
        authenticate_deployment_key(ctx, issued.secret, deployment="support", scope="predict")


def test_a_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    for _ in range(3):
        limiter.check(1, rate_per_s=2.0, burst=3)
    with pytest.raises(RateLimited, match="over its limit of 2 requests/s") as caught:
        limiter.check(1, rate_per_s=2.0, burst=3)
    assert "Retry in 0.50 s" in (caught.value.hint or "")
    limiter.check(2, rate_per_s=2.0, burst=3)  # another key has its own bucket
    now[0] += 0.5
    limiter.check(1, rate_per_s=2.0, burst=3)
    limiter.check(1, rate_per_s=None)  # unlimited keys are never refused


def test_size_limits_are_payload_too_large() -> None:
    limits = RequestLimits(max_texts=3, max_text_chars=5)
    check_texts(["a", "bcdef"], limits)
    with pytest.raises(PayloadTooLarge, match="4 texts in one request; at most 3"):
        check_texts(["a"] * 4, limits)
    with pytest.raises(PayloadTooLarge, match="Text 1 has 6 characters"):
        check_texts(["a", "abcdef"], limits)


def test_the_predict_route_takes_keys_limits_them_and_refuses_revoked_ones(ctx: Context,
                                                                          classifier_dir: Path) -> None:
    _deployed(ctx, artifact=ctx.artifacts.put_tree(classifier_dir))
    _deployed(ctx, name="billing")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    url = "/v1/deployments/support/predict"
    issued = create_deployment_key(ctx, "support", name="shop", actor=RHEA, scopes=["predict"], rate_per_s=0.01,
                                   burst=3)
    by_header = client.post(url, json={"text": "hello"}, headers={"X-API-Key": issued.secret})
    assert by_header.status_code == 200 and by_header.json()["predictions"][0]["request_id"]
    by_bearer = client.post(url, json={"texts": ["a", "b"]}, headers={"Authorization": f"Bearer {issued.secret}"})
    assert by_bearer.status_code == 200 and len(by_bearer.json()["predictions"]) == 2
    limited = client.post(url, json={"text": "hello"}, headers={"X-API-Key": issued.secret})
    limited_again = client.post(url, json={"text": "hello"}, headers={"X-API-Key": issued.secret})
    assert (limited.status_code, limited_again.status_code) == (200, 429)  # burst 3, then ~nothing refills
    assert limited_again.headers["content-type"].startswith("application/problem+json")
    assert "over its limit" in limited_again.json()["detail"]

    other = client.post("/v1/deployments/billing/predict", json={"text": "hi"}, headers={"X-API-Key": issued.secret})
    assert other.status_code == 403 and "belongs to deployment 'support'" in other.json()["detail"]
    revoke_deployment_key(ctx, "support", issued.key.id, actor=RHEA)
    revoked = client.post(url, json={"text": "hello"}, headers={"X-API-Key": issued.secret})
    assert revoked.status_code == 401 and "was revoked" in revoked.json()["detail"]
    assert issued.secret not in revoked.text


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        pytest.param({"texts": ["hi"] * 10_000}, 413, "at most 256 are accepted", id="10k-texts"),
        pytest.param({"text": "x" * 1_000_000}, 413, "bytes; at most 1,000,000", id="1MB-text"),
        pytest.param({"text": "x" * 20_000}, 413, "20,000 characters", id="long-text"),
        pytest.param({"text": "   "}, 422, "is empty", id="empty-text"),
    ],
)
def test_oversized_and_empty_requests_are_refused_cleanly(ctx: Context, body: dict[str, object], status: int,
                                                           fragment: str) -> None:
    _deployed(ctx)
    issued = create_deployment_key(ctx, "support", name="shop", actor=RHEA, scopes=["predict"])
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    answer = client.post("/v1/deployments/support/predict", json=body, headers={"X-API-Key": issued.secret})
    assert answer.status_code == status and fragment in answer.json()["detail"], answer.text[:300]
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert count_predictions(ctx.db) == 0


def test_keys_are_managed_over_the_api_by_release_managers_only(ctx: Context) -> None:
    _deployed(ctx)
    make_actor(ctx, "rhea", "release_manager")
    make_actor(ctx, "emil", "ml_engineer")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    as_rhea = {"Authorization": f"Bearer {issue_token(ctx.db, 'rhea', name='t').secret}"}
    as_emil = {"Authorization": f"Bearer {issue_token(ctx.db, 'emil', name='t').secret}"}
    body = {"name": "shop", "scopes": ["predict"], "rate": "50/s"}
    assert client.post("/api/deployments/support/keys", json=body, headers=as_emil).status_code == 403
    created = client.post("/api/deployments/support/keys", json=body, headers=as_rhea)
    assert created.status_code == 201 and created.json()["secret"].startswith("ckd_")
    assert created.json()["rate_per_s"] == 50.0
    listed = client.get("/api/deployments/support/keys", headers=as_rhea).json()
    assert [k["name"] for k in listed] == ["shop"] and "secret" not in listed[0] and "key_hash" not in listed[0]
    bad = client.post("/api/deployments/support/keys", json={**body, "rate": "lots"}, headers=as_rhea)
    assert bad.status_code == 422 and "COUNT/UNIT" in bad.json()["hint"]
    gone = client.delete(f"/api/deployments/support/keys/{created.json()['id']}", headers=as_rhea)
    assert gone.status_code == 200 and gone.json()["active"] is False
