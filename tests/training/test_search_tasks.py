"""Hyper-parameter search of every task: a token-classification study that maximises dev
entity-level F1 and a masked-LM study that minimises dev loss, each stored in our
database and ending in a normal run of its task, and the dimensions a task refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import JobState, count_jobs_by_state
from chainkeeper.core.worker import Worker
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import RunState, get_run
from chainkeeper.training.search import open_storage, parse_space, start_search
from tests.cli.conftest import Run, home, run  # noqa: F401 (fixtures: the CLI in-process)
from tests.cli.test_cli import _admin_token
from tests.cli.test_data_cli import _user
from tests.training.test_runs import ALICE, _dataset_version
from tests.training.test_tasks import CORPUS, FAST, conll_version, text_version


def _run_search(ctx: Context, job_id: int) -> dict[str, Any]:
    job = Worker(ctx).run_one()
    assert job is not None and job.id == job_id and job.state == JobState.SUCCEEDED, job and job.error
    return job.result or {}


def _study(ctx: Context, name: str) -> tuple[Any, list[Any]]:
    """The stored study's direction and trials, read while its storage is open."""
    import optuna

    with open_storage(ctx.settings.resolved_database_url) as storage:
        study = optuna.load_study(study_name=name, storage=storage)
        return study.direction, study.trials


@pytest.mark.slow
def test_a_token_classification_search_maximises_entity_f1_and_trains_a_tagger(
        any_ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    import optuna

    version_id = conll_version(any_ctx, tmp_path, n=20)
    base = TrainConfig(**FAST, max_steps=8, max_length=16, eval_every_steps=4)
    job_id = start_search(any_ctx, dataset_version_id=version_id, config=base, trials=2, actor=ALICE,
                          space=parse_space(["lr=1e-3:1e-2:log"]), base_model=tiny_model_dir)
    result = _run_search(any_ctx, job_id)
    assert (result["task"], result["metric"], result["direction"]) == ("token-classification", "f1", "maximize")
    assert result["trials"] == 2 and 0.0 <= result["best_value"] <= 1.0

    direction, trials = _study(any_ctx, result["study"])
    assert direction == optuna.study.StudyDirection.MAXIMIZE
    assert all(sorted(t.intermediate_values) == [4, 8] for t in trials)  # the pruner's input
    assert max(t.value for t in trials if t.value is not None) == pytest.approx(result["best_value"])

    run = get_run(any_ctx.db, result["run_id"])
    assert run.task == "token-classification" and run.state == RunState.QUEUED and run.created_by == "alice"
    assert run.config["learning_rate"] == pytest.approx(result["best_params"]["learning_rate"])
    assert Worker(any_ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]
    dev = get_run(any_ctx.db, run.id).metrics["dev"]
    assert {"precision", "recall", "f1", "per_type"} <= set(dev) and set(dev["per_type"]) <= {"PER", "LOC"}


@pytest.mark.slow
def test_a_masked_lm_search_minimises_dev_loss_and_pretrains_the_best(
        ctx: Context, tmp_path: Path, tiny_model_dir: Path) -> None:
    import optuna

    version_id = text_version(ctx, tmp_path, CORPUS)
    base = TrainConfig(**FAST, max_steps=6, max_length=24, eval_every_steps=3)
    job_id = start_search(ctx, dataset_version_id=version_id, config=base, trials=2, actor=ALICE,
                          space=parse_space(["lr=1e-4:1e-2:log", "mlm_probability=0.1,0.3"]),
                          base_model=tiny_model_dir)
    result = _run_search(ctx, job_id)
    assert (result["task"], result["metric"], result["direction"]) == ("masked-lm", "loss", "minimize")

    direction, trials = _study(ctx, result["study"])
    assert direction == optuna.study.StudyDirection.MINIMIZE
    finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert min(t.value for t in finished) == pytest.approx(result["best_value"])  # the lowest loss wins
    assert all(t.intermediate_values for t in trials)

    run = get_run(ctx.db, result["run_id"])
    assert run.task == "masked-lm" and run.config["mlm_probability"] == result["best_params"]["mlm_probability"]
    assert Worker(ctx).run_one().state == JobState.SUCCEEDED  # type: ignore[union-attr]
    assert get_run(ctx.db, run.id).metrics["dev"]["perplexity"] > 1.0


@pytest.mark.slow
def test_a_causal_lm_search_from_scratch_shares_one_corpus_tokenizer(ctx: Context, tmp_path: Path) -> None:
    version_id = text_version(ctx, tmp_path, CORPUS[:40])
    scratch = {"tokenizer": "bpe", "vocab_size": 300, "hidden_size": 16, "layers": 1, "heads": 2,
               "intermediate_size": 32}
    base = TrainConfig(**FAST, from_scratch=scratch, max_steps=4, max_length=16, eval_every_steps=2)
    with pytest.raises(InvalidInput, match="'mlm_probability' cannot be searched for causal-lm"):
        start_search(ctx, dataset_version_id=version_id, config=base, trials=2, actor=ALICE,
                     space=parse_space(["mlm_probability=0.1,0.2"]))
    job_id = start_search(ctx, dataset_version_id=version_id, config=base, trials=2, actor=ALICE,
                          space=parse_space(["lr=1e-3:1e-2:log"]))
    result = _run_search(ctx, job_id)
    assert (result["task"], result["direction"]) == ("causal-lm", "minimize") and result["best_value"] > 0
    run = get_run(ctx.db, result["run_id"])
    assert run.task == "causal-lm" and run.base_model == "(from scratch)"


@pytest.mark.parametrize(
    ("kind", "spec", "fragments"),
    [
        pytest.param("tokens", "pooling=mean,cls", ["'pooling'", "token-classification"], id="pooling-tagger"),
        pytest.param("corpus", "head_lr_multiplier=1:50", ["'head_lr_multiplier'", "masked-lm"], id="head-lm"),
        pytest.param("texts", "mlm_probability=0.1:0.3", ["'mlm_probability'", "sequence-classification"],
                     id="masking-classifier"),
        pytest.param("texts", "task=auto,masked-lm", ["'task'"], id="task"),
        pytest.param("tokens", "dropout=0:1.5", ["'dropout'", "dropout=1.5"], id="out-of-range"),
        pytest.param("texts", "schedule=linear,wavy", ["'schedule'", "'wavy'"], id="unknown-choice"),
    ],
)
def test_a_dimension_the_task_cannot_search_is_refused_by_name(
        ctx: Context, tmp_path: Path, tiny_model_dir: Path, kind: str, spec: str, fragments: list[str]) -> None:
    version_id = {"tokens": lambda: conll_version(ctx, tmp_path, n=10),
                  "corpus": lambda: text_version(ctx, tmp_path, CORPUS[:10]),
                  "texts": lambda: _dataset_version(ctx, tmp_path)}[kind]()
    before = count_jobs_by_state(ctx.db)
    with pytest.raises(InvalidInput) as err:
        start_search(ctx, dataset_version_id=version_id, config=TrainConfig(max_length=16), trials=2, actor=ALICE,
                     space=parse_space([spec]), base_model=tiny_model_dir)
    for fragment in fragments:
        assert fragment in err.value.message
    assert err.value.hint
    assert count_jobs_by_state(ctx.db) == before  # nothing queued


def test_the_cli_says_what_a_search_optimises_and_names_a_refused_dimension(
        run: Run, tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    import re

    admin = _admin_token(run)
    steward, engineer = _user(run, admin, "dana", "data_steward"), _user(run, admin, "erik", "ml_engineer")
    approver = _user(run, admin, "rosa", "data_steward")
    lines = ["-DOCSTART- -X- -X- O", ""]
    for i in range(20):
        lines += [f"ann{i} B-PER", "visited O", f"rome{i} B-LOC", ""]
    (tmp_path / "toy.conll").write_text("\n".join(lines), encoding="utf-8")
    code, out, err = run("data", "import", str(tmp_path / "toy.conll"), "--format", "conll", token=steward)
    assert code == 0, err
    source_id = re.search(r"source (\d+):", out).group(1)  # type: ignore[union-attr]
    code, out, err = run("data", "create", "toy-ner", "--source", source_id, token=steward)
    assert code == 0, err
    version_id = re.search(r"\(id (\d+)\)", out).group(1)  # type: ignore[union-attr]
    code, out, err = run("data", "release-request", version_id, token=steward)  # training takes released data
    assert code == 0, err
    request_id = re.search(r"approval request (\d+)", out).group(1)  # type: ignore[union-attr]
    code, _, err = run("approvals", "approve", request_id, "-m", "reviewed", token=approver)
    assert code == 0, err

    search = ("train", "search", version_id, "--trials", "2", "--base-model", str(tiny_model_dir),
              "--set", "max_length=16")
    code, out, err = run(*search, "--space", "lr=1e-4:1e-2:log", token=engineer)
    assert code == 0, err
    assert "optimising the dev entity-level F1 of token-classification (maximised)" in " ".join(out.split())
    code, _, err = run(*search, "--space", "pooling=mean,cls", token=engineer)
    assert code != 0 and "'pooling' cannot be searched for token-classification" in " ".join(err.split())
