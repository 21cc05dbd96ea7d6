"""Issue 15 item 2 as a user meets it: 'chainkeeper audit anchor' and 'audit verify --anchor' in
fresh processes, on the store's host and in client mode against a real server.

Cutting off the end of the ledger still verifies as a chain; against the anchor file it
fails, naming the entries that went, with what to do.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.governance import create_user, issue_token
from chainkeeper.governance.anchors import read_anchor_file
from chainkeeper.governance.bootstrap import initialise
from chainkeeper.governance.ledger import count_entries
from chainkeeper.governance.ledger_keys import key_file_of


@dataclass
class Store:
    home: Path
    admin: str
    auditor: str
    ctx: Context


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    settings = load_settings({}, home=tmp_path / "server")
    admin = initialise(settings).admin_token or ""
    ctx = open_context(settings)
    for name in ("u1", "u2", "u3"):
        create_user(ctx.db, name, roles=["operator"])
    create_user(ctx.db, "otto", roles=["auditor"])
    try:
        yield Store(tmp_path / "server", admin, issue_token(ctx.db, "otto", name="laptop").secret, ctx)
    finally:
        ctx.close()


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


def _cut_last(store: Store, n: int) -> None:
    with sqlite3.connect(store.home / "chainkeeper.db") as conn:
        conn.execute("DELETE FROM audit_ledger WHERE seq > (SELECT MAX(seq) FROM audit_ledger) - ?", (n,))


def test_on_the_host_anchor_rotate_and_verify_catch_a_cut_off_end(store: Store, tmp_path: Path) -> None:
    anchors = tmp_path / "auditor" / "anchors.jsonl"
    done = _cli("audit", "anchor", "--to", str(anchors), home=store.home, token=store.auditor)
    assert done.returncode == 0 and f"anchored the ledger at entry {count_entries(store.ctx.db)}" in done.stdout
    done = _cli("audit", "rotate-key", home=store.home, token="")
    assert done.returncode == 0 and "added ledger key" in done.stdout, done.stderr
    done = _cli("audit", "anchor", "--to", str(anchors), home=store.home, token=store.auditor)
    assert done.returncode == 0 and len(read_anchor_file(anchors)) == 2
    done = _cli("audit", "verify", "--anchor", str(anchors), home=store.home, token=store.auditor)
    assert done.returncode == 0 and "ledger intact" in done.stdout and "matches 2 anchor(s)" in done.stdout

    head = count_entries(store.ctx.db)
    _cut_last(store, 2)
    done = _cli("audit", "verify", home=store.home, token=store.auditor)
    assert done.returncode == 0  # the shorter chain alone still verifies: the anchor is what shows the cut
    done = _cli("audit", "verify", "--anchor", str(anchors), home=store.home, token=store.auditor)
    assert done.returncode == 2 and f"broken at entry {head - 1} (truncated)" in done.stderr
    assert f"entries {head - 1}-{head} were deleted" in done.stderr and "Restore the database" in done.stderr

    key_file = key_file_of(store.ctx.settings)
    key_file.rename(tmp_path / "away.keys")
    done = _cli("audit", "verify", home=store.home, token=store.auditor)
    assert done.returncode == 2 and "(key-missing)" in done.stderr and "Restore the key file" in done.stderr


@pytest.fixture
def server(store: Store) -> Iterator[RunningServer]:
    running = start_server_in_thread(create_app(store.ctx), host="127.0.0.1", port=0)
    try:
        yield running
    finally:
        running.stop()


def test_in_client_mode_the_anchor_file_stays_with_the_auditor(store: Store, server: RunningServer,
                                                               tmp_path: Path) -> None:
    url, laptop = f"http://127.0.0.1:{server.port}", tmp_path / "laptop"
    laptop.mkdir()
    anchors = laptop / "anchors.jsonl"
    done = _cli("audit", "anchor", "--to", str(anchors), home=laptop, token=store.auditor, url=url)
    assert done.returncode == 0 and "anchored the ledger at entry" in done.stdout, done.stderr
    assert not (laptop / "chainkeeper.db").exists() and read_anchor_file(anchors)[0].seq == count_entries(store.ctx.db)
    done = _cli("audit", "verify", "--anchor", str(anchors), home=laptop, token=store.auditor, url=url)
    assert done.returncode == 0 and "matches 1 anchor(s)" in done.stdout, done.stderr

    _cut_last(store, 1)
    done = _cli("audit", "verify", "--anchor", str(anchors), home=laptop, token=store.auditor, url=url)
    assert done.returncode == 2 and "(truncated)" in done.stderr and f"{anchors} line 1" in done.stderr
    done = _cli("audit", "rotate-key", home=laptop, token=store.admin, url=url)
    assert done.returncode == 2 and "local-only" in done.stderr and "ledger key file" in done.stderr
