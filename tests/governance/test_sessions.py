"""Server-side sessions and user administration in the service (issue 15 item 4).

A sign-in is a session row, apart from API tokens: signing out, a password change,
disabling or deleting the user, or an admin ends it in the store. Users are disabled,
enabled and deleted (kept as a record for the ledger), never the last administrator.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, Forbidden, Unauthenticated
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.passwords import set_password
from chainkeeper.governance.users import (
    authenticate_credential,
    authenticate_token,
    create_user,
    delete_user,
    disable_user,
    enable_user,
    end_session,
    end_sessions,
    get_user,
    grant_role,
    issue_token,
    list_sessions,
    list_tokens,
    list_users,
    start_session,
)

PASSWORD = "violet kestrel above the quarry"


def _sign_in(ctx: Context, name: str, address: str = "10.0.0.7") -> str:
    return start_session(ctx.db, actor=Actor(name), address=address, expires_in=timedelta(hours=12)).secret


def _actions(ctx: Context) -> list[str]:
    return [e.action for e in list_entries(ctx.db, limit=10_000)]


def test_a_session_is_not_an_api_token_and_signing_out_ends_it_in_the_store(any_ctx: Context) -> None:
    create_user(any_ctx.db, "sofia", roles=["data_steward"])
    session = _sign_in(any_ctx, "sofia")
    credential = authenticate_credential(any_ctx.db, session)
    assert (credential.kind, credential.actor.name) == ("session", "sofia")
    # A session's secret is a browser credential: the API's bearer header and the CLI refuse it.
    with pytest.raises(Unauthenticated, match="accepted only as the web UI's cookie"):
        authenticate_token(any_ctx.db, session)
    [listed] = list_sessions(any_ctx.db, "sofia")
    assert listed["address"] == "10.0.0.7" and session not in str(listed)
    assert list_tokens(any_ctx.db, "sofia") == []  # sessions are not listed as API tokens

    assert end_session(any_ctx.db, session) == "sofia"
    with pytest.raises(Unauthenticated, match="session has ended"):
        authenticate_credential(any_ctx.db, session)
    assert list_sessions(any_ctx.db, "sofia") == []
    assert end_session(any_ctx.db, session) is None  # twice: nothing more happens
    ended = [e for e in list_entries(any_ctx.db, limit=10_000) if e.action == "session.end"]
    assert len(ended) == 1 and ended[0].actor == "sofia" and ended[0].details == {"reason": "signed out"}


def test_signing_out_with_an_api_token_as_the_cookie_leaves_the_token_alone(ctx: Context) -> None:
    create_user(ctx.db, "sofia", roles=["data_steward"])
    token = issue_token(ctx.db, "sofia", name="script").secret
    assert end_session(ctx.db, token) is None
    assert authenticate_token(ctx.db, token).name == "sofia"


def test_a_new_password_ends_every_session_of_the_user_but_not_their_tokens(any_ctx: Context) -> None:
    create_user(any_ctx.db, "sofia", roles=["data_steward"])
    create_user(any_ctx.db, "omar", roles=["operator"])
    phone, laptop, other = _sign_in(any_ctx, "sofia"), _sign_in(any_ctx, "sofia"), _sign_in(any_ctx, "omar")
    token = issue_token(any_ctx.db, "sofia", name="script").secret
    set_password(any_ctx.db, "sofia", PASSWORD)
    for secret in (phone, laptop):
        with pytest.raises(Unauthenticated, match="session has ended"):
            authenticate_credential(any_ctx.db, secret)
    assert authenticate_credential(any_ctx.db, other).actor.name == "omar"
    assert authenticate_token(any_ctx.db, token).name == "sofia"
    [entry] = [e for e in list_entries(any_ctx.db, limit=10_000) if e.action == "session.end_all"]
    assert entry.object_id == "sofia" and entry.details["reason"] == "password changed"
    assert len(entry.details["sessions"]) == 2


def test_an_admin_ends_a_users_sessions_and_others_may_not(ctx: Context) -> None:
    create_user(ctx.db, "sofia", roles=["data_steward"])
    session = _sign_in(ctx, "sofia")
    steward = Actor("sofia", frozenset({"data_steward"}))
    with pytest.raises(Forbidden):
        end_sessions(ctx.db, "sofia", actor=steward)
    with pytest.raises(Forbidden):
        list_sessions(ctx.db, "sofia", actor=steward)
    assert end_sessions(ctx.db, "sofia") == 1
    with pytest.raises(Unauthenticated):
        authenticate_credential(ctx.db, session)
    assert end_sessions(ctx.db, "sofia") == 0


def test_disable_refuses_tokens_and_ends_sessions_and_enable_brings_the_tokens_back(any_ctx: Context) -> None:
    create_user(any_ctx.db, "root", roles=["admin"])
    create_user(any_ctx.db, "sofia", roles=["data_steward"])
    token, session = issue_token(any_ctx.db, "sofia", name="script").secret, _sign_in(any_ctx, "sofia")
    user = disable_user(any_ctx.db, "sofia")
    assert (user.disabled, user.state) == (True, "disabled")
    with pytest.raises(Unauthenticated, match="disabled"):
        authenticate_token(any_ctx.db, token)
    assert disable_user(any_ctx.db, "sofia").state == "disabled"  # again: no change, no entry
    assert _actions(any_ctx).count("user.disable") == 1

    assert enable_user(any_ctx.db, "sofia").state == "active"
    assert authenticate_token(any_ctx.db, token).name == "sofia"
    with pytest.raises(Unauthenticated, match="session has ended"):  # sessions stay ended
        authenticate_credential(any_ctx.db, session)


def test_delete_keeps_the_record_and_the_history_and_frees_nothing(any_ctx: Context) -> None:
    create_user(any_ctx.db, "root", roles=["admin"])
    create_user(any_ctx.db, "sofia", roles=["data_steward"])
    set_password(any_ctx.db, "sofia", PASSWORD)
    token, session = issue_token(any_ctx.db, "sofia", name="script").secret, _sign_in(any_ctx, "sofia")
    before = len(list_entries(any_ctx.db, limit=10_000))
    user = delete_user(any_ctx.db, "sofia")
    assert (user.state, user.roles, user.disabled) == ("deleted", (), True) and user.deleted_at is not None
    for secret in (token, session):
        with pytest.raises(Unauthenticated, match="deleted"):
            authenticate_credential(any_ctx.db, secret)
    assert [t["revoked"] for t in list_tokens(any_ctx.db, "sofia")] == [True]
    # The history stays: the earlier entries and one for the deletion; the user is still listed.
    entries = list_entries(any_ctx.db, limit=10_000)
    assert len(entries) > before and [e.object_id for e in entries if e.action == "user.create"].count("sofia") == 1
    [deleted] = [e for e in entries if e.action == "user.delete"]
    assert deleted.details["roles"] == ["data_steward"] and len(deleted.details["tokens_revoked"]) == 1
    assert get_user(any_ctx.db, "sofia").state == "deleted"
    assert "sofia" in [u.name for u in list_users(any_ctx.db)]
    # A deleted user stays deleted, and the name is not given out again.
    for change in (lambda: enable_user(any_ctx.db, "sofia"), lambda: grant_role(any_ctx.db, "sofia", "auditor"),
                   lambda: issue_token(any_ctx.db, "sofia", name="again"), lambda: delete_user(any_ctx.db, "sofia")):
        with pytest.raises(Conflict, match="was deleted"):
            change()
    with pytest.raises(Conflict, match="not given out again"):
        create_user(any_ctx.db, "sofia", roles=[])


def test_the_last_administrator_can_be_neither_disabled_nor_deleted(any_ctx: Context) -> None:
    create_user(any_ctx.db, "root", roles=["admin"])
    entries = len(list_entries(any_ctx.db, limit=10_000))
    for change in (disable_user, delete_user):
        with pytest.raises(Conflict, match="Nobody would be left who may"):
            change(any_ctx.db, "root")
    assert get_user(any_ctx.db, "root").state == "active" and "admin" in get_user(any_ctx.db, "root").roles
    assert len(list_entries(any_ctx.db, limit=10_000)) == entries  # nothing changed, nothing recorded
    create_user(any_ctx.db, "ada", roles=["admin"])
    assert delete_user(any_ctx.db, "root").state == "deleted"  # with a second administrator it may go
    with pytest.raises(Conflict, match="Nobody would be left"):
        disable_user(any_ctx.db, "ada")


def test_an_expired_session_is_refused_at_its_expiry(ctx: Context) -> None:
    create_user(ctx.db, "sofia", roles=["data_steward"])
    expired = start_session(ctx.db, actor=Actor("sofia"), address="10.0.0.7", expires_in=timedelta(seconds=-1))
    with pytest.raises(Unauthenticated, match="web session expired"):
        authenticate_credential(ctx.db, expired.secret)
