"""Finding 15.9 over HTTP: values beyond what the store or the code can hold are a clear
422 that names the bound, never a 500, and nothing is stored.

The fuzzing run in CI (scripts/fuzz_api.py) searches for more; these are the cases the
outside probe found, kept."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.data import create_dataset_version, import_csv, list_sources
from chainkeeper.governance.users import create_user, grant_role, issue_token
from chainkeeper.serving.deployments import deploy_model_version
from chainkeeper.serving.keys import list_deployment_keys
from tests.governance.conftest import make_actor
from tests.model_rows import RELEASER, in_production, save_tiny_classifier

BEYOND_64_BITS = 2**64 + 1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path,
           tiny_model_dir: Path) -> Iterator[tuple[Context, RunningServer, dict[str, str]]]:
    home = tmp_path_factory.mktemp("bounds-home")
    shutil.copy(migrated_template, home / "chainkeeper.db")
    ctx = open_context(load_settings({}, home=home, metrics_sample_s=None))
    model = save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("model"))
    version = in_production(ctx, "intents", model_artifact=ctx.artifacts.put_tree(model))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    create_user(ctx.db, "rhea", roles=["release_manager", "data_steward", "operator"])
    headers = {"Authorization": f"Bearer {issue_token(ctx.db, 'rhea', name='t').secret}"}
    server = start_server_in_thread(create_app(ctx))
    yield ctx, server, headers
    server.stop()
    ctx.close()


def _problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text[:400]
    assert "Traceback" not in answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["detail"]
    return body


@pytest.mark.parametrize("body", [
    {"name": "shop", "scopes": ["predict"], "burst": 20_067_788_144},  # what the fuzzer sent: a 500 before
    {"name": "shop", "scopes": ["predict"], "expires_in_days": 2.420049274303792e307},  # timedelta overflow
    {"name": "shop", "scopes": ["predict"], "rate": "99999999999999/s"},
])
def test_key_limits_beyond_their_bounds_are_refused(served: tuple[Context, RunningServer, dict[str, str]],
                                                    body: dict[str, Any]) -> None:
    ctx, server, headers = served
    answer = httpx.post(f"{server.url}/api/deployments/support/keys", json=body, headers=headers)
    problem = _problem(answer, 422)
    assert any(word in problem["detail"] for word in ("less than or equal", "at most", "between"))
    assert list_deployment_keys(ctx, "support", actor=RELEASER) == []


@pytest.mark.parametrize("path", [
    f"/api/models/{BEYOND_64_BITS}",
    f"/api/annotation/lineage/1/rows/{BEYOND_64_BITS}",
    f"/api/jobs/{BEYOND_64_BITS}",
    f"/api/datasets/{BEYOND_64_BITS}/rows",
])
def test_ids_beyond_64_bits_are_422(served: tuple[Context, RunningServer, dict[str, str]], path: str) -> None:
    _, server, headers = served
    _problem(httpx.get(f"{server.url}{path}", headers=headers), 422)


def test_a_file_with_a_million_columns_is_refused_before_anything_is_stored(
        served: tuple[Context, RunningServer, dict[str, str]]) -> None:
    ctx, server, headers = served
    header = ",".join(["text", "label", *(f"c{i}" for i in range(1_000_000))])
    answer = httpx.post(f"{server.url}/api/sources", headers=headers, timeout=60,
                        files={"file": ("wide.csv", f"{header}\nhello,greeting\n".encode(), "text/csv")})
    problem = _problem(answer, 422)
    assert "1,000,002 columns" in problem["detail"] and "at most 1,000" in problem["detail"]
    assert list_sources(ctx.db) == []


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/api/gates/intents", {"min_macro_f1": 1.5}),
    ("PUT", "/api/gates/intents", {"max_p95_latency_ms": -3}),
    ("POST", "/api/monitoring/deployments/support/drift", {"window_s": 1e12}),
    ("POST", "/api/monitoring/deployments/support/drift", {"every_s": 1e12}),
])
def test_gates_and_windows_out_of_range_are_refused(served: tuple[Context, RunningServer, dict[str, str]],
                                                    method: str, path: str, body: dict[str, Any]) -> None:
    _, server, headers = served
    _problem(httpx.request(method, f"{server.url}{path}", json=body, headers=headers), 422)


def test_an_injection_attempt_in_an_object_id_is_a_clear_404(
        served: tuple[Context, RunningServer, dict[str, str]]) -> None:
    """The probe's GET /api/owners/model_version/1' OR 1=1-- was a 500."""
    _, server, headers = served
    for path in ("/api/owners/model_version/1' OR 1=1--", "/api/lineage/model_version/1' OR 1=1--"):
        answer = httpx.get(f"{server.url}{path}", headers=headers)
        assert answer.status_code in (404, 422), answer.text[:300]
        assert "Traceback" not in answer.text and answer.json()["detail"]


def test_a_project_scoped_steward_works_in_the_project_beyond_deployment_routes(
        served: tuple[Context, RunningServer, dict[str, str]], tmp_path: Path) -> None:
    """The probe: project-scoped roles worked only on routes named by deployment. A steward
    bound to one project reads that project's datasets and jobs, and is refused another's."""
    ctx, server, _ = served
    steward = make_actor(ctx, "sara", "data_steward")
    csv = tmp_path / "rows.csv"
    csv.write_text("text,label\n" + "\n".join(f"card {i} is late,card_arrival" for i in range(10)) + "\n")
    source = import_csv(ctx, csv, actor=steward)
    mine = create_dataset_version(ctx, name="banking", source_ids=[source.id], actor=steward)
    theirs = create_dataset_version(ctx, name="retail", source_ids=[source.id], actor=steward)
    create_user(ctx.db, "dan", roles=[])
    grant_role(ctx.db, "dan", "data_steward", project="banking")
    scoped = {"Authorization": f"Bearer {issue_token(ctx.db, 'dan', name='t').secret}"}
    assert httpx.get(f"{server.url}/api/datasets/{mine.id}", headers=scoped).status_code == 200
    assert httpx.get(f"{server.url}/api/datasets/{mine.id}/rows", headers=scoped).status_code == 200
    listed = httpx.get(f"{server.url}/api/datasets", headers=scoped).json()
    assert [v["name"] for v in listed] == ["banking"]
    assert httpx.get(f"{server.url}/api/jobs", headers=scoped).status_code == 200
    _problem(httpx.get(f"{server.url}/api/datasets/{theirs.id}", headers=scoped), 403)
