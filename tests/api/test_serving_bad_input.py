"""Bad input to the predict endpoint of a real server: a clear 4xx problem, never a 500,
nothing logged, and the server keeps answering good requests afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.api.problems import PROBLEM_JSON
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.predictions import count_predictions
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.serving.keys import create_deployment_key, revoke_deployment_key
from chainkeeper.serving.runtime import TOKENIZER_FILES
from tests.model_rows import RELEASER, in_production, save_tiny_classifier


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path,
           tiny_model_dir: Path) -> Iterator[tuple[Context, RunningServer, dict[str, str]]]:
    """One server for the module: deployment 'support' (good model), 'broken' (no tokenizer)."""
    home = tmp_path_factory.mktemp("bad-input-home")
    shutil.copy(migrated_template, home / "chainkeeper.db")
    ctx = open_context(load_settings({}, home=home, metrics_sample_s=None))
    model = save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("model"))
    good = in_production(ctx, "intents", model_artifact=ctx.artifacts.put_tree(model))
    deploy_model_version(ctx, name="support", model_version_id=good.id, actor=RELEASER)
    broken_dir = tmp_path_factory.mktemp("broken") / "model"
    shutil.copytree(model, broken_dir)
    for name in (*TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json"):
        (broken_dir / name).unlink(missing_ok=True)
    broken = in_production(ctx, "intents-broken", model_artifact=ctx.artifacts.put_tree(broken_dir))
    deploy_model_version(ctx, name="broken", model_version_id=broken.id, actor=RELEASER)
    create_user(ctx.db, "olive", roles=["operator"])
    headers = {"Authorization": f"Bearer {issue_token(ctx.db, 'olive', name='t').secret}"}
    server = start_server_in_thread(create_app(ctx))
    yield ctx, server, headers
    server.stop()
    ctx.close()


def _problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = answer.json()
    assert body["detail"] and body["status"] == status and "Traceback" not in answer.text
    return body


def _still_serving(client: httpx.Client) -> None:
    answer = client.post("/v1/deployments/support/predict", json={"text": "I lost my card"})
    assert answer.status_code == 200, answer.text[:300]


CASES = [
    pytest.param({"json": {"text": ""}}, 422, "Text 0 is empty", id="empty-text"),
    pytest.param({"json": {"texts": ["fine", "   "]}}, 422, "Text 1 is empty", id="blank-text-in-a-list"),
    pytest.param({"json": {"text": "a" * 1_000_000}}, 413, "at most 1,000,000 are accepted", id="1MB-text"),
    pytest.param({"content": iter([b'{"text": "' + b"a" * 600_000, b"a" * 600_000 + b'"}']),
                  "headers": {"content-type": "application/json"}}, 413, "at most 1,000,000 are accepted",
                 id="1MB-chunked-without-length"),
    pytest.param({"json": {"texts": ["hello"] * 10_000}}, 413, "10,000 texts in one request", id="10000-texts"),
    pytest.param({"content": b"text=hello", "headers": {"content-type": "application/x-www-form-urlencoded"}},
                 415, "this endpoint reads JSON", id="form-content-type"),
    pytest.param({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415,
                 "this endpoint reads JSON", id="plain-text-content-type"),
    pytest.param({"content": b'{"text": "unclosed', "headers": {"content-type": "application/json"}}, 422,
                 "The request is not valid", id="malformed-json"),
    pytest.param({"json": {"text": "hi", "texts": ["hi"]}}, 422, "exactly one of", id="text-and-texts"),
]


@pytest.mark.parametrize(("request_args", "status", "fragment"), CASES)
def test_bad_predict_requests_are_clear_4xx_problems(served: tuple[Context, RunningServer, dict[str, str]],
                                                    request_args: dict[str, Any], status: int,
                                                    fragment: str) -> None:
    ctx, server, headers = served
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        before = count_predictions(ctx.db)
        extra_headers = {**headers, **request_args.pop("headers", {})}
        body = _problem(client.post("/v1/deployments/support/predict", headers=extra_headers, **request_args),
                        status)
        assert fragment in body["detail"], body
        assert body.get("hint") or body.get("errors")
        assert count_predictions(ctx.db) == before
        _still_serving(client)


def test_an_unknown_deployment_is_a_404_naming_it(served: tuple[Context, RunningServer, dict[str, str]]) -> None:
    _, server, headers = served
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        body = _problem(client.post("/v1/deployments/ghost/predict", json={"text": "hi"}), 404)
        assert "'ghost'" in body["detail"] and "GET /api/deployments" in body["hint"]
        _still_serving(client)


def test_a_revoked_key_is_refused_at_once(served: tuple[Context, RunningServer, dict[str, str]]) -> None:
    ctx, server, headers = served
    issued = create_deployment_key(ctx, "support", name="shop", actor=RELEASER, scopes=["predict"])
    with httpx.Client(base_url=server.url, timeout=60) as client:
        as_key = {"X-API-Key": issued.secret}
        assert client.post("/v1/deployments/support/predict", json={"text": "hi"}, headers=as_key).status_code == 200
        revoke_deployment_key(ctx, "support", issued.key.id, actor=RELEASER)
        body = _problem(client.post("/v1/deployments/support/predict", json={"text": "hi"}, headers=as_key), 401)
        assert "was revoked" in body["detail"] and issued.secret not in str(body)
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        _still_serving(client)


def test_a_model_folder_without_a_tokenizer_is_a_409_not_a_500(
        served: tuple[Context, RunningServer, dict[str, str]]) -> None:
    ctx, server, headers = served
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        for _ in range(2):  # the second answer comes from the remembered failure, same words
            body = _problem(client.post("/v1/deployments/broken/predict", json={"text": "hi"}), 409)
            assert "has no tokenizer" in body["detail"] and "tokenizer.json" in body["detail"]
            assert "Save the model together with its tokenizer" in body["hint"]
        _still_serving(client)


@pytest.mark.parametrize("path", ["/api/models/99999999999999999999", "/api/runs/99999999999999999999",
                                  "/api/jobs/99999999999999999999", "/api/datasets/99999999999999999999"])
def test_an_id_beyond_64_bits_is_a_clear_422_not_a_500(any_ctx: Context, path: str) -> None:
    """Issue 15, item 9: such ids made the SQLite driver raise OverflowError (a 500)."""
    create_user(any_ctx.db, "ada", roles=["auditor"])
    with TestClient(create_app(any_ctx), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {issue_token(any_ctx.db, 'ada', name='t').secret}"}) as c:
        answer = c.get(path)
    # The OpenAPI document declares ids as 64-bit (chainkeeper.api.deps.Id): refused before any lookup.
    assert answer.status_code == 422, answer.text
    assert "less than or equal to 9223372036854775807" in answer.json()["detail"]
