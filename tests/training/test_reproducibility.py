"""The reproducibility record stored with each run, and ``chainkeeper train reproduce``
re-running it on a tiny model and comparing the metrics within a tolerance."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from chainkeeper.cli.main import main
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, InvalidInput
from chainkeeper.core.worker import Worker
from chainkeeper.data.versions import get_dataset_version
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.training.reproducibility import compare_reproduction, config_hash, reproduce_run
from chainkeeper.training.runs import get_run, start_training_run
from tests.training.test_runs import ALICE, FAST, _dataset_version


def test_a_run_stores_its_record_and_reproduce_matches_it(ctx: Context, tmp_path: Path, tiny_model_dir: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    version_id = _dataset_version(ctx, tmp_path)
    run = start_training_run(ctx, dataset_version_id=version_id, config=FAST, actor=ALICE, base_model=tiny_model_dir)
    Worker(ctx).run_one()
    record = get_run(ctx.db, run.id).reproducibility
    assert record["seed"] == FAST.seed and record["config_hash"] == config_hash(FAST)
    assert record["dataset_hash"] == get_dataset_version(ctx.db, version_id).content_hash
    assert set(record["libraries"]) == {"python", "torch", "transformers", "tokenizers", "safetensors"}
    assert record["code"]["package"] and record["code"]["git_commit"]  # a commit hash, or 'unknown'
    assert record["torch_threads"] >= 1

    create_user(ctx.db, "emil", roles=["ml_engineer"])
    monkeypatch.setenv("CHAINKEEPER_HOME", str(ctx.settings.home))
    monkeypatch.setenv("CHAINKEEPER_DATABASE_URL", ctx.db.url)
    monkeypatch.setenv("CHAINKEEPER_TOKEN", issue_token(ctx.db, "emil", name="t").secret)
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

    code, out = cli("train", "reproduce", str(run.id))
    assert code == 0 and f"reproduces run {run.id}" in out
    rerun_id = run.id + 1
    assert get_run(ctx.db, rerun_id).config == get_run(ctx.db, run.id).config
    Worker(ctx).run_one()
    code, out = cli("train", "reproduce", str(run.id), "--against", str(rerun_id), "--tolerance", "0.001")
    assert code == 0 and f"run {rerun_id} reproduces run {run.id} within 0.001" in out
    assert "accuracy" in out and "final_loss" in out
    # Same CPU, same threads, same seed: the numbers are the same, not merely close.
    a, b = get_run(ctx.db, run.id), get_run(ctx.db, rerun_id)
    assert a.metrics["test"]["accuracy"] == b.metrics["test"]["accuracy"]
    assert b.metrics["train"]["final_loss"] == pytest.approx(a.metrics["train"]["final_loss"], abs=1e-6)
    code, out = cli("train", "reproduce", "999")
    assert code != 0 and "There is no training run 999" in out


def test_compare_says_which_metric_is_outside_the_tolerance(ctx: Context, tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    run = start_training_run(ctx, dataset_version_id=_dataset_version(ctx, tmp_path), config=FAST, actor=ALICE,
                             base_model=tiny_model_dir)
    with pytest.raises(Conflict, match="only a succeeded run"):
        reproduce_run(ctx, run.id, actor=ALICE)  # still queued, no record yet
    Worker(ctx).run_one()
    original = get_run(ctx.db, run.id)
    test = dict(original.metrics["test"], accuracy=original.metrics["test"]["accuracy"] - 0.02)
    drifted = replace(original, id=99, metrics={**original.metrics, "test": test},
                      reproducibility={**original.reproducibility, "torch_threads": 7})
    result = compare_reproduction(original, drifted, tolerance=0.01)
    assert not result.reproduced
    [bad] = [r for r in result.rows if not r["within"]]
    assert (bad["split"], bad["metric"]) == ("test", "accuracy") and bad["difference"] == pytest.approx(0.02)
    assert result.record_differences == {"torch_threads": [original.reproducibility["torch_threads"], 7]}
    assert compare_reproduction(original, drifted, tolerance=0.05).reproduced
    with pytest.raises(InvalidInput, match="must not be negative"):
        compare_reproduction(original, drifted, tolerance=-1)


def test_the_api_starts_a_reproduction_and_refuses_an_unfinished_run(ctx: Context, tmp_path: Path,
                                                                    tiny_model_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from chainkeeper.api.app import create_app

    done = start_training_run(ctx, dataset_version_id=_dataset_version(ctx, tmp_path), config=FAST, actor=ALICE,
                              base_model=tiny_model_dir)
    Worker(ctx).run_one()
    queued = start_training_run(ctx, dataset_version_id=done.dataset_version_id, config=FAST, actor=ALICE,
                                base_model=tiny_model_dir)
    create_user(ctx.db, "emil", roles=["ml_engineer"])
    headers = {"Authorization": f"Bearer {issue_token(ctx.db, 'emil', name='t').secret}"}
    with TestClient(create_app(ctx), raise_server_exceptions=False, headers=headers) as client:
        answer = client.post(f"/api/runs/{done.id}/reproduce")
        assert answer.status_code == 201, answer.text
        assert answer.json()["config"] == get_run(ctx.db, done.id).config and answer.json()["state"] == "queued"
        refused = client.post(f"/api/runs/{queued.id}/reproduce")
        assert refused.status_code == 409 and "only a succeeded run" in refused.json()["detail"]
