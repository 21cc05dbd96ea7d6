"""The CLI and the API give the same answer to the same person, because the service decides.

Project-scoped people — a data steward, an ML engineer and a release manager whose roles
hold only in project "support" — act on objects of "support" and of "news" through both
shells. Each action must be allowed by both or refused by both, with the same message.
(The CLI once let such a steward create a dataset version that the API refused.)
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.data import create_dataset_version, import_csv
from chainkeeper.governance import Actor, create_user, grant_role, issue_token
from tests.cli.conftest import Run

GINA = Actor("gina", frozenset({"data_steward"}))  # a steward of every project, makes "news"


def _csv(path: Path, word: str) -> Path:
    rows = [(f"{word} card lost {i}", "lost_card") for i in range(15)]
    rows += [(f"{word} refund please {i}", "refund") for i in range(15)]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _outcome_cli(answer: tuple[int, str, str]) -> tuple[str, str]:
    code, out, err = answer
    if code == 0:
        return "allowed", ""
    return ("refused" if code == 5 else f"error {code}"), " ".join(err.split())


def _outcome_api(response: Any) -> tuple[str, str]:
    if response.status_code < 300:
        return "allowed", ""
    detail = response.json().get("detail", "")
    return ("refused" if response.status_code == 403 else f"error {response.status_code}"), detail


@pytest.fixture
def store(run: Run, home: Path, tmp_path: Path) -> tuple[Context, dict[str, str], dict[str, int]]:
    code, _, err = run("init")
    assert code == 0, err
    ctx = open_context(load_settings({}, home=home))
    tokens = {}
    for name, role in (("stella", "data_steward"), ("erin", "ml_engineer"), ("rory", "release_manager")):
        create_user(ctx.db, name, roles=[])
        grant_role(ctx.db, name, role, project="support")
        tokens[name] = issue_token(ctx.db, name, name="test").secret
    create_user(ctx.db, GINA.name, roles=["data_steward"])
    news_source = import_csv(ctx, _csv(tmp_path / "news.csv", "news"), actor=GINA)
    news = create_dataset_version(ctx, name="news", source_ids=[news_source.id], actor=GINA)
    support_source = import_csv(ctx, _csv(tmp_path / "support.csv", "support"), actor=GINA)
    support = create_dataset_version(ctx, name="support", source_ids=[support_source.id], actor=GINA)
    ids = {"news_source": news_source.id, "news": news.id, "support_source": support_source.id, "support": support.id}
    return ctx, tokens, ids


def test_a_project_scoped_team_gets_the_same_answers_from_the_cli_and_the_api(
        run: Run, store: tuple[Context, dict[str, str], dict[str, int]], tmp_path: Path) -> None:
    ctx, tokens, ids = store
    client = TestClient(create_app(ctx), raise_server_exceptions=False)

    def api(method: str, path: str, who: str, **kwargs: Any) -> tuple[str, str]:
        return _outcome_api(client.request(method, path, headers={"Authorization": f"Bearer {tokens[who]}"},
                                           **kwargs))

    def cli(who: str, *args: str) -> tuple[str, str]:
        return _outcome_cli(run(*args, token=tokens[who]))

    support_csv = _csv(tmp_path / "more-support.csv", "more")
    pairs = {
        "steward creates a support version": (
            cli("stella", "data", "create", "support", "--source", str(ids["support_source"])),
            api("POST", "/api/datasets", "stella", json={"name": "support", "source_ids": [ids["support_source"]]})),
        "steward creates a news version": (
            cli("stella", "data", "create", "news", "--source", str(ids["news_source"])),
            api("POST", "/api/datasets", "stella", json={"name": "news", "source_ids": [ids["news_source"]]})),
        "steward reads a support version": (
            cli("stella", "data", "show", str(ids["support"])),
            api("GET", f"/api/datasets/{ids['support']}", "stella")),
        "steward reads a news version": (
            cli("stella", "data", "show", str(ids["news"])),
            api("GET", f"/api/datasets/{ids['news']}", "stella")),
        "steward asks to release news": (
            cli("stella", "data", "release-request", str(ids["news"])),
            api("POST", f"/api/datasets/{ids['news']}/release-requests", "stella", json={"comment": "go"})),
        "steward imports a file": (
            cli("stella", "data", "import", str(support_csv)),
            api("POST", "/api/sources", "stella", files={"file": ("more.csv", support_csv.read_bytes(), "text/csv")})),
        "engineer trains on news": (
            cli("erin", "train", "start", str(ids["news"])),
            api("POST", "/api/runs", "erin", json={"dataset_version_id": ids["news"]})),
        "release manager reads news's lineage": (
            cli("rory", "lineage", "dataset_version", str(ids["news"])),
            api("GET", f"/api/lineage/dataset_version/{ids['news']}", "rory")),
    }
    for what, (by_cli, by_api) in pairs.items():
        assert by_cli[0] == by_api[0], f"{what}: CLI {by_cli}, API {by_api}"
        if by_api[0] == "refused":
            assert by_api[1] and by_api[1] in by_cli[1], (
                f"{what}: messages differ: CLI {by_cli[1]!r}, API {by_api[1]!r}")
    outcomes = {what: by_api[0] for what, (_, by_api) in pairs.items()}
    # Inside their project they act; outside it they are refused.
    assert outcomes["steward creates a support version"] == "allowed"
    assert outcomes["steward reads a support version"] == "allowed"
    for what in ("steward creates a news version", "steward reads a news version", "steward asks to release news",
                 "engineer trains on news", "release manager reads news's lineage"):
        assert outcomes[what] == "refused", what
    ctx.close()
