"""Client mode as a user meets it: the CLI, in fresh processes, talks to a real server over
HTTP with a token (CHAINKEEPER_URL, CHAINKEEPER_TOKEN) and never opens a store.

The server runs on uvicorn on a free 127.0.0.1 port over a real SQLite store; every CLI
process gets a --home folder that holds no store, so an answer can only come from the
server. Its answers must agree with the server's JSON and with the local command's --json.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.chain import open_context
from chainkeeper.cli.client import check_url
from chainkeeper.core.context import Context
from chainkeeper.core.errors import ConfigError
from chainkeeper.core.settings import load_settings
from chainkeeper.data import create_dataset_version, import_csv
from chainkeeper.governance import Actor, create_user, issue_token
from chainkeeper.governance.bootstrap import initialise


@dataclass
class Served:
    url: str
    home: Path  # the server's store
    empty: Path  # a folder with no store: where every client-mode CLI process points --home
    admin: str
    steward: str
    auditor: str
    version_id: int
    ctx: Context
    server: RunningServer


def _csv(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([(f"card lost {i}", "lost_card") for i in range(15)]
                         + [(f"refund please {i}", "refund") for i in range(15)])
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("client-mode")
    settings = load_settings({}, home=root / "server")
    admin = initialise(settings).admin_token or ""
    ctx = open_context(settings)
    create_user(ctx.db, "stella", roles=["data_steward"])
    steward = issue_token(ctx.db, "stella", name="laptop").secret
    create_user(ctx.db, "otto", roles=["auditor"])
    auditor = issue_token(ctx.db, "otto", name="laptop").secret
    stella = Actor("stella", frozenset({"data_steward"}))
    source = import_csv(ctx, _csv(root / "rows.csv"), actor=stella)
    version = create_dataset_version(ctx, name="support", source_ids=[source.id], actor=stella)
    server = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    (root / "empty").mkdir()
    try:
        yield Served(f"http://127.0.0.1:{server.port}", root / "server", root / "empty", admin, steward, auditor,
                     version.id,
                     ctx, server)
    finally:
        server.stop()
        ctx.close()


def _cli(*args: str, home: Path, url: str | None = None, token: str | None = None,
         **env: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI in a fresh interpreter, as a user runs it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHAINKEEPER_")}
    environ.update({"COLUMNS": "200", "CHAINKEEPER_HOME": str(home), **env})
    if url is not None:
        environ["CHAINKEEPER_URL"] = url
    if token is not None:
        environ["CHAINKEEPER_TOKEN"] = token
    done = subprocess.run([sys.executable, "-m", "chainkeeper.cli.main", *args], capture_output=True, text=True,
                          env=environ, timeout=120)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def _api(served: Served, path: str, token: str) -> object:
    import httpx

    answer = httpx.get(served.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_list_and_show_commands_answer_from_the_server_as_the_local_command_does(served: Served) -> None:
    pairs = [
        (["data", "versions"], "/api/datasets", served.steward),
        (["data", "show", str(served.version_id)], f"/api/datasets/{served.version_id}", served.steward),
        (["data", "sources"], "/api/sources", served.steward),
        (["users", "list"], "/api/users", served.admin),
        (["users", "tokens", "stella"], "/api/users/stella/tokens", served.admin),
        (["roles", "list"], "/api/roles", served.admin),
        (["jobs", "list"], "/api/jobs", served.auditor),
        (["models", "list"], "/api/models", served.auditor),
        (["deploy", "list"], "/api/deployments", served.auditor),
        (["train", "list"], "/api/runs", served.auditor),
        (["monitor", "alerts", "list"], "/api/alerts", served.auditor),
        (["audit", "entries", "--limit", "100"], "/api/audit", served.auditor),
        (["schedules", "list"], "/api/schedules", served.auditor),
    ]
    # A local command opens the store (seconds on a busy machine): compare a few with their local twin.
    with_local = {("data", "versions"), ("users", "tokens")}
    for args, path, token in pairs:
        remote = _cli(*args, "--json", home=served.empty, url=served.url, token=token)
        assert remote.returncode == 0, (args, remote.stderr)
        assert json.loads(remote.stdout) == _api(served, path, token), f"client-mode {args} != GET {path}"
        if tuple(args[:2]) in with_local:
            local = _cli(*args, "--json", home=served.home, token=token)
            assert local.returncode == 0, (args, local.stderr)
            assert json.loads(remote.stdout) == json.loads(local.stdout), f"client-mode {args} != local {args}"
    assert not (served.empty / "chainkeeper.db").exists()  # no store was created or opened there


def test_tables_show_the_servers_rows(served: Served) -> None:
    done = _cli("data", "versions", home=served.empty, url=served.url, token=served.steward)
    assert done.returncode == 0, done.stderr
    assert "support" in done.stdout and "stella" in done.stdout and "draft" in done.stdout
    done = _cli("audit", "verify", home=served.empty, url=served.url, token=served.admin)
    assert done.returncode == 0 and "ledger intact" in done.stdout


def test_a_hand_off_goes_through_the_server(served: Served) -> None:
    done = _cli("data", "release-request", str(served.version_id), "-m", "ready", home=served.empty, url=served.url,
                token=served.steward)
    assert done.returncode == 0, done.stderr
    assert "approval request" in done.stdout and "approvals approve" in done.stdout
    approvals = _api(served, "/api/approvals", served.admin)
    assert isinstance(approvals, list)
    [request] = [a for a in approvals if str(a["object_id"]) == str(served.version_id)]
    assert request["requested_by"] == "stella" and request["request_comment"] == "ready"
    shown = _cli("approvals", "show", str(request["id"]), "--json", home=served.empty, url=served.url,
                 token=served.admin)
    assert json.loads(shown.stdout)["id"] == request["id"] and "may_approve" in json.loads(shown.stdout)
    # The requester may not approve her own request: the server's refusal comes back as the local one would.
    refused = _cli("approvals", "approve", str(request["id"]), "-m", "mine", home=served.empty, url=served.url,
                   token=served.steward)
    assert refused.returncode == 5 and "Error:" in refused.stderr


def test_a_bad_token_says_so_and_never_shows_it(served: Served) -> None:
    done = _cli("data", "versions", home=served.empty, url=served.url, token="ck_not-a-real-token")
    assert done.returncode == 5
    assert "refused the token" in done.stderr and "CHAINKEEPER_TOKEN" in done.stderr
    assert "ck_not-a-real-token" not in done.stdout + done.stderr
    missing = _cli("data", "versions", home=served.empty, url=served.url)
    assert missing.returncode == 5 and "needs an API token" in missing.stderr


def test_a_stopped_server_says_it_cannot_be_reached(served: Served, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _cli("jobs", "list", home=served.empty, url=f"http://127.0.0.1:{port}", token=served.admin)
    assert done.returncode == 3
    assert "Cannot reach the Chainkeeper server" in done.stderr and "chainkeeper up" in done.stderr


@pytest.mark.parametrize("args", [pytest.param(["up"], id="up"), pytest.param(["init"], id="init"),
                                  pytest.param(["users", "reset-admin"], id="reset-admin")])
def test_a_local_only_command_says_how_to_run_it(served: Served, args: list[str]) -> None:
    done = _cli(*args, home=served.empty, url=served.url, token=served.admin)
    assert done.returncode == 2
    assert "local-only" in done.stderr and "CHAINKEEPER_URL unset" in done.stderr
    assert not (served.empty / "chainkeeper.db").exists()


def test_config_show_names_the_mode_and_masks_the_token(served: Served) -> None:
    remote = _cli("config", "show", home=served.empty, url=served.url, token=served.admin)
    assert remote.returncode == 0 and f"client of {served.url}" in remote.stdout
    assert served.admin not in remote.stdout
    local = _cli("config", "show", "--json", home=served.empty, token=served.admin)
    assert json.loads(local.stdout)["mode"].startswith("local")


def test_plain_http_to_another_machine_is_refused_unless_insecure(served: Served) -> None:
    done = _cli("jobs", "list", home=served.empty, url="http://192.0.2.1:8000", token=served.admin)
    assert done.returncode == 2 and "in clear" in done.stderr and "--insecure" in done.stderr
    assert served.admin not in done.stderr


@pytest.mark.parametrize(("url", "insecure", "ok"), [
    pytest.param("https://ck.example.org/", False, True, id="https"),
    pytest.param("http://127.0.0.1:8000", False, True, id="loopback"),
    pytest.param("http://localhost:8000", False, True, id="localhost"),
    pytest.param("http://[::1]:8000", False, True, id="loopback-v6"),
    pytest.param("http://10.0.0.5:8000", False, False, id="lan-http"),
    pytest.param("http://10.0.0.5:8000", True, True, id="lan-http-insecure"),
    pytest.param("ftp://ck.example.org", True, False, id="not-http"),
])
def test_check_url(url: str, insecure: bool, ok: bool) -> None:
    if ok:
        assert check_url(url, insecure=insecure) == url.rstrip("/")
    else:
        with pytest.raises(ConfigError):
            check_url(url, insecure=insecure)


def test_import_create_and_train_go_through_the_api(served: Served, tmp_path: Path) -> None:
    """A file on the laptop is uploaded; the version and the run are the server's to make."""
    rows = _csv(tmp_path / "more.csv")
    done = _cli("data", "import", str(rows), home=served.empty, url=served.url, token=served.steward)
    assert done.returncode == 0, done.stderr
    assert "30 rows accepted" in done.stdout
    source_id = int(done.stdout.split()[1].rstrip(":"))
    done = _cli("data", "create", "laptop", "--source", str(source_id), home=served.empty, url=served.url,
                token=served.steward)
    assert done.returncode == 0, done.stderr
    assert "dataset laptop v1" in done.stdout and "draft" in done.stdout
    refused = _cli("train", "start", "1", "--set", "epochs=1", home=served.empty, url=served.url,
                   token=served.steward)
    assert refused.returncode == 5 and "may not" in refused.stderr  # a steward does not train
    assert not (served.empty / "chainkeeper.db").exists()
