"""The training run pages in a real headless Chromium on a real server.

/runs lists runs with their task, state and test numbers; /runs/{id} draws the loss
curve from the stored run points and redraws it (htmx polling) while a real worker
trains the run in another thread, then reloads once with the embedded evaluation report
and the reproducibility record.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.auth import SESSION_COOKIE
from chainkeeper.chain import open_context
from chainkeeper.core.context import Context
from chainkeeper.core.settings import Settings
from chainkeeper.core.worker import Worker
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import RunState, get_run, start_training_run
from tests.training.test_runs import ALICE, _dataset_version
from tests.web.conftest import PageProblems

pytestmark = pytest.mark.browser

# Slow enough (many logged steps) that the page sees the curve grow while it trains.
LIVE = TrainConfig(epochs=10, batch_size=8, learning_rate=5e-3, head_lr_multiplier=1.0, dropout=0.0,
                   log_every_steps=2, max_length=16, checkpoint_every_steps=None)


@pytest.fixture
def ctx(settings: Settings, tiny_model_dir: Path) -> Iterator[Context]:
    context = open_context(settings.model_copy(update={"base_model": tiny_model_dir}))
    yield context
    context.close()


def test_run_page_draws_a_live_loss_curve_then_shows_the_report(ctx: Context, tmp_path: Path, live_server: str,
                                                                page, page_problems: PageProblems) -> None:
    run = start_training_run(ctx, dataset_version_id=_dataset_version(ctx, tmp_path), config=LIVE, actor=ALICE)
    page.goto(f"{live_server}/runs/{run.id}")
    assert page.locator("#run-curve").get_attribute("data-state") == "queued"
    assert "no training points yet" in page.locator("#run-curve").inner_text()

    worker = threading.Thread(target=Worker(ctx).run_one)
    worker.start()
    try:
        # htmx swaps the fragment every second: the curve gains points while it trains.
        page.wait_for_function("() => Number(document.querySelector('#run-curve')?.dataset.points) >= 2",
                               timeout=60_000)
        seen_running = page.locator("#run-curve").get_attribute("data-state")
        first = int(page.locator("#run-curve").get_attribute("data-points") or 0)
        page.wait_for_function(f"() => Number(document.querySelector('#run-curve')?.dataset.points) > {first}"
                               " || document.querySelector('#run-curve')?.dataset.state === 'succeeded'",
                               timeout=60_000)
    finally:
        worker.join(timeout=300)
    assert seen_running in ("running", "succeeded")
    assert get_run(ctx.db, run.id).state == RunState.SUCCEEDED

    # The finished run: HX-Refresh reloads the page once, with the report and no polling.
    page.wait_for_selector("iframe.run-report", timeout=30_000)
    curve = page.locator("#run-curve")
    assert curve.get_attribute("data-state") == "succeeded" and curve.get_attribute("hx-get") is None
    assert page.locator("#run-curve svg polyline").count() == 1
    report = page.frame_locator("iframe.run-report")
    assert "Per class" in report.locator("body").inner_text()
    repro = page.locator(".repro-table").inner_text().lower()  # th is upper-cased by CSS
    assert "dataset_hash" in repro and "libraries.torch" in repro and "seed" in repro

    page.goto(f"{live_server}/runs")
    row = page.locator(f"tr[data-run-id='{run.id}']")
    assert "succeeded" in row.inner_text() and "sequence-classification" in row.inner_text()
    assert "accuracy" in row.inner_text()
    page_problems.assert_clean()


def test_run_pages_answer_unknown_runs_and_missing_rights_clearly(ctx: Context, web_app) -> None:
    from chainkeeper.governance.users import create_user, issue_token

    create_user(ctx.db, "nora", roles=[])
    create_user(ctx.db, "olive", roles=["operator"])
    with TestClient(web_app, raise_server_exceptions=False) as client:
        client.cookies.set(SESSION_COOKIE, issue_token(ctx.db, "olive", name="t").secret)
        empty = client.get("/runs")
        assert empty.status_code == 200 and "No training runs yet" in empty.text
        missing = client.get("/runs/4242")
        assert missing.status_code == 404 and "There is no training run 4242" in missing.text
        assert "Traceback" not in missing.text
        client.cookies.set(SESSION_COOKIE, issue_token(ctx.db, "nora", name="t").secret)
        assert client.get("/runs").status_code == 403
