"""NER end to end over HTTP, on a real uvicorn server (issue 14, item 3).

A released CoNLL dataset version trains a tiny random-weight tagger for a few steps
(the training service and a worker, as ``chainkeeper train start`` does); then, over
HTTP as each role: register, promote through the gate (whose ``has-evaluation`` check
reads the tagger's test entity F1), deploy through the deploy gate, export to ONNX
(a job: entity F1 of each form against PyTorch), predict — each text answers its
entities with offsets into the text as sent — give feedback spans, and read live entity
F1. A classifier's predict answer has no ``entities`` (tests/api/test_api.py keeps its shape).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.server import start_server_in_thread
from chainkeeper.core.context import Context
from chainkeeper.core.jobs import JobState
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import start_training_run
from tests.training.test_tasks import FAST, conll_version

PEOPLE = {"erin": "ml_engineer", "rory": "release_manager", "rhea": "release_manager", "olga": "operator"}


@pytest.fixture
def api(ctx: Context) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    tokens = {}
    for name, role in PEOPLE.items():
        create_user(ctx.db, name, roles=[role])
        tokens[name] = issue_token(ctx.db, name, name="test").secret
    running = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    try:
        with httpx.Client(base_url=running.url, timeout=60) as client:
            yield client, tokens
    finally:
        running.stop()


def _work(ctx: Context) -> dict[str, Any]:
    job = Worker(ctx).run_one()
    assert job is not None and job.state == JobState.SUCCEEDED, job and job.error
    return job.result or {}


def test_a_conll_version_becomes_a_served_tagger_that_answers_spans(
        ctx: Context, tmp_path: Path, tiny_model_dir: Path, api: tuple[httpx.Client, dict[str, str]]) -> None:
    client, tokens = api

    def ok(who: str, method: str, path: str, body: Any = None, status: int = 299) -> Any:
        answer = client.request(method, path, json=body, headers={"Authorization": f"Bearer {tokens[who]}"})
        assert answer.status_code <= status, f"{method} {path} as {who}: {answer.status_code} {answer.text}"
        return answer.json()

    # train: a few steps of a tiny tagger on the released version
    version_id = conll_version(ctx, tmp_path, n=40)
    run = start_training_run(ctx, dataset_version_id=version_id, actor=Actor("erin", frozenset({"ml_engineer"})),
                             config=TrainConfig(max_steps=6, max_length=16, **FAST), base_model=tiny_model_dir)
    _work(ctx)

    # register -> promote (the gate reads entity F1) -> deploy
    model = ok("erin", "POST", "/api/models", {"run_id": run.id, "name": "ner"})
    request = ok("erin", "POST", f"/api/models/{model['id']}/promotion-requests", {"comment": "ner"})
    evaluation = next(c for c in request["checks"] if c["name"] == "has-evaluation")
    assert evaluation["passed"] and "test entity F1" in evaluation["detail"], request["checks"]
    approve = {"approve": True, "comment": "checked"}
    assert ok("rory", "POST", f"/api/approvals/{request['id']}/decision", approve)["state"] == "executed"
    deploy = ok("rory", "POST", f"/api/models/{model['id']}/deployment-requests", {"name": "ner"})
    assert ok("rhea", "POST", f"/api/approvals/{deploy['id']}/decision", approve)["state"] == "executed"

    # export: each form scored by entity F1 against PyTorch on the test sentences
    ok("erin", "POST", f"/api/models/{model['id']}/exports", {"int8": False, "max_delta_points": 100}, status=202)
    exported = _work(ctx)
    assert exported["best_engine"] == "onnx" and exported["forms"]["onnx"]["delta_points"] == 0.0
    shown = ok("olga", "GET", f"/api/models/{model['id']}/exports")
    assert "entity_f1" in str(shown), shown

    # predict: spans with offsets into the text as sent (served by the ONNX form)
    texts = ["  alice visited Paris, today. ", "北京 bob visited rome"]
    answer = ok("olga", "POST", "/v1/deployments/ner/predict", {"texts": texts})
    assert answer["model_version"]["id"] == model["id"]
    for text, prediction in zip(texts, answer["predictions"], strict=True):
        assert set(prediction) == {"request_id", "label", "score", "scores", "entities"}
        for entity in prediction["entities"]:
            assert set(entity) == {"type", "start", "end", "text", "score"}
            assert entity["type"] in {"PER", "LOC"} and text[entity["start"]:entity["end"]] == entity["text"]
        assert prediction["label"] == (",".join(sorted({e["type"] for e in prediction["entities"]})) or "O")

    # feedback: the true spans; bad spans are a 4xx problem, nothing stored
    first = answer["predictions"][0]["request_id"]
    refused = client.post("/v1/deployments/ner/feedback", headers={"Authorization": f"Bearer {tokens['olga']}"},
                          json={"request_id": first, "spans": [{"type": "PER", "start": 2, "end": 99}]})
    assert refused.status_code == 422 and "text's length" in refused.json()["detail"]
    truth = [{"type": "PER", "start": 2, "end": 7}, {"type": "LOC", "start": 16, "end": 21}]
    given = ok("olga", "POST", "/v1/deployments/ner/feedback", {"request_id": first, "spans": truth})
    assert given["created"] == 1 and given["results"][0]["spans"] == truth
    quality = ok("olga", "GET", "/api/monitoring/deployments/ner/quality?window=1h")
    [overall] = quality["overall"]
    assert overall["labelled"] == 1 and "entity_f1" in overall
