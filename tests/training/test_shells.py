"""The training API and ``chainkeeper train`` as a user meets them: start, follow the
curve points, read the report, compare, cancel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.chain import open_context
from chainkeeper.cli.main import main
from chainkeeper.cli.train import parse_overrides
from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobState
from chainkeeper.core.settings import Settings
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.training.runs import RunState, get_run, run_points
from tests.training.test_runs import _dataset_version

CONFIG = {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "head_lr_multiplier": 1.0, "dropout": 0.0,
          "log_every_steps": 2, "max_length": 16, "eval_every_steps": 2}


def _token(ctx: Context, name: str, role: str) -> str:
    create_user(ctx.db, name, roles=[role])
    return issue_token(ctx.db, name, name="test").secret


@pytest.fixture
def ctx(settings: Settings, tiny_model_dir: Path) -> Iterator[Context]:
    """A store whose configured base model is the tiny one: over HTTP, runs always train
    on the server's configured base model."""
    context = open_context(settings.model_copy(update={"base_model": tiny_model_dir}))
    yield context
    context.close()


@pytest.fixture
def engineer(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {_token(ctx, 'emil', 'ml_engineer')}"}) as client:
        yield client


def test_api_starts_a_run_streams_its_curve_and_serves_the_report(ctx: Context, tmp_path: Path,
                                                                   tiny_model_dir: Path,
                                                                   engineer: TestClient) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    elsewhere = engineer.post("/api/runs", json={"dataset_version_id": version_id, "config": CONFIG,
                                                  "base_model": str(tiny_model_dir)})
    assert elsewhere.status_code == 422  # no server path may be named over HTTP
    answer = engineer.post("/api/runs", json={"dataset_version_id": version_id, "config": CONFIG})
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["id"]
    assert answer.json()["state"] == "queued" and answer.json()["config"]["epochs"] == 2

    assert Worker(ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]

    points = engineer.get(f"/api/runs/{run_id}/metrics").json()["points"]
    losses = [p for p in points if p["name"] == "loss"]
    assert [p["step"] for p in losses] == sorted(p["step"] for p in losses) and len(losses) >= 2
    assert {"learning_rate", "samples_per_s", "dev_accuracy"} <= {p["name"] for p in points}
    later = engineer.get(f"/api/runs/{run_id}/metrics", params={"after_id": points[-1]["id"]}).json()
    assert later["points"] == [] and later["last_id"] == points[-1]["id"]

    listed = engineer.get("/api/runs").json()
    assert [r["id"] for r in listed] == [run_id] and listed[0]["state"] == "succeeded"
    page = engineer.get(f"/api/runs/{run_id}/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text and f"Training run {run_id}" in page.text
    assert engineer.get(f"/api/runs/{run_id}/compare/{run_id}").json()["splits"]["test"]["accuracy"]["delta"] == 0
    assert engineer.post(f"/api/runs/{run_id}/cancel").status_code == 409


def test_api_refuses_a_bad_config_and_an_unknown_run(ctx: Context, tmp_path: Path, engineer: TestClient) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    answer = engineer.post("/api/runs", json={"dataset_version_id": version_id, "config": {"learning_rat": 1}})
    assert answer.status_code == 422 and "learning_rat" in answer.json()["detail"]
    assert engineer.get("/api/runs/999").status_code == 404
    assert engineer.get("/api/runs/999/metrics").status_code == 404


def test_an_operator_may_read_runs_but_not_start_them(ctx: Context, tmp_path: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    with TestClient(create_app(ctx), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {_token(ctx, 'olive', 'operator')}"}) as client:
        assert client.get("/api/runs").status_code == 200
        assert client.post("/api/runs", json={"dataset_version_id": version_id}).status_code == 403


def test_overrides_are_read_as_json_when_they_parse() -> None:
    assert parse_overrides(["epochs=3", "schedule=cosine", "labels=[\"a\",\"b\"]", "max_steps=null"]) == \
        {"epochs": 3, "schedule": "cosine", "labels": ["a", "b"], "max_steps": None}
    with pytest.raises(InvalidInput, match="key=value"):
        parse_overrides(["epochs"])


def test_cli_start_list_show_report_compare_and_cancel(ctx: Context, tmp_path: Path, tiny_model_dir: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    monkeypatch.setenv("CHAINKEEPER_HOME", str(ctx.settings.home))
    monkeypatch.setenv("CHAINKEEPER_DATABASE_URL", ctx.db.url)
    monkeypatch.setenv("CHAINKEEPER_TOKEN", _token(ctx, "emil", "ml_engineer"))
    monkeypatch.setenv("COLUMNS", "200")

    def cli(*args: str) -> tuple[int, str]:
        code = 0
        try:
            main(list(args))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out + err

    toml = tmp_path / "train.toml"
    toml.write_text("epochs = 2\nbatch_size = 8\nlearning_rate = 5e-3\nmax_length = 16\n", encoding="utf-8")
    code, out = cli("train", "start", str(version_id), "--config", str(toml), "--set", "dropout=0.0",
                    "--set", "head_lr_multiplier=1", "--base-model", str(tiny_model_dir))
    assert code == 0 and "run 1 queued" in out
    assert get_run(ctx.db, 1).config["dropout"] == 0.0 and get_run(ctx.db, 1).config["epochs"] == 2
    code, out = cli("train", "start", str(version_id), "--set", "learning_rat=1")
    assert code == 2 and "learning_rat" in out

    Worker(ctx).run_one()
    assert cli("train", "start", str(version_id), "--config", str(toml), "--base-model", str(tiny_model_dir))[0] == 0
    Worker(ctx).run_one()

    code, out = cli("train", "list")
    assert code == 0 and "succeeded" in out
    code, out = cli("train", "show", "1")
    assert code == 0 and "accuracy" in out and "learning_rate" in out
    code, out = cli("train", "logs", "1", "-f")
    assert code == 0 and "run 1 succeeded" in out
    report = tmp_path / "r.html"
    code, out = cli("train", "report", "1", "--html", str(report))
    assert code == 0 and "weighted avg" in out and "<svg" in report.read_text(encoding="utf-8")
    code, out = cli("train", "compare", "1", "2")
    assert code == 0 and "macro_f1" in out and "delta" in out
    for args in (("list",), ("show", "1"), ("logs", "1"), ("report", "1"), ("compare", "1", "2")):
        code, out = cli("train", *args, "--json")  # every listing or showing command speaks JSON
        assert code == 0 and json.loads(out), args
    assert json.loads(cli("train", "show", "1", "--json")[1])["config"]["epochs"] == 2

    assert cli("train", "start", str(version_id), "--base-model", str(tiny_model_dir))[0] == 0
    code, out = cli("train", "cancel", "3")
    assert code == 0 and "cancelled" in out
    assert get_run(ctx.db, 3).state == RunState.CANCELLED
    assert run_points(ctx, 1, actor=Actor("emil", frozenset({"ml_engineer"})), name="loss")

    code, out = cli("train", "search", str(version_id), "--trials", "2", "--space", "lr=1e-4:1e-2:log",
                    "--base-model", str(tiny_model_dir))
    assert code == 0 and "search job" in out and "queued" in out
    code, out = cli("train", "search", str(version_id), "--space", "lr=1:0")
    assert code == 2 and "low < high" in out
