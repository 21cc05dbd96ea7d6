"""The data API as a client meets it: upload a file, list and show sources and dataset versions, page rows."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.core.context import Context
from chainkeeper.core.settings import Settings
from chainkeeper.core.worker import Worker
from chainkeeper.data.sources import count_sources
from chainkeeper.governance.users import create_user, issue_token
from tests.api.test_api import assert_problem
from tests.data.test_crawler import site  # noqa: F401 (a fixture: a local site with robots.txt and loops)

LABELS = ("card_arrival", "lost_card", "change_pin")
CSV = ("text,label\n" + "".join(f"message {i} about {LABELS[i % 3]},{LABELS[i % 3]}\n" for i in range(60))
       + "ragged,row,with,extra\n").encode()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The crawls below fetch a site on 127.0.0.1: allowed here, refused by default (issue 15 item 6)."""
    return settings.model_copy(update={"outbound_allow": ["127.0.0.1"]})


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
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(update={"max_upload_bytes": 1024}))

    body = assert_problem(steward.post("/api/sources", files={"file": ("big.csv", CSV, "text/csv")}), 413)

    assert "accepts at most 1,024 bytes" in body["detail"] and count_sources(ctx.db) == 0


def test_upload_needs_data_import_and_reading_needs_a_token(ctx: Context) -> None:
    with _client(ctx, "ann", "annotator") as annotator:
        assert_problem(annotator.post("/api/sources", files={"file": ("a.csv", CSV, "text/csv")}), 403)
    with TestClient(create_app(ctx), raise_server_exceptions=False) as anonymous:
        assert_problem(anonymous.get("/api/sources"), 401)
    assert count_sources(ctx.db) == 0


# --- bad input over HTTP: a clear problem or quarantined rows, never a half-written version ---


def _artefacts(ctx: Context) -> list[str]:
    root = ctx.artifacts.root / "sha256"  # type: ignore[attr-defined]
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(("name", "content", "form", "message"), [
    pytest.param("empty.csv", b"", {}, "is empty", id="empty-file"),
    pytest.param("whitespace.csv", b"  \n\n", {}, "is empty", id="blank-file"),
    pytest.param("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "contains NUL bytes", id="binary-as-csv"),
    pytest.param("a.csv", b"text,label\nhi,x\n", {"label_column": "intent"}, "no column 'intent'",
                 id="label-column-missing"),
    pytest.param("ragged.csv", b"text,label\na,b,c\nd,e,f\n", {}, "has no usable rows", id="every-row-ragged"),
])
def test_bad_uploads_are_a_problem_with_a_hint_and_leave_nothing_behind(
        ctx: Context, steward: TestClient, name: str, content: bytes, form: dict[str, str], message: str) -> None:
    before = _artefacts(ctx)

    body = assert_problem(steward.post("/api/sources", files={"file": (name, content, "text/csv")}, data=form), 422)

    assert message in body["detail"] and body["hint"]
    assert count_sources(ctx.db) == 0 and _artefacts(ctx) == before


def test_ragged_rows_are_quarantined_and_their_reasons_returned(steward: TestClient) -> None:
    content = b"text,label\nfine row,a\ntoo,many,fields\nshort\nanother fine row,b\n"

    answer = steward.post("/api/sources", files={"file": ("ragged.csv", content, "text/csv")})

    assert answer.status_code == 201, answer.text
    source = answer.json()
    assert (source["rows_accepted"], source["rows_quarantined"]) == (2, 2)
    assert source["options"]["quarantine_reasons"] == {"extra_fields": 1, "missing_fields": 1}


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_crawl_of_an_unreachable_url_fails_its_job_clearly_and_stores_nothing(ctx: Context,
                                                                               steward: TestClient) -> None:
    port = _unused_port()
    assert_problem(steward.post("/api/sources/crawl", json={"url": "ftp://127.0.0.1/"}), 422)

    answer = steward.post("/api/sources/crawl", json={"url": f"http://127.0.0.1:{port}/", "rate_per_s": 100})
    assert answer.status_code == 202, answer.text
    Worker(ctx, worker_id="w-test").run_one()

    job = steward.get(f"/api/jobs/{answer.json()['id']}").json()
    assert job["state"] == "failed" and f"Cannot reach http://127.0.0.1:{port}" in job["error"]
    assert count_sources(ctx.db) == 0 and _artefacts(ctx) == []


def test_crawl_of_an_internal_address_is_refused_at_once_and_queues_nothing(
        ctx: Context, site: tuple[str, list[str]]) -> None:  # noqa: F811
    base, requested = site
    strict = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"outbound_allow": []}))
    with _client(strict, "dana", "data_steward") as steward:
        body = assert_problem(steward.post("/api/sources/crawl", json={"url": base}), 422)
        assert steward.get("/api/jobs").json() == []

    assert body["title"] == "Outbound request refused" and "Refused to connect to 127.0.0.1" in body["detail"]
    assert "outbound_allow" in body["hint"] and requested == []


def test_crawl_of_a_site_with_loops_stores_each_page_once(ctx: Context, steward: TestClient,
                                                          site: tuple[str, list[str]]) -> None:  # noqa: F811
    base, requested = site

    answer = steward.post("/api/sources/crawl", json={"url": base, "max_depth": 3, "rate_per_s": 100})
    Worker(ctx, worker_id="w-test").run_one()

    job = steward.get(f"/api/jobs/{answer.json()['id']}").json()
    assert job["state"] == "succeeded", job["error"]
    source = steward.get(f"/api/sources/{job['result']['source_id']}").json()
    assert (source["kind"], source["rows_accepted"]) == ("crawl", 5)
    assert requested.count("/") == 1 and requested.count("/a") == 1


def test_versions_are_created_over_http_and_a_bad_request_stores_nothing(ctx: Context, steward: TestClient) -> None:
    labelled = steward.post("/api/sources", files={"file": ("intents.csv", CSV, "text/csv")}).json()
    documents = steward.post("/api/sources", files={"file": ("notes.jsonl", b'{"text": "a note"}\n{"text": "b"}\n',
                                                             "application/json")}, data={"no_label": "true"}).json()
    before = _artefacts(ctx)

    body = assert_problem(steward.post("/api/datasets", json={"name": "mixed",
                                                              "source_ids": [labelled["id"], documents["id"]]}), 422)
    assert "different kinds of rows" in body["detail"] and body["hint"]
    assert_problem(steward.post("/api/datasets", json={"name": "x", "source_ids": [labelled["id"], 999]}), 404)
    body = assert_problem(steward.post("/api/datasets", json={"name": "x", "source_ids": [labelled["id"]],
                                                              "recipe": ["dedup_exact", "no_such_step"]}), 422)
    assert "no_such_step" in body["detail"]
    assert steward.get("/api/datasets").json() == [] and _artefacts(ctx) == before

    created = steward.post("/api/datasets", json={"name": "notes", "source_ids": [documents["id"]]})
    assert created.status_code == 201, created.text
    assert created.json()["task"] == "unlabelled" and created.json()["stats"]["labels"] == []
    assert steward.get(f"/api/datasets/{created.json()['id']}").json()["task"] == "unlabelled"


def test_redaction_is_on_unless_the_request_opts_out_and_the_version_says_which(steward: TestClient) -> None:
    rows = b"text,label\ncall 13800000000,contact\nmail anna@example.com,contact\n" + b"".join(
        f"plain {i},other\n".encode() for i in range(8))
    source = steward.post("/api/sources", files={"file": ("pages.csv", rows, "text/csv")}).json()

    default = steward.post("/api/datasets", json={"name": "pages", "source_ids": [source["id"]]}).json()
    kept = steward.post("/api/datasets", json={"name": "raw", "source_ids": [source["id"]], "redact": False}).json()

    texts = [r["text"] for r in steward.get(f"/api/datasets/{default['id']}/rows").json()["rows"]]
    assert "call [PHONE]" in texts and "mail [EMAIL]" in texts and default["stats"]["redaction"] == "on"
    texts = [r["text"] for r in steward.get(f"/api/datasets/{kept['id']}/rows").json()["rows"]]
    assert "call 13800000000" in texts and kept["stats"]["redaction"] == "opted out"
    assert steward.get(f"/api/datasets/{kept['id']}/report").json()["redaction"] == "opted out"


def test_json_uploads_of_either_shape_import_and_a_bad_format_names_the_field(steward: TestClient) -> None:
    array = b'[{"text": "card lost", "label": "lost"}, {"text": "pin", "label": "pin"}]'
    columns = b'{"text": ["card lost", "pin"], "label": ["lost", "pin"]}'

    for name, body in (("array.json", array), ("columns.json", columns)):
        answer = steward.post("/api/sources", files={"file": (name, body, "application/json")})
        assert answer.status_code == 201, answer.text
        assert (answer.json()["format"], answer.json()["rows_accepted"]) == ("json", 2)
    problem = assert_problem(steward.post("/api/sources", files={"file": ("rows.dat", b"a,b\n", "text/plain")}), 422)
    assert "format=" in problem["hint"] and "(API)" in problem["hint"]
