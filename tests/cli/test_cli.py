"""The ``chainkeeper`` command as a user meets it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import Run


def _admin_token(run: Run) -> str:
    code, out, _ = run("init")
    assert code == 0 and "Created user admin" in out
    token = re.search(r"API token[^:]*:\s+(ck_\S+)", out)
    assert token is not None and re.search(r"web sign-in password:\s+\S{12,}", out)
    return token.group(1)


def test_init_prints_the_admin_token_once_and_is_idempotent(run: Run) -> None:
    token = _admin_token(run)
    assert token.startswith("ck_")
    code, out, _ = run("init")
    assert code == 0 and "ck_" not in out and "Store ready" in out


def test_config_show_masks_secrets(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINKEEPER_DATABASE_URL", "postgresql+psycopg://bob:s3cret@db.invalid/ck")
    code, out, _ = run("config", "show", "--json", token="ck_super_secret_token")
    assert code == 0 and "s3cret" not in out and "ck_super_secret_token" not in out and "***" in out


def test_a_typo_in_the_environment_is_named(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINKEEPER_PROT", "1")
    code, _, err = run("config", "show")
    assert code == 2 and "Unknown setting in the environment: CHAINKEEPER_PROT" in err


def test_protected_commands_need_a_token_and_say_how_to_get_one(run: Run) -> None:
    admin = _admin_token(run)
    code, _, err = run("jobs", "list")
    assert code == 5 and "needs an API token" in err and "CHAINKEEPER_TOKEN" in err
    code, _, err = run("jobs", "list", token="ck_wrong")
    assert code == 5 and "not valid" in err and "ck_wrong" not in err
    code, out, _ = run("jobs", "list", token=admin)
    assert code == 0 and "No jobs yet" in out


def test_a_forbidden_command_names_the_roles_that_may(run: Run) -> None:
    admin = _admin_token(run)
    assert run("users", "create", "ann", "--role", "annotator", token=admin)[0] == 0
    code, out, _ = run("users", "token", "ann", token=admin)
    ann = out.strip().splitlines()[-1]
    code, _, err = run("users", "create", "eve", "--role", "admin", token=ann)
    assert code == 5 and "may not user.manage" in err and "Roles that may: admin" in err
    code, out, _ = run("users", "list", token=admin)
    assert "eve" not in out  # nothing changed


def test_raci_export_in_both_formats(run: Run) -> None:
    admin = _admin_token(run)
    code, out, _ = run("roles", "raci", "--format", "csv", token=admin)
    assert code == 0 and out.splitlines()[0] == "stage,activity,Responsible,Accountable,Consulted,Informed"
    code, out, _ = run("roles", "raci", token=admin)
    assert code == 0 and "| release model | promote to production |" in out
    code, _, err = run("roles", "raci", "--format", "xml", token=admin)
    assert code == 2 and "Use --format md or --format csv" in err


def test_audit_verify_exits_non_zero_naming_the_entry(run: Run, tmp_path: Path) -> None:
    import sqlite3

    admin = _admin_token(run)
    for name in ("u1", "u2", "u3"):
        run("users", "create", name, "--role", "operator", token=admin)
    code, out, _ = run("audit", "verify", token=admin)
    assert code == 0 and "ledger intact" in out
    with sqlite3.connect(tmp_path / "home" / "chainkeeper.db") as conn:
        conn.execute("UPDATE audit_ledger SET actor = 'mallory' WHERE seq = 3")
    code, _, err = run("audit", "verify", token=admin)
    assert code == 2 and "broken at entry 3" in err and "edited" in err
    code, out, _ = run("audit", "export", "--output", str(tmp_path / "ledger.jsonl"), token=admin)
    assert code == 0 and len((tmp_path / "ledger.jsonl").read_text().splitlines()) >= 4


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        pytest.param(lambda d: None, "is not a folder", id="missing-folder"),
        pytest.param(lambda d: d.mkdir(), "No train.csv", id="no-train-csv"),
        pytest.param(lambda d: (d.mkdir(), (d / "train.csv").write_text("sentence,label\nhi,greet\n")),
                     "text", id="no-text-column"),
    ],
)
def test_quickstart_bad_data_is_refused_and_stores_nothing(run: Run, tmp_path: Path,
                                                           make: Callable[[Path], object], fragment: str) -> None:
    data = tmp_path / "data"
    make(data)
    code, _, err = run("quickstart", "--data", str(data))
    assert code == 2 and fragment in err
    from chainkeeper.chain import open_context
    from chainkeeper.core.jobs import list_jobs
    from chainkeeper.core.settings import load_settings
    from chainkeeper.data.sources import count_sources
    from chainkeeper.data.versions import count_dataset_versions
    from chainkeeper.governance.users import list_users

    ctx = open_context(load_settings({}, home=tmp_path / "home"))
    try:
        assert count_sources(ctx.db) == 0 and count_dataset_versions(ctx.db) == 0 and list_jobs(ctx.db) == []
        assert [u.name for u in list_users(ctx.db)] == ["admin"]
    finally:
        ctx.close()


def test_serve_on_a_port_in_use_is_a_clear_error(run: Run) -> None:
    _admin_token(run)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run("serve", "--port", str(port))
    assert code == 3 and f"{port}" in err and "already in use" in err
