"""Every route × every role, against the enforced permission matrix.

A route must declare exactly one decision (``require(action)`` or ``public()``); a new
route without one fails here. Forbidden calls answer 403 naming the action and the roles
that may, and change nothing in the store.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.api.auth import PUBLIC, route_decisions
from chainkeeper.core.context import Context
from chainkeeper.core.schema import metadata
from chainkeeper.governance.permissions import permission_matrix
from chainkeeper.governance.roles import BuiltinRole
from chainkeeper.governance.users import create_user, issue_token

ROLES = [r.value for r in BuiltinRole] + ["(no role)"]
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def _fill(path: str) -> str:
    """Concrete values for path parameters: ids that do not exist, a known kind."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "kind":
            return "run"
        if name.endswith("id"):
            return "987654"
        if name == "action":
            return "system.read"
        return "no-such-thing"

    return _PARAM.sub(value, path)


@pytest.fixture
def client_and_tokens(ctx: Context) -> tuple[TestClient, dict[str, str]]:
    tokens = {}
    for role in ROLES:
        name = "norole" if role == "(no role)" else role.replace("_", "-")
        create_user(ctx.db, name, roles=[] if role == "(no role)" else [role])
        tokens[role] = issue_token(ctx.db, name, name="matrix").secret
    return TestClient(create_app(ctx), raise_server_exceptions=False), tokens


def _counts(ctx: Context) -> dict[str, int]:
    with ctx.db.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables}


def test_every_route_declares_one_decision(ctx: Context) -> None:
    decisions = route_decisions(create_app(ctx))
    missing = sorted(f"{m} {p}" for (m, p), d in decisions.items() if d is None)
    assert not missing, f"routes without require()/public(): {missing}"
    assert len(decisions) >= 20


def test_every_route_for_every_role_follows_the_matrix(
    ctx: Context, client_and_tokens: tuple[TestClient, dict[str, str]]
) -> None:
    client, tokens = client_and_tokens
    app = client.app
    matrix = permission_matrix(ctx.db)
    decisions = route_decisions(app)  # type: ignore[arg-type]
    before = _counts(ctx)
    checked = 0
    for (method, path), action in sorted(decisions.items()):
        url = _fill(path)
        for role in ROLES:
            answer = client.request(method, url, json={}, headers={"Authorization": f"Bearer {tokens[role]}"})
            allowed = action == PUBLIC or action in matrix.get(role, frozenset())
            where = f"{method} {path} as {role} ({action})"
            if allowed:
                assert answer.status_code not in (401, 403), f"{where}: denied with {answer.status_code}"
            else:
                assert answer.status_code == 403, f"{where}: expected 403, got {answer.status_code}"
                problem = answer.json()
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert action in problem["detail"] and "Roles that may" in problem.get("hint", ""), where
            assert answer.status_code < 500, f"{where}: {answer.status_code} {answer.text[:200]}"
            checked += 1
        if action != PUBLIC:
            anonymous = client.request(method, url, json={})
            assert anonymous.status_code == 401, f"{method} {path} without a token: {anonymous.status_code}"
    assert checked == len(decisions) * len(ROLES)
    after = _counts(ctx)
    # Allowed calls with made-up ids and empty bodies fail validation or lookup; forbidden
    # ones stop at the door. Only the tokens made above and login bookkeeping may differ.
    assert {k: v for k, v in after.items() if v != before[k]} == {}


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        pytest.param("Basic dXNlcjpwYXNz", "Malformed Authorization header", id="basic-scheme"),
        pytest.param("Bearer", "Malformed Authorization header", id="no-token"),
        pytest.param("Bearer a b", "Malformed Authorization header", id="two-tokens"),
        pytest.param("Bearer ck_forged", "not valid", id="unknown-token"),
    ],
)
def test_bad_credentials_are_a_clear_401(ctx: Context, header: str, fragment: str) -> None:
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    answer = client.get("/api/jobs", headers={"Authorization": header})
    assert answer.status_code == 401 and fragment in answer.json()["detail"]
    assert "ck_forged" not in answer.text
