"""The quality report: built with the version, stored, served as JSON/HTML/web page, required by the release gate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.chain.gates import check_dataset_no_leakage, check_dataset_quality_report
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict
from chainkeeper.data.cleaning import FULL_RECIPE
from chainkeeper.data.ingest import import_csv
from chainkeeper.data.quality import get_quality_report, render_quality_html
from chainkeeper.data.tables import SqlDatasetVersion
from chainkeeper.data.versions import (
    DatasetTask,
    DatasetVersion,
    create_dataset_version,
    freeze_dataset_version,
    snapshot_schema,
)
from chainkeeper.governance.approvals import decide, request_approval
from chainkeeper.governance.users import create_user, issue_token
from tests.governance.conftest import make_actor

ROWS = ([f"my card {i} has not arrived yet, can you check?,card_arrival" for i in range(20)]
        + [f"please block the card I lost on day {i},lost_card" for i in range(20)]
        + ["my card 1 has not arrived yet, can you check?,card_arrival",  # exact repeat
           "my card 2 has not arrived yet, can you check ?,card_arrival",  # near repeat
           "<b>mail me at anna@example.com</b> about my card,card_arrival",
           "x,lost_card"])


def _version(ctx: Context, tmp_path: Path, recipe: list[object] | None = None) -> DatasetVersion:
    steward = make_actor(ctx, "sofia", "data_steward")
    csv = tmp_path / "support.csv"
    csv.write_text("text,label\n" + "\n".join(f'"{r.rsplit(",", 1)[0]}",{r.rsplit(",", 1)[1]}' for r in ROWS) + "\n",
                   encoding="utf-8")
    source = import_csv(ctx, csv, actor=steward)
    return create_dataset_version(ctx, name="support", source_ids=[source.id], actor=steward,
                                  recipe=recipe or FULL_RECIPE)  # type: ignore[arg-type]


def test_version_stores_a_report_with_steps_removals_pii_and_distribution(ctx: Context, tmp_path: Path) -> None:
    version = _version(ctx, tmp_path)

    report = get_quality_report(ctx, version.id)

    assert re.fullmatch(r"[0-9a-f]{64}", version.stats["quality_report"])
    assert report["dataset"] == {"name": "support", "version": 1, "content_hash": version.content_hash}
    assert [s["name"] for s in report["steps"]] == [e if isinstance(e, str) else e["step"] for e in FULL_RECIPE]
    assert report["rows_before_cleaning"] == 44 and report["rows"] == version.stats["rows"]
    assert report["removed"]["duplicates"] == 1 and report["removed"]["near_duplicates"] >= 1
    assert report["pii_found"]["email"] == 1
    assert report["steps"][-1]["params"] == {"min_chars": 2} and report["steps"][-1]["rows_in"] - \
        report["steps"][-1]["rows_out"] == 1  # "x" is too short
    assert sum(sum(c.values()) for c in report["label_distribution"].values()) == report["rows"]


def test_html_report_is_self_contained_with_three_svg_plots_and_escapes_data(ctx: Context, tmp_path: Path) -> None:
    report = get_quality_report(ctx, _version(ctx, tmp_path).id)
    report["labels"].append("<script>")
    report["label_distribution"]["train"]["<script>alert(1)</script>"] = 3

    page = render_quality_html(report)

    assert page.count("<svg") == 3
    assert "<script" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)


def test_html_report_lists_splits_and_length_buckets_in_their_natural_order(ctx: Context, tmp_path: Path) -> None:
    # The stored JSON has sorted keys ("1024+" before "16-31", "dev" before "train").
    page = render_quality_html(get_quality_report(ctx, _version(ctx, tmp_path).id))

    buckets = re.findall(r"<title>([0-9+-]+) characters:", page)
    assert buckets == ["0-15", "16-31", "32-63", "64-127", "128-255", "256-511", "512-1023", "1024+"]
    assert re.search(r"<th>label</th><th>train</th><th>dev</th><th>test</th>", page)


@pytest.fixture
def steward_client(ctx: Context) -> Iterator[TestClient]:
    create_user(ctx.db, "dana", roles=["data_steward"])
    token = issue_token(ctx.db, "dana", name="test").secret
    with TestClient(create_app(ctx), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def test_api_serves_the_report_as_json_and_html_and_the_diff(ctx: Context, tmp_path: Path,
                                                            steward_client: TestClient) -> None:
    first = _version(ctx, tmp_path)
    second = create_dataset_version(ctx, name="support", source_ids=list(first.source_ids),
                                    actor=make_actor(ctx, "omar", "data_steward"))  # basic recipe this time

    as_json = steward_client.get(f"/api/datasets/{first.id}/report")
    as_html = steward_client.get(f"/api/datasets/{first.id}/report.html")
    diff = steward_client.get(f"/api/datasets/{first.id}/diff/{second.id}")
    missing = steward_client.get("/api/datasets/999/report")

    assert as_json.status_code == 200 and as_json.json()["pii_found"]["email"] == 1
    assert as_html.status_code == 200 and as_html.headers["content-type"].startswith("text/html")
    assert "Quality report: support v1" in as_html.text
    # Without HTML stripping and near-dup removal, the second version adds rows; the rows both hold are unchanged.
    assert diff.status_code == 200 and diff.json()["counts"]["added"] >= 1
    assert diff.json()["counts"]["unchanged"] == first.stats["rows"] - diff.json()["counts"]["removed"]
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_web_page_shows_the_report_and_latest_redirects_to_it(ctx: Context, tmp_path: Path,
                                                             steward_client: TestClient) -> None:
    version = _version(ctx, tmp_path)

    page = steward_client.get(f"/datasets/{version.id}/report")
    latest = steward_client.get("/reports/latest", follow_redirects=False)
    overview = steward_client.get("/")

    assert page.status_code == 200 and "Quality report: support v1" in page.text and "<svg" in page.text
    assert latest.status_code == 303 and latest.headers["location"] == f"/datasets/{version.id}/report"
    assert 'href="/reports/latest"' in overview.text


def test_release_gate_checks_the_quality_report(ctx: Context, tmp_path: Path) -> None:
    version = _version(ctx, tmp_path)

    request = request_approval(ctx, "dataset.release", version.id, actor=make_actor(ctx, "dara", "data_steward"))
    passed = check_dataset_quality_report(ctx, version.id, {})

    assert [c["name"] for c in request.checks] == ["dataset-is-draft", "quality-report", "no-leakage"]
    assert all(c["passed"] for c in request.checks) and "1 PII redacted" in passed.detail


def test_release_gate_fails_when_the_stored_report_is_gone(ctx: Context, tmp_path: Path) -> None:
    version = _version(ctx, tmp_path)
    ctx.artifacts.path_of(version.stats["quality_report"]).unlink()  # type: ignore[attr-defined]

    result = check_dataset_quality_report(ctx, version.id, {})

    assert not result.passed and "cannot be read" in result.detail


def _planted_leak(ctx: Context) -> DatasetVersion:
    """A version frozen straight from rows (as an export or a script could) with a text in train and in test."""
    texts = ["card lost", "pin blocked", "fee?", "card \u3000 lost", "top up failed"]
    rows = pa.table({"row_id": pa.array(range(5), pa.int64()), "text": texts,
                     "label": ["lost", "pin", "fee", "lost", "top"], "split": ["train", "train", "dev", "test", "test"],
                     "source_id": pa.array([0] * 5, pa.int64()), "source_line": pa.array(range(2, 7), pa.int64())},
                    schema=snapshot_schema(DatasetTask.TEXT_CLASSIFICATION))
    return freeze_dataset_version(ctx, rows, name="leaky", task=DatasetTask.TEXT_CLASSIFICATION,
                                  actor=make_actor(ctx, "sofia", "data_steward"), source_ids=[], split_seed=13)


def test_a_version_with_a_text_in_two_splits_fails_the_release_gate(ctx: Context) -> None:
    version = _planted_leak(ctx)

    report = get_quality_report(ctx, version.id)
    request = request_approval(ctx, "dataset.release", version.id, actor=make_actor(ctx, "dara", "data_steward"))

    # "card lost" and "card \u3000 lost" are one text once normalised.
    assert report["leakage"] == {"texts": 1, "rows": 2, "splits": {"train+test": 1},
                                 "examples": [{"text": "card lost", "splits": ["train", "test"]}]}
    assert "1 texts (2 rows) are in more than one split" in render_quality_html(report).replace("<strong>", "")
    (leak,) = [c for c in request.checks if c["name"] == "no-leakage"]
    assert not leak["passed"]
    with pytest.raises(Conflict, match="check no-leakage failed"):
        decide(ctx, request.id, actor=make_actor(ctx, "omar", "data_steward"), approve=True, comment="looks fine")
    assert leak["detail"].startswith("1 texts (2 rows) are in more than one split (1 in train+test); "
                                     "e.g. 'card lost' is in train and test: a model would be tested on texts it "
                                     "trained on")


def test_the_leak_check_reads_the_rows_of_versions_made_before_it(ctx: Context) -> None:
    version = _planted_leak(ctx)
    with ctx.db.session() as s:
        row = s.get(SqlDatasetVersion, version.id)
        assert row is not None
        row.stats = {k: v for k, v in row.stats.items() if k != "leakage"}

    result = check_dataset_no_leakage(ctx, str(version.id), {})

    assert not result.passed and "1 in train+test" in result.detail
