"""Sessions, CSRF, security headers and user administration over real HTTP (issue 15 item 4).

Against a real uvicorn server on a loopback port, as a browser or a program meets it:

- signing out ends the session in the store: the old cookie, and the same value as a
  bearer token, are refused (before: both worked for 12 hours);
- a password change and an admin end a user's sessions; disable, enable and delete act
  at once on tokens and sessions;
- a token is refused from its expiry, although its lookup is cached;
- a write riding on the session cookie needs the session's CSRF token and this origin;
  bearer calls are untouched;
- every answer carries the security headers; cookies are Secure behind a trusted https proxy.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from chainkeeper.api import auth
from chainkeeper.api.app import create_app
from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.api.csrf import CSRF_HEADER, csrf_token
from chainkeeper.api.security_headers import APP_POLICY, REPORT_POLICY
from chainkeeper.api.server import start_server_in_thread
from chainkeeper.core.context import Context
from chainkeeper.core.db import utcnow
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.passwords import set_password
from chainkeeper.governance.users import create_user, issue_token

PASSWORD = "violet kestrel above the quarry"


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    running = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    try:
        yield running.url
    finally:
        running.stop()


@pytest.fixture
def admin(ctx: Context) -> str:
    create_user(ctx.db, "root", roles=["admin"])
    return issue_token(ctx.db, "root", name="admin").secret


def _sign_in(url: str, ctx: Context, name: str = "sofia") -> str:
    """Sign in through the web form; returns the session cookie's value."""
    create_user(ctx.db, name, roles=["data_steward"])
    set_password(ctx.db, name, PASSWORD)
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/login", data={"user": name, "password": PASSWORD, "next": "/"})
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie  # plain http here
    return answer.cookies[SESSION_COOKIE]


def _me(url: str, *, cookie: str | None = None, bearer: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    cookies = {SESSION_COOKIE: cookie} if cookie else {}
    return httpx.get(f"{url}/api/me", headers=headers, cookies=cookies, timeout=30)


def test_signing_out_ends_the_session_for_the_cookie_and_as_a_bearer_token(ctx: Context, server: str) -> None:
    session = _sign_in(server, ctx)
    assert _me(server, cookie=session).json()["user"] == "sofia"
    refused = _me(server, bearer=session)  # a session is the browser's credential, not an API token
    assert refused.status_code == 401 and "only as the web UI's cookie" in refused.json()["detail"]

    with httpx.Client(base_url=server, cookies={SESSION_COOKIE: session}, timeout=30) as client:
        out = client.post("/logout", data={"csrf_token": csrf_token(session)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    for answer in (_me(server, cookie=session), _me(server, bearer=session)):
        assert answer.status_code == 401, answer.text
    assert "session has ended" in _me(server, cookie=session).json()["detail"]
    assert [e.details for e in list_entries(ctx.db, limit=10_000) if e.action == "session.end"] == [
        {"reason": "signed out"}]


def test_the_api_sign_out_ends_the_session_too(ctx: Context, server: str) -> None:
    create_user(ctx.db, "sofia", roles=["data_steward"])
    set_password(ctx.db, "sofia", PASSWORD)
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.post("/api/login", json={"user": "sofia", "password": PASSWORD}).status_code == 200
        session = client.cookies[SESSION_COOKIE]
        assert client.get("/api/me").status_code == 200
        # A script of the page signs out with the header token (a JSON body has no form field).
        assert client.post("/api/logout", headers={CSRF_HEADER: csrf_token(session)}).status_code == 200
    assert _me(server, cookie=session).status_code == 401


def test_a_password_change_and_an_admin_end_sessions_at_once(ctx: Context, server: str, admin: str) -> None:
    session = _sign_in(server, ctx)
    assert _me(server, cookie=session).status_code == 200  # cached now
    set_password(ctx.db, "sofia", "a different long passphrase here")
    assert _me(server, cookie=session).status_code == 401

    second = _sign_in(server, ctx, "omar")
    assert _me(server, cookie=second).status_code == 200
    bearer = {"Authorization": f"Bearer {admin}"}
    listed = httpx.get(f"{server}/api/users/omar/sessions", headers=bearer, timeout=30).json()
    assert len(listed) == 1 and listed[0]["address"] == "127.0.0.1" and second not in str(listed)
    ended = httpx.delete(f"{server}/api/users/omar/sessions", headers=bearer, timeout=30)
    assert ended.json() == {"user": "omar", "sessions_ended": 1}
    assert _me(server, cookie=second).status_code == 401
    assert httpx.get(f"{server}/api/users/omar/sessions", headers=bearer, timeout=30).json() == []
    # Only user.manage may: the steward's own token is refused.
    steward = issue_token(ctx.db, "omar", name="t").secret
    refused = httpx.delete(f"{server}/api/users/sofia/sessions", headers={"Authorization": f"Bearer {steward}"},
                           timeout=30)
    assert refused.status_code == 403


def test_disable_enable_and_delete_act_at_once_over_http(ctx: Context, server: str, admin: str) -> None:
    create_user(ctx.db, "sofia", roles=["data_steward"])
    token = issue_token(ctx.db, "sofia", name="script").secret
    bearer = {"Authorization": f"Bearer {admin}"}
    assert _me(server, bearer=token).status_code == 200  # cached now

    disabled = httpx.post(f"{server}/api/users/sofia/disable", headers=bearer, timeout=30)
    assert disabled.status_code == 200 and disabled.json()["state"] == "disabled"
    assert "is disabled" in _me(server, bearer=token).json()["detail"]
    assert httpx.post(f"{server}/api/users/sofia/enable", headers=bearer, timeout=30).json()["state"] == "active"
    assert _me(server, bearer=token).status_code == 200
    tokens = httpx.get(f"{server}/api/users/sofia/tokens", headers=bearer, timeout=30).json()
    assert [t["name"] for t in tokens] == ["script"] and tokens[0]["last_seen_at"] and token not in str(tokens)

    deleted = httpx.delete(f"{server}/api/users/sofia", headers=bearer, timeout=30)
    assert deleted.status_code == 200 and deleted.json()["state"] == "deleted" and deleted.json()["roles"] == []
    assert "was deleted" in _me(server, bearer=token).json()["detail"]
    last = httpx.delete(f"{server}/api/users/root", headers=bearer, timeout=30)
    assert last.status_code == 409 and "Nobody would be left who may" in last.json()["detail"]
    listed = {u["name"]: u["state"] for u in httpx.get(f"{server}/api/users", headers=bearer, timeout=30).json()}
    assert listed == {"root": "active", "sofia": "deleted"}


def test_an_expired_token_is_refused_at_its_expiry_although_cached(ctx: Context, server: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15 item 9: the token cache accepted expired tokens for up to its TTL."""
    monkeypatch.setattr(auth.token_cache(ctx.db), "ttl_s", 3600.0)  # only the expiry can end it
    create_user(ctx.db, "sofia", roles=["data_steward"])
    issued = issue_token(ctx.db, "sofia", name="short", expires_in=timedelta(seconds=1.5))
    assert _me(server, bearer=issued.secret).status_code == 200
    assert issued.expires_at is not None
    time.sleep(max(0.0, (issued.expires_at - utcnow()).total_seconds()) + 0.01)
    answer = _me(server, bearer=issued.secret)
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


def test_a_cookie_borne_write_needs_the_sessions_token_and_this_origin(ctx: Context, server: str) -> None:
    session = _sign_in(server, ctx)
    form = {"name": "forged", "dataset_version_id": "1", "schema_id": "1", "annotators": "ana"}
    with httpx.Client(base_url=server, cookies={SESSION_COOKIE: session}, timeout=30,
                      follow_redirects=False) as client:
        missing = client.post("/annotate/projects", data=form)
        assert missing.status_code == 403 and "no CSRF token" in missing.json()["detail"]
        assert "Reload the page" in missing.json()["hint"]
        wrong = client.post("/annotate/projects", data={**form, "csrf_token": csrf_token("ck_another-session")})
        assert wrong.status_code == 403 and "does not belong to this session" in wrong.json()["detail"]
        # The right token from a page of another port of this host: the origin is refused.
        other = client.post("/annotate/projects", data={**form, "csrf_token": csrf_token(session)},
                            headers={"Origin": f"{server.rsplit(':', 1)[0]}:1"})
        assert other.status_code == 403 and "Cross-origin request refused" in other.json()["detail"]
        assert client.post("/annotate/projects", data=form, headers={"Origin": "null"}).status_code == 403
        # A person's browser gets the site's error page.
        page = client.post("/annotate/projects", data=form, headers={"Accept": "text/html"})
        assert page.status_code == 403 and "no CSRF token" in page.text and "<html" in page.text
        # JSON to the API with the cookie, as the labelling page sends it: the header carries the token.
        json_missing = client.post("/api/annotation/projects", json={})
        assert json_missing.status_code == 403 and "CSRF" in json_missing.json()["detail"]
        with_header = client.post("/api/annotation/projects", json={}, headers={CSRF_HEADER: csrf_token(session)})
        assert with_header.status_code == 422  # past the check: the body itself is judged
    assert not [e for e in list_entries(ctx.db, limit=10_000) if e.action.startswith("annotation")]


def test_bearer_calls_and_the_sign_in_form_need_no_csrf_token(ctx: Context, server: str, admin: str) -> None:
    created = httpx.post(f"{server}/api/users", json={"name": "nina", "roles": ["auditor"]},
                         headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert created.status_code == 201
    # A sign-in posted from another origin is refused (login CSRF); from none, or this one, it works.
    create_user(ctx.db, "sofia", roles=["data_steward"])
    set_password(ctx.db, "sofia", PASSWORD)
    form = {"user": "sofia", "password": PASSWORD, "next": "/"}
    foreign = httpx.post(f"{server}/login", data=form, headers={"Origin": "http://127.0.0.1:1"}, timeout=30)
    assert foreign.status_code == 403 and SESSION_COOKIE not in foreign.cookies
    same = httpx.post(f"{server}/login", data=form, headers={"Origin": server}, timeout=30)
    assert same.status_code == 303 and same.cookies[SESSION_COOKIE]


@pytest.mark.parametrize("path", ["/healthz", "/api/me", "/login", "/static/app.css", "/static/htmx.min.js",
                                  "/no/such/page"])
def test_every_answer_carries_the_security_headers(server: str, path: str) -> None:
    answer = httpx.get(f"{server}{path}", timeout=30)
    assert answer.headers["content-security-policy"] == APP_POLICY
    assert "script-src 'self';" in APP_POLICY and "unsafe-inline" not in APP_POLICY
    assert "frame-ancestors 'none'" in APP_POLICY
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"


def test_reports_and_the_api_docs_have_their_own_policies(ctx: Context, server: str, admin: str) -> None:
    report = httpx.get(f"{server}/api/runs/987654/report.html", headers={"Authorization": f"Bearer {admin}"},
                       timeout=30)
    assert report.headers["content-security-policy"] == REPORT_POLICY and "sandbox" in REPORT_POLICY
    assert report.headers["x-frame-options"] == "SAMEORIGIN"
    docs = httpx.get(f"{server}/docs", timeout=30)
    policy = docs.headers["content-security-policy"]
    [inline] = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy and docs.headers["x-content-type-options"] == "nosniff"


def test_cookies_are_secure_behind_a_trusted_https_proxy(ctx: Context) -> None:
    create_user(ctx.db, "sofia", roles=["data_steward"])
    set_password(ctx.db, "sofia", PASSWORD)
    behind = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"trusted_proxies": ["127.0.0.1"]}))
    for context, secure in ((behind, True), (ctx, False)):  # untrusted: X-Forwarded-Proto is ignored
        running = start_server_in_thread(create_app(context), host="127.0.0.1", port=0)
        try:
            answer = httpx.post(f"{running.url}/api/login", json={"user": "sofia", "password": PASSWORD},
                                headers={"X-Forwarded-Proto": "https"}, timeout=30)
        finally:
            running.stop()
        assert answer.status_code == 200, answer.text
        assert ("; secure" in answer.headers["set-cookie"].lower()) is secure
