"""The data pages as a steward meets them: /data and /data/versions/{id}, in-process and in headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.core.context import Context
from chainkeeper.data.ingest import import_file
from chainkeeper.data.versions import DatasetVersion, create_dataset_version, release_dataset_version
from chainkeeper.governance.users import create_user, issue_token
from tests.governance.conftest import make_actor
from tests.web.conftest import PageProblems

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

LABELS = ("card_arrival", "lost_card", "change_pin")
RECIPE = ["normalize_text", "strip_html", "drop_empty", "dedup_exact"]


def _csv(path: Path, rows: list[tuple[str, str]], extra: str = "") -> Path:
    path.write_text("text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows) + extra, encoding="utf-8")
    return path


@pytest.fixture
def versions(ctx: Context, tmp_path: Path) -> dict[str, DatasetVersion]:
    """intents v1 (one file), intents v2 (that file and another), and an unlabelled corpus; v1 released."""
    steward, approver = make_actor(ctx, "dana", "data_steward"), make_actor(ctx, "eve", "data_steward")
    first = [(f"<b>message</b> {i} about {LABELS[i % 3]}", LABELS[i % 3]) for i in range(30)]
    first += [("message  1 about lost_card", "lost_card")]  # a repeat once whitespace is normalised
    a = import_file(ctx, _csv(tmp_path / "intents.csv", first, extra="a,ragged,row\n"), actor=steward)
    b = import_file(ctx, _csv(tmp_path / "more.csv", [(f"more text {i}", LABELS[i % 3]) for i in range(12)]),
                    actor=steward)
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.txt").write_text(f"Branch news number {i}.", encoding="utf-8")
    corpus = import_file(ctx, folder, actor=steward)
    v1 = create_dataset_version(ctx, name="intents", source_ids=[a.id], actor=steward, recipe=RECIPE)
    release_dataset_version(ctx, v1.id, actor=approver)
    v2 = create_dataset_version(ctx, name="intents", source_ids=[a.id, b.id], actor=steward, recipe=RECIPE)
    text = create_dataset_version(ctx, name="corpus", source_ids=[corpus.id], actor=steward)
    return {"v1": v1, "v2": v2, "corpus": text}


@pytest.fixture
def steward_token(ctx: Context) -> str:
    create_user(ctx.db, "sally", roles=["data_steward"])
    return issue_token(ctx.db, "sally", name="web test").secret


def get(app: FastAPI, path: str, token: str) -> httpx.Response:
    with TestClient(app, raise_server_exceptions=False, cookies={SESSION_COOKIE: token}) as client:
        return client.get(path, headers={"accept": "text/html"})


# --- in-process ------------------------------------------------------------------------


def test_data_page_lists_versions_with_task_and_state_and_sources_with_reasons(
        web_app: FastAPI, versions: dict[str, DatasetVersion], steward_token: str) -> None:
    page = get(web_app, "/data", steward_token)

    assert page.status_code == 200
    ids = [int(i) for i in re.findall(r'<tr data-version-id="(\d+)">', page.text)]
    assert ids == [versions["corpus"].id, versions["v2"].id, versions["v1"].id]
    assert "intents v1</a>" in page.text and 'state-released">released' in page.text
    assert "unlabelled" in page.text and "text classification" in page.text
    assert "extra fields 1" in page.text  # the ragged row's reason, next to the source


def test_unknown_version_is_a_404_page_and_reading_needs_data_read(web_app: FastAPI, ctx: Context,
                                                                 steward_token: str, session_token: str) -> None:
    missing = get(web_app, "/data/versions/999", steward_token)
    assert missing.status_code == 404 and "no dataset version with id 999" in missing.text
    assert "Traceback" not in missing.text

    forbidden = get(web_app, "/data", session_token)  # an operator: no data.read
    assert forbidden.status_code == 403 and "data.read" in forbidden.text


# --- in Chromium -----------------------------------------------------------------------


@pytest.fixture
def steward_page(browser: Browser, page_problems: PageProblems, steward_token: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": SESSION_COOKIE, "value": steward_token, "domain": "127.0.0.1", "path": "/"}])
    tab = context.new_page()
    tab.on("console", lambda msg: page_problems.console_errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: page_problems.console_errors.append(str(exc)))
    tab.on("requestfailed", lambda req: page_problems.failed_requests.append(f"{req.method} {req.url}"))
    tab.on("response", lambda resp: page_problems.error_responses.append(f"{resp.status} {resp.url}")
           if resp.status >= 400 else None)
    yield tab
    context.close()


@pytest.mark.browser
def test_steward_goes_from_the_list_to_a_version_and_reads_its_recipe_diff_and_report(
        live_server: str, versions: dict[str, DatasetVersion], steward_page: Page,
        page_problems: PageProblems) -> None:
    page = steward_page
    page.goto(f"{live_server}/data")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Data"
    assert page.locator("#versions tbody tr").count() == 3

    page.get_by_role("link", name="intents v2").click()
    page.wait_for_url(f"**/data/versions/{versions['v2'].id}")

    v2 = versions["v2"]
    assert page.locator("h1").first.inner_text().startswith("intents v2")
    # Splits as stored.
    for split, n in v2.stats["rows_per_split"].items():
        assert page.locator(f'#splits tr[data-split="{split}"] td').nth(1).inner_text() == f"{n:,}"
    # The recipe: one row per step with rows in and out, and examples of what changed.
    # Redaction is part of every recipe (issue 14): it runs before de-duplication though RECIPE leaves it out.
    steps = page.locator("#recipe tr[data-step]")
    assert [r["name"] for r in v2.recipe] == [*RECIPE[:3], "redact_pii", RECIPE[3]]
    assert [steps.nth(i).get_attribute("data-step") for i in range(steps.count())] == [r["name"] for r in v2.recipe]
    dedup = page.locator('#recipe tr[data-step="dedup_exact"] td')
    assert dedup.nth(2).inner_text() == f"{v2.recipe[4]['rows_in']:,}"
    assert dedup.nth(3).inner_text() == f"{v2.stats['rows']:,}"
    assert page.locator(".examples ins", has_text="message 0 about card_arrival").count() >= 1  # strip_html's example
    # The diff to v1: the second file's 12 rows were added, nothing removed.
    cells = page.locator('#diff tr[data-split="all"] td')
    assert cells.nth(1).inner_text() == "12" and cells.nth(2).inner_text() == "0"
    # The quality report is embedded with its plots.
    report = page.locator("#quality-report")
    assert report.locator("svg").count() >= 3 and "Quality report: intents v2" in report.inner_text()

    page.get_by_role("link", name="intents v1").click()
    page.wait_for_url(f"**/data/versions/{versions['v1'].id}")
    assert page.locator("#no-diff").is_visible() and "eve" in page.locator("#facts").inner_text()
    page_problems.assert_clean()
