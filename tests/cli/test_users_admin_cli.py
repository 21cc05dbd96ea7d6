"""``chainkeeper users`` administration in a fresh process (issue 15 item 4): sessions are
listed and ended, users disabled, enabled and deleted — on the host and through a server
(client mode) — and the last administrator stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.auth import TOKEN_CACHE_TTL_S
from chainkeeper.api.server import start_server_in_thread
from chainkeeper.chain import open_context
from chainkeeper.core.errors import Unauthenticated
from chainkeeper.core.settings import load_settings
from chainkeeper.governance import Actor, create_user, issue_token
from chainkeeper.governance.bootstrap import initialise
from chainkeeper.governance.users import authenticate_credential, start_session


def _cli(*args: str, home: Path, token: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter, as a user runs it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    environ.update({"COLUMNS": "200", "CHAINKEEPER_HOME": str(home), "CHAINKEEPER_TOKEN": token})
    if url is not None:
        environ["CHAINKEEPER_URL"] = url
    done = subprocess.run([sys.executable, "-m", "chainkeeper.cli.main", *args], capture_output=True, text=True,
                          env=environ, timeout=120)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def test_an_admin_ends_sessions_and_disables_enables_and_deletes_users(tmp_path: Path) -> None:
    settings = load_settings({}, home=tmp_path / "home")
    admin = initialise(settings).admin_token or ""
    ctx = open_context(settings)
    server = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    try:
        create_user(ctx.db, "sofia", roles=["data_steward"])
        token = issue_token(ctx.db, "sofia", name="laptop").secret
        session = start_session(ctx.db, actor=Actor("sofia"), address="10.1.2.3", expires_in=timedelta(hours=1))
        home = settings.home

        listed = _cli("users", "sessions", "sofia", home=home, token=admin)
        assert listed.returncode == 0 and "10.1.2.3" in listed.stdout and session.secret not in listed.stdout
        ended = _cli("users", "end-sessions", "sofia", home=home, token=admin)
        assert ended.returncode == 0 and "1 session(s) of sofia ended" in ended.stdout
        with pytest.raises(Unauthenticated, match="session has ended"):
            authenticate_credential(ctx.db, session.secret)

        assert _me(server.url, token) == 200  # the server caches the token now
        disabled = _cli("users", "disable", "sofia", home=home, token=admin)
        assert disabled.returncode == 0 and "sofia is disabled" in disabled.stdout
        refused = _cli("data", "versions", home=home, token=token)
        assert refused.returncode == 5 and "is disabled" in refused.stdout + refused.stderr
        # The server learns of a change made by another process within the token cache's TTL.
        deadline = time.monotonic() + TOKEN_CACHE_TTL_S + 1.0
        while _me(server.url, token) == 200:
            assert time.monotonic() < deadline, "still accepted past the token cache's TTL"
            time.sleep(0.1)

        # Through the server (client mode), as from an admin's laptop.
        enabled = _cli("users", "enable", "sofia", home=tmp_path, token=admin, url=server.url)
        assert enabled.returncode == 0 and "sofia is active" in enabled.stdout, enabled.stderr
        assert _cli("data", "versions", home=home, token=token).returncode == 0
        remote = _cli("users", "sessions", "sofia", "--json", home=tmp_path, token=admin, url=server.url)
        assert remote.returncode == 0 and json.loads(remote.stdout) == []

        last = _cli("users", "delete", "admin", "--yes", home=home, token=admin)
        assert last.returncode == 2 and "Nobody would be left who may" in last.stdout + last.stderr
        deleted = _cli("users", "delete", "sofia", "--yes", home=home, token=admin)
        assert deleted.returncode == 0 and "sofia is deleted" in deleted.stdout
        users = _cli("users", "list", home=home, token=admin)
        assert "deleted" in users.stdout and "sofia" in users.stdout
    finally:
        server.stop()
        ctx.close()



def _me(url: str, token: str) -> int:
    return httpx.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code
