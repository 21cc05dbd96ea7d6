"""CLI conventions a user meets everywhere: quick start-up, help text as written, ``--json``
with the API's fields, tables that wrap, and a way back in for a host that lost the admin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.chain import open_context
from chainkeeper.cli.main import app
from chainkeeper.core.settings import load_settings
from chainkeeper.data import create_dataset_version, import_csv
from chainkeeper.governance import Actor, create_user, issue_token, login
from tests.cli.conftest import Run

HEAVY = ("torch", "transformers", "scipy", "onnxruntime", "pyarrow", "sklearn")


def _init(run: Run) -> tuple[str, str]:
    code, out, err = run("init")
    assert code == 0, err
    token = re.search(r"API token[^:]*:\s+(ck_\S+)", out)
    password = re.search(r"web sign-in password:\s+(\S+)", out)
    assert token and password
    return token.group(1), password.group(1)


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_load_no_heavy_library(args: list[str]) -> None:
    """In a fresh interpreter, as the 'chainkeeper' script runs: none of the libraries that
    take seconds to import is loaded (nor the store's or the settings' machinery)."""
    code = ("import sys\nfrom chainkeeper.cli.main import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print('LOADED', ','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{(*HEAVY, 'sqlalchemy', 'pydantic')!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = done.stdout.rsplit("LOADED", 1)[1].strip()
    assert loaded == "", f"'chainkeeper {' '.join(args)}' imported {loaded}"
    assert ("chainkeeper" in done.stdout) if args == ["--version"] else ("quickstart" in done.stdout)


def test_no_help_page_loads_a_heavy_library() -> None:
    """In one fresh interpreter, the root's help and every group's (and a few commands')
    help pages in turn: none imports torch, transformers, scipy, onnxruntime, pyarrow or
    sklearn (a group's module reaches the stages through their lazy entry points). Each
    page reports what it added, so a failure names the page that loaded the library."""
    from chainkeeper.cli.main import COMMANDS

    pages = [["--help"], *([name, "--help"] for name in COMMANDS),
             ["models", "list", "--help"], ["data", "versions", "--help"], ["train", "start", "--help"],
             ["monitor", "drift", "--help"], ["monitor", "tickets", "train", "--help"],
             ["approvals", "approve", "--help"]]
    code = ("import json, sys\nfrom chainkeeper.cli.main import main\nfound = {}\n"
            f"for args in {pages!r}:\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            f"    heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})\n"
            "    if heavy:\n        found[' '.join(args)] = heavy\n        break\n"
            "print('FOUND', json.dumps(found))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    found = json.loads(done.stdout.rsplit("FOUND", 1)[1])
    assert not found, f"this help page imported heavy libraries: {found}"
    assert "Usage: chainkeeper approvals approve" in done.stdout


def test_written_out_help_lists_match_the_chain() -> None:
    """The lineage and owner help name their kinds without importing the chain layer, and
    the monitor help its drift checks and feedback sources without the drift module."""
    from chainkeeper.chain import LINEAGE_KINDS, RESPONSIBLE_ROLE
    from chainkeeper.cli.governance import LINEAGE_KINDS_HELP, OWNED_KINDS_HELP
    from chainkeeper.cli.monitor import CHECKS_HELP, SOURCES_HELP
    from chainkeeper.monitoring import CHECKS, SOURCES
    from chainkeeper.serving import DEFAULT_MAX_DELTA_POINTS

    assert LINEAGE_KINDS_HELP.split(", ") == list(LINEAGE_KINDS)
    assert OWNED_KINDS_HELP.split(", ") == list(RESPONSIBLE_ROLE)
    assert CHECKS_HELP.split(", ") == list(CHECKS)
    assert SOURCES_HELP.split(", ") == list(SOURCES)
    params = {p.name: p for p in typer.main.get_command(app).get_command(  # type: ignore[attr-defined]
        typer.Context(typer.main.get_command(app)), "models").commands["export"].params}
    assert f"default {DEFAULT_MAX_DELTA_POINTS:g}" in (params["max_delta_points"].help or "")


def _commands(group: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, group
    if hasattr(group, "list_commands"):
        ctx = group.context_class(group)
        for name in group.list_commands(ctx):
            yield from _commands(group.get_command(ctx, name), [*path, name])


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_help_shows_square_brackets_as_written(run: Run) -> None:
    """'[env: CHAINKEEPER_PORT]' and '[[start, end, "LABEL"], ...]' were eaten as markup
    (" ." and "[, ...]"): every bracket in every option's help reaches the page."""
    checked = 0
    for path, command in _commands(typer.main.get_command(app), []):
        texts = [p.help.replace("\\[", "[") for p in command.params if getattr(p, "help", None) and "[" in p.help]
        if not texts:
            continue
        code, out, _ = run(*path, "--help")
        assert code == 0
        for text in texts:
            assert _flat(text) in _flat(out), f"chainkeeper {' '.join(path)} --help lost part of {text!r}"
            checked += 1
    assert checked >= 8  # the env hints of the root, 'serve' and 'up', and the span format of annotate


def _csv(path: Path) -> Path:
    lines = ["text,label"] + [f"card lost {i},lost_card" for i in range(15)] + [f"refund {i},refund"
                                                                                for i in range(15)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _steward_with_a_release_request(run: Run, home: Path, tmp_path: Path) -> str:
    """A data steward (returns its token) who asked for the release of a dataset version (id 1)."""
    ctx = open_context(load_settings({}, home=home))
    try:
        create_user(ctx.db, "stella", roles=["data_steward"])
        steward = issue_token(ctx.db, "stella", name="test").secret
        stella = Actor("stella", frozenset({"data_steward"}))
        source = import_csv(ctx, _csv(tmp_path / "rows.csv"), actor=stella)
        version = create_dataset_version(ctx, name="support", source_ids=[source.id], actor=stella)
    finally:
        ctx.close()
    assert run("approvals", "request", "dataset.release", str(version.id), token=steward)[0] == 0
    return steward


def test_wide_tables_wrap_instead_of_cutting_words(run: Run, home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    admin, _ = _init(run)
    _steward_with_a_release_request(run, home, tmp_path)
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = run("approvals", "list", token=admin)
    assert code == 0 and "…" not in out and "stella" in out


def test_reset_admin_gives_the_host_new_secrets_and_records_it(run: Run, home: Path) -> None:
    old_token, old_password = _init(run)
    code, out, err = run("users", "reset-admin")  # no token: whoever can open the store may
    assert code == 0, err
    token = re.search(r"API token[^:]*:\s+(ck_\S+)", out)
    password = re.search(r"web sign-in password:\s+(\S+)", out)
    assert token and password and token.group(1) != old_token and password.group(1) != old_password
    code, out, _ = run("users", "list", "--json", token=token.group(1))
    assert code == 0 and [u["name"] for u in json.loads(out)] == ["admin"]
    ctx = open_context(load_settings({}, home=home))
    try:
        assert login(ctx.db, "admin", password.group(1), address="127.0.0.1").name == "admin"
    finally:
        ctx.close()
    code, out, _ = run("audit", "entries", "--kind", "user", "--id", "admin", "--json", token=token.group(1))
    [entry] = [e for e in json.loads(out) if e["action"] == "user.reset_admin"]
    assert entry["actor"].startswith("host:") and entry["details"]["recovery"] == "host"
    assert run("audit", "verify", token=token.group(1))[0] == 0
    code, out, _ = run("users", "tokens", "admin", "--json", token=token.group(1))
    assert [t["name"] for t in json.loads(out)] == ["bootstrap", "host recovery"]


def test_reset_admin_does_not_bring_back_a_deleted_admin(run: Run, home: Path) -> None:
    """Deleting is final (the name stays in the ledger); reset-admin says so instead of
    issuing a token the server would refuse."""
    admin, _ = _init(run)
    assert run("users", "create", "ines", "--role", "admin", token=admin)[0] == 0
    assert run("users", "delete", "admin", "--yes", token=admin)[0] == 0
    code, _, err = run("users", "reset-admin")
    assert code != 0 and "was deleted" in err and "another administrator" in err


def test_reset_admin_without_a_store_says_where_it_looked(run: Run, home: Path) -> None:
    code, _, err = run("users", "reset-admin")
    assert code != 0 and "There is no store" in err and "--home" in err
    assert not (home / "chainkeeper.db").exists()


def test_json_output_has_the_fields_the_api_answers(run: Run, home: Path, tmp_path: Path) -> None:
    admin, _ = _init(run)
    steward = _steward_with_a_release_request(run, home, tmp_path)
    ctx = open_context(load_settings({}, home=home))
    try:
        assert run("annotate", "schema", "intents", "-l", "lost_card", "-l", "refund", token=steward)[0] == 0
        client = TestClient(create_app(ctx))
        pairs = [
            (["users", "list"], "/api/users", admin),
            (["roles", "list"], "/api/roles", admin),
            (["approvals", "list"], "/api/approvals", admin),
            (["approvals", "show", "1"], "/api/approvals/1", admin),
            (["jobs", "list", "--limit", "50"], "/api/jobs", admin),
            (["audit", "entries", "--limit", "100"], "/api/audit", admin),
            (["annotate", "schemas"], "/api/annotation/schemas", steward),
        ]
        for args, path, token in pairs:
            code, out, err = run(*args, "--json", token=token)
            assert code == 0, err
            answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, path
            assert json.loads(out) == json.loads(answer.text), f"chainkeeper {' '.join(args)} --json != GET {path}"
    finally:
        ctx.close()
