"""Training takes released data (issue 14, item 4): ``train start`` on a draft used to
queue a run, bypassing the four-eyes release gate. A draft is refused; an experiment on
one needs an explicit, audited override that stays visible on the run and keeps its
model out of production while the data is unreleased."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, InvalidInput
from chainkeeper.core.jobs import count_jobs_by_state
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.registry.versions import get_model_version, register_model_version
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import count_runs, finish_run, start_training_run
from chainkeeper.training.search import parse_space, start_search
from tests.cli.conftest import Run, home, run  # noqa: F401 (fixtures: the CLI in-process)
from tests.cli.test_cli import _admin_token
from tests.cli.test_data_cli import _user
from tests.training.test_runs import _ROWS, ALICE, _dataset_version, release

REASON = "compare tokenizers before the release review"
RORY = Actor("rory", frozenset({"release_manager"}))


def _rows_csv(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(_ROWS)
    return path


def test_train_start_refuses_a_draft_and_records_an_explicit_override(
        run: Run, tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    admin = _admin_token(run)
    steward, engineer = _user(run, admin, "dana", "data_steward"), _user(run, admin, "erik", "ml_engineer")
    code, out, err = run("data", "import", str(_rows_csv(tmp_path / "rows.csv")), token=steward)
    assert code == 0, err
    source_id = re.search(r"source (\d+):", out).group(1)  # type: ignore[union-attr]
    code, out, err = run("data", "create", "toy", "--source", source_id, token=steward)
    assert code == 0, err
    version_id = re.search(r"\(id (\d+)\)", out).group(1)  # type: ignore[union-attr]
    start = ("train", "start", version_id, "--base-model", str(tiny_model_dir))

    code, out, err = run(*start, token=engineer)
    message = " ".join(err.split())
    assert code == 2 and "toy v1" in message and "is draft" in message and "only released versions" in message
    assert "data release-request" in message and "--allow-draft" in message
    code, out, _ = run("train", "list", "--json", token=engineer)
    assert code == 0 and json.loads(out) == []  # nothing stored
    code, _, err = run(*start, "--allow-draft", "  ", token=engineer)
    assert code == 2 and "needs a reason" in err

    code, out, err = run(*start, "--allow-draft", REASON, token=engineer)
    assert code == 0, err
    assert "run 1 queued" in out and "unreleased dataset version" in " ".join(out.split())
    code, out, _ = run("train", "show", "1", "--json", token=engineer)
    shown = json.loads(out)
    assert shown["draft_override"] == REASON and shown["state"] == "queued"
    code, out, _ = run("train", "show", "1", token=engineer)
    assert code == 0 and f"override: {REASON}" in " ".join(out.split())
    code, out, _ = run("train", "list", token=engineer)
    assert "draft data" in out
    code, out, _ = run("audit", "entries", "--kind", "run", "--json", token=admin)
    created = [e for e in json.loads(out) if e["action"] == "run.create"]
    assert len(created) == 1 and created[0]["details"]["draft_override"] == REASON
    assert created[0]["actor"] == "erik"


def test_the_api_refuses_a_draft_unless_told_why(ctx: Context, tmp_path: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path, released=False)
    create_user(ctx.db, "emil", roles=["ml_engineer"])
    with TestClient(create_app(ctx), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {issue_token(ctx.db, 'emil', name='t').secret}"}) as client:
        refused = client.post("/api/runs", json={"dataset_version_id": version_id})
        assert refused.status_code == 409 and "only released versions" in refused.json()["detail"]
        assert count_runs(ctx.db) == 0
        blank = client.post("/api/runs", json={"dataset_version_id": version_id, "allow_draft": ""})
        assert blank.status_code == 422 and "needs a reason" in blank.json()["detail"]


def test_a_model_trained_on_a_draft_is_kept_out_of_production(ctx: Context, tmp_path: Path,
                                                               tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path, released=False)
    run_ = start_training_run(ctx, dataset_version_id=version_id, config=TrainConfig(epochs=1), actor=ALICE,
                              base_model=tiny_model_dir, allow_draft=REASON)
    assert run_.draft_override == REASON
    entry = [e for e in list_entries(ctx.db, object_kind="run") if e.action == "run.create"][-1]
    assert entry.details["draft_override"] == REASON
    finish_run(ctx.db, run_.id, metrics={"test": {"accuracy": 0.9, "macro_f1": 0.9}}, model_artifact="a" * 64)
    version = register_model_version(ctx, run_id=run_.id, name="intents", actor=ALICE)

    request = request_approval(ctx, "model.promote", version.id, actor=ALICE, comment="ready")
    check = next(c for c in request.checks if c["name"] == "data-released")
    assert not check["passed"]
    assert f"training run {run_.id}" in check["detail"] and "is draft" in check["detail"]
    assert REASON in check["detail"]
    with pytest.raises(Conflict, match="check data-released failed"):
        decide(ctx, request.id, actor=RORY, approve=True, comment="looks fine")
    assert get_model_version(ctx.db, version.id).stage == "candidate"
    decide(ctx, request.id, actor=RORY, approve=False, comment="release the data first")

    release(ctx, version_id)  # the data passes its own gate: the model may now be asked for
    request = request_approval(ctx, "model.promote", version.id, actor=ALICE, comment="data released")
    check = next(c for c in request.checks if c["name"] == "data-released")
    assert check["passed"] and "after run" in check["detail"] and REASON in check["detail"]


def test_a_search_takes_released_data_or_an_override(ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path, released=False)
    space = parse_space(["lr=1e-4:1e-2:log"])
    before = count_jobs_by_state(ctx.db)
    with pytest.raises(Conflict, match="only released versions"):
        start_search(ctx, dataset_version_id=version_id, config=TrainConfig(), space=space, trials=2, actor=ALICE,
                     base_model=tiny_model_dir)
    with pytest.raises(InvalidInput, match="needs a reason"):
        start_search(ctx, dataset_version_id=version_id, config=TrainConfig(), space=space, trials=2, actor=ALICE,
                     base_model=tiny_model_dir, allow_draft="")
    assert count_jobs_by_state(ctx.db) == before
    job_id = start_search(ctx, dataset_version_id=version_id, config=TrainConfig(), space=space, trials=2,
                          actor=Actor("alice", ALICE.roles), base_model=tiny_model_dir, allow_draft=REASON)
    entry = [e for e in list_entries(ctx.db, object_kind="search") if e.object_id == str(job_id)][-1]
    assert entry.details["draft_override"] == REASON


@pytest.mark.slow
def test_a_search_on_a_draft_lists_its_trials_as_runs_with_the_override(
        run: Run, tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    admin = _admin_token(run)
    steward, engineer = _user(run, admin, "dana", "data_steward"), _user(run, admin, "erik", "ml_engineer")
    code, out, err = run("data", "import", str(_rows_csv(tmp_path / "rows.csv")), token=steward)
    source_id = re.search(r"source (\d+):", out).group(1)  # type: ignore[union-attr]
    code, out, err = run("data", "create", "toy", "--source", source_id, token=steward)
    version_id = re.search(r"\(id (\d+)\)", out).group(1)  # type: ignore[union-attr]
    code, out, err = run("train", "search", "start", version_id, "--trials", "2", "--space", "lr=1e-4:1e-2:log",
                         "--set", "epochs=1", "--set", "max_length=16", "--set", "batch_size=8",
                         "--base-model", str(tiny_model_dir), "--allow-draft", REASON, token=engineer)
    assert code == 0, err
    job_id = re.search(r"search job (\d+) queued", out).group(1)  # type: ignore[union-attr]
    code, _, err = run("worker", "--max-jobs", "1", token=engineer)
    assert code == 0, err

    code, out, err = run("train", "search", "show", job_id, "--json", token=engineer)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["job"]["state"] == "succeeded" and [t["trial"] for t in shown["trials"]] == [0, 1]
    assert all(t["draft_override"] == REASON and t["search_job_id"] == int(job_id) for t in shown["trials"])
    best = shown["best_run"]
    assert best["state"] == "queued" and best["draft_override"] == REASON and best["trial"] is None
    code, out, _ = run("train", "search", "show", job_id, token=engineer)
    assert code == 0 and "trials" in out and f"run {best['id']}" in out
    code, out, _ = run("train", "list", "--search", job_id, "--json", token=engineer)
    assert sorted(r["id"] for r in json.loads(out)) == sorted([*(t["id"] for t in shown["trials"]), best["id"]])
    code, out, _ = run("train", "list", token=engineer)
    assert f"search {job_id} trial 0" in out and f"search {job_id} best" in out
    code, _, err = run("train", "cancel", str(shown["trials"][0]["id"]), token=engineer)
    assert code == 2 and "has already" in err  # a finished trial; a running one stops with its search
    code, _, err = run("models", "register", str(shown["trials"][0]["id"]), "--name", "toy", token=engineer)
    assert code == 2 and "a trial keeps no model" in err and f"train search show {job_id}" in err


def test_the_run_pages_show_the_override(ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    version_id = _dataset_version(ctx, tmp_path, released=False)
    run_ = start_training_run(ctx, dataset_version_id=version_id, config=TrainConfig(epochs=1), actor=ALICE,
                              base_model=tiny_model_dir, allow_draft=REASON)
    create_user(ctx.db, "emil", roles=["ml_engineer"])
    with TestClient(create_app(ctx), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {issue_token(ctx.db, 'emil', name='t').secret}"}) as client:
        page = client.get(f"/runs/{run_.id}")
        assert page.status_code == 200 and "data-draft-override" in page.text
        assert "Trained on an unreleased dataset" in page.text and REASON in page.text
        assert "draft data" in client.get("/runs").text
        assert client.get(f"/api/runs/{run_.id}").json()["draft_override"] == REASON
