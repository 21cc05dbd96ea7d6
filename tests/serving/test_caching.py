"""The hot path's caches: correct invalidation, and the stated bounds for other processes.

* ``TtlCache``: a value loaded before an invalidation is never stored after it.
* Tokens: revoked in this process -> refused at once; changed behind the ORM's back (as
  another process would) -> refused within ``TOKEN_CACHE_TTL_S``.
* API keys: the same with ``KEY_CACHE_TTL_S``.
* Routes: a rollout or rollback in this process takes effect for the next request.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from chainkeeper.api import auth
from chainkeeper.api.app import create_app
from chainkeeper.api.auth import TOKEN_CACHE_TTL_S
from chainkeeper.core.context import Context
from chainkeeper.governance.tables import SqlToken
from chainkeeper.governance.users import create_user, grant_role, issue_token, revoke_role, revoke_token
from chainkeeper.registry.versions import transition_stage
from chainkeeper.serving import keys
from chainkeeper.serving.caching import TtlCache
from chainkeeper.serving.deployments import deploy_model_version, resolve_route
from chainkeeper.serving.keys import KEY_CACHE_TTL_S, create_deployment_key, revoke_deployment_key
from chainkeeper.serving.rollout import rollback_deployment, route_cache, start_canary
from chainkeeper.serving.tables import SqlDeploymentKey
from tests.model_rows import RELEASER, in_production, registered, save_tiny_classifier


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_value_expires_after_its_ttl() -> None:
    clock = FakeClock()
    cache: TtlCache[str, int] = TtlCache(2.0, clock=clock)
    loads = []
    assert cache.get_or_load("a", lambda: loads.append(1) or 1) == 1
    clock.now = 1.9
    assert cache.get_or_load("a", lambda: loads.append(2) or 2) == 1
    clock.now = 2.1
    assert cache.get_or_load("a", lambda: loads.append(3) or 3) == 3
    assert loads == [1, 3] and cache.hits == 1


def test_a_value_loaded_before_an_invalidation_is_not_stored() -> None:
    cache: TtlCache[str, str] = TtlCache(60.0)
    generation = cache.generation
    cache.invalidate()  # a rollout commits while a request was reading the old route
    cache.put("route", "old", generation)
    assert cache.get("route") is None
    cache.put("route", "new", cache.generation)
    assert cache.get("route") == "new"


def test_invalidate_drops_only_matching_keys_and_errors_are_not_cached() -> None:
    cache: TtlCache[tuple[str, str], int] = TtlCache(60.0, max_entries=3)
    for i, name in enumerate(("a", "b")):
        cache.put(("db", name), i, cache.generation)
    cache.invalidate(lambda key: key[1] == "a")
    assert cache.get(("db", "a")) is None and cache.get(("db", "b")) == 1

    def failing() -> int:
        raise LookupError("no such row")

    with pytest.raises(LookupError):
        cache.get_or_load(("db", "c"), failing)
    assert cache.get(("db", "c")) is None
    for name in ("d", "e", "f"):  # past max_entries the cache starts over: memory stays bounded
        cache.put(("db", name), 0, cache.generation)
    assert len(cache._entries) <= 3


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


@pytest.fixture
def deployed(ctx: Context, classifier_dir: Path) -> int:
    version = in_production(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    return version.id


def _predict(client: TestClient, headers: dict[str, str]) -> int:
    return client.post("/v1/deployments/support/predict", json={"text": "lost card"}, headers=headers).status_code


def test_a_token_revoked_in_this_process_is_refused_at_once(ctx: Context, deployed: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A long TTL: only the invalidation on commit can make the revocation visible.
    monkeypatch.setattr(auth.token_cache(ctx.db), "ttl_s", 3600.0)
    create_user(ctx.db, "olive", roles=["operator"])
    issued = issue_token(ctx.db, "olive", name="t")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert _predict(client, headers) == 200
    revoke_token(ctx.db, issued.id)
    answer = client.post("/v1/deployments/support/predict", json={"text": "lost card"}, headers=headers)
    assert answer.status_code == 401 and "was revoked" in answer.json()["detail"]


def _assert_refused_within(client: TestClient, headers: dict[str, str], ttl_s: float) -> None:
    """Requests keep succeeding at most ``ttl_s`` (plus a little) after a revocation made now.

    Judged by when each request *started*: on a loaded machine one request can take a second.
    """
    revoked_at = time.monotonic()
    while True:
        started = time.monotonic()
        if _predict(client, headers) != 200:
            return
        assert started - revoked_at < ttl_s + 0.5, "still accepted past the stated bound"
        time.sleep(0.05)


def test_a_token_revoked_by_another_process_is_refused_within_the_ttl(ctx: Context, deployed: int) -> None:
    create_user(ctx.db, "olive", roles=["operator"])
    issued = issue_token(ctx.db, "olive", name="t")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert _predict(client, headers) == 200
    # A plain UPDATE, as the CLI in another process would leave it: no ORM event here.
    with ctx.db.engine.begin() as conn:
        conn.execute(sa.update(SqlToken.__table__).where(SqlToken.__table__.c.id == issued.id)
                     .values(revoked_at=sa.func.current_timestamp()))
    _assert_refused_within(client, headers, TOKEN_CACHE_TTL_S)


def test_a_role_granted_counts_at_once_and_a_role_revoked_within_the_ttl(ctx: Context, deployed: int) -> None:
    create_user(ctx.db, "anna", roles=["annotator"])  # may not predict
    issued = issue_token(ctx.db, "anna", name="t")
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert _predict(client, headers) == 403
    grant_role(ctx.db, "anna", "operator")  # an ORM insert: the cache is cleared on commit
    assert _predict(client, headers) == 200
    revoke_role(ctx.db, "anna", "operator")  # a bulk delete fires no ORM event: the TTL bounds it
    _assert_refused_within(client, headers, TOKEN_CACHE_TTL_S)


def test_a_key_revoked_in_this_process_is_refused_at_once(ctx: Context, deployed: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys.key_cache(ctx), "ttl_s", 3600.0)  # only the invalidation can make it visible
    issued = create_deployment_key(ctx, "support", name="shop", actor=RELEASER, scopes=["predict"])
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    headers = {"X-API-Key": issued.secret}
    assert _predict(client, headers) == 200
    revoke_deployment_key(ctx, "support", issued.key.id, actor=RELEASER)
    assert _predict(client, headers) == 401


def test_a_key_revoked_by_another_process_is_refused_within_the_ttl(ctx: Context, deployed: int) -> None:
    issued = create_deployment_key(ctx, "support", name="shop", actor=RELEASER, scopes=["predict"])
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    headers = {"X-API-Key": issued.secret}
    assert _predict(client, headers) == 200
    with ctx.db.engine.begin() as conn:
        table = SqlDeploymentKey.__table__
        conn.execute(sa.update(table).where(table.c.id == issued.key.id).values(revoked_at=sa.func.current_timestamp()))
    _assert_refused_within(client, headers, KEY_CACHE_TTL_S)


def test_a_rollout_and_a_rollback_take_effect_for_the_next_request(ctx: Context, deployed: int,
                                                                  classifier_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    v2 = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    transition_stage(ctx, v2.id, "staging", actor=RELEASER)
    monkeypatch.setattr(route_cache(ctx), "ttl_s", 3600.0)  # only the invalidation can make a switch visible
    assert resolve_route(ctx, "support").route.mode == "single"  # now cached
    start_canary(ctx, "support", v2.id, percent=99, actor=RELEASER)
    cached = resolve_route(ctx, "support")
    assert cached.route.mode == "canary" and set(cached.versions) == {deployed, v2.id}
    rollback_deployment(ctx, "support", actor=RELEASER)
    after = resolve_route(ctx, "support")
    assert after.route.mode == "single" and after.route.primary_version_id == deployed
    second = in_production(ctx, "intents", model_artifact=ctx.artifacts.put_tree(classifier_dir))
    deploy_model_version(ctx, name="support", model_version_id=second.id, actor=RELEASER)
    assert resolve_route(ctx, "support").deployment.model_version_id == second.id


def test_concurrent_misses_of_one_key_load_once() -> None:
    cache: TtlCache[str, int] = TtlCache(60)
    loads: list[int] = []
    start = threading.Barrier(8)

    def load() -> int:
        loads.append(1)
        time.sleep(0.05)  # a store read, while the other callers arrive
        return 42

    def caller(out: list[int]) -> None:
        start.wait()
        out.append(cache.get_or_load("route", load))

    got: list[int] = []
    threads = [threading.Thread(target=caller, args=(got,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [42] * 8 and len(loads) == 1


def test_a_failed_load_is_not_shared_or_cached() -> None:
    cache: TtlCache[str, int] = TtlCache(60)
    with pytest.raises(LookupError):
        cache.get_or_load("gone", lambda: (_ for _ in ()).throw(LookupError("no such deployment")))
    assert cache.get_or_load("gone", lambda: 7) == 7
