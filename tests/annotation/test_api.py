"""The annotation API as a client meets it: tokens, JSON bodies, problem+json errors."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.apps.customer_service.sample import INTENTS
from chainkeeper.core.context import Context
from chainkeeper.core.schema import metadata
from chainkeeper.data.versions import DatasetVersion, read_dataset_rows
from chainkeeper.governance.users import create_user, issue_token
from tests.annotation.conftest import ANA, BEN, STEWARD


def _counts(ctx: Context) -> dict[str, int]:
    with ctx.db.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables}


def test_a_project_runs_end_to_end_over_the_api(ctx: Context, version: DatasetVersion) -> None:
    create_user(ctx.db, "erin", roles=["ml_engineer"])
    auth = {name: {"Authorization": f"Bearer {issue_token(ctx.db, name, name='t').secret}"}
            for name in (STEWARD.name, ANA.name, BEN.name, "erin")}
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    gold = {r["row_id"]: r["label"] for r in read_dataset_rows(ctx, version.id).to_pylist()}

    schema = client.post("/api/annotation/schemas", headers=auth["stella"],
                         json={"name": "intents", "kind": "single", "labels": list(INTENTS), "guidelines": "g"})
    assert schema.status_code == 201 and schema.json()["version"] == 1
    body = {"name": "api", "dataset_version_id": version.id, "schema_id": schema.json()["id"], "overlap_k": 2,
            "overlap_fraction": 0.25}
    assert client.post("/api/annotation/projects", headers=auth["ana"], json=body).status_code == 403
    project = client.post("/api/annotation/projects", headers=auth["stella"], json=body).json()
    url = f"/api/annotation/projects/{project['id']}"
    assigned = client.post(f"{url}/assign", headers=auth["stella"], json={"annotators": ["ana", "ben"]})
    assert assigned.status_code == 200 and sum(assigned.json()["assigned"].values()) == version.stats["rows"] + 5

    queues = {who: client.get(f"{url}/queue", headers=auth[who]).json()["items"] for who in ("ana", "ben")}
    assert [p["name"] for p in client.get("/api/annotation/projects", headers=auth["ana"]).json()] == ["api"]
    not_mine = next(t for t in queues["ben"] if t["item_id"] not in {x["item_id"] for x in queues["ana"]})
    before = _counts(ctx)
    answer = client.put(f"{url}/items/{not_mine['item_id']}/answer", headers=auth["ana"],
                        json={"expected_version": 0, "value": {"label": "lost_card"}})
    assert answer.status_code == 403 and answer.headers["content-type"].startswith("application/problem+json")
    assert "not assigned to ana" in answer.json()["detail"]
    outside = client.put(f"{url}/items/{queues['ana'][0]['item_id']}/answer", headers=auth["ana"],
                         json={"expected_version": 0, "value": {"label": "pizza"}})
    assert outside.status_code == 422 and "'pizza' is not in schema intents v1" in outside.json()["detail"]
    assert _counts(ctx) == before
    other = client.get(f"{url}/queue", headers=auth["ana"], params={"annotator": "ben"})
    assert other.status_code == 403
    assert client.get(f"{url}/queue", headers=auth["stella"], params={"annotator": "ben"}).json()["total"] == len(
        queues["ben"])

    first_overlap = next(t["item_id"] for t in queues["ana"] if t["overlap"])
    for who in ("ana", "ben"):
        for t in queues[who]:
            label = gold[t["row_id"]]
            if who == "ben" and t["item_id"] == first_overlap:
                label = "close_account" if label != "close_account" else "change_pin"
            saved = client.put(f"{url}/items/{t['item_id']}/answer", headers=auth[who],
                               json={"expected_version": 0, "value": {"label": label}})
            assert saved.status_code == 200 and saved.json()["version"] == 1
    stale = client.put(f"{url}/items/{queues['ana'][0]['item_id']}/answer", headers=auth["ana"],
                       json={"expected_version": 0, "value": {"label": "lost_card"}})
    assert stale.status_code == 409 and "Reload the item" in stale.json()["hint"]

    disputes = client.get(f"{url}/disputes", headers=auth["stella"]).json()
    assert [d["item_id"] for d in disputes] == [first_overlap]
    figures = client.get(f"{url}/figures", headers=auth["stella"]).json()
    assert figures["progress"]["disputed"] == 1 and figures["agreement"]["cohen_kappa"]["ana|ben"] < 1
    assert client.post(f"{url}/export", headers=auth["stella"], json={}).status_code == 409
    right = gold[next(t["row_id"] for t in queues["ana"] if t["item_id"] == first_overlap)]
    decided = client.post(f"{url}/items/{first_overlap}/decision", headers=auth["stella"],
                          json={"value": {"label": right}, "expected_version": disputes[0]["version"]})
    assert decided.status_code == 200 and decided.json()["decided_by"] == "stella"
    exported = client.post(f"{url}/export", headers=auth["stella"], json={"name": "intents-labelled"})
    assert exported.status_code == 201 and exported.json()["name"] == "intents-labelled"
    report = client.get(f"/datasets/{exported.json()['id']}/report", headers=auth["stella"])
    assert report.status_code == 200 and "intents-labelled" in report.text  # the quality report of the new version
    lineage = client.get(f"/api/annotation/lineage/{exported.json()['id']}/rows/0", headers=auth["erin"])
    assert lineage.status_code == 200 and lineage.json()["kind"] == "dataset_row"
    assert client.get(f"/api/annotation/lineage/{exported.json()['id']}/rows/0", headers=auth["ana"]).status_code \
        == 403


def test_moving_a_project_to_a_schema_of_another_name_is_a_clear_422(ctx: Context, version: DatasetVersion) -> None:
    from chainkeeper.annotation.projects import create_project
    from chainkeeper.annotation.schemas import define_schema

    auth = {"Authorization": f"Bearer {issue_token(ctx.db, STEWARD.name, name='t').secret}"}
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    first = define_schema(ctx.db, name="a", kind="single", labels=["x", "y"], actor=STEWARD)
    later = define_schema(ctx.db, name="a", kind="single", labels=["x", "y", "z"], actor=STEWARD)
    other = define_schema(ctx.db, name="b", kind="single", labels=["x"], actor=STEWARD)
    project = create_project(ctx, name="p", dataset_version_id=version.id, schema_id=first.id, actor=STEWARD)
    refused = client.put(f"/api/annotation/projects/{project.id}/schema", headers=auth, json={"schema_id": other.id})
    assert refused.status_code == 422 and "Pick a version of a" in refused.json()["hint"]
    moved = client.put(f"/api/annotation/projects/{project.id}/schema", headers=auth, json={"schema_id": later.id})
    assert moved.status_code == 200 and moved.json()["schema_id"] == later.id
