"""The data API as a client meets it: upload a file, list and show sources and dataset versions, page rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.api.routers import data as data_router
from chainkeeper.core.context import Context
from chainkeeper.data.sources import count_sources
from chainkeeper.governance.users import create_user, issue_token
from tests.api.test_api import assert_problem

LABELS = ("card_arrival", "lost_card", "change_pin")
CSV = ("text,label\n" + "".join(f"message {i} about {LABELS[i % 3]},{LABELS[i % 3]}\n" for i in range(60))
       + "ragged,row,with,extra\n").encode()


def _client(ctx: Context, name: str, role: str) -> TestClient:
    create_user(ctx.db, name, roles=[role])
    token = issue_token(ctx.db, name, name="test").secret
    return TestClient(create_app(ctx), raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def steward(ctx: Context) -> Iterator[TestClient]:
    with _client(ctx, "dana", "data_steward") as c:
        yield c


def test_upload_imports_a_source_and_it_can_be_listed_and_shown(steward: TestClient) -> None:
    answer = steward.post("/api/sources", files={"file": ("intents.csv", CSV, "text/csv")},
                          data={"split": "train"})

    assert answer.status_code == 201, answer.text
    source = answer.json()
    assert (source["format"], source["encoding"], source["uri"]) == ("csv", "utf-8", "upload:intents.csv")
    assert (source["rows_accepted"], source["rows_quarantined"], source["created_by"]) == (60, 1, "dana")
    listed = steward.get("/api/sources").json()
    assert [s["id"] for s in listed] == [source["id"]]
    assert steward.get(f"/api/sources/{source['id']}").json()["sha256"] == source["sha256"]


def test_dataset_versions_and_their_rows_by_split(ctx: Context, steward: TestClient) -> None:
    from chainkeeper.data.versions import create_dataset_version
    from tests.governance.conftest import make_actor

    source = steward.post("/api/sources", files={"file": ("intents.csv", CSV, "text/csv")}).json()
    version = create_dataset_version(ctx, name="intents", source_ids=[source["id"]],
                                     actor=make_actor(ctx, "sam", "data_steward"))

    listed = steward.get("/api/datasets").json()
    assert [v["id"] for v in listed] == [version.id]
    shown = steward.get(f"/api/datasets/{version.id}").json()
    assert shown["name"] == "intents" and shown["stats"]["rows"] == version.stats["rows"]
    page = steward.get(f"/api/datasets/{version.id}/rows", params={"split": "train", "limit": 5}).json()
    assert page["total"] == version.stats["rows_per_split"]["train"] and len(page["rows"]) == 5
    assert {r["split"] for r in page["rows"]} == {"train"}
    assert_problem(steward.get(f"/api/datasets/{version.id}/rows", params={"split": "nope"}), 422)
    assert_problem(steward.get("/api/datasets/999"), 404)


def test_bad_upload_is_a_problem_and_stores_nothing(ctx: Context, steward: TestClient) -> None:
    body = assert_problem(steward.post("/api/sources", files={"file": ("a.csv", b"\x00\x01binary", "text/csv")}), 422)
    assert "NUL bytes" in body["detail"]
    body = assert_problem(steward.post("/api/sources", files={"file": ("a.csv", b"text,intent\nhi,x\n", "text/csv")}),
                          422)
    assert "no column 'label'" in body["detail"]
    assert count_sources(ctx.db) == 0


def test_upload_over_the_size_limit_is_refused(ctx: Context, steward: TestClient,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_router, "MAX_UPLOAD_BYTES", 100)

    body = assert_problem(steward.post("/api/sources", files={"file": ("big.csv", CSV, "text/csv")}), 422)

    assert "too large" in body["detail"] and count_sources(ctx.db) == 0


def test_upload_needs_data_import_and_reading_needs_a_token(ctx: Context) -> None:
    with _client(ctx, "ann", "annotator") as annotator:
        assert_problem(annotator.post("/api/sources", files={"file": ("a.csv", CSV, "text/csv")}), 403)
    with TestClient(create_app(ctx), raise_server_exceptions=False) as anonymous:
        assert_problem(anonymous.get("/api/sources"), 401)
    assert count_sources(ctx.db) == 0
