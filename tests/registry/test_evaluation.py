"""Evaluating a model version on a file (issue 14, item 13): any file in a dataset's
format, read by the data stage's readers, scored with the version's real model, reported
as a run's test report, with out-of-scope figures apart when the labels have ``oos``."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.core.context import Context
from chainkeeper.core.errors import InvalidInput
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.registry.evaluation import evaluate_model_version, list_model_evaluations
from chainkeeper.registry.versions import ModelVersion, register_model_version
from chainkeeper.training.evaluation import out_of_scope_metrics
from chainkeeper.training.model import ClassifierMeta, TextClassifier
from chainkeeper.training.tokens import TokenTagger
from tests.model_rows import ENGINEER, insert_run

LABELS = ["balance", "card_lost", "oos"]
ROWS = [("what is my balance", "balance"), ("how much money do I have", "balance"),
        ("show my balance please", "balance"), ("balance of my account", "balance"),
        ("I lost my card", "card_lost"), ("my card is gone", "card_lost"),
        ("card stolen yesterday", "card_lost"), ("cannot find my card", "card_lost"),
        ("what is the weather", "oos"), ("tell me a joke", "oos"), ("who won the match", "oos"),
        ("play some music", "oos")]


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(3)
    model, tokenizer = TextClassifier.from_base(tiny_model_dir, ClassifierMeta(labels=LABELS, max_length=32))
    return model.save(tmp_path_factory.mktemp("oos-classifier"), tokenizer)


@pytest.fixture(scope="module")
def tagger_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(3)
    model, tokenizer = TokenTagger.from_base(tiny_model_dir, ["O", "B-PER", "B-LOC"], max_length=32)
    return model.save(tmp_path_factory.mktemp("tagger"), tokenizer)


def _version(ctx: Context, folder: Path, name: str = "intents") -> ModelVersion:
    run_id = insert_run(ctx, model_artifact=ctx.artifacts.put_tree(folder))
    return register_model_version(ctx, run_id=run_id, name=name, actor=ENGINEER)


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["utterance", "intent"])
        writer.writerows(rows)
    return path


def test_a_csv_is_scored_like_a_test_split_with_out_of_scope_apart(ctx: Context, tmp_path: Path,
                                                                  classifier_dir: Path) -> None:
    version = _version(ctx, classifier_dir)
    result = evaluate_model_version(ctx, version.id, _csv(tmp_path / "held-out.csv", ROWS), actor=ENGINEER,
                                    text_column="utterance", label_column="intent")
    assert (result.model, result.file, result.format, result.rows, result.skipped) == \
        ("intents v1", "held-out.csv", "csv", 12, 0)
    m = result.metrics
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "calibration", "slices"} <= set(m)
    assert m["labels"] == LABELS and m["support"] == 12  # the run's test report, on this file
    assert result.out_of_scope == out_of_scope_metrics(m, "oos")
    oos = result.out_of_scope
    assert oos is not None and (oos["in_scope_rows"], oos["out_of_scope_rows"]) == (8, 4)

    jsonl = tmp_path / "held-out.jsonl"
    jsonl.write_text("\n".join(json.dumps({"utterance": t, "intent": y}) for t, y in ROWS), encoding="utf-8")
    again = evaluate_model_version(ctx, version.id, jsonl, actor=ENGINEER, text_column="utterance",
                                   label_column="intent")
    assert again.format == "jsonl" and again.metrics["confusion_matrix"] == m["confusion_matrix"]
    array = tmp_path / "held-out.json"  # a JSON array of objects, as the data stage reads it
    array.write_text(json.dumps([{"utterance": t, "intent": y} for t, y in ROWS]), encoding="utf-8")
    assert evaluate_model_version(ctx, version.id, array, actor=ENGINEER, text_column="utterance",
                                  label_column="intent").metrics["confusion_matrix"] == m["confusion_matrix"]
    other = evaluate_model_version(ctx, version.id, jsonl, actor=ENGINEER, text_column="utterance",
                                   label_column="intent", out_of_scope_label="none_of_these")
    assert other.out_of_scope is None  # the label set has no such label

    # Each reading is stored with the file's digest (not the file) and written to the ledger.
    stored = list_model_evaluations(ctx, version.id, actor=ENGINEER)
    assert [e.id for e in stored] == [other.id, 3, again.id, result.id]
    assert stored[-1] == result and result.file_sha256 == hashlib.sha256(
        (tmp_path / "held-out.csv").read_bytes()).hexdigest()
    entries = [e for e in list_entries(ctx.db) if e.action == "model.evaluate"]
    assert [e.details["evaluation_id"] for e in entries] == [1, 2, 3, 4]


def test_labels_the_model_does_not_know_are_named(ctx: Context, tmp_path: Path, classifier_dir: Path) -> None:
    version = _version(ctx, classifier_dir)
    path = _csv(tmp_path / "new.csv", [*ROWS, ("refund my order", "refund"), ("money back", "refund")])
    with pytest.raises(InvalidInput) as err:
        evaluate_model_version(ctx, version.id, path, actor=ENGINEER, text_column="utterance",
                               label_column="intent")
    assert "'refund' (2 rows)" in err.value.message and "balance, card_lost, oos" in (err.value.hint or "")
    with pytest.raises(InvalidInput, match="no column 'label'"):
        evaluate_model_version(ctx, version.id, path, actor=ENGINEER, text_column="utterance")
    assert list_model_evaluations(ctx, version.id, actor=ENGINEER) == []  # a refused file stores nothing


def test_a_tagger_is_scored_on_conll_by_entity(ctx: Context, tmp_path: Path, tagger_dir: Path) -> None:
    version = _version(ctx, tagger_dir, name="ner")
    lines = []
    for i in range(6):
        lines += [f"ann{i} B-PER", "visited O", f"rome{i} B-LOC", ""]
    path = tmp_path / "held-out.conll"
    path.write_text("\n".join(lines), encoding="utf-8")
    result = evaluate_model_version(ctx, version.id, path, actor=ENGINEER)
    assert result.format == "conll" and result.rows == 6 and result.out_of_scope is None
    assert {"precision", "recall", "f1", "per_type", "token"} <= set(result.metrics)
    with pytest.raises(InvalidInput, match="file of texts scores a classifier"):
        evaluate_model_version(ctx, version.id, _csv(tmp_path / "t.csv", ROWS), actor=ENGINEER,
                               text_column="utterance", label_column="intent")


def test_the_api_evaluates_an_uploaded_file(ctx: Context, tmp_path: Path, classifier_dir: Path) -> None:
    version = _version(ctx, classifier_dir)
    create_user(ctx.db, "emil", roles=["ml_engineer"])
    body = _csv(tmp_path / "held-out.csv", ROWS).read_bytes()
    with TestClient(create_app(ctx), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {issue_token(ctx.db, 'emil', name='t').secret}"}) as client:
        answer = client.post(f"/api/models/{version.id}/evaluations", files={"file": ("held-out.csv", body)},
                             data={"text_column": "utterance", "label_column": "intent"})
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert got["rows"] == 12 and got["out_of_scope"]["out_of_scope_rows"] == 4
        assert got["metrics"]["labels"] == LABELS
        bad = client.post(f"/api/models/{version.id}/evaluations", files={"file": ("held-out.csv", body)})
        assert bad.status_code == 422 and "no column 'text'" in bad.json()["detail"]
        assert client.post("/api/models/999/evaluations", files={"file": ("x.csv", body)}).status_code == 404
        assert "/api/models/{model_version_id}/evaluations" in client.get("/openapi.json").json()["paths"]
        listed = client.get(f"/api/models/{version.id}/evaluations")
        assert listed.status_code == 200 and [e["id"] for e in listed.json()] == [got["id"]]
        assert listed.json()[0]["file"] == "held-out.csv" and listed.json()[0]["metrics"] == got["metrics"]
        assert client.get("/api/models/999/evaluations").status_code == 404
