"""The annotation pages in real headless Chromium, against a real server.

A slice of bank intents goes from dataset version to labelled dataset version through
the pages — once a real BANKING77 slice (10 intents, 2 test texts each; needs the
datasets folder), once the built-in customer-service sample (the same shape, English and
Chinese; runs anywhere): the data steward starts a project with an overlap, two
annotators label their queues from the keyboard (one disagrees once, skips and comes
back), the steward sees the agreement figures, decides the conflict and exports.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chainkeeper.annotation.projects import list_projects
from chainkeeper.annotation.schemas import define_schema
from chainkeeper.annotation.tasks import annotator_queue
from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.apps.customer_service.sample import INTENTS
from chainkeeper.core.context import Context
from chainkeeper.data.ingest import import_file
from chainkeeper.data.versions import (
    DatasetVersion,
    create_dataset_version,
    get_dataset_version,
    list_dataset_versions,
    read_dataset_rows,
)
from chainkeeper.governance.ledger import list_entries
from chainkeeper.governance.users import issue_token
from tests.annotation.conftest import ANA, BEN, STEWARD, make_users, make_version
from tests.annotation.test_prelabel import intents_classifier  # noqa: F401 (a fixture: a tiny intents model)
from tests.web.conftest import PageProblems

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, LocatorAssertions, Page

pytestmark = pytest.mark.browser

KEYS = [str(n) for n in range(1, 10)] + ["0"]


def _expect(locator: Locator) -> LocatorAssertions:
    """Playwright's retrying assertions (the page updates after a save's response arrives)."""
    from playwright.sync_api import expect

    return expect(locator)


@pytest.fixture
def signed_in(browser: Browser, ctx: Context, live_server: str) -> Iterator[tuple[dict[str, Page], PageProblems]]:
    """The steward and two annotators as users, and a page for each with its own session,
    recording problems."""
    make_users(ctx)
    problems = PageProblems()
    contexts: list[BrowserContext] = []
    pages = {}
    for name in (STEWARD.name, ANA.name, BEN.name):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        secret = issue_token(ctx.db, name, name="browser").secret
        context.add_cookies([{"name": SESSION_COOKIE, "value": secret, "domain": "127.0.0.1", "path": "/"}])
        tab = context.new_page()
        tab.on("console", lambda m: problems.console_errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: problems.console_errors.append(str(e)))
        tab.on("requestfailed", lambda r: problems.failed_requests.append(f"{r.method} {r.url}"))
        tab.on("response",
               lambda r: problems.error_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        contexts.append(context)
        pages[name] = tab
    yield pages, problems
    for context in contexts:
        context.close()


def _press_and_save(page: Page, key: str) -> dict:
    with page.expect_response(lambda r: r.url.endswith("/answer") and r.request.method == "PUT") as info:
        page.keyboard.press(key)
    assert info.value.status == 200, info.value.text()
    return info.value.json()


def _banking77_slice(ctx: Context, folder: Path, datasets_dir: Path) -> tuple[DatasetVersion, list[str]]:
    """A dataset version of 10 BANKING77 intents (the first in name order), 2 test texts each."""
    with (datasets_dir / "banking77" / "test.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    intents = sorted({r["label"] for r in rows})[:10]
    picked = [r for intent in intents for r in [r for r in rows if r["label"] == intent][:2]]
    folder.mkdir()
    path = folder / "banking77-slice.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in picked)
    source = import_file(ctx, path, actor=STEWARD)
    return create_dataset_version(ctx, name="intents", source_ids=[source.id], actor=STEWARD), intents


@pytest.mark.parametrize("data", [pytest.param("banking77", marks=pytest.mark.datasets), "sample"])
def test_a_slice_goes_from_dataset_version_to_labelled_version_through_the_pages(
        ctx: Context, tmp_path: Path, live_server: str, signed_in: tuple[dict[str, Page], PageProblems],
        data: str, datasets_dir: Path) -> None:
    pages, problems = signed_in
    if data == "banking77":
        version, intents = _banking77_slice(ctx, tmp_path / "banking77", datasets_dir)
    else:
        version, intents = make_version(ctx, tmp_path / "sample"), list(INTENTS)
    schema = define_schema(ctx.db, name="intents", kind="single", actor=STEWARD,
                           labels=[f"{i}: {i.replace('_', ' ')}" for i in intents],
                           guidelines="Pick the one intent the customer wants served.")
    gold = {r["row_id"]: r["label"] for r in read_dataset_rows(ctx, version.id).to_pylist()}

    # The steward starts the project from the dataset version, with half the items overlapping.
    steward = pages[STEWARD.name]
    steward.goto(f"{live_server}/annotate")
    form = steward.locator("form.annotate-form")
    form.locator("input[name=name]").fill("bank-intents")
    form.locator("input[name=dataset_version_id]").fill(str(version.id))
    form.locator("select[name=schema_id]").select_option(str(schema.id))
    form.locator("input[name=annotators]").fill("ana, ben")
    form.locator("input[name=overlap_k]").fill("2")
    form.locator("input[name=overlap_fraction]").fill("0.5")
    form.locator("button[type=submit]").click()
    steward.wait_for_url(re.compile(r"/annotate/\d+/review$"))
    project = list_projects(ctx.db)[0]
    assert project.name == "bank-intents" and project.overlap_k == 2

    # Each annotator labels their queue from the keyboard: digit, Enter.
    disagreed_on = None
    for actor in (ANA, BEN):
        page = pages[actor.name]
        page.goto(f"{live_server}/annotate")
        page.get_by_role("link", name="label").click()
        page.wait_for_url(f"{live_server}/annotate/{project.id}")
        assert "Pick the one intent" in page.locator(".guidelines").inner_text()
        queue = annotator_queue(ctx, project.id, actor)
        for n, task in enumerate(queue):
            _expect(page.locator("#position")).to_contain_text(f"Item {n + 1} of {len(queue)}")
            assert " ".join(page.locator("#item-text").inner_text().split()) == " ".join(task.text.split())
            label = gold[task.row_id]
            if actor is BEN and n == 0:
                # Skip the first item (S), come back to it (ArrowLeft), then label it.
                _press_and_save(page, "s")
                _expect(page.locator("#position")).to_contain_text("Item 2 of")
                page.keyboard.press("ArrowLeft")
                _expect(page.locator("#position")).to_contain_text("Item 1 of")
            if actor is BEN and task.overlap and disagreed_on is None:
                disagreed_on = task.item_id
                label = next(i for i in intents if i != label)
            page.keyboard.press(KEYS[intents.index(label)])
            assert page.locator(f".label-button[data-label='{label}']").get_attribute("aria-pressed") == "true"
            saved = _press_and_save(page, "Enter")
            assert saved["value"] == {"label": label} and saved["status"] == "labelled"
        _expect(page.locator("#progress")).to_have_text(f"{len(queue)} of {len(queue)} labelled")
        page.reload()  # the saved answers come back with the page
        _expect(page.locator("#progress")).to_have_text(f"{len(queue)} of {len(queue)} labelled")
        _expect(page.locator("#answer-state")).to_contain_text("Your answer:")
    assert disagreed_on is not None

    # The steward sees the agreement figures and the one conflict, and decides it.
    steward.goto(f"{live_server}/annotate/{project.id}/review")
    kappa = steward.locator("[data-figure=cohen_kappa]").inner_text()
    assert re.fullmatch(r"0\.\d{3}", kappa), kappa  # computed, below 1: one disagreement
    assert steward.locator("[data-figure=overlap_items]").inner_text() == "10"
    assert steward.locator("tr[data-annotator=ana]").count() == 1
    dispute = steward.locator(f"article.dispute[data-item='{disagreed_on}']")
    assert steward.locator("article.dispute").count() == 1
    right = gold[next(t.row_id for t in annotator_queue(ctx, project.id, ANA) if t.item_id == disagreed_on)]
    dispute.locator("select[name=label]").select_option(right)
    dispute.locator("input[name=note]").fill("ana followed the guidelines")
    dispute.locator("button[type=submit]").click()
    assert "decided" in steward.locator("#review-message").inner_text()
    assert steward.locator("article.dispute").count() == 0

    steward.locator("#export").click()
    message = steward.locator("#review-message").inner_text()
    assert re.search(r"Exported as dataset version intents v2 \(id \d+\)", message), message

    labelled = list_dataset_versions(ctx.db, name="intents")[0]
    assert labelled.version == 2 and get_dataset_version(ctx.db, labelled.id).stats["annotation"]["project_id"] \
        == project.id
    rows = read_dataset_rows(ctx, labelled.id).to_pylist()
    assert len(rows) == len(gold) and all(r["label"] == gold[r["parent_row_id"]] for r in rows)
    decided = [r for r in rows if r["method"] == "steward"]
    assert len(decided) == 1 and decided[0]["decided_by"] == STEWARD.name and decided[0]["agreement"] == 0.5
    assert sum(1 for r in rows if r["annotators"] == ["ana", "ben"]) == 10
    agreement = labelled.stats["annotation"]["agreement"]
    assert 0 < agreement["cohen_kappa"]["ana|ben"] < 1
    decisions = list_entries(ctx.db, object_kind="annotation_item")
    assert [(e.actor, e.details["method"]) for e in decisions] == [("stella", "steward")]
    problems.assert_clean()


def test_an_annotator_cannot_open_another_projects_page_or_the_review(
        ctx: Context, tmp_path: Path, live_server: str, signed_in: tuple[dict[str, Page], PageProblems]) -> None:
    pages, _ = signed_in
    page = pages[ANA.name]
    answer = page.goto(f"{live_server}/annotate/987654")
    assert answer is not None and answer.status == 404
    assert "no annotation project with id 987654" in page.content()
    version = make_version(ctx, tmp_path / "sample")
    from chainkeeper.annotation.projects import create_project

    schema = define_schema(ctx.db, name="s", kind="single", labels=list(INTENTS), actor=STEWARD)
    project = create_project(ctx, name="p", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD)
    answer = page.goto(f"{live_server}/annotate/{project.id}/review")
    assert answer is not None and answer.status == 403 and "annotation.adjudicate" in page.content()
    answer = page.goto(f"{live_server}/annotate/{project.id}")
    assert answer is not None and answer.status == 200 and "Your queue in this project is empty" in page.content()


def test_spans_are_marked_by_keyboard_and_by_mouse_and_an_item_can_be_flagged(
        ctx: Context, tmp_path: Path, live_server: str, signed_in: tuple[dict[str, Page], PageProblems]) -> None:
    from chainkeeper.annotation.projects import assign_batches, create_project

    pages, problems = signed_in
    version = make_version(ctx, tmp_path / "sample")
    schema = define_schema(ctx.db, name="ner", kind="spans", labels=["AMOUNT", "PLACE"], actor=STEWARD,
                           guidelines="Mark amounts and places.")
    project = create_project(ctx, name="spans", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                             row_filter={"text_contains": " "})
    assign_batches(ctx, project.id, annotators=[ANA.name], actor=STEWARD)
    queue = annotator_queue(ctx, project.id, ANA)
    page = pages[ANA.name]
    page.goto(f"{live_server}/annotate/{project.id}")

    # Keyboard: the cursor starts on the first word; '>' extends it by one word, '1' labels it AMOUNT.
    first = queue[0].text
    words = [m for m in re.finditer(r"\S+", first)]
    page.keyboard.press(">")
    page.keyboard.press("1")
    assert page.locator(".token.in-span").count() == 2
    saved = _press_and_save(page, "Enter")
    assert saved["value"] == {"spans": [[words[0].start(), words[1].end(), "AMOUNT"]]}

    # Mouse: drag across the second item's first word, then '2' labels it PLACE.
    _expect(page.locator("#position")).to_contain_text("Item 2 of")
    second = queue[1].text
    token = page.locator(".token").first
    box = token.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)
    page.mouse.up()
    page.keyboard.press("2")
    first_word = re.search(r"\S+", second)
    assert first_word is not None
    assert page.locator(".token.in-span").count() == 1
    # F flags the item for the steward, keeping the span; the page stays on it.
    flagged = _press_and_save(page, "f")
    assert flagged["flagged"] is True
    assert flagged["value"] == {"spans": [[first_word.start(), first_word.end(), "PLACE"]]}
    _expect(page.locator("#answer-state")).to_contain_text("flagged")
    problems.assert_clean()


def test_a_stale_save_from_a_second_tab_is_refused_with_the_reason_and_reloaded(
        ctx: Context, tmp_path: Path, live_server: str, signed_in: tuple[dict[str, Page], PageProblems]) -> None:
    from chainkeeper.annotation.projects import assign_batches, create_project

    pages, _ = signed_in
    version = make_version(ctx, tmp_path / "sample")
    schema = define_schema(ctx.db, name="intents", kind="single", labels=list(INTENTS), actor=STEWARD)
    project = create_project(ctx, name="tabs", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD)
    assign_batches(ctx, project.id, annotators=[ANA.name], actor=STEWARD)
    first, second = pages[ANA.name], pages[ANA.name].context.new_page()
    for tab in (first, second):
        tab.goto(f"{live_server}/annotate/{project.id}")
    first.keyboard.press("1")
    _press_and_save(first, "Enter")  # tab one saves version 1 of the answer
    second.keyboard.press("2")
    with second.expect_response(lambda r: r.url.endswith("/answer")) as info:
        second.keyboard.press("Enter")  # tab two still believes there is no answer
    assert info.value.status == 409
    _expect(second.locator("#message")).to_contain_text("changed since you loaded it")
    _expect(second.locator("#message")).to_contain_text("Reload the item")
    # The tab reloaded the stored answer: it shows tab one's label and its version, and stays on the item.
    _expect(second.locator("#answer-state")).to_have_text(f"Your answer: {INTENTS[0]} (version 1)")
    _expect(second.locator("#position")).to_contain_text("Item 1 of")
    answer = annotator_queue(ctx, project.id, ANA)[0].answer
    assert answer is not None and answer.value == {"label": INTENTS[0]} and answer.version == 1


def test_the_page_shows_the_models_prelabel_with_its_confidence(
        ctx: Context, tmp_path: Path, live_server: str, signed_in: tuple[dict[str, Page], PageProblems],
        intents_classifier: Path) -> None:
    from chainkeeper.annotation.prelabel import prelabel_project
    from chainkeeper.annotation.projects import assign_batches, create_project
    from tests.model_rows import registered

    pages, problems = signed_in
    version = make_version(ctx, tmp_path / "sample")
    schema = define_schema(ctx.db, name="intents", kind="single", labels=list(INTENTS), actor=STEWARD)
    project = create_project(ctx, name="pre", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                             queue_order="active")
    assign_batches(ctx, project.id, annotators=[ANA.name], actor=STEWARD)
    model = registered(ctx, "intents", model_artifact=ctx.artifacts.put_tree(intents_classifier))
    prelabel_project(ctx, project.id, model.id, STEWARD, strategy="margin")
    first = annotator_queue(ctx, project.id, ANA)[0].prelabel
    assert first is not None
    page = pages[ANA.name]
    page.goto(f"{live_server}/annotate/{project.id}")
    _expect(page.locator("#prelabel")).to_have_text(
        f"Model suggests: {first['label']} ({round(first['confidence'] * 100)}% confidence)")
    # A suggestion is shown, never chosen for the annotator.
    assert page.locator(".label-button[aria-pressed=true]").count() == 0
    problems.assert_clean()
