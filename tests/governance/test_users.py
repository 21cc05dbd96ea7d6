from datetime import timedelta

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, InvalidInput, Unauthenticated
from chainkeeper.governance.users import authenticate_token, create_user, issue_token, revoke_token


def test_a_token_is_shown_once_and_stored_only_as_a_hash(any_ctx: Context) -> None:
    create_user(any_ctx.db, "bob", roles=["ml_engineer"])
    issued = issue_token(any_ctx.db, "bob", name="laptop")
    actor = authenticate_token(any_ctx.db, issued.secret)
    assert actor.name == "bob" and actor.roles == frozenset({"ml_engineer"})
    with any_ctx.db.engine.connect() as conn:
        stored = [str(v) for row in conn.exec_driver_sql("SELECT * FROM tokens") for v in row]
    assert issued.secret not in stored and not any(issued.secret[3:] in v for v in stored)


def test_revoked_expired_and_unknown_tokens_are_refused(ctx: Context) -> None:
    create_user(ctx.db, "bob", roles=["ml_engineer"])
    revoked = issue_token(ctx.db, "bob", name="old")
    revoke_token(ctx.db, revoked.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        authenticate_token(ctx.db, revoked.secret)
    expired = issue_token(ctx.db, "bob", name="short", expires_in=timedelta(seconds=-1))
    with pytest.raises(Unauthenticated, match="expired"):
        authenticate_token(ctx.db, expired.secret)
    with pytest.raises(Unauthenticated) as info:
        authenticate_token(ctx.db, "ck_not-a-real-token")
    assert "ck_not-a-real-token" not in str(info.value)


def test_bad_users_are_refused_with_the_reason(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="Unknown role\\(s\\): wizard"):
        create_user(ctx.db, "bob", roles=["wizard"])
    with pytest.raises(InvalidInput, match="not valid"):
        create_user(ctx.db, "Bob Smith", roles=[])
    create_user(ctx.db, "bob", roles=[])
    with pytest.raises(Conflict):
        create_user(ctx.db, "bob", roles=[])
