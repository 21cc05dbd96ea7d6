"""``chainkeeper users password`` applies the password policy (issue 15 item 5)."""

from __future__ import annotations

import io
import re

import pytest

from tests.cli.conftest import Run


@pytest.mark.parametrize(("password", "rule"), [
    pytest.param("password123", "one of the most common passwords", id="common"),
    pytest.param("carol2024carol", "built on the name 'carol'", id="own-name"),
])
def test_users_password_refuses_a_weak_password_and_says_why(run: Run, monkeypatch: pytest.MonkeyPatch,
                                                             password: str, rule: str) -> None:
    code, out, err = run("init")
    assert code == 0, err
    match = re.search(r"API token[^:]*:\s+(ck_\S+)", out)
    assert match
    admin = match.group(1)
    assert run("users", "create", "carol", "--role", "auditor", token=admin)[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{password}\n"))
    code, out, err = run("users", "password", "carol", token=admin)
    assert code == 2 and rule in out + err and "password manager" in out + err
    monkeypatch.setattr("sys.stdin", io.StringIO("carol likes long walks\n"))
    code, out, err = run("users", "password", "carol", token=admin)
    assert code == 0 and "password of carol set" in out, err
