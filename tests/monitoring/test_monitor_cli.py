"""``chainkeeper monitor`` as a user meets it: feedback, quality, drift and the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainkeeper.chain import open_context
from chainkeeper.core.jobs import list_jobs
from chainkeeper.core.settings import load_settings
from chainkeeper.monitoring.feedback import list_feedback
from tests.cli.conftest import Run, home, run  # noqa: F401  (fixtures)
from tests.monitoring.chain import (
    IN_DISTRIBUTION,
    Served,
    classifier_dir,  # noqa: F401  (fixtures)
    serve_model,
)


@pytest.fixture
def tokens(run: Run) -> dict[str, str]:  # noqa: F811
    """An initialised home with an operator and an annotator, and their tokens."""
    code, out, _ = run("init")
    admin = re.search(r"API token[^:]*:\s+(ck_\S+)", out)
    assert code == 0 and admin is not None
    found = {}
    for user, role in (("olga", "operator"), ("ann", "annotator")):
        assert run("users", "create", user, "--role", role, token=admin.group(1))[0] == 0
        code, out, _ = run("users", "token", user, token=admin.group(1))
        found[user] = re.search(r"(ck_\S+)", out).group(1)  # type: ignore[union-attr]
    return found


@pytest.fixture
def chain(home: Path, tokens: dict[str, str], classifier_dir: Path) -> Iterator[Served]:  # noqa: F811
    ctx = open_context(load_settings({}, home=home))
    served = serve_model(ctx, classifier_dir)
    yield served
    served.predictors.close()
    ctx.close()


def test_feedback_from_the_command_line_and_its_clear_errors(run: Run, tokens: dict[str, str],  # noqa: F811
                                                             chain: Served) -> None:
    ids = chain.serve(IN_DISTRIBUTION[:2])
    code, out, _ = run("monitor", "feedback", ids[0], "refund", token=tokens["olga"])
    assert code == 0 and out.startswith("created:") and "'refund'" in out
    code, out, _ = run("monitor", "feedback", ids[0], "balance", token=tokens["olga"])
    assert code == 0 and out.startswith("corrected:") and "was 'refund'" in out
    code, _, err = run("monitor", "feedback", "no-such-request", "refund", token=tokens["olga"])
    assert code == 2 and "'no-such-request'" in err and "no feedback was stored" in err
    code, _, err = run("monitor", "feedback", ids[1], "mortgage", token=tokens["olga"])
    assert code == 2 and "Allowed labels: balance, card_lost" in err.replace("\n", " ")
    code, _, err = run("monitor", "feedback", ids[1], "refund", token=tokens["ann"])
    assert code == 5 and "monitoring.feedback" in err
    code, _, err = run("monitor", "feedback", ids[1], "refund")
    assert code == 5 and "needs an API token" in err
    assert [(f.request_id, f.label) for f in list_feedback(chain.ctx.db)] == [(ids[0], "balance")]


def test_quality_drift_and_report_commands(run: Run, tokens: dict[str, str], chain: Served,  # noqa: F811
                                           tmp_path: Path, home: Path) -> None:  # noqa: F811
    ids = chain.serve(IN_DISTRIBUTION[40:])
    for rid in ids[:5]:
        assert run("monitor", "feedback", rid, "balance", token=tokens["olga"])[0] == 0
    code, out, _ = run("monitor", "quality", "support", "--window", "1h", token=tokens["olga"])
    assert code == 0 and "all windows" in out and "offline test" in out and "0.900" in out
    code, _, err = run("monitor", "quality", "support", "--window", "soon", token=tokens["olga"])
    assert code == 2 and "Duration 'soon' is not valid" in err

    code, out, _ = run("monitor", "drift", "support", "--last", "40", token=tokens["olga"])
    assert code == 0 and "length_ks" in out and "embedding_mmd" in out and "support-intents" in out
    code, out, _ = run("monitor", "drift", "support", "--history", token=tokens["olga"])
    assert code == 0 and out.count("label_psi") == 1
    code, out, _ = run("monitor", "drift", "support", "--every", "1h", token=tokens["olga"])
    flat = " ".join(out.split())
    assert code == 0 and "(drift:support) queues one drift job every 1h" in flat and "schedules list" in flat
    assert list_jobs(chain.ctx.db) == []  # the scheduler queues the checks; nothing sleeps in a worker
    # In a fresh interpreter, as a user's shell runs it.
    fresh = subprocess.run([sys.executable, "-m", "chainkeeper.cli.main", "--home", str(home), "--token",
                            tokens["olga"], "schedules", "list", "--json"], capture_output=True, text=True, timeout=120)
    (listed,) = json.loads(fresh.stdout)
    assert fresh.returncode == 0
    assert (listed["name"], listed["every_s"], listed["paused"]) == ("drift:support", 3600.0, False)
    code, out, _ = run("schedules", "pause", str(listed["id"]), token=tokens["olga"])
    assert code == 0 and "is paused" in out
    code, out, _ = run("schedules", "show", str(listed["id"]), "--json", token=tokens["olga"])
    assert code == 0 and json.loads(out)["paused"] is True
    code, _, err = run("schedules", "resume", str(listed["id"]), token=tokens["ann"])
    assert code == 5 and "job.cancel" in err
    code, _, err = run("monitor", "drift", "support", "--last", "5", token=tokens["olga"])
    assert code == 2 and "needs at least 30" in err

    page = tmp_path / "report.html"
    code, out, _ = run("monitor", "report", "support", "--html", str(page), "--json", token=tokens["olga"])
    assert code == 0 and page.read_text(encoding="utf-8").count("<svg") >= 1
    report = json.loads(out[out.index("{"):])
    assert report["predictions"] == 40 and report["labelled"] == 5
    code, _, err = run("monitor", "report", "support", token=tokens["ann"])
    assert code == 5 and "monitoring.read" in err
