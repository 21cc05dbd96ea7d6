"""``chainkeeper models`` and ``chainkeeper deploy`` as a user meets them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.registry.versions import transition_stage
from chainkeeper.serving.deployments import deploy_model_version
from tests.cli.conftest import Run
from tests.model_rows import RELEASER, in_production, insert_run, registered


@pytest.fixture
def tokens(run: Run, home: Path) -> Iterator[dict[str, str]]:
    """An initialised home with a release manager and an ML engineer, and their tokens."""
    code, out, _ = run("init")
    admin = re.search(r"API token[^:]*:\s+(ck_\S+)", out)
    assert code == 0 and admin is not None
    found = {}
    for user, role in (("rhea", "release_manager"), ("emil", "ml_engineer")):
        assert run("users", "create", user, "--role", role, token=admin.group(1))[0] == 0
        code, out, _ = run("users", "token", user, token=admin.group(1))
        secret = re.search(r"(ck_\S+)", out)
        assert code == 0 and secret is not None
        found[user] = secret.group(1)
    yield found


@pytest.fixture
def store(home: Path, tokens: dict[str, str]) -> Iterator[Context]:
    ctx = open_context(load_settings({}, home=home))
    yield ctx
    ctx.close()


def test_gates_are_set_by_a_release_manager_and_shown_with_results(run: Run, tokens: dict[str, str],
                                                                   store: Context) -> None:
    version = registered(store, "intents")  # test macro-F1 0.88
    code, out, _ = run("models", "gates", "set", "intents", "--min-macro-f1", "0.9", token=tokens["rhea"])
    assert code == 0 and "min macro-F1 0.9" in out and "max drop vs production not set" in out
    code, _, err = run("models", "gates", "set", "intents", "--min-macro-f1", "0.5", token=tokens["emil"])
    assert code == 5 and "model.promote.approve" in err
    code, out, _ = run("models", "gates", "show", str(version.id), "--run", token=tokens["emil"])
    assert code == 0 and "min-macro-f1" in out and "NO" in out and "0.8800 is below the minimum 0.9000" in out
    code, _, err = run("models", "gates", "set", "intents", "--min-macro-f1", "80", token=tokens["rhea"])
    assert code == 2 and "between 0 and 1, got 80" in err


def test_the_card_is_printed_as_markdown_and_unknown_ids_are_clear(run: Run, tokens: dict[str, str],
                                                                   store: Context) -> None:
    version = registered(store, "intents")
    code, out, _ = run("models", "card", str(version.id), token=tokens["emil"])
    assert code == 0 and out.startswith("# Model card: intents v1") and "## Limitations" in out
    code, out, _ = run("models", "list", "--name", "intents", token=tokens["emil"])
    assert code == 0 and "intents v1" in out and "0.8800" in out
    code, _, err = run("models", "card", "987654", token=tokens["emil"])
    assert code == 2 and "no model version 987654" in err


def test_canary_status_rollback_and_keys_from_the_command_line(run: Run, tokens: dict[str, str],
                                                               store: Context) -> None:
    v1 = in_production(store, "intents")
    deploy_model_version(store, name="support", model_version_id=v1.id, actor=RELEASER)
    v2 = registered(store, "intents")
    transition_stage(store, v2.id, "staging", actor=RELEASER)
    rhea = tokens["rhea"]

    code, _, err = run("deploy", "canary", "support", str(v2.id), "--percent", "10", token=tokens["emil"])
    assert code == 5 and "deployment.rollout" in err
    code, out, _ = run("deploy", "canary", "support", str(v2.id), "--percent", "10", token=rhea)
    assert code == 0 and f"canary: 10% of callers → version {v2.id}" in out
    code, out, _ = run("deploy", "status", "support", token=tokens["emil"])
    assert code == 0 and "canary" in out and "deploy" in out
    code, _, err = run("deploy", "promote", "support", token=rhea)
    assert code == 2 and "only a production version may take all traffic" in err
    code, out, _ = run("deploy", "rollback", "support", token=rhea)
    assert code == 0 and f"all traffic → version {v1.id}" in out

    code, out, _ = run("deploy", "keys", "create", "support", "--name", "shop", "--scope", "predict",
                       "--rate", "50/s", token=rhea)
    secret = re.search(r"(ckd_\S+)", out)
    key_id = re.search(r"key (\d+) for deployment support", out)
    assert code == 0 and secret is not None and key_id is not None
    code, out, _ = run("deploy", "keys", "list", "support", token=rhea)
    assert code == 0 and "shop" in out and "active" in out and secret.group(1) not in out
    assert run("deploy", "keys", "revoke", "support", key_id.group(1), token=rhea)[0] == 0
    code, out, _ = run("deploy", "keys", "list", "support", token=rhea)
    assert "revoked" in out
    code, _, err = run("deploy", "keys", "create", "support", "--rate", "lots", token=rhea)
    assert code == 2 and "COUNT/UNIT" in err
    code, _, err = run("deploy", "status", "ghost", token=rhea)
    assert code == 2 and "no deployment named 'ghost'" in err


def test_export_runs_as_a_job_with_progress_and_shows_each_form(run: Run, tokens: dict[str, str], store: Context,
                                                                tiny_model_dir: Path, tmp_path: Path) -> None:
    import threading

    from chainkeeper.core.worker import Worker
    from tests.registry.exportable import classifier_folder, exportable_version

    version = exportable_version(store, classifier_folder(tiny_model_dir, tmp_path / "m"), tmp_path)
    # A worker claims the job the command queues, as 'chainkeeper worker' would.
    worker = Worker(store)
    thread = threading.Thread(target=lambda: worker.run_forever(max_jobs=1), daemon=True)
    thread.start()
    code, out, err = run("models", "export", str(version.id), "--int8", "--follow", token=tokens["emil"])
    worker.stopping.set()  # the job is done (or never came): let the worker go
    thread.join(timeout=60)
    assert code == 0, err
    assert f"export of model version {version.id} queued as job" in out and "100%" in out
    assert "onnx-int8" in out and "PyTorch accuracy" in out and "serves " in out
    code, out, _ = run("models", "show", str(version.id), token=tokens["rhea"])
    assert code == 0 and "intents v1" in out and "stage history" in out and "onnx-int8" in out
    code, out, _ = run("models", "card", str(version.id), token=tokens["rhea"])
    assert code == 0 and "## Exports" in out and "| onnx-int8 |" in out


def test_export_refuses_a_folder_without_tokenizer_and_unknown_versions(
        run: Run, tokens: dict[str, str], store: Context, tiny_model_dir: Path, tmp_path: Path) -> None:
    from chainkeeper.core.jobs import list_jobs
    from tests.registry.exportable import classifier_folder, exportable_version

    folder = classifier_folder(tiny_model_dir, tmp_path / "broken", without_tokenizer=True)
    version = exportable_version(store, folder, tmp_path)
    code, _, err = run("models", "export", str(version.id), token=tokens["emil"])
    assert code == 2 and "missing its tokenizer" in err and "nothing was exported" in err
    code, _, err = run("models", "export", "987654", token=tokens["emil"])
    assert code == 2 and "no model version 987654" in err
    code, _, err = run("models", "export", str(version.id), "--max-delta-points", "-3", token=tokens["emil"])
    assert code == 2 and "between 0 and 100" in err
    assert list_jobs(store.db) == []


def test_deployment_test_budgets_and_the_point_in_time_query(run: Run, tokens: dict[str, str],
                                                             store: Context) -> None:
    v1 = in_production(store, "intents")
    code, out, _ = run("models", "gates", "set", "intents", "--max-p95-latency-ms", "50", "--latency-batch-size", "4",
                       token=tokens["rhea"])
    assert code == 0 and "deployment tests: p95 ≤ 50 ms at batch 4" in out
    code, _, err = run("models", "gates", "set", "intents", "--latency-batch-size", "0", token=tokens["rhea"])
    assert code == 2 and "latency_batch_size must be a whole number from 1 to 512" in err
    code, out, _ = run("models", "production-at", "intents", "2020-01-01T00:00+00:00", token=tokens["emil"])
    assert code == 0 and "no version of intents was in production" in out
    code, out, _ = run("models", "production-at", "intents", "2999-01-01T00:00+00:00", token=tokens["emil"])
    assert code == 0 and f"intents v1 (id {v1.id}) was in production" in out and "now" in out
    code, _, err = run("models", "production-at", "intents", "tomorrow", token=tokens["emil"])
    assert code == 2 and "tomorrow" in err


def test_a_run_is_registered_from_the_command_line(run: Run, tokens: dict[str, str], store: Context) -> None:
    run_id = insert_run(store, model_artifact="a" * 64)
    code, out, err = run("models", "register", str(run_id), "--name", "intents", token=tokens["emil"])
    assert code == 0, err
    assert "registered run" in out and "intents v1" in out and "candidate" in out
    code, out, _ = run("models", "show", "1", "--json", token=tokens["emil"])
    shown = json.loads(out)
    assert shown["run_id"] == run_id and shown["stage"] == "candidate" and shown["created_by"] == "emil"
    assert [t["to_stage"] for t in shown["history"]] == ["candidate"] and shown["export"] is None
    code, _, err = run("models", "register", str(run_id), "--name", "intents", token=tokens["emil"])
    assert code == 2 and "already registered as intents v1" in err
    code, _, err = run("models", "register", str(run_id), "--name", "Bad Name", token=tokens["emil"])
    assert code == 2 and "is not valid" in err
    code, out, _ = run("models", "register", str(insert_run(store, model_artifact="b" * 64)), "--name", "intents",
                       "--json", token=tokens["emil"])
    assert code == 0 and json.loads(out)["version"] == 2
    code, out, _ = run("models", "list", "--json", token=tokens["emil"])
    assert [v["version"] for v in json.loads(out)] == [2, 1]
    code, out, _ = run("models", "gates", "show", "1", "--json", token=tokens["emil"])
    assert code == 0 and json.loads(out)["results"] == []
    code, out, _ = run("models", "production-at", "intents", "2999-01-01T00:00+00:00", "--json",
                       token=tokens["emil"])
    assert code == 0 and json.loads(out)["version_at"] is None


def test_models_evaluate_scores_a_file_with_out_of_scope_apart(run: Run, tokens: dict[str, str], store: Context,
                                                               tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    from chainkeeper.training.model import ClassifierMeta, TextClassifier

    torch.manual_seed(3)
    model, tokenizer = TextClassifier.from_base(tiny_model_dir, ClassifierMeta(labels=["card", "oos", "pay"]))
    folder = model.save(tmp_path / "model", tokenizer)
    run_id = insert_run(store, model_artifact=store.artifacts.put_tree(folder))
    assert run("models", "register", str(run_id), "--name", "intents", token=tokens["emil"])[0] == 0
    rows = tmp_path / "held-out.csv"
    rows.write_text("text,label\npay my bill,pay\nlost card,card\nweather today,oos\nsing a song,oos\n",
                    encoding="utf-8")

    code, out, err = run("models", "evaluate", "1", str(rows), token=tokens["emil"])
    assert code == 0, err
    assert "intents v1" in out and "4 rows" in out and "weighted avg" in out
    assert "in scope: accuracy" in out and "out of scope ('oos'): recall" in out
    code, out, _ = run("models", "evaluate", "1", str(rows), "--json", token=tokens["emil"])
    report = json.loads(out)
    assert report["rows"] == 4 and report["out_of_scope"]["out_of_scope_rows"] == 2
    assert report["metrics"]["labels"] == ["card", "oos", "pay"]
    code, out, err = run("models", "evaluations", "1", "--json", token=tokens["emil"])
    assert code == 0, err
    assert [(e["id"], e["file"], e["rows"]) for e in json.loads(out)] == [(2, "held-out.csv", 4),
                                                                         (1, "held-out.csv", 4)]
    code, out, _ = run("models", "evaluations", "1", token=tokens["emil"])
    assert code == 0 and "held-out.csv" in out and "accuracy" in out

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("text,label\nrefund please,refund\n", encoding="utf-8")
    code, _, err = run("models", "evaluate", "1", str(unknown), token=tokens["emil"])
    assert code == 2 and "labels the model does not know: 'refund' (1 row)" in " ".join(err.split())
    code, _, err = run("models", "evaluate", "1", str(tmp_path / "missing.csv"), token=tokens["emil"])
    assert code == 2 and "There is no file" in err


def test_train_report_reports_out_of_scope_apart_and_as_json(run: Run, tokens: dict[str, str],
                                                             store: Context) -> None:
    from chainkeeper.training.evaluation import classification_metrics

    test = classification_metrics(["pay", "card", "oos", "oos"], ["pay", "oos", "oos", "card"], ["card", "oos", "pay"])
    run_id = insert_run(store, model_artifact="a" * 64, metrics={"test": test})
    code, out, err = run("train", "report", str(run_id), token=tokens["emil"])
    assert code == 0, err
    assert "in scope: accuracy 0.5000 on 2 rows; out of scope ('oos'): recall 0.5000, precision 0.5000" in out
    code, out, _ = run("train", "report", str(run_id), "--json", token=tokens["emil"])
    report = json.loads(out)
    assert report["run_id"] == run_id and report["splits"]["test"]["accuracy"] == test["accuracy"]
    assert report["splits"]["test"]["out_of_scope"]["in_scope_accuracy"] == 0.5
    code, out, _ = run("train", "report", str(run_id), "--oos-label", "none", "--json", token=tokens["emil"])
    assert "out_of_scope" not in json.loads(out)["splits"]["test"]
